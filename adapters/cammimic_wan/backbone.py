"""Loading and running Wan 2.1 text-to-video (diffusers ``WanPipeline``'s models) for CamMimic.

:class:`WanAdapter` is what the ``wan`` factory returns, a :class:`cammimic.kit.DiffusersAdapter`;
its ``load`` brings the weights (``transformer/ vae/ text_encoder/ tokenizer/ scheduler/``,
diffusers layout) and returns a :class:`WanBackbone`, a :class:`cammimic.kit.DiffusersBackbone`
that overrides the seam members where Wan differs from a UNet3D (4k+1 frames, 16-pixel sizes,
flow matching, UniPC/Euler), running the models as ``WanPipeline.__call__`` does:

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

from cammimic.errors import CammimicError
from cammimic.kit import (
    DiffusersAdapter,
    DiffusersBackbone,
    first_line,
    load_text_encoder,
    lora_scales,
    restored_lora_scales,
)

__all__ = [
    "SUBFOLDERS",
    "SAMPLERS",
    "NEGATIVE_PROMPT",
    "WanAdapter",
    "WanBackbone",
    "flow_sigmas",
    "frame_groups",
    "sampler_from_config",
]

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


def sampler_from_config(kind: str, scheduler_config: dict, name: str = "wan"):
    """A fresh ``"unipc"`` (UniPC on flow sigmas, what Wan ships) or ``"euler"`` (flow-matching
    Euler with the config's ``flow_shift``) sampler on ``scheduler_config``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    if kind == "unipc":
        return UniPCMultistepScheduler.from_config(scheduler_config)
    if kind == "euler":
        shift = float(scheduler_config.get("flow_shift", 1.0) or 1.0)
        steps = int(scheduler_config.get("num_train_timesteps", 1000))
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=steps, shift=shift)
    raise CammimicError(f"sampler '{kind}' is unknown for {name}. Try one of {list(SAMPLERS)}")


