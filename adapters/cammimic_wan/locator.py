"""Where the spatial and the temporal LoRA go on a diffusers ``WanTransformer3DModel``.

Wan has one self-attention per block over all ``T'·h·w`` tokens of the clip: no module is
spatial or temporal by itself. The placement (measured in ``benchmarks/wan_seam.py``, decided
in ``docs/wan.md``):

- **spatial LoRA**: the self-attention projections ``blocks.N.attn1.{to_q,to_k,to_v,to_out.0}``
  (4 per block: 120 Linear layers in Wan 2.1 T2V 1.3B), plus with ``include_ff`` the
  feed-forward ``blocks.N.ffn.net.0.proj`` and ``blocks.N.ffn.net.2`` (per token: appearance);
- **temporal LoRA**: ``blocks.N.attn1.to_q`` and ``to_k`` only (60 layers): the query/key
  product decides which token of another frame a token follows — the camera motion — while
  ``to_v``/``to_out.0`` carry content. A temporal LoRA on all four learned appearance as much as
  the spatial one did; on query/key its effect on each frame alone was 8x smaller than on the
  cross-frame part;
- the text cross-attention ``attn2`` is never adapted;
- orthogonality pairs are exact: ``to_q`` and ``to_k`` of each block with themselves (the spatial
  and the temporal adapter of the same Linear layer, both C x C).
"""

from __future__ import annotations

import re

from torch import nn

__all__ = ["SELF_ATTN", "QK", "FF", "wan_lora_targets", "locate_wan_layers"]

PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
SELF_ATTN = re.compile(rf"blocks\.\d+\.attn1\.{PROJ}")
QK = re.compile(r"blocks\.\d+\.attn1\.to_[qk]")
FF = re.compile(r"blocks\.\d+\.ffn\.net\.(?:0\.proj|2)")


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or isinstance(
        getattr(module, "base_layer", None), nn.Linear
    )


def wan_lora_targets(model: nn.Module, include_ff: bool = False) -> tuple[list[str], list[str]]:
    """``(spatial, temporal)`` Linear layer names of a Wan transformer, in model order."""
    names = [n for n, m in model.named_modules() if n and _is_linear(m)]
    spatial_patterns = [SELF_ATTN] + ([FF] if include_ff else [])
    spatial = [n for n in names if any(p.fullmatch(n) for p in spatial_patterns)]
    temporal = [n for n in names if QK.fullmatch(n)]
    return spatial, temporal


def locate_wan_layers(model: nn.Module, include_ff: bool = False):
    """The :class:`~cammimic.components.AttentionLayers` of a Wan transformer (shared layers)."""
    from cammimic.components import AttentionLayers

    spatial, temporal = wan_lora_targets(model, include_ff)
    return AttentionLayers(
        spatial=spatial, temporal=temporal, pairs=[(n, n) for n in temporal], shared=True
    )
