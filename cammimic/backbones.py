"""The backbone seam as core uses it: the run settings a backbone leaves to itself, the checks of
a request, and the deprecation path of backbones written before :mod:`cammimic.kit`.

A backbone subclasses :class:`cammimic.components.Backbone` (its adapter
:class:`~cammimic.components.BackboneAdapter`); every seam member is a method there with the
answer of a per-frame-VAE UNet3D, so core calls them directly (docs/architecture.md, "The seam"):

=========================================  ====================================================
member of the backbone (adapter)           the base class's answer (a per-frame-VAE UNet3D's)
=========================================  ====================================================
``denoiser``                               required (``unet``: deprecated alias)
``size_multiple`` (also on the adapter)    the VAE factor (a UNet3D adapter reads its config)
``valid_num_frames(n)``, ``frame_rule``    any number of frames
``samplers`` (also on the adapter)         ``("ddim", "dpm")``; the first is the default
``frame_groups(n)``                        ``[[0], [1], …]``: one latent frame per video frame
``latent_shape(n, width, height)``         ``(1, latent_channels, n, height/f, width/f)``
``encode_frames(frames)``                  ``None``: Phase 1 slices ``encode_video``'s latents
``sample_training_timesteps(k, gen)``      integers in ``[0, num_train_timesteps)``
``noise_and_target(x0, noise, t)``         ``training_scheduler().add_noise``; ε or v target
``noise_to(x0, noise, t, scheduler)``      the sampling scheduler's ``add_noise``
``condition(latents, t)``                  unchanged (the image-to-video hook)
``conditioned_on(image)``                  a no-op context (the image-to-video hook's image)
``conditioned_frames``                     0: latent frames the condition fixes (no loss there)
``preflight(w, h, frames, sampler, steps)``  size, frames and steps; the adapter's runs before loading
``sampling_defaults`` (on the adapter)     zeroscope's: CFG 9.0, empty negative prompt, 50 steps
``max_frames`` (on the adapter)            no limit: any ``--frames`` is sampled at once
=========================================  ====================================================

An object that does not subclass the base classes (a plugin written for the first protocol) is
wrapped once (:func:`as_backbone`, :func:`as_adapter`) with a :class:`DeprecationWarning`: its own
members answer where it has them, the base class's elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any, ClassVar

from cammimic.config import did_you_mean
from cammimic.errors import CammimicError

__all__ = [
    "DEFAULT_SAMPLING",
    "sampling_defaults",
    "resolve_sampling",
    "resolve_recipe",
    "DEFAULT_SAMPLERS",
    "samplers",
    "resolve_sampler",
    "check_num_frames",
    "fit_num_frames",
    "check_size",
    "check_request",
    "max_frames",
    "weights_max_frames",
    "MAX_FRAMES_KEY",
    "REQUIRED_MEMBERS",
    "missing_members",
    "as_backbone",
    "as_adapter",
    "Backbone",
    "BackboneAdapter",
    "check_steps",
    "max_steps",
]

#: What a backbone samples with when it states nothing (zeroscope's and ModelScope's pipeline values).
DEFAULT_SAMPLING: dict[str, Any] = {"guidance_scale": 9.0, "negative_prompt": "", "steps": 50}
#: The samplers of a DDPM-trained backbone (a UNet3D); the first is the default.
DEFAULT_SAMPLERS: tuple[str, ...] = ("ddim", "dpm")


class BackboneAdapter:
    """What a backbone factory returns (see the ``register_backbones`` hook): the backbone's
    native setting, the rules it checks before anything loads, and ``load``.

    Subclass it (a diffusers model: :class:`cammimic.kit.DiffusersAdapter`) and override
    :meth:`load`; every other member has the answer of a per-frame-VAE UNet3D (zeroscope), so a
    backbone states only where it differs. Nothing here imports a heavy library.
    """

    name: str
    #: Hub id or local directory used when the user gives no ``--weights``.
    default_weights: str
    #: Native (width, height) and number of frames.
    default_size: tuple[int, int]
    default_num_frames: int
    #: Spatial downscale factor of the VAE (8 for zeroscope, ModelScope and Wan 2.1).
    vae_scale_factor: int
    #: The sampler names the backbone offers; the first is its default (``[sampling] scheduler = "auto"``).
    samplers: ClassVar[tuple[str, ...]] = DEFAULT_SAMPLERS
    #: What ``[sampling]`` leaves to the backbone (CFG scale, negative prompt, steps), over :data:`DEFAULT_SAMPLING`.
    sampling_defaults: ClassVar[dict[str, Any]] = {}
    #: The backbone's own run settings (``{"section.key": value}``) where the user set none (mini's).
    recipe_defaults: ClassVar[dict[str, Any]] = {}
    #: The frame counts it takes, in words, for :meth:`valid_num_frames`'s error.
    frame_rule: ClassVar[str] = "any number of frames"

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this (the VAE factor unless the backbone says more)."""
        return int(self.vae_scale_factor)

    @property
    def max_frames(self) -> int | None:
        """The most frames sampled at once; ``None``: no limit. Longer runs are sampled in windows."""
        return None

    def valid_num_frames(self, num_frames: int) -> bool:
        """Whether the backbone can encode a clip of ``num_frames`` frames (any, for a per-frame VAE)."""
        return int(num_frames) >= 1

    def preflight(
        self, width: int, height: int, frames: int, sampler: str | None, steps: int | None
    ) -> bool:
        """Check a request before anything loads; one clear line (:class:`CammimicError`) if it cannot run.

        ``sampler`` and ``steps`` are ``None`` when nothing is sampled. Returns ``True`` when
        every rule was checked, ``False`` when some depend on weights not at hand yet (a Hub id not
        downloaded): then the loaded backbone's :meth:`Backbone.preflight` checks them.
        """
        check_request(self, width, height, frames, None, None, multiple=self.size_multiple)
        return (
            sampler is None or steps is None
        )  # the steps need the sampler's schedule: the loaded backbone's

    def load(self, weights: str | None = None, **kwargs: Any) -> Backbone:
        """Load the model components from a Hub id or a local diffusers-layout directory.

        ``weights=None`` loads :attr:`default_weights`. Keyword arguments use diffusers' names:
        ``torch_dtype``, ``variant``, ``revision``, ``local_files_only``, plus ``device``.
        Missing weights raise :class:`CammimicError` naming the id, the cache and the way out.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement load()")


class Backbone:
    """A loaded text-to-video diffusion model: what :meth:`BackboneAdapter.load` returns.

    The core (finetuning, sampling) only talks to a backbone through this class, so a backbone
    that is not a diffusers UNet3D is plugged in by subclassing it. Tensors are torch tensors;
    video latents are ``(B, C, T', h, w)``, already scaled (or normalised) as the denoiser
    expects; ``T'`` is the number of latent frames (``T`` for a per-frame VAE, ``(T − 1)/4 + 1``
    for Wan's).

    Two kinds of member (docs/architecture.md, "The seam"):

    - **required** (raise :class:`NotImplementedError` here): ``encode_prompt``,
      ``encode_video``, ``decode_latents``, ``predict_noise``, ``temporal_bypass``,
      ``set_gradient_checkpointing``, ``training_scheduler``, ``sampling_scheduler``, and the
      attributes below;
    - **seam** members with the answer of a per-frame-VAE, DDPM-trained UNet3D (zeroscope):
      ``size_multiple``, ``valid_num_frames``, ``frame_groups``, ``latent_shape``,
      ``encode_frames``, ``sample_training_timesteps``, ``noise_and_target``, ``noise_to``,
      ``condition``, ``preflight``, ``samplers``, ``sampling_defaults``; a backbone overrides those
      where it differs (Wan: 4k+1 frames, flow matching).

    ``denoiser`` was called ``unet`` in the first protocol; :attr:`unet` still answers, with a
    :class:`DeprecationWarning`.
    """

    name: str  #: the registered backbone name
    weights: str  #: the Hub id or directory the weights came from
    device: Any  #: torch.device the models are on
    dtype: Any  #: torch dtype of the frozen weights
    #: The denoiser, where the LoRAs go (an ``nn.Module``: a UNet3D, a video transformer;
    #: ``named_modules()`` names are the names :class:`cammimic.components.AttentionLayers` uses).
    denoiser: Any
    vae_scale_factor: int
    latent_channels: int
    samplers: ClassVar[tuple[str, ...]] = (
        DEFAULT_SAMPLERS  #: what :meth:`sampling_scheduler` takes; the first is the default
    )
    sampling_defaults: ClassVar[
        dict[str, Any]
    ] = {}  #: as :attr:`BackboneAdapter.sampling_defaults`
    frame_rule: ClassVar[str] = "any number of frames"

    @property
    def unet(self) -> Any:
        """Deprecated name of :attr:`denoiser` (a Wan backbone's denoiser is a transformer)."""
        warnings.warn(
            f"{type(self).__name__}.unet is deprecated: use .denoiser (docs/architecture.md)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.denoiser

    # -- required: identity, text, pixels, the denoiser, schedulers ---------------------------
    def fingerprint(self) -> str:
        """A short hash of the denoiser's architecture; LoRAs only load onto a matching one
        (:func:`cammimic.lora.unet_fingerprint`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement fingerprint()")

    def encode_prompt(self, prompts: list[str]) -> Any:
        """Text embeddings ``(B, L, D)`` for a list of prompts (``""`` = unconditional)."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_prompt()")

    def encode_video(self, frames: Any) -> Any:
        """Latents ``(1, C, T', h, w)`` of uint8 frames ``(T, H, W, 3)`` (the posterior mean),
        memory bounded whatever T is."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_video()")

    def decode_latents(self, latents: Any) -> Any:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, C, T', h, w)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode_latents()")

    def predict_noise(self, latents: Any, timestep: Any, prompt_embeds: Any) -> Any:
        """The denoiser's prediction for noisy latents at ``timestep``: what training's target is
        (ε or v for a DDPM model, the flow velocity ε − x₀ for a flow-matching one)."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict_noise()")

    def temporal_bypass(self) -> Any:
        """Context manager: inside it, a one-frame latent runs through the spatial (image) path
        alone and the temporal LoRA gets no gradient. A UNet3D swaps its temporal modules for
        identities; a video transformer, whose attention serves space and time, sets the
        temporal LoRA's scale to 0 (one latent frame already makes its attention spatial)."""
        raise NotImplementedError(f"{type(self).__name__} must implement temporal_bypass()")

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass of training to save memory
        (:func:`cammimic.kit.checkpoint_blocks` replays the LoRA scales each block ran with)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement set_gradient_checkpointing()"
        )

    def training_scheduler(self) -> Any:
        """The noise scheduler of training (``config.num_train_timesteps``; its ``add_noise`` is
        :meth:`noise_and_target`'s unless the backbone overrides that)."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_scheduler()")

    def sampling_scheduler(self, kind: str) -> Any:
        """A fresh sampling scheduler, one of :attr:`samplers`."""
        raise NotImplementedError(f"{type(self).__name__} must implement sampling_scheduler()")

    # -- seam: size and frame rules -----------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this (the VAE factor unless the backbone says more)."""
        return int(self.vae_scale_factor)

    def valid_num_frames(self, num_frames: int) -> bool:
        """Whether a clip of ``num_frames`` frames can be encoded (any, for a per-frame VAE)."""
        return int(num_frames) >= 1

    def frame_groups(self, num_frames: int) -> list[list[int]]:
        """The video frames each latent frame holds: ``[[0], [1], …]`` for a per-frame VAE."""
        return [[i] for i in range(int(num_frames))]

    def latent_shape(
        self, num_frames: int, width: int, height: int
    ) -> tuple[int, int, int, int, int]:
        """``(1, C, T', h, w)`` of the latents of a ``num_frames`` clip of ``width`` x ``height``."""
        f = int(self.vae_scale_factor)
        return (
            1,
            int(self.latent_channels),
            len(self.frame_groups(num_frames)),
            height // f,
            width // f,
        )

    def encode_frames(self, frames: Any) -> Any:
        """Each frame alone as an image, latents ``(T, C, 1, h, w)``: what the spatial LoRA's
        single-frame passes train on. ``None`` (here) when each latent frame of a clip already is
        one frame (a per-frame VAE): Phase 1 then slices :meth:`encode_video`'s latents."""
        return None

    def preflight(
        self, width: int, height: int, frames: int, sampler: str | None, steps: int | None
    ) -> bool:
        """:meth:`BackboneAdapter.preflight` on the loaded model, for the rules its adapter could
        not check before loading; one clear line if the request cannot run. Returns ``True``."""
        check_request(
            self,
            width,
            height,
            frames,
            sampler,
            steps,
            multiple=self.size_multiple,
            scheduler=self.sampling_scheduler if sampler else None,
        )
        return True

    # -- seam: training's noise --------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        """The training schedule's length (1000 for every backbone so far)."""
        return int(self._training_noise.config.num_train_timesteps)

    @functools.cached_property
    def _training_noise(self) -> Any:
        return self.training_scheduler()

    def sample_training_timesteps(self, count: int, generator: Any) -> Any:
        """``count`` training timesteps drawn from ``generator`` (CPU): DDPM's uniform integers
        in ``[0, num_train_timesteps)``."""
        import torch

        return torch.randint(0, self.num_train_timesteps, (count,), generator=generator)

    def noise_and_target(self, latents: Any, noise: Any, timesteps: Any) -> tuple[Any, Any]:
        """``(noisy latents, training target)``: DDPM's ``add_noise`` and its ε or v target."""
        scheduler = self._training_noise
        kind = scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            target = noise
        elif kind == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise CammimicError(
                f"the backbone's scheduler predicts '{kind}'; cammimic trains epsilon or v_prediction models "
                "(or a backbone with its own noise_and_target)"
            )
        return scheduler.add_noise(latents, noise, timesteps), target

    # -- seam: sampling --------------------------------------------------------------------------
    def noise_to(self, latents: Any, noise: Any, timestep: Any, scheduler: Any) -> Any:
        """``latents`` noised to the level of sampling ``timestep`` of ``scheduler`` (the sampler in
        use): its ``add_noise``; ``None`` when it has none."""
        if hasattr(scheduler, "add_noise"):
            return scheduler.add_noise(latents, noise, timestep.reshape(1))
        return None

    def condition(self, latents: Any, timestep: Any) -> tuple[Any, Any]:
        """``(latents, timestep)`` as the denoiser must see them, before every pass of sampling.

        A text-to-video backbone returns both unchanged (here). The hook for an image-to-video
        one (Wan 2.2 TI2V): put the user image's latents in the first latent frame and give each
        latent frame its own timestep (0 for the conditioning frame, diffusers' ``expand_timesteps``).
        """
        return latents, timestep

    def conditioned_on(self, image: Any) -> Any:
        """Context manager: inside it, :meth:`condition` conditions on ``image`` (uint8 ``(H, W, 3)``).

        Phase 1 enters it with the reference's own first frame, Phase 2 with the user image. A
        text-to-video backbone has nothing to condition: a no-op here.
        """
        return contextlib.nullcontext()

    @property
    def conditioned_frames(self) -> int:
        """How many leading latent frames :meth:`condition` fixes (0 here): they carry the image,
        not noise, so Phase 1's loss leaves them out."""
        return 0


