"""The eval methods: the paper's baselines and ablations as settings of cammimic's own runs."""

from __future__ import annotations

import shutil
from pathlib import Path


def _item_config(config, item, overrides):
    return config.with_overrides(
        {"run.prompt": item.prompt, "run.reference_prompt": item.reference_prompt, **overrides}
    )


class ConfigMethod:
    """A method that is one ``cammimic run`` with some settings changed (see ``METHODS``)."""

    def __init__(self, name: str, overrides: dict):
        self.name = name
        self.overrides = overrides
        #: the eval resolves frames and size from the backbone when any of its methods uses one
        self.uses_backbone = overrides.get("run.method") != "homography"

    def run(self, item, output_dir: Path, *, config, host) -> None:
        from cammimic.api import transfer

        transfer(
            item.reference,
            item.image,
            output_dir,
            config=_item_config(config, item, self.overrides),
            overwrite=True,
            progress=False,
            host=host,
        )


#: MotionDirector's training recipe (showlab/MotionDirector, MotionDirector_train.py and
#: configs/config_single_video.yaml), as cammimic settings; docs/eval.md cites each line.
MOTIONDIRECTOR_RECIPE: dict = {
    "finetune.temporal_debias": True,  # finetune_unet: loss_temporal + loss_ad_temporal (√2·ε̂_f − ε̂_a)
    "lora.include_ff": True,  # utils/lora.py _find_modules_v2: attn1 + ff (spatial), attn1 + attn2 + ff (temporal)
    "lora.dropout": 0.1,  # lora_unet_dropout: 0.1 -> inject_trainable_lora_extended(dropout_p=...)
    "finetune.optimizer": "adamw",  # get_optimizer: torch.optim.AdamW
    "finetune.weight_decay": 1e-2,  # adam_weight_decay: 1e-2
    "finetune.spatial_mask_probability": 0.2,  # mask_spatial_lora = random.uniform(0, 1) < 0.2
    "finetune.skip_spatial_when_masked": True,  # `if not mask_spatial_lora:` backward + optimizer_spatial.step()
    "finetune.max_grad_norm": 0.0,  # no gradient clipping in its loop
}
#: Its spatial path trained on an image (configs/config_single_image.yaml): no temporal LoRA, AdamW 1e-4.
MOTIONDIRECTOR_IMAGE = {
    "finetune.stage1_steps": 0,
    "finetune.orthogonality": False,
    "finetune.weight_decay": 1e-4,
}


class MotionDirectorMethod:
    """MotionDirector (the paper's baseline) by its own recipe, in three runs of cammimic.

    1. temporal LoRA: stage 1 on the reference alone (no user-image stage) with
       :data:`MOTIONDIRECTOR_RECIPE`: the appearance-debiased temporal loss, LoRA on the
       feed-forward layers too, LoRA dropout 0.1, AdamW (weight decay 1e-2), the spatial loss
       and update skipped on masked steps, no clipping;
    2. spatial LoRA: on the user image alone, as MotionDirector's image config trains its spatial
       path (:data:`MOTIONDIRECTOR_IMAGE`: no reference stage, no orthogonality, AdamW 1e-4);
    3. sample as ``MotionDirector_inference_multi.py`` does: the spatial LoRA of 2 with the temporal
       LoRA of 1 (run 1's spatial LoRA, the reference's appearance, is dropped), no homography
       guidance.
    Runs 1 and 2 are kept next to the run directory, in ``METHOD-parts/``; every run's
    ``config.toml`` records the recipe (``temporal_debias = true``, ``include_ff = true``, ...).
    """

    name = "motiondirector"

    def run(self, item, output_dir: Path, *, config, host) -> None:
        from cammimic.api import finetune, sample

        output_dir = Path(output_dir)
        parts = output_dir.parent / f"{output_dir.name}-parts"
        if parts.exists():
            shutil.rmtree(parts)
        recipe = dict(MOTIONDIRECTOR_RECIPE)
        temporal = finetune(
            item.reference,
            item.image,
            parts / "temporal",
            progress=False,
            host=host,
            config=_item_config(config, item, {**recipe, "finetune.stage2": False}),
        )
        spatial = finetune(
            item.reference,
            item.image,
            parts / "spatial",
            progress=False,
            host=host,
            config=_item_config(config, item, {**recipe, **MOTIONDIRECTOR_IMAGE}),
        )
        sample(
            item.reference,
            item.image,
            output_dir,
            progress=False,
            host=host,
            overwrite=True,
            spatial_lora=spatial.output_dir / "lora" / "spatial.safetensors",
            temporal_lora=temporal.output_dir / "lora" / "temporal.safetensors",
            config=_item_config(config, item, {**recipe, "guidance": [{"name": "none"}]}),
        )