@attrs.define
class WanAdapter(DiffusersAdapter):
    """The Wan 2.1 text-to-video backbone: its native setting and how to load it.

    The fields after ``temporal_factor`` are the defaults of :meth:`load` (set from the
    ``[backbone]`` config).
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
    subfolders: ClassVar[tuple[str, ...]] = SUBFOLDERS
    random_weights_command: ClassVar[str] = "python -m cammimic_wan.random_weights DIR"
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    #: what [sampling] leaves to the backbone: diffusers' ``WanPipeline`` defaults (CFG 5.0, 50 steps)
    #: and the negative prompt of its example (Wan's own, translated)
    sampling_defaults: ClassVar[dict[str, Any]] = {
        "guidance_scale": 5.0,
        "negative_prompt": NEGATIVE_PROMPT,
        "steps": 50,
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
            _ignored: the UNet3D adapters' own options (``vae_batch_size``), so one call loads any backbone.

        Raises:
            CammimicError: one line naming the missing directory, subfolder or Hub id, the
                Hugging Face cache that was searched, and ``--weights`` as the way out.
        """
        return super().load(
            weights,
            torch_dtype=torch_dtype,
            variant=variant,
            revision=revision,
            local_files_only=local_files_only,
            device=device,
            attention=attention,
        )

    def load_components(
        self, source: str, dtype: torch.dtype, options: dict, model_options: dict
    ) -> dict[str, Any]:
        """Scheduler config and tokenizer first: they are small, so a missing model fails fast."""
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5EncoderModel

        scheduler_config = dict(
            UniPCMultistepScheduler.load_config(source, subfolder="scheduler", **options)
        )
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", **options)
        if not tokenizer.model_max_length or tokenizer.model_max_length > 512:
            tokenizer.model_max_length = 512  # WanPipeline's max_sequence_length
        text_encoder = load_text_encoder(UMT5EncoderModel, source, dtype, model_options)
        vae = AutoencoderKLWan.from_pretrained(
            source, subfolder="vae", torch_dtype=torch.float32, **model_options
        )
        transformer = WanTransformer3DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype, **model_options
        )
        return {
            "denoiser": transformer,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "scheduler_config": scheduler_config,
        }

    def check_scheduler_config(self, config: dict, source: str) -> None:
        """Build each sampler once now, so bogus values fail at load in one line, not mid-run."""

        def bad(why: str) -> CammimicError:
            return self.bad_scheduler_config(source, why)

        steps = config.get("num_train_timesteps", 1000)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= 100_000:
            raise bad(f"num_train_timesteps {str(steps)[:40]!r} is not an integer in 2..100000")
        shift = config.get("flow_shift", 1.0)
        if not isinstance(shift, (int, float)) or isinstance(shift, bool) or not 0 < shift <= 100:
            raise bad(f"flow_shift {str(shift)[:40]!r} is not a number in (0, 100]")
        kind = config.get("prediction_type", "flow_prediction")
        if kind != "flow_prediction":
            raise bad(
                f"prediction_type {str(kind)[:40]!r} is not 'flow_prediction' (Wan is a flow-matching model)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for sampler in SAMPLERS:
                    sampler_from_config(sampler, config).set_timesteps(2)
        except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds for bad values
            raise bad(first_line(exc)[:200]) from exc

    def sampler_from_config(self, kind: str, scheduler_config: dict):
        return sampler_from_config(kind, scheduler_config, self.name)

    def backbone_type(self) -> type[WanBackbone]:
        """The loaded backbone's class (a subclass's adapter names its own, e.g. image-to-video)."""
        return WanBackbone

    def build(
        self, components: dict[str, Any], *, source: str, device: Any, dtype: Any, attention: str
    ) -> WanBackbone:
        transformer, vae, scheduler_config = (
            components["denoiser"],
            components["vae"],
            components["scheduler_config"],
        )
        shift = float(self.training_shift or scheduler_config.get("flow_shift", 1.0) or 1.0)
        return self.backbone_type()(
            name=self.name,
            weights=source,
            device=device,
            dtype=dtype,
            denoiser=transformer,
            vae=vae,
            text_encoder=components["text_encoder"],
            tokenizer=components["tokenizer"],
            scheduler_config=scheduler_config,
            vae_scale_factor=int(getattr(vae.config, "scale_factor_spatial", 8) or 8),
            temporal_factor=int(getattr(vae.config, "scale_factor_temporal", 4) or 4),
            latent_channels=int(vae.config.z_dim),
            patch_size=tuple(int(p) for p in transformer.config.patch_size),
            training_shift=shift,
        )


# --- the loaded backbone --------------------------------------------------------------------


@attrs.define(eq=False)
class WanBackbone(DiffusersBackbone):
    """A loaded Wan text-to-video model, a :class:`cammimic.components.Backbone`.

    The models are frozen (``eval()``, no grad); LoRAs are injected by the caller into
    :attr:`denoiser` (the ``WanTransformer3DModel``). Video
    latents are ``(B, 16, T', h, w)`` with ``T' = (T − 1)/4 + 1``, normalised per channel.
    """

    name: str
    weights: str
    device: torch.device
    dtype: torch.dtype
    denoiser: Any
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
    sampling_defaults: ClassVar[dict[str, Any]] = WanAdapter.sampling_defaults
    _image_mode: bool = attrs.field(default=False, init=False)

    # -- size rules ----------------------------------------------------------------------
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

    # latent_shape is the base class's: (1, C, len(frame_groups(n)), h/8, w/8)

    # -- text and pixels -----------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 embeddings ``(B, L, D)`` in the transformer's dtype, zero after each prompt's
        ``</s>`` (as ``WanPipeline``); ``""`` is the unconditional prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [" ".join(p.split()) for p in prompts]  # WanPipeline's whitespace_clean
        length = int(self.tokenizer.model_max_length)
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        where = (
            self.text_encoder.device
        )  # the backbone's device, or the CPU when the encoder is offloaded
        ids, mask = tokens.input_ids.to(where), tokens.attention_mask.to(where)
        embeds = self.text_encoder(ids, mask).last_hidden_state
        embeds = embeds * mask.unsqueeze(-1).to(embeds.dtype)  # zero past each prompt's end
        return embeds.to(self.device, self.dtype)

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
            raise CammimicError(
                f"frame size {w}x{h} must be a multiple of {m} for {self.name} (VAE 8 x patch 2)"
            )
        pixels = (
            torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0)
        )  # (1, 3, T, H, W)
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
        return torch.cat([self.encode_video(frames[i : i + 1]) for i in range(len(frames))])

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, 16, T', h, w)``; ``T = 4(T' − 1) + 1``."""
        if latents.ndim != 5 or latents.shape[0] != 1:
            raise CammimicError(
                f"decode_latents needs latents (1, C, T', h, w), got {tuple(latents.shape)}"
            )
        z = latents.to(self.device, self.vae.dtype)
        mean, std = self._latent_stats(z.device, z.dtype)
        x = self.vae.decode(z * std + mean).sample.float().clamp(-1.0, 1.0)  # (1, 3, T, H, W)
        return ((x[0] + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()

    # -- denoising -----------------------------------------------------------------------
    def predict_noise(
        self, latents: torch.Tensor, timestep: Any, prompt_embeds: torch.Tensor
    ) -> torch.Tensor:
        """The transformer's flow-matching prediction (velocity ``ε − x₀``), ``(B, C, T', h, w)``."""
        b = latents.shape[0]
        if prompt_embeds.shape[0] == 1 and b > 1:
            prompt_embeds = prompt_embeds.expand(b, *prompt_embeds.shape[1:])
        t = torch.as_tensor(timestep, device=latents.device).float().reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        return self.denoiser(
            hidden_states=latents.to(self.dtype),
            timestep=t,
            encoder_hidden_states=prompt_embeds.to(self.dtype),
            return_dict=False,
        )[0]

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
        sigma = (timesteps.to(latents.device, torch.float32) / self.num_train_timesteps).reshape(
            -1, 1, 1, 1, 1
        )
        noise = noise.to(latents.device, latents.dtype)
        return (1.0 - sigma) * latents + sigma * noise, noise - latents

    def noise_to(
        self, latents: torch.Tensor, noise: torch.Tensor, timestep: Any, scheduler: Any = None
    ) -> torch.Tensor:
        """``latents`` noised to the level of a sampling ``timestep`` (``1000·σ``), whichever the sampler."""
        sigma = float(torch.as_tensor(timestep).float().reshape(-1)[0]) / self.num_train_timesteps
        return (1.0 - sigma) * latents + sigma * noise.to(latents)

    def training_scheduler(self):
        """The flow-matching Euler scheduler with Wan's shift (``num_train_timesteps``; its
        ``scale_noise`` is :meth:`noise_and_target`'s ``x_σ``)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=self.num_train_timesteps, shift=self.training_shift
        )

    def sampling_scheduler(self, kind: str = "unipc"):
        """A fresh sampler: ``"unipc"`` (UniPC on flow sigmas, what Wan ships) or ``"euler"``."""
        return sampler_from_config(kind, self.scheduler_config, self.name)

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
        saved = [(m, a, v) for m, a, v in lora_scales(self.denoiser) if a == "temporal"]
        self._image_mode = on
        try:
            if on:
                with restored_lora_scales([(m, a, 0.0) for m, a, _ in saved]):
                    yield
            else:
                yield
        finally:
            self._image_mode = not on

    def checkpointed_blocks(self) -> list[Any]:
        """Each transformer block; one recomputes with the LoRA scales it ran with (e.g. image
        mode's temporal scale 0, or the spatial LoRA masked off), even after the ``with`` block
        that set them has ended (diffusers' ``enable_gradient_checkpointing`` would use today's)."""
        return list(self.denoiser.blocks)


def tokens_per_clip(
    num_frames: int, width: int, height: int, patch: tuple[int, int, int] = (1, 2, 2)
) -> int:
    """Self-attention sequence length of a clip at 8x spatial / 4x temporal compression."""
    t = (num_frames - 1) // 4 + 1
    return math.ceil(t / patch[0]) * (height // 8 // patch[1]) * (width // 8 // patch[2])
