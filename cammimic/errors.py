"""The one error type users see."""

from __future__ import annotations


class CammimicError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero.

    Messages say what was wrong, where (file, option, plugin) and how to fix it.
    """
