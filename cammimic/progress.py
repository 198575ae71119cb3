"""Progress bars (tqdm, which the diffusion extras bring) on stderr; silent when disabled."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable[Any], *, desc: str, disable: bool = False, total: int | None = None,
                 initial: int = 0):
    if disable:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with huggingface_hub
        return iterable
    return tqdm(iterable, desc=desc, total=total, initial=initial, leave=False, dynamic_ncols=True)
