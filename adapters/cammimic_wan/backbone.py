"""Loading and running Wan 2.1 text-to-video (diffusers ``WanPipeline``'s models) for CamMimic.

:class:`WanAdapter` is what the ``wan`` factory returns; its ``load`` brings the weights
(``transformer/ vae/ text_encoder/ tokenizer/ scheduler/``, diffusers layout) and returns a
:class:`WanBackbone`, which implements :class:`cammimic.components.Backbone` on the models
themselves, as ``WanPipeline.__call__`` does:

- **text**: UMT5 embeddings of the tokens up to ``</s>``, zero beyond (``max_sequence_length``
  = the tokenizer's ``model_max_length``, 512 for Wan);
- **video**: ``AutoencoderKLWan`` is a causal 3D VAE: 8x spatial and 4x temporal compression,
  so a clip of ``4k+1`` frames has ``k+1`` latent frames (the first latent frame holds the first
  frame alone; latent frame ``j >= 1`` holds frames ``4j-3 … 4j``). Latents are normalised per
  channel with the VAE's ``latents_mean``/``latents_std``: ``z = (μ − mean) / std``;
- **denoising**: ``WanTransformer3DModel`` predicts the flow-matching velocity
  ``ε − x₀`` at timestep ``1000·σ`` for ``x_σ = (1 − σ)·x₀ + σ·ε``;
- **image mode** (:meth:`WanBackbone.temporal_bypass`): Wan has no temporal modules to bypass —
  one self-attention over all ``T·h·w`` tokens serves space and time — so the spatial LoRA's
  single-frame passes run the transformer on one latent frame (then self-attention is spatial
  only) with the temporal LoRA at scale 0. See ``docs/wan.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from cammimic_unet3d.backbone import (
    _first_line,
    _hub_errors,
    _lora_scales,
    _quiet_libraries,
    _restored_lora_scales,
    _unsafe_pickle,
    hub_cache_dir,
    hub_offline,
    hub_unreachable,
    load_text_encoder,
    require_cached,
    resolve_dtype,
    resolve_weights,
)

from cammimic.devices import resolve_device
from cammimic.errors import CammimicError

__all__ = ["SUBFOLDERS", "SAMPLERS", "NEGATIVE_PROMPT", "WanAdapter", "WanBackbone", "flow_sigmas", "frame_groups"]

#: What a diffusers-layout Wan weights directory must contain.
SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
#: Wan's published negative prompt, as diffusers' ``WanPipeline`` example passes it (the English of
#: Wan 2.1's ``sample_neg_prompt``); ``[sampling] negative_prompt = "auto"`` uses it.
NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly "
    "drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy "
    "background, three legs, many people in the background, walking backwards"
)

#: ``unipc``: UniPC with flow sigmas (the scheduler Wan ships); ``euler``: flow-matching Euler.
SAMPLERS = ("unipc", "euler")
ATTENTION_CHOICES = ("sdpa", "default")
_MISSING = object()


def frame_groups(num_frames: int, temporal_factor: int = 4) -> list[list[int]]:
    """Which video frames each latent frame of a causal VAE holds: ``[[0], [1..4], [5..8], …]``.

    ``num_frames`` must be ``temporal_factor·k + 1``.
    """
    if num_frames < 1 or (num_frames - 1) % temporal_factor:
        raise CammimicError(
            f"{num_frames} frames cannot be encoded by a VAE with {temporal_factor}x temporal compression; "
            f"use {temporal_factor}k+1 frames (e.g. {_nearest_valid(num_frames, temporal_factor)})"
        )
    groups = [[0]]
    for start in range(1, num_frames, temporal_factor):
        groups.append(list(range(start, start + temporal_factor)))
    return groups


def _nearest_valid(num_frames: int, factor: int) -> int:
    return max(1, (num_frames - 1) // factor * factor + 1)


def flow_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Shifted flow-matching noise levels: ``σ = s·u / (1 + (s − 1)·u)`` for ``u`` in [0, 1].

    The shift Wan samples with (``flow_shift``, 3 at 480p) moves training and sampling towards
    high noise, where the layout — and the camera motion — is decided.
    """
    return shift * u / (1.0 + (shift - 1.0) * u)


