"""The one error type users see, and the one way an exception becomes a line of a message."""

from __future__ import annotations

__all__ = ["CammimicError", "one_line"]

#: Characters of an exception's message :func:`one_line` keeps.
ONE_LINE_LIMIT = 200


class CammimicError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits non-zero.

    Messages say what was wrong, where (file, option, plugin) and how to fix it.
    """


def one_line(exc: BaseException, *, limit: int = ONE_LINE_LIMIT, name: bool = True) -> str:
    """``exc`` as one line to put inside a message: ``Type: text``.

    The text is the exception's message with its whitespace (newlines included) collapsed, cut
    at ``limit`` characters with "…". A :class:`CammimicError` is written for users and stands
    alone; so does any message with ``name=False`` (where the sentence around it already says
    what failed, e.g. "LoRA file X cannot be read (...)"). An empty message gives the type's name.

    >>> one_line(ValueError("bad\\n  value"))
    'ValueError: bad value'
    >>> one_line(CammimicError("video x.mp4 does not exist; check the path"))
    'video x.mp4 does not exist; check the path'
    """
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    if not text:
        return type(exc).__name__
    return text if not name or isinstance(exc, CammimicError) else f"{type(exc).__name__}: {text}"
