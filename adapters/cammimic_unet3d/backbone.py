"""Loading and running a diffusers UNet3D text-to-video model (zeroscope, ModelScope, mini).

:class:`UNet3DAdapter` is what the ``zeroscope``, ``modelscope`` and ``mini`` factories return; it
is a :class:`cammimic.kit.DiffusersAdapter`, whose ``load`` brings the weights and returns a
:class:`UNet3DBackbone`, a :class:`cammimic.kit.DiffusersBackbone` on the models themselves
(diffusers' ``TextToVideoSDPipeline`` is deprecated, so cammimic owns the loop). The UNet3D is
the base classes' reference: most seam members keep the base answer (a per-frame VAE, DDPM
training, DDIM/DPM sampling); what is its own is the size rule its config states.

Two things diffusers' ``UNet3DConditionModel`` lacks are provided here without forking it:

- :meth:`UNet3DBackbone.temporal_bypass`: every temporal module (``transformer_in``,
  ``temp_attentions.*``, ``temp_convs.*``) becomes an identity, so a one-frame latent runs
  through the image path alone (MotionDirector's spatial pass).
- :meth:`UNet3DBackbone.set_gradient_checkpointing`: ``UNet3DConditionModel`` sets
  ``_supports_gradient_checkpointing = False``, so its ``enable_gradient_checkpointing()``
  raises ``ValueError``; we checkpoint each down/mid/up block instead.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from einops import rearrange

from cammimic.backbones import check_size
from cammimic.errors import CammimicError
from cammimic.kit import (
    DiffusersAdapter,
    DiffusersBackbone,
    first_line,
    load_text_encoder,
    resolve_dtype,
)

__all__ = [
    "SUBFOLDERS",
    "SAMPLERS",
    "UNet3DAdapter",
    "UNet3DBackbone",
    "geometry",
    "check_geometry",
    "sampler_from_config",
    "resolve_dtype",
]

#: What a diffusers-layout weights directory must contain.
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SAMPLERS = ("ddim", "dpm")
_MISSING = object()


def geometry(vae_factor: int, unet_config) -> tuple[int, int]:
    """``(size multiple, smallest channels per norm group)`` of a UNet config (dict or object):
    each down block but the last halves the latents, so sizes are multiples of the VAE factor
    times 2^(blocks − 1)."""
    get = (
        unet_config.get
        if isinstance(unet_config, dict)
        else (lambda k, d=None: getattr(unet_config, k, d))
    )
    blocks = get("down_block_types", None) or ()
    multiple = vae_factor * 2 ** (len(blocks) - 1) if blocks else vae_factor
    channels = get("block_out_channels", None) or ()
    groups = get("norm_num_groups", None) or 0
    per_group = min(channels) // groups if channels and groups else 0
    return multiple, per_group


def check_geometry(width: int, height: int, multiple: int, per_group: int, name: str) -> None:
    """One line when the size is not a multiple of ``multiple``, or so small that the deepest
    level is 1x1 with one channel per norm group (group norm needs more than one value there)."""
    check_size(width, height, multiple, name)
    if per_group and (width // multiple) * (height // multiple) * per_group < 2:
        bigger = f"{2 * multiple}x{multiple}" if width <= height else f"{multiple}x{2 * multiple}"
        raise CammimicError(
            f'--width/--height {width}x{height} is too small for backbone "{name}" (its deepest '
            f"layer would be 1x1 with one channel per norm group); use at least {bigger}"
        )


def sampler_from_config(kind: str, scheduler_config: dict):
    """A fresh ``"ddim"`` or ``"dpm"`` (multistep DPM-Solver++) sampler on ``scheduler_config``."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "ddim":
        return DDIMScheduler.from_config(scheduler_config)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(
            scheduler_config, algorithm_type="dpmsolver++"
        )
    raise CammimicError(f"sampler '{kind}' is unknown. Try one of {list(SAMPLERS)}")


