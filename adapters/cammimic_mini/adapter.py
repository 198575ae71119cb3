"""mini's backbone adapter: a UNet3D adapter with mini's own sampling and run defaults.

Builds on ``cammimic_unet3d.backbone.UNet3DAdapter`` (public), which is built on ``cammimic.kit``.
Imported when ``--backbone mini`` is built, not by ``import cammimic_mini``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from cammimic_unet3d.backbone import UNet3DAdapter

from cammimic_mini import RECIPE, SAMPLING

__all__ = ["MiniAdapter"]


@attrs.define
class MiniAdapter(UNet3DAdapter):
    """:class:`~cammimic_unet3d.backbone.UNet3DAdapter` with the settings measured for mini
    (docs/mini.md): they apply wherever the user set none (``cammimic.backbones.resolve_sampling``
    and ``resolve_recipe``) and are recorded in the run's config.toml and run.json."""

    sampling_defaults: ClassVar[dict[str, Any]] = {"negative_prompt": "", **SAMPLING}
    recipe_defaults: ClassVar[dict[str, Any]] = dict(RECIPE)
