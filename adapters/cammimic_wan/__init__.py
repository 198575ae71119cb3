"""cammimic-wan: the Wan 2.1 text-to-video backbone (a video diffusion transformer), 832x480, 81 frames.

diffusers' ``WanPipeline`` models: loading and running them (:mod:`cammimic_wan.backbone`),
where the spatial and temporal LoRA go in full 3D attention (:mod:`cammimic_wan.locator`) and
random-weight components for tests and benchmarks (:mod:`cammimic_wan.random_weights`). This
entry module stays cheap to import: torch and diffusers are imported when a model is loaded.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["wan", "register_backbones", "locate_attention_layers"]

DEFAULT_WEIGHTS = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def wan(
    *,
    weights: str = DEFAULT_WEIGHTS,
    revision: str = "",
    variant: str = "",
    torch_dtype: str = "auto",
    attention: str = "sdpa",
    training_shift: float = 0.0,
):
    """Build the ``wan`` backbone adapter (nothing is loaded until ``load``).

    Args:
        weights: Hub id or local diffusers-layout directory (default ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``).
        revision: Hub revision (branch, tag or commit); ``""`` = the default branch.
        variant: weights variant; ``""`` = the default files.
        torch_dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"`` or ``"bfloat16"``.
        attention: ``"sdpa"`` or ``"default"`` (both use diffusers' ``WanAttnProcessor``).
        training_shift: flow shift of Phase 1's noise levels; 0 = the scheduler's ``flow_shift``.
    """
    from cammimic_wan.backbone import WanAdapter

    return WanAdapter(
        default_weights=weights,
        revision=revision or None,
        variant=variant or None,
        torch_dtype=torch_dtype,
        attention=attention,
        training_shift=float(training_shift),
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "wan",
        wan,
        description="Wan 2.1 T2V 1.3B (diffusers WanTransformer3DModel, a video DiT; flow matching), 832x480, 81 frames.",
        requires=("torch", "diffusers", "transformers"),
        extra="wan",
    )


@cammimic.hookimpl(trylast=True)
def locate_attention_layers(backbone, model, include_ff):
    """Answer for any diffusers ``WanTransformer3DModel``, whichever backbone registered it.

    The generic answer: ``trylast``, and the host asks the backbone's own plugin first, so a
    backbone plugin with its own layer map for a Wan transformer is never shadowed by this one."""
    if type(model).__name__ != "WanTransformer3DModel":
        return None
    from cammimic_wan.locator import locate_wan_layers

    return locate_wan_layers(model, include_ff=include_ff)
