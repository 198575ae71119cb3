"""cammimic-mini: ``mini``, the project's own small text-to-video model (64x64, 8 frames).

A UNet3D text-to-video model with the same diffusers classes as zeroscope (``UNet3DConditionModel``,
``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``, zeroscope's noise schedule), trained by
``python -m cammimic_mini.lab.train`` on clips of scikit-image's photographs under known camera motion
(docs/mini.md). It is a proving ground for the method and an offline demonstration model, not a
model for real use: use zeroscope for that.

Its weights ship inside this package (``weights/``) once they pass the competence check of
``benchmarks/mini.py``. Builds on ``cammimic_unet3d``: its adapter (``cammimic_mini.adapter``) is a
``cammimic_unet3d.backbone.UNet3DAdapter`` with mini's own sampling and run defaults, loaded like
every UNet3D backbone (that adapter is built on the public kit ``cammimic.kit``).
Importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path

import cammimic

__version__ = cammimic.__version__
__all__ = [
    "mini",
    "register_backbones",
    "WEIGHTS",
    "NATIVE_SIZE",
    "NATIVE_FRAMES",
    "SAMPLING",
    "RECIPE",
]

#: The shipped bundle (diffusers layout, float16 safetensors).
WEIGHTS = Path(__file__).parent / "weights"
NATIVE_SIZE = (64, 64)
NATIVE_FRAMES = 8
#: mini's sampling settings, the ones ``benchmarks/mini.py`` and ``benchmarks/mini_method.py``
#: measured it at (docs/mini.md): 25 DDIM steps, no classifier-free guidance (at scale 9 the
#: estimator fell back on 29 % of the step-3,000 bundle's frame pairs; the shipped bundle at 1: 4.8 %).
SAMPLING = {"steps": 25, "guidance_scale": 1.0}
#: mini's run settings where the user set none (``cammimic.backbones.resolve_recipe``): its native
#: 8 frames (not the paper's 16), the paper's finetuning and ranks scaled to a 10 M-parameter model at 64x64x8, and the estimator
#: that reads its soft 64 px frames (kornia: SIFT falls back on them; docs/mini.md).
RECIPE = {
    "run.frames": NATIVE_FRAMES,
    "finetune.stage1_steps": 60,
    "finetune.stage2_steps": 60,
    "lora.spatial_rank": 8,
    "lora.temporal_rank": 8,
    "motion_estimator.name": "kornia",
}


def mini(
    *,
    weights: str = "",
    revision: str = "",
    variant: str = "",
    torch_dtype: str = "auto",
    vae_batch_size: int = 8,
    attention: str = "sdpa",
):
    """Build the ``mini`` backbone adapter; ``weights=""`` uses the bundle shipped in the package.

    Args:
        weights: a local diffusers-layout directory of mini weights (e.g. one written by
            ``python -m cammimic_mini.lab.train --export DIR``); ``""`` = the shipped bundle.
        revision, variant: as for the other UNet3D backbones (unused for local folders).
        torch_dtype: ``"auto"`` (float32 on CPU), ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        vae_batch_size: frames per VAE encode/decode call.
        attention: ``"sdpa"`` or ``"default"``.
    """
    from cammimic.errors import CammimicError

    if not weights and not (WEIGHTS / "model_index.json").is_file():
        raise CammimicError(
            f"the mini backbone's weights are not in this installation ({WEIGHTS}): reinstall cammimic from a "
            "full checkout (they ship in the package), or pass --weights DIR with a bundle from "
            "`python -m cammimic_mini.lab.train --export DIR`, or use --method homography"
        )
    from cammimic_mini.adapter import MiniAdapter

    return MiniAdapter(
        name="mini",
        default_weights=weights or str(WEIGHTS),
        default_size=NATIVE_SIZE,
        default_num_frames=NATIVE_FRAMES,
        revision=revision or None,
        variant=variant or None,
        torch_dtype=torch_dtype,
        vae_batch_size=vae_batch_size,
        attention=attention,
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "mini",
        mini,
        description="mini: cammimic's own small text-to-video model (UNet3D, 10 M parameters), 64x64, "
        "8 frames; trained on scikit-image photographs, a proving ground and offline demo (docs/mini.md).",
        requires=("torch", "diffusers", "transformers"),
        extra="zeroscope",
    )
