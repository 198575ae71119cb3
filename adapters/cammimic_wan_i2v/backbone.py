"""Loading and running Wan 2.2 TI2V (image to video) for CamMimic, as diffusers runs it.

:class:`WanI2VAdapter` is what the ``wan-i2v`` factory returns; it loads the same components as
the text-to-video ``wan`` backbone (``transformer/ vae/ text_encoder/ tokenizer/ scheduler/``)
and returns a :class:`WanI2VBackbone`, which adds the image condition of diffusers'
``WanImageToVideoPipeline`` with ``expand_timesteps=True`` (diffusers 0.42,
``pipelines/wan/pipeline_wan_i2v.py``, ``prepare_latents`` and the denoising loop):

- the image is encoded alone as a one-frame clip (``vae.encode(image).latent_dist`` mode,
  normalised ``(μ − latents_mean) / latents_std``): one latent frame, ``condition``;
- ``first_frame_mask`` is 1 on every latent frame but the first; before every transformer pass
  ``latent_model_input = (1 − mask)·condition + mask·latents``, and each token gets its own
  timestep ``(mask[0, 0][:, ::p, ::p]·t).flatten()`` (``p`` the transformer's 2x2 patch): 0 for
  the image's tokens, ``t`` for the rest;
- the scheduler steps the latents as they were (the first frame is overwritten before each pass),
  and after the loop ``latents = (1 − mask)·condition + mask·latents`` once more.

Wan 2.2's VAE differs from Wan 2.1's by its 48 latent channels and 16x spatial compression (2x2
pixel patches before an 8x encoder), so sizes are multiples of 32 (16 x the 2x2 patches); frames
are still ``4k+1``. Wan 2.1 I2V-14B (a CLIP image encoder, the image and a mask concatenated on
the channels) is another conditioning and not taken here: see docs/wan.md.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from cammimic_wan.backbone import WanAdapter, WanBackbone

from cammimic.errors import CammimicError

__all__ = ["WanI2VAdapter", "WanI2VBackbone", "RECIPE", "first_frame_mask", "token_timesteps"]

#: Phase 1 on an image-to-video model (docs/wan.md, "Image to video"): the temporal LoRA only. The
#: image condition already carries the scene, so the spatial LoRA (stage 1's appearance absorber,
#: stage 2's user-image learner) is off: every temporal pass runs with it masked and its loss is
#: skipped; stage 2 does not run. Set these to turn it back on.
RECIPE: dict[str, Any] = {
    "finetune.stage2": False,
    "finetune.spatial_mask_probability": 1.0,
    "finetune.skip_spatial_when_masked": True,
}


def first_frame_mask(
    shape: tuple[int, ...], device: Any = None, dtype: Any = torch.float32
) -> torch.Tensor:
    """``(1, 1, T', h, w)``: 0 on the first latent frame (the image), 1 elsewhere, as diffusers builds it."""
    _, _, frames, height, width = shape
    mask = torch.ones(1, 1, frames, height, width, dtype=dtype, device=device)
    mask[:, :, 0] = 0
    return mask


def token_timesteps(
    mask: torch.Tensor, timestep: Any, batch: int, patch: tuple[int, int, int]
) -> torch.Tensor:
    """``(batch, T'·h/p·w/p)`` per-token timesteps: ``(mask[0, 0][:, ::p, ::p]·t).flatten()``."""
    t = torch.as_tensor(timestep, device=mask.device).reshape(-1)[:1]
    per_token = (mask[0][0][:, :: patch[1], :: patch[2]] * t).flatten()
    return per_token.unsqueeze(0).expand(batch, -1)


@attrs.define
class WanI2VAdapter(WanAdapter):
    """The Wan 2.2 TI2V image-to-video backbone: its native setting and how to load it."""

    name: str = "wan-i2v"
    default_weights: str = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    default_size: tuple[int, int] = (1280, 704)  #: native (width, height): TI2V-5B's 720p
    default_num_frames: int = 121
    vae_scale_factor: int = 16  #: Wan 2.2's VAE: 2x2 pixel patches, then 8x
    random_weights_command: ClassVar[str] = (
        "python -m cammimic_wan.random_weights --preset i2v-tiny DIR"
    )
    recipe_defaults: ClassVar[dict[str, Any]] = dict(RECIPE)
    preflight_files: ClassVar[tuple[str, ...]] = (
        "scheduler/scheduler_config.json",
        "model_index.json",
    )
    #: ``AutoencoderKLWan.enable_tiling()``: the VAE works on overlapping 256-pixel tiles (less memory, seams possible)
    vae_tiling: bool = False
    #: keep the UMT5 text encoder (5.7 B parameters) on the CPU; it runs there for each prompt
    offload_text_encoder: bool = False

    @property
    def max_frames(self) -> int:
        """The frames sampled at once; longer runs are refused (:meth:`preflight`), never windowed."""
        from cammimic.backbones import weights_max_frames

        return weights_max_frames(self.default_weights) or int(self.default_num_frames)

    def preflight(
        self, width: int, height: int, frames: int, sampler: str | None, steps: int | None
    ) -> bool:
        """The Wan rules (size a multiple of 32, ``4k+1`` frames, steps), and at most
        :attr:`max_frames`: windows would each start from the user image, so they are refused."""
        most = self.max_frames
        if int(frames) > most:
            raise CammimicError(
                f'--frames {frames}: backbone "{self.name}" samples at most {most} frames, conditioned on your '
                f"image as the first; use --frames {most} or fewer (4k+1)"
            )
        configs = self.read_configs()
        if configs is not None:
            self.check_image_to_video(configs["model_index.json"], str(self.default_weights))
        return super().preflight(width, height, frames, sampler, steps)

    def check_image_to_video(self, model_index: dict, source: str) -> None:
        """One line unless ``model_index`` is a TI2V model's (diffusers: ``expand_timesteps``)."""
        if model_index.get("expand_timesteps") is True:
            return
        kind = model_index.get("_class_name", "?")
        if kind == "WanImageToVideoPipeline":
            why = (
                "is Wan 2.1 I2V (a CLIP image encoder and mask channels), which wan-i2v does not take yet; "
                "use Wan 2.2 TI2V (--weights Wan-AI/Wan2.2-TI2V-5B-Diffusers)"
            )
        else:
            why = (
                f"is not an image-to-video Wan ({kind} without expand_timesteps in model_index.json); use "
                "--backbone wan for text-to-video weights, or --weights Wan-AI/Wan2.2-TI2V-5B-Diffusers"
            )
        raise CammimicError(f"weights {source} {why}")

    def load_components(
        self, source: str, dtype: torch.dtype, options: dict, model_options: dict
    ) -> dict[str, Any]:
        """The model index first (a text-to-video folder fails in one line), then Wan's components."""
        import inspect

        from diffusers import AutoencoderKLWan, DiffusionPipeline

        if "patch_size" not in inspect.signature(AutoencoderKLWan.__init__).parameters:
            # an older diffusers would load Wan 2.2's VAE config silently as Wan 2.1's
            import diffusers

            raise CammimicError(
                f"wan-i2v needs a diffusers with Wan 2.2's VAE (0.35 or later; this is "
                f'{diffusers.__version__}): pip install -U "diffusers>=0.35"'
            )
        self.check_image_to_video(dict(DiffusionPipeline.load_config(source, **options)), source)
        components = super().load_components(source, dtype, options, model_options)
        vae, transformer = components["vae"], components["denoiser"]
        if int(transformer.config.in_channels) != int(vae.config.z_dim):
            raise CammimicError(
                f"weights {source}: the transformer takes {transformer.config.in_channels} channels but the VAE "
                f"makes {vae.config.z_dim}; wan-i2v needs Wan 2.2 TI2V's (48 and 48)"
            )
        return components

    def backbone_type(self) -> type[WanBackbone]:
        return WanI2VBackbone

    def build(self, components: dict[str, Any], **settings: Any) -> WanBackbone:
        """Wan's backbone, with the memory options applied."""
        if self.vae_tiling:
            components["vae"].enable_tiling()
        if self.offload_text_encoder:
            components["text_encoder"].to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return super().build(components, **settings)


@attrs.define(eq=False)
class WanI2VBackbone(WanBackbone):
    """A loaded Wan 2.2 TI2V model: :class:`cammimic_wan.backbone.WanBackbone` with the image condition.

    Inside :meth:`conditioned_on` (Phase 1: the reference's first frame; Phase 2: the user image)
    :meth:`condition` puts the image's latents in the first latent frame and gives its tokens
    timestep 0, exactly as ``WanImageToVideoPipeline`` with ``expand_timesteps``.
    """

    frame_rule: ClassVar[str] = WanAdapter.frame_rule
    _image: Any = attrs.field(
        default=None, init=False
    )  #: (1, C, 1, h, w) float32 latents of the image

    @property
    def image_latents(self) -> torch.Tensor | None:
        """The latents the first latent frame is conditioned on, ``(1, C, 1, h, w)``; ``None`` outside
        :meth:`conditioned_on`."""
        return self._image

    @contextlib.contextmanager
    def conditioned_on(self, image: Any):
        """Condition on ``image`` (uint8 ``(H, W, 3)``, the clip's size) inside the block."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise CammimicError(
                f"{self.name} conditions on one uint8 image (H, W, 3), got {tuple(image.shape)}"
            )
        saved = self._image
        self._image = self.encode_video(
            image[None]
        )  # the posterior mean: diffusers' sample_mode="argmax"
        try:
            yield self._image
        finally:
            self._image = saved

    @property
    def conditioned_frames(self) -> int:
        return 0 if self._image is None else 1

    def condition(self, latents: torch.Tensor, timestep: Any) -> tuple[torch.Tensor, Any]:
        """``((1 − mask)·image + mask·latents, per-token timesteps)``; unchanged outside
        :meth:`conditioned_on` (then the model generates from text alone, as ``WanPipeline``)."""
        if self._image is None:
            return latents, timestep
        if tuple(self._image.shape[-2:]) != tuple(latents.shape[-2:]):
            raise CammimicError(
                f"{self.name}: the conditioning image's latents are {tuple(self._image.shape[-2:])} but the video's "
                f"are {tuple(latents.shape[-2:])}; the image must have the video's size"
            )
        mask = first_frame_mask(latents.shape, latents.device, latents.dtype)
        condition = self._image.to(latents.device, latents.dtype)
        latents = (1 - mask) * condition + mask * latents
        return latents, token_timesteps(mask, timestep, latents.shape[0], self.patch_size)

    def predict_noise(
        self, latents: torch.Tensor, timestep: Any, prompt_embeds: torch.Tensor
    ) -> torch.Tensor:
        """As Wan's, and with per-token timesteps ``(B, tokens)`` when :meth:`condition` made them."""
        t = torch.as_tensor(timestep, device=latents.device)
        if t.ndim != 2:
            return super().predict_noise(latents, timestep, prompt_embeds)
        b = latents.shape[0]
        if prompt_embeds.shape[0] == 1 and b > 1:
            prompt_embeds = prompt_embeds.expand(b, *prompt_embeds.shape[1:])
        t = t.float().expand(b, -1) if t.shape[0] == 1 else t.float()
        return self.denoiser(
            hidden_states=latents.to(self.dtype),
            timestep=t,
            encoder_hidden_states=prompt_embeds.to(self.dtype),
            return_dict=False,
        )[0]
