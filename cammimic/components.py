"""Contracts of the pluggable components that are not motion estimators.

Motion estimators are described in :mod:`cammimic.motion`. Backbone adapters and guidance
terms are used by the full CamMimic method (finetuning and guided sampling); the attention-layer
locator tells cammimic where the spatial and temporal LoRA go on a backbone's denoiser.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["AttentionLayers", "Backbone", "BackboneAdapter", "GuidanceContext", "GuidanceState", "GuidanceTerm"]


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
    pairs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=lambda v: tuple(tuple(p) for p in v))
    #: Whether a layer may be in both lists (both LoRAs on it); ``False`` refuses an overlap.
    shared: bool = False

    def __attrs_post_init__(self):
        overlap = set(self.spatial) & set(self.temporal)
        if overlap and not self.shared:
            raise ValueError(f"layers named both spatial and temporal: {sorted(overlap)[:3]} "
                             "(pass shared=True if both LoRAs are meant to sit on them)")
        known_s, known_t = set(self.spatial), set(self.temporal)
        for s, t in self.pairs:
            if s not in known_s or t not in known_t:
                raise ValueError(f"pair ({s!r}, {t!r}) names a layer outside the spatial/temporal lists")

    def to_json(self) -> dict[str, Any]:
        out = {"spatial": list(self.spatial), "temporal": list(self.temporal), "pairs": [list(p) for p in self.pairs]}
        return out | ({"shared": True} if self.shared else {})


@runtime_checkable
class BackboneAdapter(Protocol):
    """What a backbone factory returns (see the ``register_backbones`` hook).

    Attributes describe the backbone's native setting; ``load`` brings its weights.
    """

    name: str
    #: Hub id or local directory used when the user gives no ``--weights``.
    default_weights: str
    #: Native (width, height) and number of frames.
    default_size: tuple[int, int]
    default_num_frames: int
    #: Spatial downscale factor of the VAE (8 for zeroscope and ModelScope).
    vae_scale_factor: int

    def load(self, weights: str | None = None, **kwargs: Any) -> Backbone:
        """Load the model components from a Hub id or a local diffusers-layout directory.

        ``weights=None`` loads :attr:`default_weights`. Keyword arguments use diffusers' names:
        ``torch_dtype``, ``variant``, ``revision``, ``local_files_only``, plus ``device``.
        Missing weights raise :class:`CammimicError` naming the id, the cache and the way out.
        """
        ...


@runtime_checkable
class Backbone(Protocol):
    """A loaded text-to-video diffusion model: what :meth:`BackboneAdapter.load` returns.

    The core (finetuning, sampling) only talks to a backbone through this interface, so a
    backbone that is not a diffusers UNet3D can be plugged in by implementing it.
    Tensors are torch tensors; video latents are ``(B, C, T', h, w)``, already scaled (or
    normalised) as the denoiser expects; ``T'`` is the number of latent frames (``T`` for a
    per-frame VAE, ``(T − 1)/4 + 1`` for Wan's).

    Beyond these members a backbone may state its own rules — size multiple, valid frame
    counts, latent shape, frames per latent frame, its samplers, training's noise and target;
    :mod:`cammimic.backbones` lists them with the defaults (a UNet3D's) core uses when they
    are absent. ``denoiser`` may be called ``unet``, its name in the first protocol.
    """

    name: str  #: the registered backbone name
    weights: str  #: the Hub id or directory the weights came from
    device: Any  #: torch.device the models are on
    dtype: Any  #: torch dtype of the frozen weights
    #: The denoiser, where the LoRAs go (an ``nn.Module``: a UNet3D, a video transformer;
    #: ``named_modules()`` names are the names :class:`AttentionLayers` uses). Backbones written
    #: for the first protocol call it ``unet``; that name is still accepted.
    denoiser: Any
    vae_scale_factor: int
    latent_channels: int

    def fingerprint(self) -> str:
        """A short hash of the denoiser's architecture; LoRAs only load onto a matching one."""
        ...

    def encode_prompt(self, prompts: list[str]) -> Any:
        """Text embeddings ``(B, L, D)`` for a list of prompts (``""`` = unconditional)."""
        ...

    def encode_video(self, frames: Any) -> Any:
        """Latents ``(1, C, T, h, w)`` of uint8 frames ``(T, H, W, 3)`` (the posterior mean).

        Frames go through the VAE in slices, so memory is bounded whatever T is.
        """
        ...

    def decode_latents(self, latents: Any) -> Any:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, C, T, h, w)``, decoded in slices."""
        ...

    def predict_noise(self, latents: Any, timestep: Any, prompt_embeds: Any) -> Any:
        """The denoiser's prediction for noisy latents at ``timestep``: what training's target is
        (ε or v for a DDPM model, the flow velocity ε − x₀ for a flow-matching one)."""
        ...

    def temporal_bypass(self) -> Any:
        """Context manager: inside it, a one-frame latent runs through the spatial (image) path
        alone and the temporal LoRA gets no gradient. A UNet3D swaps its temporal modules for
        identities; a video transformer, whose attention serves space and time, sets the
        temporal LoRA's scale to 0 (one latent frame already makes its attention spatial)."""
        ...

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass of training to save memory."""
        ...

    def training_scheduler(self) -> Any:
        """The noise scheduler for training (``config.num_train_timesteps``; ``add_noise`` unless
        the backbone has its own ``noise_and_target``)."""
        ...

    def sampling_scheduler(self, kind: str) -> Any:
        """A fresh sampling scheduler, one of the backbone's ``samplers`` (``"ddim"`` or ``"dpm"``
        for a UNet3D)."""
        ...


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
