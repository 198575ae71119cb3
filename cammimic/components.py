"""Contracts of the pluggable components that are not motion estimators.

Motion estimators are described in :mod:`cammimic.motion`. Backbone adapters and guidance
terms are used by the full CamMimic method (finetuning and guided sampling); the attention-layer
locator tells cammimic where the spatial and temporal LoRA go on a backbone's denoiser.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

# the base classes of a backbone live with the seam; imported here, their first home
from cammimic.backbones import Backbone, BackboneAdapter

__all__ = [
    "AttentionLayers",
    "Backbone",
    "BackboneAdapter",
    "GuidanceContext",
    "GuidanceState",
    "GuidanceTerm",
]


def _names(value) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen
class AttentionLayers:
    """Which modules of a denoiser get the spatial LoRA and which the temporal LoRA.

    Names are fully qualified module names as in ``model.named_modules()``.

    A UNet3D has separate spatial and temporal modules, so the lists are disjoint. A video
    diffusion transformer (Wan) has one self-attention for space and time: with ``shared=True``
    a layer may carry both adapters (two LoRAs on one Linear), and a pair may name the same
    layer twice (the orthogonality of the two adapters of that layer).
    """

    #: Projections of spatial self-attention (and optionally spatial feed-forward layers).
    spatial: tuple[str, ...] = attrs.field(converter=_names)
    #: Projections of temporal attention (and optionally temporal feed-forward layers).
    temporal: tuple[str, ...] = attrs.field(converter=_names)
    #: (spatial, temporal) pairs of the same block and role, used by the orthogonality loss.
    pairs: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=lambda v: tuple(tuple(p) for p in v)
    )
    #: Whether a layer may be in both lists (both LoRAs on it); ``False`` refuses an overlap.
    shared: bool = False

    def __attrs_post_init__(self):
        overlap = set(self.spatial) & set(self.temporal)
        if overlap and not self.shared:
            raise ValueError(
                f"layers named both spatial and temporal: {sorted(overlap)[:3]} "
                "(pass shared=True if both LoRAs are meant to sit on them)"
            )
        known_s, known_t = set(self.spatial), set(self.temporal)
        for s, t in self.pairs:
            if s not in known_s or t not in known_t:
                raise ValueError(
                    f"pair ({s!r}, {t!r}) names a layer outside the spatial/temporal lists"
                )

    def to_json(self) -> dict[str, Any]:
        out = {
            "spatial": list(self.spatial),
            "temporal": list(self.temporal),
            "pairs": [list(p) for p in self.pairs],
        }
        return out | ({"shared": True} if self.shared else {})


@attrs.define
class GuidanceState:
    """What a guidance term sees at one sampling step."""

    step: int  #: 0-based index of this step
    num_steps: int  #: total number of sampling steps
    timestep: Any  #: the scheduler's timestep
    #: Latents the sampling should be drawn towards, e.g. z_P of the weak video (B, C, T, h, w).
    target: Any = None
    #: Where ``target`` is valid (1) or out of view (0), broadcastable to the latents.
    mask: Any = None
    #: Anything else a term may need, by name: ``noised_target``, z_P noised to the next step's
    #: level (None after the last step), which the ``homography`` term compares with when
    #: ``compare = "noised"``.
    extras: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class GuidanceContext:
    """What a guidance term with a ``prepare(context)`` method is given once, before sampling:
    the terms that read the backbone or the reference themselves (MotionClone's reference
    attention, CameraScore guidance's decoder and reference homographies)."""

    backbone: Any  #: the loaded :class:`Backbone`, LoRAs set for sampling
    prompt: str  #: t_I, the sampling prompt
    #: the reference's frame-to-frame homographies at the output's pixel size, (T − 1, 3, 3)
    homographies: Any
    width: int  #: the output's pixel size
    height: int
    reference: Any = None  #: the reference video's frames (T, H, W, 3) uint8, or None
    reference_prompt: str = ""  #: t_R
    settings: Any = None  #: the [sampling] section (steps, scheduler, guidance_scale, ...)
    seed: int = 0


@runtime_checkable
class GuidanceTerm(Protocol):
    """What a guidance factory returns (see the ``register_guidance_terms`` hook).

    ``apply`` takes the current latents and returns the guided latents (same shape). A term with
    ``acts_on = "x0"`` gets the model's predicted clean latents x̂₀ before each scheduler step (the
    sampler converts the result back to the model's output type); without it, or with ``"z_t"``,
    it gets z_t after each step.
    """

    name: str

    def apply(self, latents: Any, state: GuidanceState) -> Any: ...
