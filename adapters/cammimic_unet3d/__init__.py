"""cammimic-unet3d: the shared part of the zeroscope and ModelScope backbone adapters.

diffusers' ``UNet3DConditionModel`` family: loading (:mod:`cammimic_unet3d.backbone`), where the
spatial and temporal LoRA go (:mod:`cammimic_unet3d.locator`) and random-weight components for
tests and benchmarks (:mod:`cammimic_unet3d.random_weights`). This entry module stays cheap to
import: torch and diffusers are imported when a model is located or loaded.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["locate_attention_layers"]


@cammimic.hookimpl
def locate_attention_layers(backbone, model, include_ff):
    """Answer for any diffusers ``UNet3DConditionModel``, whichever backbone registered it."""
    if type(model).__name__ != "UNet3DConditionModel":
        return None
    from cammimic_unet3d.locator import locate_unet3d_layers

    return locate_unet3d_layers(model, include_ff=include_ff)
