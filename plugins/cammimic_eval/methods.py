"""The eval methods: the paper's baselines and ablations as settings of cammimic's own runs."""

from __future__ import annotations

import shutil
from pathlib import Path


def _item_config(config, item, overrides):
    return config.with_overrides({"run.prompt": item.prompt, "run.reference_prompt": item.reference_prompt,
                                  **overrides})


class ConfigMethod:
    """A method that is one ``cammimic run`` with some settings changed (see ``METHODS``)."""

    def __init__(self, name: str, overrides: dict):
        self.name = name
        self.overrides = overrides

    def run(self, item, output_dir: Path, *, config, host) -> None:
        from cammimic.api import transfer

        transfer(item.reference, item.image, output_dir, config=_item_config(config, item, self.overrides),
                 overwrite=True, progress=False, host=host)


class MotionDirectorMethod:
    """MotionDirector's spatial-LoRA swap (the paper's baseline), in three runs of cammimic.

    1. temporal LoRA: stage 1 on the reference alone (no user-image stage);
    2. spatial LoRA: on the user image alone (no reference stage, no orthogonality);
    3. sample with spatial LoRA of 2 and temporal LoRA of 1, without homography guidance.
    Runs 1 and 2 are kept next to the run directory, in ``METHOD-parts/``.
    """

    name = "motiondirector"

    def run(self, item, output_dir: Path, *, config, host) -> None:
        from cammimic.api import finetune, sample

        output_dir = Path(output_dir)
        parts = output_dir.parent / f"{output_dir.name}-parts"
        if parts.exists():
            shutil.rmtree(parts)
        temporal = finetune(item.reference, item.image, parts / "temporal", progress=False, host=host,
                            config=_item_config(config, item, {"finetune.stage2": False}))
        spatial = finetune(item.reference, item.image, parts / "spatial", progress=False, host=host,
                           config=_item_config(config, item, {"finetune.stage1_steps": 0,
                                                              "finetune.orthogonality": False}))
        sample(item.reference, item.image, output_dir, progress=False, host=host, overwrite=True,
               spatial_lora=spatial.output_dir / "lora" / "spatial.safetensors",
               temporal_lora=temporal.output_dir / "lora" / "temporal.safetensors",
               config=_item_config(config, item, {"guidance": [{"name": "none"}]}))