#: What a loaded backbone must have when it does not subclass :class:`~cammimic.components.Backbone`
#: (the first protocol; ``denoiser`` may be called ``unet`` there).
REQUIRED_MEMBERS = (
    "decode_latents",
    "denoiser",
    "device",
    "dtype",
    "encode_prompt",
    "encode_video",
    "fingerprint",
    "latent_channels",
    "name",
    "predict_noise",
    "sampling_scheduler",
    "set_gradient_checkpointing",
    "temporal_bypass",
    "training_scheduler",
    "vae_scale_factor",
    "weights",
)


def missing_members(backbone) -> list[str]:
    """The :data:`REQUIRED_MEMBERS` ``backbone`` lacks (none for a :class:`Backbone` subclass)."""
    if isinstance(backbone, Backbone):
        return []
    return [
        n
        for n in REQUIRED_MEMBERS
        if not hasattr(backbone, n) and not (n == "denoiser" and hasattr(backbone, "unet"))
    ]


class _Delegating:
    """Attribute reads go to the wrapped object first, then to the base class's answer."""

    _own: frozenset[str] = frozenset()

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner" or name in type(self)._own:
            return object.__getattribute__(self, name)
        inner = object.__getattribute__(self, "_inner")
        try:
            return getattr(inner, name)
        except AttributeError:
            return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), name, value)

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_inner"))


