"""The heavy part: imported only when the backbone is created."""

from __future__ import annotations

import re

from cammimic.components import AttentionLayers

PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
SPATIAL = re.compile(rf"(?:.*\.)?attentions\.\d+\.transformer_blocks\.\d+\.attn1\.{PROJ}")
TEMPORAL = re.compile(rf"(?:.*\.)?temp_attentions\.\d+\.transformer_blocks\.\d+\.attn[12]\.{PROJ}")
FF = r"\.ff\.net\.(?:0\.proj|2)"


class MyBackbone:
    """A :class:`cammimic.components.BackboneAdapter`: the native setting and how to load.

    MyVideo is a diffusers ``UNet3DConditionModel`` with a VAE, a CLIP text encoder and a DDIM
    scheduler, so ``load`` reuses cammimic's UNet3D loader, which returns an object that
    implements the :class:`cammimic.components.Backbone` protocol (cammimic checks that).
    A model of another architecture implements that protocol itself.
    """

    name = "mybackbone"
    vae_scale_factor = 8

    def __init__(self, *, default_weights, default_size, default_num_frames, torch_dtype="auto"):
        self.default_weights = default_weights
        self.default_size = default_size
        self.default_num_frames = default_num_frames
        self.torch_dtype = torch_dtype

    def load(self, weights=None, *, torch_dtype=None, variant=None, revision=None,
             local_files_only=None, device=None):
        """Load from a Hub id or a local diffusers-layout folder (``None``: the default)."""
        from cammimic_unet3d.backbone import UNet3DAdapter  # imports torch and diffusers

        loader = UNet3DAdapter(name=self.name, default_weights=self.default_weights,
                               default_size=self.default_size,
                               default_num_frames=self.default_num_frames,
                               torch_dtype=self.torch_dtype)
        return loader.load(weights, torch_dtype=torch_dtype, variant=variant, revision=revision,
                           local_files_only=local_files_only, device=device)


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
        spatial += [n for n in names if re.fullmatch(rf"(?:.*\.)?attentions\.\d+\.transformer_blocks\.\d+{FF}", n)]
        temporal += [n for n in names if re.fullmatch(rf"(?:.*\.)?temp_attentions\.\d+\.transformer_blocks\.\d+{FF}", n)]
    return AttentionLayers(spatial=spatial, temporal=temporal, pairs=pairs)
