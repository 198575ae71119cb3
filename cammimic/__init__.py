"""cammimic: transfer the camera motion of a reference video onto your own image.

``import cammimic`` stays light: the Python API below is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from cammimic._version import __version__
from cammimic.errors import CammimicError
from cammimic.hookspecs import hookimpl

_LAZY = {
    # Python API (what the CLI does)
    "estimate_motion": "cammimic.api",
    "score": "cammimic.api",
    "transfer": "cammimic.api",
    "finetune": "cammimic.api",
    "sample": "cammimic.api",
    "list_plugins": "cammimic.api",
    # building blocks
    "MotionEstimate": "cammimic.motion",
    "Fallback": "cammimic.motion",
    "camera_score": "cammimic.metrics",
    "read_video": "cammimic.io",
    "read_image": "cammimic.io",
    "write_video": "cammimic.io",
    "Config": "cammimic.config",
    "load_config": "cammimic.config",
}

__all__ = ["__version__", "CammimicError", "hookimpl", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cammimic' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from cammimic.api import estimate_motion, finetune, list_plugins, sample, score, transfer  # noqa: F401
    from cammimic.config import Config, load_config  # noqa: F401
    from cammimic.io import read_image, read_video, write_video  # noqa: F401
    from cammimic.metrics import camera_score  # noqa: F401
    from cammimic.motion import Fallback, MotionEstimate  # noqa: F401
