"""cammimic-unet3d: the shared part of the zeroscope and ModelScope backbone adapters.

diffusers' ``UNet3DConditionModel`` family: loading (:mod:`cammimic_unet3d.backbone`), where the
spatial and temporal LoRA go (:mod:`cammimic_unet3d.locator`) and random-weight components for
tests and benchmarks (:mod:`cammimic_unet3d.random_weights`). This entry module stays cheap to
import: torch and diffusers are imported when a model is located or loaded.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["backbone_factory", "locate_attention_layers"]


def backbone_factory(
    name: str, *, default_weights: str, default_size: tuple[int, int], default_num_frames: int
):
    """The factory a UNet3D backbone plugin registers; its keyword parameters are what the
    ``[backbone]`` config section may set. Nothing heavy is imported until it is called."""

    def factory(
        *,
        weights: str = default_weights,
        revision: str = "",
        variant: str = "",
        torch_dtype: str = "auto",
        vae_batch_size: int = 8,
        attention: str = "sdpa",
    ):
        from cammimic_unet3d.backbone import UNet3DAdapter

        return UNet3DAdapter(
            name=name,
            default_weights=weights,
            default_size=default_size,
            default_num_frames=default_num_frames,
            revision=revision or None,
            variant=variant or None,
            torch_dtype=torch_dtype,
            vae_batch_size=vae_batch_size,
            attention=attention,
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"""Build the ``{name}`` backbone adapter (nothing is loaded until ``load``).

    Args:
        weights: Hub id or local diffusers-layout directory (default ``{default_weights}``).
        revision: Hub revision (branch, tag or commit); ``""`` = the default branch.
        variant: weights variant such as ``"fp16"``; ``""`` = the full-precision files.
        torch_dtype: ``"auto"`` (bfloat16 on CUDA, float16 on GPUs without it, float32 on CPU), ``"float32"``, ``"float16"``
            or ``"bfloat16"``.
        vae_batch_size: frames per VAE encode/decode call.
        attention: ``"sdpa"`` (PyTorch scaled-dot-product attention) or ``"default"``.
    """
    return factory


@cammimic.hookimpl(trylast=True)
def locate_attention_layers(backbone, model, include_ff):
    """Answer for any diffusers ``UNet3DConditionModel``, whichever backbone registered it.

    The generic answer: ``trylast``, and the host asks the backbone's own plugin first, so a
    backbone plugin with its own layer map for a UNet3D is never shadowed by this one."""
    if type(model).__name__ != "UNet3DConditionModel":
        return None
    from cammimic_unet3d.locator import locate_unet3d_layers

    return locate_unet3d_layers(model, include_ff=include_ff)
