"""Where the spatial and the temporal LoRA go on a diffusers ``UNet3DConditionModel``.

The module map (names as in ``unet.named_modules()``):

- spatial self-attention: ``{BLK}attentions.N.transformer_blocks.M.attn1.{to_q,to_k,to_v,to_out.0}``
  (64 Linear layers on zeroscope/ModelScope). The spatial cross-attention ``attn2`` (text) is
  never adapted.
- temporal attention: ``transformer_in`` and ``{BLK}temp_attentions.N``, ``transformer_blocks.M``,
  both ``attn1`` and ``attn2`` (in a ``TransformerTemporalModel`` both are self-attention over
  frames): 136 Linear layers.
- with ``include_ff`` (as MotionDirector does) the feed-forward Linear layers of both groups,
  ``ff.net.0.proj`` and ``ff.net.2``, too.

``BLK`` is ``down_blocks.K.``, ``up_blocks.K.`` or ``mid_block.``.
"""

from __future__ import annotations

import re

from torch import nn

from cammimic.components import AttentionLayers

__all__ = ["locate_unet3d_layers"]

BLK = r"(?:(?:down_blocks|up_blocks)\.\d+\.|mid_block\.)"
PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
FF = r"ff\.net\.(?:0\.proj|2)"
TEMPORAL = rf"(?:transformer_in|{BLK}temp_attentions\.\d+)"

SPATIAL_ATTN = re.compile(rf"({BLK})attentions\.(\d+)\.(transformer_blocks\.\d+\.attn1\.{PROJ})")
SPATIAL_FF = re.compile(rf"{BLK}attentions\.\d+\.transformer_blocks\.\d+\.{FF}")
TEMPORAL_ATTN = re.compile(rf"{TEMPORAL}\.transformer_blocks\.\d+\.attn[12]\.{PROJ}")
TEMPORAL_FF = re.compile(rf"{TEMPORAL}\.transformer_blocks\.\d+\.{FF}")


def _is_linear(module: nn.Module) -> bool:
    # after a LoRA is injected, peft wraps the Linear layer and keeps it as ``base_layer``
    return isinstance(module, nn.Linear) or isinstance(
        getattr(module, "base_layer", None), nn.Linear
    )


def locate_unet3d_layers(unet: nn.Module, include_ff: bool = False) -> AttentionLayers:
    """The spatial and temporal LoRA targets of a UNet3D, and the (spatial, temporal) pairs.

    A pair joins a spatial ``attn1`` projection with the temporal ``attn1`` projection of the
    same role in the same block: ``P.attentions.N.transformer_blocks.M.attn1.to_q`` with
    ``P.temp_attentions.N.transformer_blocks.M.attn1.to_q``. Their weights have the same shape
    (both act on the block's channels), as the orthogonality loss needs. Feed-forward layers are
    never paired.
    """
    linear = {name for name, module in unet.named_modules() if name and _is_linear(module)}
    spatial_patterns = [SPATIAL_ATTN] + ([SPATIAL_FF] if include_ff else [])
    temporal_patterns = [TEMPORAL_ATTN] + ([TEMPORAL_FF] if include_ff else [])
    ordered = [name for name, _ in unet.named_modules() if name in linear]  # model order
    spatial = [n for n in ordered if any(p.fullmatch(n) for p in spatial_patterns)]
    temporal = [n for n in ordered if any(p.fullmatch(n) for p in temporal_patterns)]
    known_temporal = set(temporal)
    pairs = []
    for name in spatial:
        match = SPATIAL_ATTN.fullmatch(name)
        if match is None:
            continue
        partner = f"{match[1]}temp_attentions.{match[2]}.{match[3]}"
        if partner in known_temporal:
            pairs.append((name, partner))
    return AttentionLayers(spatial=spatial, temporal=temporal, pairs=pairs)
