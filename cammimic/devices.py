"""Which torch device a component runs on: one rule for every backbone and estimator.

torch is imported on first use, so ``import cammimic.devices`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cammimic.errors import CammimicError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: Any = None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named torch device,
    refused in one line if it is not one or CUDA is asked for but absent."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CammimicError(
            f"device '{device}' is not a torch device; use 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CammimicError(
            f"device '{device}' was asked for but CUDA is not available; use device 'cpu'"
        )
    return device
