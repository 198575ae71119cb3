"""cammimic-modelscope: the ModelScope text-to-video-ms-1.7b backbone (256x256, 16 frames).

The model code is shared with zeroscope in ``cammimic_unet3d``; importing this module is cheap.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["modelscope", "register_backbones"]


def modelscope(
    *,
    weights: str = "damo-vilab/text-to-video-ms-1.7b",
    revision: str = "",
    variant: str = "",
    torch_dtype: str = "auto",
    vae_batch_size: int = 8,
    attention: str = "sdpa",
):
    """Build the ``modelscope`` backbone adapter (nothing is loaded until ``load``).

    Args:
        weights: Hub id or local diffusers-layout directory used when no ``--weights`` is given.
        revision: Hub revision (branch, tag or commit); ``""`` = the default branch.
        variant: weights variant such as ``"fp16"``; ``""`` = the full-precision files.
        torch_dtype: ``"auto"`` (float16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"``
            or ``"bfloat16"``.
        vae_batch_size: frames per VAE encode/decode call.
        attention: ``"sdpa"`` (PyTorch scaled-dot-product attention) or ``"default"``.
    """
    from cammimic_unet3d.backbone import UNet3DAdapter

    return UNet3DAdapter(
        name="modelscope",
        default_weights=weights,
        default_size=(256, 256),
        default_num_frames=16,
        revision=revision or None,
        variant=variant or None,
        torch_dtype=torch_dtype,
        vae_batch_size=vae_batch_size,
        attention=attention,
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "modelscope",
        modelscope,
        description="ModelScope text-to-video-ms-1.7b (diffusers UNet3D, 1.4 B parameters), 256x256, 16 frames.",
        requires=("torch", "diffusers", "transformers"),
        extra="modelscope",
    )
