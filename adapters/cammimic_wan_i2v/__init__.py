"""cammimic-wan-i2v: CamMimic on an image-to-video Wan, the user image as the model's first frame.

The ``wan-i2v`` backbone runs diffusers' Wan 2.2 TI2V models (``Wan-AI/Wan2.2-TI2V-5B-Diffusers``:
one dense 5B transformer, a 48-channel VAE with 16x spatial compression) the way diffusers'
``WanImageToVideoPipeline`` does with ``expand_timesteps`` (:mod:`cammimic_wan_i2v.backbone`).
The LoRA placement is Wan's (``cammimic_wan``'s ``locate_attention_layers`` answers for any
``WanTransformer3DModel``). This entry module stays cheap to import: torch and diffusers are
imported when a model is loaded. See docs/wan.md, "Image to video".
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["wan_i2v", "register_backbones", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"


def wan_i2v(
    *,
    weights: str = DEFAULT_WEIGHTS,
    revision: str = "",
    variant: str = "",
    torch_dtype: str = "auto",
    attention: str = "sdpa",
    training_shift: float = 0.0,
    vae_tiling: bool = False,
    offload_text_encoder: bool = False,
):
    """Build the ``wan-i2v`` backbone adapter (nothing is loaded until ``load``).

    Args:
        weights: Hub id or local diffusers-layout directory of a Wan 2.2 TI2V model (default
            ``Wan-AI/Wan2.2-TI2V-5B-Diffusers``; its ``model_index.json`` says ``expand_timesteps``).
        revision: Hub revision (branch, tag or commit); ``""`` = the default branch.
        variant: weights variant; ``""`` = the default files.
        torch_dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"`` or ``"bfloat16"``.
        attention: ``"sdpa"`` or ``"default"`` (both use diffusers' ``WanAttnProcessor``).
        training_shift: flow shift of Phase 1's noise levels; 0 = the scheduler's ``flow_shift`` (5).
        vae_tiling: encode and decode in overlapping tiles (diffusers' ``enable_tiling``): less memory.
        offload_text_encoder: keep the UMT5 text encoder on the CPU (about 11 GB less on the GPU in
            bfloat16); each prompt is encoded there.
    """
    from cammimic_wan_i2v.backbone import WanI2VAdapter

    return WanI2VAdapter(
        default_weights=weights,
        revision=revision or None,
        variant=variant or None,
        torch_dtype=torch_dtype,
        attention=attention,
        training_shift=float(training_shift),
        vae_tiling=bool(vae_tiling),
        offload_text_encoder=bool(offload_text_encoder),
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "wan-i2v",
        wan_i2v,
        description=(
            "Wan 2.2 TI2V 5B image-to-video (the user image is the first frame; 48-channel VAE, "
            "16x compression; flow matching), 1280x704, 121 frames."
        ),
        requires=("torch", "diffusers", "transformers"),
        extra="wan",
    )
