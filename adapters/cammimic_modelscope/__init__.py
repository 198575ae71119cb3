"""cammimic-modelscope: the ModelScope text-to-video-ms-1.7b backbone (256x256, 16 frames).

Builds on ``cammimic_unet3d`` (its public ``backbone_factory``, which makes a
``cammimic_unet3d.backbone.UNet3DAdapter``, itself built on the public kit ``cammimic.kit``): the
model code is shared with zeroscope there. Importing this module is cheap.
"""

from __future__ import annotations

from cammimic_unet3d import backbone_factory

import cammimic

__version__ = cammimic.__version__
__all__ = ["modelscope", "register_backbones"]

modelscope = backbone_factory(
    "modelscope",
    default_weights="damo-vilab/text-to-video-ms-1.7b",
    default_size=(256, 256),
    default_num_frames=16,
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