@attrs.define
class WanAdapter:
    """The Wan 2.1 text-to-video backbone: its native setting and how to load it.

    Implements :class:`cammimic.components.BackboneAdapter`. The fields after
    ``temporal_factor`` are the defaults of :meth:`load` (set from the ``[backbone]`` config).
    """

    name: str = "wan"
    default_weights: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    default_size: tuple[int, int] = (832, 480)  #: native (width, height)
    default_num_frames: int = 81
    vae_scale_factor: int = 8
    temporal_factor: int = 4  #: the VAE's temporal compression: frames are ``4k+1``
    revision: str | None = None
    variant: str | None = None
    torch_dtype: Any = None  #: ``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU
    attention: str = "sdpa"
    #: flow shift of training's noise levels; 0 = the scheduler's ``flow_shift`` (3.0 for 1.3B)
    training_shift: float = 0.0
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    #: what [sampling] leaves to the backbone: diffusers' ``WanPipeline`` defaults (CFG 5.0, 50 steps)
    #: and the negative prompt of its example (Wan's own, translated)
    sampling_defaults: ClassVar[dict[str, Any]] = {
        "guidance_scale": 5.0, "negative_prompt": NEGATIVE_PROMPT, "steps": 50,
    }
    frame_rule: ClassVar[str] = "4k+1 frames (its VAE compresses time 4x after the first frame)"

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this: the VAE's 8 times the 2x2 patches."""
        return self.vae_scale_factor * 2

    @property
    def max_frames(self) -> int:
        """The frames Wan samples at once: what its weights folder states
        (``cammimic.backbones.weights_max_frames``), else its native 81. Longer runs are sampled in windows."""
        from cammimic.backbones import weights_max_frames

        return weights_max_frames(self.default_weights) or int(self.default_num_frames)

    def valid_num_frames(self, num_frames: int) -> bool:
        return num_frames >= 1 and (num_frames - 1) % self.temporal_factor == 0

    def load(
        self,
        weights: str | os.PathLike | None = None,
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        device: Any = None,
        attention: str | None = None,
        **_ignored: Any,
    ) -> WanBackbone:
        """Load the transformer, VAE, UMT5 text encoder, tokenizer and scheduler config.

        Args:
            weights: a Hub id or a local diffusers-layout directory; ``None`` loads
                :attr:`default_weights` (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``).
            torch_dtype: ``None``/``"auto"``: bfloat16 on CUDA, float32 on CPU (the VAE stays
                float32, as diffusers' Wan examples load it).
            variant, revision, local_files_only: as in diffusers' ``from_pretrained``.
            device: ``"cpu"``, ``"cuda[:n]"``; ``None`` = CUDA when available.
            attention: ``"sdpa"`` (diffusers' default for Wan) or ``"default"``: both keep
                ``WanAttnProcessor``; the option is accepted for parity with the UNet3D adapters.

        Raises:
            CammimicError: one line naming the missing directory, subfolder or Hub id, the
                Hugging Face cache that was searched, and ``--weights`` as the way out.
        """
        weights = self.default_weights if weights is None else weights
        device = resolve_device(device)
        dtype = resolve_dtype(torch_dtype if torch_dtype is not None else self.torch_dtype, device)
        attention = attention if attention is not None else self.attention
        if attention not in ATTENTION_CHOICES:
            raise CammimicError(f"attention '{attention}' is unknown. Try one of {list(ATTENTION_CHOICES)}")
        source, local = resolve_weights(weights, SUBFOLDERS, self.name,
                                        "python -m cammimic_wan.random_weights DIR")
        options: dict[str, Any] = {}
        unreachable = None
        if not local:
            offline = hub_offline() if local_files_only is None else bool(local_files_only)
            if not offline:
                unreachable = hub_unreachable()
                offline = unreachable is not None
            options = {"local_files_only": offline, "cache_dir": hub_cache_dir()}
            revision = revision if revision is not None else self.revision
            if revision:
                options["revision"] = revision
        variant = variant if variant is not None else self.variant
        model_options = {**options, **({"variant": variant} if variant else {})}
        with _translate_errors(self.name, source, local, options, unreachable), warnings.catch_warnings():
            if options.get("local_files_only"):
                require_cached(source, options)
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            with _quiet_libraries():
                transformer, vae, text_encoder, tokenizer, scheduler_config = _load_components(
                    source, dtype, options, model_options)
        _check_scheduler_config(scheduler_config, source)
        for model in (transformer, vae, text_encoder):
            model.to(device).eval().requires_grad_(False)
        shift = float(self.training_shift or scheduler_config.get("flow_shift", 1.0) or 1.0)
        return WanBackbone(
            name=self.name,
            weights=source,
            device=device,
            dtype=dtype,
            unet=transformer,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler_config=scheduler_config,
            vae_scale_factor=int(getattr(vae.config, "scale_factor_spatial", 8) or 8),
            temporal_factor=int(getattr(vae.config, "scale_factor_temporal", 4) or 4),
            latent_channels=int(vae.config.z_dim),
            patch_size=tuple(int(p) for p in transformer.config.patch_size),
            training_shift=shift,
        )

