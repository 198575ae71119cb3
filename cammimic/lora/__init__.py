"""The spatial and temporal LoRAs of CamMimic: peft glue (:mod:`cammimic.lora.glue`: injection,
trainability, scales) and LoRA files (:mod:`cammimic.lora.files`: save, read, load, fingerprint).

Every name is importable from ``cammimic.lora``; torch, peft and safetensors are imported on first
use, so ``import cammimic.lora`` stays light. The orthogonality loss of stage 2 lives with Phase 1:
:func:`cammimic.training.orthogonality_loss`.
"""

from cammimic.lora.files import FORMAT, load_lora, read_lora, save_lora, unet_fingerprint
from cammimic.lora.glue import (
    ADAPTERS,
    LoraSpec,
    inject_loras,
    lora_parameters,
    lora_scales,
    lora_state_dict,
    set_lora_scale,
    set_lora_state_dict,
    set_trainable,
)

__all__ = [
    "ADAPTERS",
    "FORMAT",
    "LoraSpec",
    "inject_loras",
    "lora_parameters",
    "set_trainable",
    "set_lora_scale",
    "lora_scales",
    "lora_state_dict",
    "set_lora_state_dict",
    "unet_fingerprint",
    "save_lora",
    "read_lora",
    "load_lora",
]
