"""Progress of the training and sampling loops: tqdm bars on stderr, or a callback.

Each loop wraps its steps in :func:`progress_bar`. Inside :func:`report_progress` every step is
reported to a callback instead, ``callback(stage, step, total)`` with ``stage`` ``"stage 1"``,
``"stage 2"`` or ``"sampling"`` and ``step`` the steps done so far (the loop's starting point
first, then after each step); that is how :func:`cammimic.transfer` takes ``progress=callable``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: ``callback(stage, step, total)``: where :func:`progress_bar` reports, when set.
ProgressCallback = Callable[[str, int, int], None]

_CALLBACK: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar(
    "cammimic_progress", default=None
)


@contextlib.contextmanager
def report_progress(callback: ProgressCallback | None) -> Iterator[None]:
    """Within the block, every loop reports its steps to ``callback`` and shows no bar (``None``:
    as outside the block)."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def _reported(
    iterable: Iterable[Any], callback: ProgressCallback, desc: str, total: int | None, initial: int
) -> Iterator[Any]:
    if total is None:
        try:
            total = initial + len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = 0  # unknown
    step = initial
    callback(desc, step, total)
    for item in iterable:
        yield item
        step += 1
        callback(desc, step, total)


def progress_bar(
    iterable: Iterable[Any],
    *,
    desc: str,
    disable: bool = False,
    total: int | None = None,
    initial: int = 0,
):
    """``iterable`` with a tqdm bar named ``desc`` (none when ``disable``), or reporting each step to
    the callback of an enclosing :func:`report_progress`."""
    callback = _CALLBACK.get()
    if callback is not None:
        return _reported(iterable, callback, desc, total, initial)
    if disable:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with huggingface_hub
        return iterable
    return tqdm(iterable, desc=desc, total=total, initial=initial, leave=False, dynamic_ncols=True)