class _LegacyBackbone(_Delegating, Backbone):
    """A first-protocol backbone seen as a :class:`Backbone` (deprecated; see :func:`as_backbone`)."""

    _own = frozenset({"denoiser", "noise_to", "_training_noise"})

    @property
    def denoiser(self) -> Any:
        inner = object.__getattribute__(self, "_inner")
        model = getattr(inner, "denoiser", None)
        return model if model is not None else inner.unet

    def noise_to(self, latents, noise, timestep, scheduler):
        own = getattr(object.__getattribute__(self, "_inner"), "noise_to", None)
        if own is not None:  # the first seam's noise_to had no scheduler argument
            return own(latents, noise, timestep)
        return Backbone.noise_to(self, latents, noise, timestep, scheduler)


class _LegacyAdapter(_Delegating, BackboneAdapter):
    """A first-protocol adapter seen as a :class:`BackboneAdapter` (deprecated; see :func:`as_adapter`)."""


def _deprecated(kind: str, obj: Any) -> None:
    warnings.warn(
        f"{type(obj).__name__} does not subclass cammimic.components.{kind}; plugins written for the first "
        f'protocol keep working for now, but subclass {kind} (docs/architecture.md, "The seam")',
        DeprecationWarning,
        stacklevel=3,
    )


def as_backbone(backbone) -> Backbone:
    """``backbone`` as a :class:`Backbone`: itself when it subclasses it, else wrapped (deprecated)."""
    if isinstance(backbone, Backbone):
        return backbone
    _deprecated("Backbone", backbone)
    return _LegacyBackbone(backbone)


