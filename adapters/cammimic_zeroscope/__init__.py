"""cammimic-zeroscope: the zeroscope_v2_576w text-to-video backbone (576x320, 24 frames).

The model code is shared with ModelScope in ``cammimic_unet3d``; importing this module is cheap.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["register_backbones", "zeroscope"]


def zeroscope(
    *,
    weights: str = "cerspense/zeroscope_v2_576w",
    revision: str = "",
    variant: str = "",
    torch_dtype: str = "auto",
    vae_batch_size: int = 8,
    attention: str = "sdpa",
):
    """Build the ``zeroscope`` backbone adapter (nothing is loaded until ``load``).

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
        name="zeroscope",
        default_weights=weights,
        default_size=(576, 320),
        default_num_frames=24,
        revision=revision or None,
        variant=variant or None,
        torch_dtype=torch_dtype,
        vae_batch_size=vae_batch_size,
        attention=attention,
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "zeroscope",
        zeroscope,
        description="zeroscope_v2_576w (diffusers UNet3D, 1.4 B parameters), 576x320, 24 frames; the paper's backbone.",
        requires=("torch", "diffusers", "transformers"),
        extra="zeroscope",
    )
