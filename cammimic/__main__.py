import sys

from cammimic.cli import main

sys.exit(main())