def _load_components(source: str, dtype: torch.dtype, options: dict, model_options: dict):
    """Scheduler config and tokenizer first: they are small, so a missing model fails fast."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    scheduler_config = dict(UniPCMultistepScheduler.load_config(source, subfolder="scheduler", **options))
    tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", **options)
    if not tokenizer.model_max_length or tokenizer.model_max_length > 512:
        tokenizer.model_max_length = 512  # WanPipeline's max_sequence_length
    text_encoder = load_text_encoder(UMT5EncoderModel, source, dtype, model_options)
    vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32, **model_options)
    transformer = WanTransformer3DModel.from_pretrained(source, subfolder="transformer", torch_dtype=dtype,
                                                        **model_options)
    return transformer, vae, text_encoder, tokenizer, scheduler_config


def _check_scheduler_config(config: dict, source: str) -> None:
    """Build each sampler once now, so bogus values fail at load in one line, not mid-run."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    where = f"the scheduler config of {source} (scheduler/scheduler_config.json)"

    def bad(why: str) -> CammimicError:
        return CammimicError(f"{where} is invalid: {why}; fix the file or use other --weights")

    steps = config.get("num_train_timesteps", 1000)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= 100_000:
        raise bad(f"num_train_timesteps {str(steps)[:40]!r} is not an integer in 2..100000")
    shift = config.get("flow_shift", 1.0)
    if not isinstance(shift, (int, float)) or isinstance(shift, bool) or not 0 < shift <= 100:
        raise bad(f"flow_shift {str(shift)[:40]!r} is not a number in (0, 100]")
    kind = config.get("prediction_type", "flow_prediction")
    if kind != "flow_prediction":
        raise bad(f"prediction_type {str(kind)[:40]!r} is not 'flow_prediction' (Wan is a flow-matching model)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            UniPCMultistepScheduler.from_config(config).set_timesteps(2)
            FlowMatchEulerDiscreteScheduler(num_train_timesteps=steps, shift=float(shift)).set_timesteps(2)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds for bad values
        raise bad(_first_line(exc)[:200]) from exc


@contextlib.contextmanager
def _translate_errors(name: str, source: str, local: bool, options: dict, unreachable: str | None = None):
    """Turn the many ways a download or a read fails into one line with the way out."""
    try:
        yield
    except CammimicError:
        raise
    except _hub_errors() as exc:
        layout = f"a diffusers-layout directory with {'/ '.join(SUBFOLDERS)}/"
        if _unsafe_pickle(exc):
            raise CammimicError(
                f"could not load {name} weights from {source}: a .bin (pickle) weights file holds more than "
                "tensors, so it was refused (loading it could run code); use .safetensors weights"
            ) from exc
        if local:
            raise CammimicError(
                f"could not load {name} weights from {source}: {_first_line(exc)}; --weights needs {layout}"
            ) from exc
        where = f"--weights /path/to/{source.rsplit('/', 1)[-1]}"
        cache = options.get("cache_dir") or hub_cache_dir()
        if unreachable:
            reason = f"are not in the Hugging Face cache ({cache}) and {unreachable}"
            fix = f"download them once online (hf download {source})"
        elif options.get("local_files_only"):
            reason = (f"are not in the Hugging Face cache ({cache}) and downloads are off "
                      "(HF_HUB_OFFLINE or local_files_only)")
            fix = f"download them once online (hf download {source})"
        else:
            reason = f"could not be loaded from the Hub or the Hugging Face cache ({cache}): {_first_line(exc)}"
            fix = "check the id, your connection and the revision"
        raise CammimicError(
            f'{name} weights "{source}" {reason}; {fix}, or pass a local folder with {where} ({layout})'
        ) from exc


# --- the loaded backbone --------------------------------------------------------------------


@attrs.define(eq=False)
class WanBackbone:
    """A loaded Wan text-to-video model; implements :class:`cammimic.components.Backbone`.

    The models are frozen (``eval()``, no grad); LoRAs are injected by the caller into
    :attr:`unet` (the ``WanTransformer3DModel``; :attr:`denoiser` is the same module). Video
    latents are ``(B, 16, T', h, w)`` with ``T' = (T − 1)/4 + 1``, normalised per channel.
    """

    name: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    vae_scale_factor: int = 8
    temporal_factor: int = 4
    latent_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    training_shift: float = 3.0
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    frame_rule: ClassVar[str] = WanAdapter.frame_rule
    _image_mode: bool = attrs.field(default=False, init=False)
    _checkpointed: dict = attrs.field(factory=dict, init=False, repr=False)

    # -- size rules ----------------------------------------------------------------------
    @property
    def denoiser(self):
        return self.unet

    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this (VAE factor times the patch size)."""
        return self.vae_scale_factor * max(self.patch_size[1], self.patch_size[2])

    def valid_num_frames(self, num_frames: int) -> bool:
        """``4k+1`` frames: the causal VAE encodes the first frame alone, then groups of 4."""
        return num_frames >= 1 and (num_frames - 1) % self.temporal_factor == 0

    def latent_num_frames(self, num_frames: int) -> int:
        return len(frame_groups(num_frames, self.temporal_factor))

    def frame_groups(self, num_frames: int) -> list[list[int]]:
        """The video frames of each latent frame (see :func:`frame_groups`)."""
        return frame_groups(num_frames, self.temporal_factor)

    def latent_shape(self, num_frames: int, width: int, height: int) -> tuple[int, int, int, int, int]:
        """``(1, C, T', h, w)`` of a ``num_frames`` clip of ``width`` x ``height``."""
        f = self.vae_scale_factor
        return (1, self.latent_channels, self.latent_num_frames(num_frames), height // f, width // f)

    # -- identity ------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """The architecture hash LoRA files are checked against (:func:`cammimic.lora.unet_fingerprint`)."""
        from cammimic.lora import unet_fingerprint

        return unet_fingerprint(self.unet)

    # -- text and pixels -----------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 embeddings ``(B, L, D)`` in the transformer's dtype, zero after each prompt's
        ``</s>`` (as ``WanPipeline``); ``""`` is the unconditional prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [" ".join(p.split()) for p in prompts]  # WanPipeline's whitespace_clean
        length = int(self.tokenizer.model_max_length)
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        embeds = self.text_encoder(ids, mask).last_hidden_state
        embeds = embeds * mask.unsqueeze(-1).to(embeds.dtype)  # zero past each prompt's end
        return embeds.to(self.dtype)

    def _latent_stats(self, device, dtype):
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
        return mean, std

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """Latents ``(1, 16, T', h, w)`` (posterior mean, normalised) of uint8 frames ``(T, H, W, 3)``.

        ``T`` must be ``4k+1`` (one frame is an image: one latent frame). The VAE is causal and
        works through the clip in chunks of 4 frames with a cache, so memory is bounded whatever T is.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise CammimicError(
                f"encode_video needs uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
            )
        t, h, w, _ = frames.shape
        frame_groups(t, self.temporal_factor)  # 4k+1 or one clear line
        m = self.size_multiple
        if h % m or w % m:
            raise CammimicError(f"frame size {w}x{h} must be a multiple of {m} for {self.name} (VAE 8 x patch 2)")
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, T, H, W)
        x = pixels.to(self.device, self.vae.dtype) / 127.5 - 1.0
        mu = self.vae.encode(x).latent_dist.mean
        mean, std = self._latent_stats(mu.device, mu.dtype)
        return ((mu - mean) / std).float()

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """Each frame alone as an image: latents ``(T, 16, 1, h, w)``.

        What the spatial LoRA's single-frame ("image mode") passes train on: a latent frame of a
        clip (after the first) mixes 4 frames, while one image is exactly one latent frame.
        """
        frames = np.asarray(frames)
        return torch.cat([self.encode_video(frames[i:i + 1]) for i in range(len(frames))])

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, 16, T', h, w)``; ``T = 4(T' − 1) + 1``."""
        if latents.ndim != 5 or latents.shape[0] != 1:
            raise CammimicError(f"decode_latents needs latents (1, C, T', h, w), got {tuple(latents.shape)}")
        z = latents.to(self.device, self.vae.dtype)
        mean, std = self._latent_stats(z.device, z.dtype)
        x = self.vae.decode(z * std + mean).sample.float().clamp(-1.0, 1.0)  # (1, 3, T, H, W)
        return ((x[0] + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()

    # -- denoising -----------------------------------------------------------------------
    def predict_noise(self, latents: torch.Tensor, timestep: Any, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """The transformer's flow-matching prediction (velocity ``ε − x₀``), ``(B, C, T', h, w)``."""
        b = latents.shape[0]
        if prompt_embeds.shape[0] == 1 and b > 1:
            prompt_embeds = prompt_embeds.expand(b, *prompt_embeds.shape[1:])
        t = torch.as_tensor(timestep, device=latents.device).float().reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        return self.unet(hidden_states=latents.to(self.dtype), timestep=t,
                         encoder_hidden_states=prompt_embeds.to(self.dtype), return_dict=False)[0]

    # -- training: flow matching -----------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler_config.get("num_train_timesteps", 1000))

    def sample_training_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` training timesteps ``1000·σ``, ``σ`` the shifted uniform noise level
        (:func:`flow_sigmas` with :attr:`training_shift`), drawn from ``generator`` (CPU)."""
        u = torch.rand((count,), generator=generator, dtype=torch.float64)
        return (flow_sigmas(u, self.training_shift) * self.num_train_timesteps).float()

    def noise_and_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
        """``(x_σ, target)``: ``x_σ = (1 − σ)·x₀ + σ·ε`` and the velocity ``ε − x₀`` the transformer learns."""
        sigma = (timesteps.to(latents.device, torch.float32) / self.num_train_timesteps).reshape(-1, 1, 1, 1, 1)
        noise = noise.to(latents.device, latents.dtype)
        return (1.0 - sigma) * latents + sigma * noise, noise - latents

    def noise_to(self, latents: torch.Tensor, noise: torch.Tensor, timestep: Any) -> torch.Tensor:
        """``latents`` noised to the level of a sampling ``timestep`` (``1000·σ``)."""
        sigma = float(torch.as_tensor(timestep).float().reshape(-1)[0]) / self.num_train_timesteps
        return (1.0 - sigma) * latents + sigma * noise.to(latents)

    def training_scheduler(self):
        """The flow-matching Euler scheduler with Wan's shift (``num_train_timesteps``; its
        ``scale_noise`` is :meth:`noise_and_target`'s ``x_σ``)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=self.training_shift)

    def sampling_scheduler(self, kind: str = "unipc"):
        """A fresh sampler: ``"unipc"`` (UniPC on flow sigmas, what Wan ships) or ``"euler"``."""
        from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

        if kind == "unipc":
            return UniPCMultistepScheduler.from_config(self.scheduler_config)
        if kind == "euler":
            shift = float(self.scheduler_config.get("flow_shift", 1.0) or 1.0)
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=shift)
        raise CammimicError(f"sampler '{kind}' is unknown for {self.name}. Try one of {list(SAMPLERS)}")

    # -- image mode ------------------------------------------------------------------------
    def temporal_bypass(self) -> contextlib.AbstractContextManager:
        """Image mode: the temporal LoRA at scale 0 inside the block (restored on exit).

        Wan has no temporal modules: a single-latent-frame input already makes its 3D
        self-attention purely spatial. What is left to switch off is the temporal LoRA, which sits
        on the same projections as the spatial one; at scale 0 it adds nothing and gets no
        gradient, so the spatial LoRA alone learns from an image-mode pass.
        """
        return self._image_state(True)

    @contextlib.contextmanager
    def _image_state(self, on: bool):
        if on == self._image_mode:
            yield
            return
        saved = [(m, a, v) for m, a, v in _lora_scales(self.unet) if a == "temporal"]
        self._image_mode = on
        try:
            if on:
                with _restored_lora_scales([(m, a, 0.0) for m, a, _ in saved]):
                    yield
            else:
                yield
        finally:
            self._image_mode = not on

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each transformer block's activations in the backward pass.

        A block recomputes with the LoRA scales it ran with (e.g. image mode's temporal scale 0,
        or the spatial LoRA masked off), even after the ``with`` block that set them has ended.
        diffusers' own ``enable_gradient_checkpointing`` would recompute with today's scales.
        """
        blocks = list(self.unet.blocks)
        if enabled:
            for block in blocks:
                if block not in self._checkpointed:
                    self._checkpointed[block] = block.__dict__.get("forward", _MISSING)
                    block.forward = self._checkpointed_forward(block, block.forward)
        else:
            for block, forward in self._checkpointed.items():
                if forward is _MISSING:
                    del block.forward
                else:
                    block.forward = forward
            self._checkpointed.clear()

    def _checkpointed_forward(self, block, forward):
        from torch.utils.checkpoint import checkpoint

        def wrapped(*args, **kwargs):
            if not torch.is_grad_enabled():
                return forward(*args, **kwargs)
            scales = _lora_scales(block)

            def run(*a, **k):
                with _restored_lora_scales(scales):
                    return forward(*a, **k)

            return checkpoint(run, *args, use_reentrant=False, **kwargs)

        return wrapped


def tokens_per_clip(num_frames: int, width: int, height: int, patch: tuple[int, int, int] = (1, 2, 2)) -> int:
    """Self-attention sequence length of a clip at 8x spatial / 4x temporal compression."""
    t = (num_frames - 1) // 4 + 1
    return math.ceil(t / patch[0]) * (height // 8 // patch[1]) * (width // 8 // patch[2])