@attrs.define
class UNet3DAdapter(DiffusersAdapter):
    """A diffusers UNet3D text-to-video backbone: its native setting and how to load it.

    The fields after ``vae_scale_factor`` are the defaults of :meth:`load` (set from the
    ``[backbone]`` config).
    """

    name: str
    default_weights: str
    default_size: tuple[int, int]  #: native (width, height)
    default_num_frames: int
    vae_scale_factor: int = 8
    revision: str | None = None
    variant: str | None = None
    torch_dtype: Any = None  #: ``None``/``"auto"``: bfloat16 on CUDA (else float16), float32 on CPU
    vae_batch_size: int = 8  #: frames per VAE call
    attention: str = "sdpa"  #: ``"sdpa"`` (PyTorch scaled-dot-product) or ``"default"``
    subfolders: ClassVar[tuple[str, ...]] = SUBFOLDERS
    preflight_files: ClassVar[tuple[str, ...]] = (
        "unet/config.json",
        "vae/config.json",
        "scheduler/scheduler_config.json",
    )
    #: the sampler names :meth:`UNet3DBackbone.sampling_scheduler` takes; the first is the default
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    #: what [sampling] leaves to the backbone: zeroscope's and ModelScope's pipeline values
    sampling_defaults: ClassVar[dict[str, Any]] = {
        "guidance_scale": 9.0,
        "negative_prompt": "",
        "steps": 50,
    }

    @property
    def max_frames(self) -> int:
        """The frames the model samples at once: what its weights folder states
        (``cammimic.backbones.weights_max_frames``; random test weights: their preset's), else its
        native clip (zeroscope 24, ModelScope 16, mini 8). Longer runs are sampled in windows."""
        from cammimic.backbones import weights_max_frames

        return weights_max_frames(self.default_weights) or int(self.default_num_frames)

    def load(
        self,
        weights: str | os.PathLike | None = None,
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        revision: str | None = None,
        local_files_only: bool | None = None,
        device: Any = None,
        vae_batch_size: int | None = None,
        attention: str | None = None,
    ) -> UNet3DBackbone:
        """Load the UNet3D, VAE, text encoder, tokenizer and scheduler config.

        Args:
            weights: a Hub id or a local diffusers-layout directory (``unet/ vae/ text_encoder/
                tokenizer/ scheduler/``); ``None`` loads :attr:`default_weights`.
            torch_dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or a torch dtype);
                ``None`` uses the adapter's setting, then bfloat16 on CUDA (float16 on GPUs
                without bfloat16) / float32 on CPU. The VAE stays in float32: the zeroscope VAE
                overflows in float16 (NaN frames); it is small, so this costs little.
            variant, revision: as in diffusers' ``from_pretrained`` (Hub ids only).
            local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
            device: ``"cpu"``, ``"cuda[:n]"``; ``None`` = CUDA when available.
            vae_batch_size: frames per VAE encode/decode call (memory vs speed).
            attention: ``"sdpa"`` sets diffusers' ``AttnProcessor2_0`` on the UNet and VAE;
                ``"default"`` keeps what diffusers chose.

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
            vae_batch_size=vae_batch_size,
        )

    def load_settings(self, *, vae_batch_size: int | None = None) -> dict[str, Any]:
        vae_batch_size = int(vae_batch_size if vae_batch_size is not None else self.vae_batch_size)
        if vae_batch_size < 1:
            raise CammimicError(f"vae_batch_size must be at least 1, got {vae_batch_size}")
        return {"vae_batch_size": vae_batch_size}

    def load_components(
        self, source: str, dtype: torch.dtype, options: dict, model_options: dict
    ) -> dict[str, Any]:
        """Scheduler config and tokenizer first: they are small, so a missing model fails fast."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        scheduler_config = dict(DDIMScheduler.load_config(source, subfolder="scheduler", **options))
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **options)
        text_encoder = load_text_encoder(CLIPTextModel, source, dtype, model_options)
        # A tokenizer saved without model_max_length reports a huge sentinel (1e30): use the
        # text encoder's context length instead (77 for CLIP).
        context = int(text_encoder.config.max_position_embeddings)
        if not tokenizer.model_max_length or tokenizer.model_max_length > context:
            tokenizer.model_max_length = context
        vae_dtype = torch.float32  # small; the zeroscope VAE overflows in float16 (NaN frames)
        vae = AutoencoderKL.from_pretrained(
            source, subfolder="vae", torch_dtype=vae_dtype, **model_options
        )
        unet = UNet3DConditionModel.from_pretrained(
            source, subfolder="unet", torch_dtype=dtype, **model_options
        )
        return {
            "denoiser": unet,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "scheduler_config": scheduler_config,
        }

    def check_scheduler_config(self, config: dict, source: str) -> None:
        """Build every scheduler once now, so bogus values fail at load in one line, not mid-run."""
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

        def bad(why: str) -> CammimicError:
            return self.bad_scheduler_config(source, why)

        steps = config.get("num_train_timesteps", 1000)
        if not isinstance(steps, int) or isinstance(steps, bool) or not 2 <= steps <= 100_000:
            raise bad(f"num_train_timesteps {str(steps)[:40]!r} is not an integer in 2..100000")
        for key in ("beta_start", "beta_end"):
            value = config.get(key, 1e-3)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
            if not ok:
                raise bad(f"{key} {str(value)[:40]!r} is not a number in (0, 1)")
        kind = config.get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction", "sample"):
            raise bad(
                f"prediction_type {str(kind)[:40]!r} is not one of ['epsilon', 'v_prediction', 'sample']"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                DDPMScheduler.from_config(config)
                DDIMScheduler.from_config(config).set_timesteps(2)
                DPMSolverMultistepScheduler.from_config(
                    config, algorithm_type="dpmsolver++"
                ).set_timesteps(2)
        except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds for bad values
            raise bad(first_line(exc)[:200]) from exc

    def sampler_from_config(self, kind: str, scheduler_config: dict):
        return sampler_from_config(kind, scheduler_config)

    def check_size(self, configs: dict[str, dict], width: int, height: int) -> None:
        """The UNet config's rule: multiples of the VAE factor x 2^(down blocks − 1), not too small for group norm."""
        vae_factor = 2 ** (len(configs["vae/config.json"].get("block_out_channels") or [0]) - 1)
        multiple, per_group = geometry(vae_factor, configs["unet/config.json"])
        check_geometry(int(width), int(height), multiple, per_group, self.name)

    def build(
        self,
        components: dict[str, Any],
        *,
        source: str,
        device: Any,
        dtype: Any,
        attention: str,
        vae_batch_size: int,
    ) -> UNet3DBackbone:
        unet, vae = components["denoiser"], components["vae"]
        if attention == "sdpa":
            from diffusers.models.attention_processor import AttnProcessor2_0

            unet.set_attn_processor(AttnProcessor2_0())
            vae.set_attn_processor(AttnProcessor2_0())
        return UNet3DBackbone(
            name=self.name,
            weights=source,
            device=device,
            dtype=dtype,
            denoiser=unet,
            vae=vae,
            text_encoder=components["text_encoder"],
            tokenizer=components["tokenizer"],
            scheduler_config=components["scheduler_config"],
            vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
            latent_channels=int(vae.config.latent_channels),
            vae_batch_size=vae_batch_size,
        )


# --- the loaded backbone --------------------------------------------------------------------


def _temporal_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    from diffusers.models.resnet import TemporalConvLayer
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    return [
        m for m in unet.modules() if isinstance(m, (TransformerTemporalModel, TemporalConvLayer))
    ]


def _identity_forward(module: torch.nn.Module):
    """A ``forward`` that returns its input in the type the module's callers expect."""
    from diffusers.models.transformers.transformer_temporal import (
        TransformerTemporalModel,
        TransformerTemporalModelOutput,
    )

    if isinstance(module, TransformerTemporalModel):
        # forward(hidden_states, encoder_hidden_states, timestep, class_labels, num_frames,
        #         cross_attention_kwargs, return_dict=True)
        def forward(hidden_states, *args, **kwargs):
            return_dict = kwargs.get("return_dict", args[5] if len(args) > 5 else True)
            return (
                TransformerTemporalModelOutput(sample=hidden_states)
                if return_dict
                else (hidden_states,)
            )

        return forward

    def forward(hidden_states, *args, **kwargs):  # TemporalConvLayer: a residual Conv3d stack
        return hidden_states

    return forward


@attrs.define(eq=False)
class UNet3DBackbone(DiffusersBackbone):
    """A loaded UNet3D text-to-video model, a :class:`cammimic.components.Backbone`.

    The models are frozen (``eval()``, no grad); LoRAs are injected by the caller into
    :attr:`denoiser` (the ``UNet3DConditionModel``). Video latents are ``(B, C, T, h, w)`` times the VAE's scaling factor.
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
    latent_channels: int = 4
    vae_batch_size: int = 8
    _bypassed: bool = attrs.field(default=False, init=False)
    _saved_forwards: dict = attrs.field(factory=dict, init=False, repr=False)
    samplers: ClassVar[tuple[str, ...]] = (
        SAMPLERS  #: what :meth:`sampling_scheduler` takes; ddim is the default
    )

    # -- the seam: the size rule of the UNet config -----------------------------------------
    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this: the VAE factor x 2^(down blocks − 1)."""
        return geometry(self.vae_scale_factor, self.denoiser.config)[0]

    def preflight(
        self, width: int, height: int, frames: int, sampler: str | None, steps: int | None
    ) -> bool:
        """The size rules of the loaded UNet (group norm included), then the base class's checks."""
        multiple, per_group = geometry(self.vae_scale_factor, self.denoiser.config)
        check_geometry(int(width), int(height), multiple, per_group, self.name)
        return super().preflight(width, height, frames, sampler, steps)

    # -- text and pixels -----------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings ``(B, L, D)`` in the UNet's dtype; ``""`` is the unconditional prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        embeds = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return embeds.to(self.dtype)

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """Latents ``(1, C, T, h, w)`` (posterior mean x scaling factor) of uint8 frames ``(T, H, W, 3)``.

        Frames go through the VAE ``vae_batch_size`` at a time.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise CammimicError(
                f"encode_video needs uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
            )
        t, h, w, _ = frames.shape
        f = self.vae_scale_factor
        if h % f or w % f:
            raise CammimicError(
                f"frame size {w}x{h} must be a multiple of {f} (the VAE's scale factor)"
            )
        pixels = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "t h w c -> t c h w")
        latents = []
        for start in range(0, t, self.vae_batch_size):
            chunk = (
                pixels[start : start + self.vae_batch_size].to(self.device, self.vae.dtype) / 127.5
                - 1.0
            )
            latents.append(self.vae.encode(chunk).latent_dist.mean)
        z = torch.cat(latents) * self.vae.config.scaling_factor  # (T, C, h, w)
        # float32, not the UNet's dtype: cached training latents are not rounded to half precision
        return rearrange(z, "t c h w -> 1 c t h w").float()

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames ``(T, H, W, 3)`` of latents ``(1, C, T, h, w)``, decoded in slices."""
        if latents.ndim != 5 or latents.shape[0] != 1:
            raise CammimicError(
                f"decode_latents needs latents (1, C, T, h, w), got {tuple(latents.shape)}"
            )
        z = rearrange(latents, "1 c t h w -> t c h w") / self.vae.config.scaling_factor
        frames = []
        for start in range(0, z.shape[0], self.vae_batch_size):
            chunk = z[start : start + self.vae_batch_size].to(self.device, self.vae.dtype)
            x = self.vae.decode(chunk).sample.float()
            if not torch.isfinite(
                x
            ).all():  # a float16 VAE that overflowed: never a black video written as success
                raise CammimicError(
                    f"the VAE decoded non-finite values in frames {start}..{start + len(chunk) - 1} "
                    f"({self.vae.dtype}); decode in float32 (--dtype float32) or lower the guidance"
                )
            x = x.clamp(-1.0, 1.0)
            frames.append(
                rearrange(((x + 1.0) * 127.5).round().to(torch.uint8), "t c h w -> t h w c").cpu()
            )
        return torch.cat(frames).numpy()

    # -- denoising -----------------------------------------------------------------------
    def predict_noise(
        self, latents: torch.Tensor, timestep: Any, prompt_embeds: torch.Tensor
    ) -> torch.Tensor:
        """The UNet's noise prediction ``(B, C, T, h, w)``; one prompt embedding serves a batch."""
        if prompt_embeds.shape[0] == 1 and latents.shape[0] > 1:
            prompt_embeds = prompt_embeds.expand(latents.shape[0], *prompt_embeds.shape[1:])
        return self.denoiser(
            latents.to(self.dtype), timestep, encoder_hidden_states=prompt_embeds.to(self.dtype)
        ).sample

    def temporal_bypass(self) -> contextlib.AbstractContextManager:
        """Context manager: every temporal module of the UNet is an identity inside it.

        ``transformer_in``, ``temp_attentions.*`` (``TransformerTemporalModel``) and
        ``temp_convs.*`` (``TemporalConvLayer``) return their input, unrun: their weights
        (and temporal LoRAs) get no gradient from what is computed inside. Their ``forward``
        is swapped on the instances and restored on exit, even after an exception.
        """
        return self._temporal_state(True)

    @contextlib.contextmanager
    def _temporal_state(self, bypassed: bool):
        """Run with the temporal modules bypassed or not, then restore the previous state."""
        if bypassed == self._bypassed:
            yield
            return
        self._swap_temporal(bypassed)
        try:
            yield
        finally:
            self._swap_temporal(not bypassed)

    def _swap_temporal(self, bypassed: bool) -> None:
        if bypassed:
            for module in _temporal_modules(self.denoiser):
                self._saved_forwards[module] = module.__dict__.get("forward", _MISSING)
                module.forward = _identity_forward(module)
        else:
            for module, forward in self._saved_forwards.items():
                if forward is _MISSING:
                    del module.forward
                else:
                    module.forward = forward
            self._saved_forwards.clear()
        self._bypassed = bypassed

    # -- gradient checkpointing (diffusers' is refused for UNet3DConditionModel) -----------------
    def checkpointed_blocks(self) -> list[Any]:
        """Each down/mid/up block of the UNet."""
        mid = [self.denoiser.mid_block] if self.denoiser.mid_block is not None else []
        return [*self.denoiser.down_blocks, *mid, *self.denoiser.up_blocks]

    def recompute_state(self):
        """A block that ran inside :meth:`temporal_bypass` is recomputed bypassed too."""
        bypassed = self._bypassed
        return lambda: self._temporal_state(bypassed)

    # -- schedulers ----------------------------------------------------------------------
    def training_scheduler(self):
        """A DDPM scheduler with the model's noise schedule (``add_noise``, 1000 timesteps)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler_config)

    def sampling_scheduler(self, kind: str = "ddim"):
        """A fresh sampling scheduler: ``"ddim"`` or ``"dpm"`` (multistep DPM-Solver++)."""
        return sampler_from_config(kind, self.scheduler_config)