def as_adapter(adapter) -> BackboneAdapter:
    """``adapter`` as a :class:`BackboneAdapter`: itself when it subclasses it, else wrapped (deprecated)."""
    if isinstance(adapter, BackboneAdapter):
        return adapter
    _deprecated("BackboneAdapter", adapter)
    return _LegacyAdapter(adapter)


def sampling_defaults(backbone_or_adapter) -> dict[str, Any]:
    """The backbone's own CFG scale, negative prompt and steps (``sampling_defaults``), over
    :data:`DEFAULT_SAMPLING`."""
    own = backbone_or_adapter.sampling_defaults or {}
    return DEFAULT_SAMPLING | {k: v for k, v in dict(own).items() if k in DEFAULT_SAMPLING}


def resolve_recipe(backbone_or_adapter, config) -> dict[str, Any]:
    """``{"section.key": value}`` of the backbone's own run settings (``recipe_defaults``, e.g.
    mini's finetuning steps, LoRA ranks and motion estimator, measured for its size) that the user
    did not set (:meth:`cammimic.config.Config.is_explicit`). Backbones without any: ``{}``."""
    own = backbone_or_adapter.recipe_defaults or {}
    return {k: v for k, v in dict(own).items() if not config.is_explicit(k)}


def resolve_sampling(backbone_or_adapter, sampling: dict[str, Any]) -> dict[str, Any]:
    """``{"sampling.key": value}`` for each of ``[sampling]``'s steps, guidance_scale and
    negative_prompt the user left unset (``0``, ``0``, ``"auto"``): the backbone's default."""
    unset = {"steps": 0, "guidance_scale": 0.0, "negative_prompt": "auto"}
    defaults = sampling_defaults(backbone_or_adapter)
    return {f"sampling.{k}": defaults[k] for k, v in unset.items() if sampling.get(k, v) == v}


