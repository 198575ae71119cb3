"""cammimic-zeroscope: the zeroscope_v2_576w text-to-video backbone (576x320, 24 frames).

Builds on ``cammimic_unet3d`` (its public ``backbone_factory``, which makes a
``cammimic_unet3d.backbone.UNet3DAdapter``, itself built on the public kit ``cammimic.kit``): the
model code is shared with ModelScope there. Importing this module is cheap.
"""

from __future__ import annotations

from cammimic_unet3d import backbone_factory

import cammimic

__version__ = cammimic.__version__
__all__ = ["zeroscope", "register_backbones"]

zeroscope = backbone_factory(
    "zeroscope",
    default_weights="cerspense/zeroscope_v2_576w",
    default_size=(576, 320),
    default_num_frames=24,
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
