"""The adapter and the layer locator: imported only when the backbone is created or located
(``cammimic.kit`` is light; torch and diffusers are imported inside the methods)."""

from __future__ import annotations

import re

from cammimic.components import AttentionLayers
from cammimic.kit import DiffusersAdapter, load_text_encoder

PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
SPATIAL = re.compile(rf"(?:.*\.)?attentions\.\d+\.transformer_blocks\.\d+\.attn1\.{PROJ}")
TEMPORAL = re.compile(rf"(?:.*\.)?temp_attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.{PROJ}")
FF = r"\.ff\.net\.(?:0\.proj|2)"


class MyBackbone(DiffusersAdapter):
    """The adapter: MyVideo's native setting and the parts of loading that are its own.

    :class:`cammimic.kit.DiffusersAdapter` does the rest of ``load``: weights by Hub id or
    folder, offline and cache checks, the dtype, one-line errors, freezing the models.
    MyVideo's models are diffusers' UNet3D classes (a ``UNet3DConditionModel``, a VAE, a CLIP
    text encoder, a DDIM schedule), so the loaded backbone is cammimic's ``UNet3DBackbone``; a
    model of another architecture subclasses :class:`cammimic.kit.DiffusersBackbone` instead.
    """

    name = "mybackbone"
    vae_scale_factor = 8
    subfolders = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    revision = variant = None
    attention = "sdpa"

    def __init__(self, *, default_weights, default_size, default_num_frames, torch_dtype="auto"):
        self.default_weights = default_weights
        self.default_size = default_size
        self.default_num_frames = default_num_frames
        self.torch_dtype = torch_dtype

    def load_components(self, source, dtype, options, model_options):
        """The small parts first (scheduler config, tokenizer), so a missing model fails fast."""
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        return {
            "scheduler_config": dict(
                DDIMScheduler.load_config(source, subfolder="scheduler", **options)
            ),
            "tokenizer": CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **options),
            "text_encoder": load_text_encoder(CLIPTextModel, source, dtype, model_options),
            "vae": AutoencoderKL.from_pretrained(
                source, subfolder="vae", torch_dtype=torch.float32, **model_options
            ),
            "denoiser": UNet3DConditionModel.from_pretrained(
                source, subfolder="unet", torch_dtype=dtype, **model_options
            ),
        }

    def sampler_from_config(self, kind, scheduler_config):
        from cammimic_unet3d.backbone import sampler_from_config

        return sampler_from_config(kind, scheduler_config)  # "ddim" or "dpm", as for zeroscope

    def build(self, components, *, source, device, dtype, attention):
        from cammimic_unet3d.backbone import UNet3DBackbone

        vae = components["vae"]
        return UNet3DBackbone(
            name=self.name,
            weights=source,
            device=device,
            dtype=dtype,
            denoiser=components["denoiser"],
            vae=vae,
            text_encoder=components["text_encoder"],
            tokenizer=components["tokenizer"],
            scheduler_config=components["scheduler_config"],
            vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1),
            latent_channels=vae.config.latent_channels,
        )


def attention_layers(model, include_ff):
    """Spatial self-attention and temporal attention projections, paired by block and role."""
    names = [n for n, _ in model.named_modules()]
    spatial = [n for n in names if SPATIAL.fullmatch(n)]
    temporal = [n for n in names if TEMPORAL.fullmatch(n)]
    pairs = []
    for s in spatial:
        t = s.replace(".attentions.", ".temp_attentions.")
        if t in temporal:
            pairs.append((s, t))
    if include_ff:
        spatial += [
            n
            for n in names
            if re.fullmatch(rf"(?:.*\.)?attentions\.\d+\.transformer_blocks\.\d+{FF}", n)
        ]
        temporal += [
            n
            for n in names
            if re.fullmatch(rf"(?:.*\.)?temp_attentions\.\d+\.transformer_blocks\.\d+{FF}", n)
        ]
    return AttentionLayers(spatial=spatial, temporal=temporal, pairs=pairs)