def samplers(backbone_or_adapter) -> tuple[str, ...]:
    """The sampler names a backbone offers; the first is its default (``"auto"``)."""
    names = backbone_or_adapter.samplers
    return tuple(names) if names else DEFAULT_SAMPLERS


def resolve_sampler(backbone_or_adapter, name: str) -> str:
    """``name`` if the backbone offers it (``"auto"``: its default sampler), else one clear line."""
    offered = samplers(backbone_or_adapter)
    if name in ("", "auto"):
        return offered[0]
    if name not in offered:
        label = backbone_or_adapter.name
        raise CammimicError(
            f"[sampling] scheduler = '{name}' is not a sampler of backbone \"{label}\"{did_you_mean(name, offered)}; "
            f"try one of {list(offered)}, or 'auto' ({offered[0]})"
        )
    return name


#: The key of a weights folder's ``model_index.json`` that states the frames its model samples at
#: once (random test weights write their preset's; diffusers ignores keys starting with ``_``).
MAX_FRAMES_KEY = "_cammimic_max_frames"


def max_frames(backbone_or_adapter) -> int | None:
    """The most frames the backbone samples at once (``max_frames``: mini 8, zeroscope 24,
    ModelScope 16, Wan 81); ``None`` when it states none. A longer ``--frames`` is sampled in
    overlapping windows (:func:`cammimic.sampling.plan_windows`)."""
    n = backbone_or_adapter.max_frames
    return int(n) if n else None


