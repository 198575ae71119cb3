"""Make docs/images/demo.gif, the README's picture, from a real run on the examples.

Run: cammimic run examples/reference.mp4 examples/scene.jpg -o out/demo --overwrite
     python examples/make_readme_gif.py out/demo
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from cammimic.io import read_video, write_video

run = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
video = read_video(run / "side_by_side.mp4")
frames = np.stack([cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA) for f in video.frames])
out = write_video(Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.gif", frames, video.fps)
print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
