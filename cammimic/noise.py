"""Initial noise of sampling (x_T): the contract of noise initialisers and the default, ``iid``.

A noise initialiser draws the latents sampling starts from. The default draws i.i.d. standard
normal latents, as every text-to-video pipeline does. A plugin may shape them, e.g. the
``warped-noise`` initialiser of the ``warpnoise`` plugin moves frame 0's noise along the
reference video's camera motion (Go-with-the-Flow), because a video model whose schedule never
reaches zero signal takes part of its motion from x_T (docs/mini.md).

Initialisers are registered with the ``register_noise_initialisers`` hook and chosen by the
config's ``[noise]`` section (``--noise NAME`` on the command line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

__all__ = [
    "NoiseContext",
    "NoiseInitialiser",
    "IidNoise",
    "iid_noise",
    "latent_homographies",
    "draw",
]


@attrs.frozen(eq=False)
class NoiseContext:
    """What a noise initialiser knows about the clip it draws x_T for."""

    #: ``(B, C, T', h, w)``: the latents' shape.
    shape: tuple[int, ...]
    #: Frame-to-frame homographies of the reference video at the output's pixel size,
    #: ``(T - 1, 3, 3)`` (``H[i]`` maps frame i to frame i+1), or ``None`` when sampling has no
    #: reference motion.
    homographies: np.ndarray | None = None
    #: The output's pixel size.
    width: int = 0
    height: int = 0
    #: The video frames each latent frame holds (``[[0], [1], …]`` for a per-frame VAE; Wan's
    #: latent frame j > 0 holds four).
    frame_groups: Sequence[Sequence[int]] | None = None


@runtime_checkable
class NoiseInitialiser(Protocol):
    """What a noise factory returns (see the ``register_noise_initialisers`` hook)."""

    name: str

    def draw(self, generator: Any, context: NoiseContext) -> Any:
        """Initial latents ``context.shape``, float32 on the CPU, drawn from the CPU
        ``torch.Generator`` ``generator`` (so a seed gives the same noise on every device).
        Each element should be standard normal: the sampler scales by the scheduler's
        ``init_noise_sigma`` itself."""
        ...


class IidNoise:
    """I.i.d. standard normal latents: what sampling has always started from."""

    name = "iid"

    def draw(self, generator, context: NoiseContext):
        import torch

        return torch.randn(tuple(context.shape), generator=generator, dtype=torch.float32)


def iid_noise() -> IidNoise:
    """Factory of the ``iid`` noise initialiser (no parameters)."""
    return IidNoise()


def latent_homographies(context: NoiseContext) -> np.ndarray | None:
    """``(T', 3, 3)``: frame 0 to latent frame j at latent resolution (``[0]`` is the identity),
    or ``None`` without reference motion.

    The pixel homographies are chained from frame 0, then rescaled exactly for pixel centres
    (:func:`cammimic.homography.rescale`); a latent frame holding several video frames follows
    the last of them.
    """
    from cammimic.homography import chain, rescale

    if context.homographies is None:
        return None
    h, w = int(context.shape[-2]), int(context.shape[-1])
    composed = rescale(chain(context.homographies), (context.width, context.height), (w, h))
    groups = context.frame_groups or [[i] for i in range(len(composed))]
    return np.stack([composed[max(g)] for g in groups])


def draw(initialiser, generator, context: NoiseContext, *, where: str = ""):
    """``initialiser.draw`` checked at the contract boundary: a finite float32 tensor of the
    asked shape (a plugin's bug is named, not passed on to the sampler)."""
    import torch

    from cammimic.errors import CammimicError

    out = initialiser.draw(generator, context)
    name = getattr(initialiser, "name", type(initialiser).__name__)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(context.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CammimicError(
            f'noise initialiser "{name}"{where} returned {got}, not latents of shape '
            f"{tuple(context.shape)}; this is a bug in its plugin"
        )
    if not torch.isfinite(out).all():
        raise CammimicError(
            f'noise initialiser "{name}"{where} returned non-finite noise; this is a bug in its plugin'
        )
    return out.to(torch.float32)