def weights_max_frames(weights) -> int | None:
    """The ``max_frames`` a local weights folder states in its ``model_index.json``
    (:data:`MAX_FRAMES_KEY`), else ``None`` (a Hub id, or a folder stating none)."""
    import json
    from pathlib import Path

    if not weights:
        return None
    index = Path(str(weights)).expanduser() / "model_index.json"
    try:
        value = json.loads(index.read_text(encoding="utf-8")).get(MAX_FRAMES_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def check_num_frames(backbone_or_adapter, num_frames: int) -> None:
    """One line when the backbone cannot take ``num_frames`` frames (Wan: ``4k+1``)."""
    valid = backbone_or_adapter.valid_num_frames
    if valid(int(num_frames)):
        return
    label = backbone_or_adapter.name
    rule = backbone_or_adapter.frame_rule
    near = [n for n in range(max(1, num_frames - 8), num_frames + 9) if valid(n)]
    hint = f" (e.g. --frames {min(near, key=lambda n: (abs(n - num_frames), -n))})" if near else ""
    raise CammimicError(f'--frames {num_frames}: backbone "{label}" takes {rule}{hint}')


def fit_num_frames(backbone_or_adapter, wanted: int, available: int) -> int:
    """The frame count to use when the user set none: ``min(wanted, available)``, moved to the
    nearest count the backbone takes (up if the reference has the frames, else down)."""
    valid = backbone_or_adapter.valid_num_frames
    n = max(1, min(wanted, available))
    if valid(n):
        return n
    up = next((m for m in range(n + 1, available + 1) if valid(m) and m - n <= 8), None)
    return up if up is not None else next((m for m in range(n, 0, -1) if valid(m)), 1)


def check_size(width: int, height: int, multiple: int, backbone_name: str) -> None:
    """One line when ``width`` x ``height`` is not a multiple of ``multiple``, with the nearest size that is."""

    def near(v):
        return max(multiple, round(v / multiple) * multiple)

    if width % multiple or height % multiple:
        raise CammimicError(
            f"--width/--height {width}x{height} must be multiples of {multiple} for backbone "
            f'"{backbone_name}"; try {near(width)}x{near(height)}'
        )


def check_request(
    backbone_or_adapter,
    width: int,
    height: int,
    frames: int,
    sampler: str | None,
    steps: int | None,
    *,
    multiple: int | None = None,
    scheduler=None,
) -> None:
    """The checks of a ``preflight``: the size is a multiple of ``multiple`` (when given), the
    backbone takes ``frames``, and ``steps`` fit ``scheduler(sampler)``'s schedule (when all three
    are given; ``scheduler`` is a function of the sampler name, e.g. ``sampling_scheduler``)."""
    if multiple is not None:
        check_size(int(width), int(height), int(multiple), backbone_or_adapter.name)
    check_num_frames(backbone_or_adapter, int(frames))
    if scheduler is not None and sampler and steps is not None:
        check_steps(scheduler(sampler), steps, sampler)


def max_steps(sched) -> int:
    """The most sampling steps ``sched`` can take without stepping past its training schedule.

    DDIM with ``"leading"`` spacing and ``steps_offset`` 1 (zeroscope, ModelScope) maps 1000
    steps to timesteps 1…1000, one past the last trained one (999).
    """
    cfg = sched.config
    n = int(cfg.get("num_train_timesteps", 1000))
    offset = int(cfg.get("steps_offset", 0) or 0)
    if cfg.get("timestep_spacing", "leading") == "leading" and type(sched).__name__.startswith(
        "DDIM"
    ):
        return n - offset
    return n


def check_steps(sched, steps: int, name: str = "") -> None:
    """One line when ``steps`` is more than the sampler can take with this schedule."""
    most = max_steps(sched)
    if not 1 <= int(steps) <= most:
        raise CammimicError(
            f"--steps {steps} is outside what the {name or type(sched).__name__} sampler can take with this "
            f"backbone's {sched.config.get('num_train_timesteps', 1000)}-step schedule; use 1 to {most}"
        )
