"""Random-weight Wan 2.1 text-to-video components, built in code and saved in diffusers layout.

Tests and benchmarks use them to exercise the real loading path (``from_pretrained`` on a local
folder) offline::

    python -m cammimic_wan.random_weights --preset tiny /tmp/tiny-wan
    cammimic run ... --backbone wan --weights /tmp/tiny-wan

Presets:

- ``"tiny"``: a 2-block ``WanTransformer3DModel`` (2 heads of 12 channels), an
  ``AutoencoderKLWan`` with Wan's compression (8x spatial, 4x temporal, 16 latent channels) at
  base width 4, a 2-layer 32-d ``UMT5EncoderModel``. A 9-frame 64x64 clip (3 latent frames,
  8x8 latents) runs through the transformer in milliseconds on one CPU thread.
- ``"1.3b"``: the transformer, VAE and scheduler of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` (1.42 B
  parameter transformer, the Wan 2.1 VAE, UniPC with flow shift 3) with random weights, for time
  and memory benchmarks without a download. Its text encoder has UMT5-XXL's width (4096, what
  the transformer reads) but 2 of its 24 layers and the byte vocabulary below, so the folder
  fits in a few GB: the text encoder runs once per prompt, outside the timed loops.

- ``"i2v-tiny"``: Wan 2.2 TI2V's architecture in small, for the ``wan-i2v`` backbone: a 2-block
  transformer on 48 latent channels and an ``AutoencoderKLWan`` as Wan 2.2's (residual, 2x2 pixel
  patches: 16x spatial, 4x temporal, 48 latent channels, per-channel ``latents_mean``/``latents_std``),
  flow shift 5 (``Wan-AI/Wan2.2-TI2V-5B-Diffusers``' scheduler) and a ``model_index.json`` with
  ``expand_timesteps: true``, which is how diffusers tells TI2V from text-to-video weights.
  A 9-frame 64x64 clip is 3 latent frames of 4x4.

All use a byte-level tokenizer made in code with the ``tokenizers`` library (every byte is a
token, no merges; ``</s>`` closes each prompt as in T5), saved as ``tokenizer.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "SCHEDULER_CONFIG",
    "build_components",
    "build_tokenizer",
    "save_components",
    "write_model_index",
    "main",
]

#: ``scheduler/scheduler_config.json`` of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` (flow shift 3.0
#: is Wan's choice at 480p; 5.0 at 720p).
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "disable_corrector": [],
    "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "predict_x0": True,
    "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_p": None,
    "solver_type": "bh2",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5
_BYTE_VOCAB = 256 + len(SPECIAL_TOKENS)

#: Constructor arguments of each model, per preset.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 32,
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 32,
        },
        "vae": {
            "base_dim": 4,
            "z_dim": 16,
            "dim_mult": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
        },
        "text_encoder": {
            "vocab_size": _BYTE_VOCAB,
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 37,
            "num_layers": 2,
            "num_decoder_layers": 0,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32,
            "dropout_rate": 0.0,
            "feed_forward_proj": "gated-gelu",
            "layer_norm_epsilon": 1e-6,
        },
        "tokenizer": {"model_max_length": 32},
    },
    "i2v-tiny": {
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 12,
            "in_channels": 48,
            "out_channels": 48,
            "text_dim": 32,
            "freq_dim": 32,
            "ffn_dim": 32,
            "num_layers": 2,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 32,
        },
        # vae/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers at base width 8 (160 and 256 there);
        # latent statistics: fixed, not the real ones, but not 0/1 either so the normalisation shows
        "vae": {
            "base_dim": 8,
            "decoder_base_dim": 8,
            "z_dim": 48,
            "dim_mult": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
            "is_residual": True,
            "in_channels": 12,
            "out_channels": 12,
            "patch_size": 2,
            "scale_factor_temporal": 4,
            "scale_factor_spatial": 16,
            "latents_mean": [round(-0.2 + 0.01 * i, 4) for i in range(48)],
            "latents_std": [round(0.8 + 0.01 * i, 4) for i in range(48)],
        },
        "text_encoder": {
            "vocab_size": _BYTE_VOCAB,
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 37,
            "num_layers": 2,
            "num_decoder_layers": 0,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 32,
            "dropout_rate": 0.0,
            "feed_forward_proj": "gated-gelu",
            "layer_norm_epsilon": 1e-6,
        },
        "tokenizer": {"model_max_length": 32},
        "scheduler": {"flow_shift": 5.0},
        "model_index": {"expand_timesteps": True, "boundary_ratio": None},
    },
    "1.3b": {
        # transformer/config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers
        "transformer": {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 12,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 4096,
            "freq_dim": 256,
            "ffn_dim": 8960,
            "num_layers": 30,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": 1024,
        },
        # vae/config.json: AutoencoderKLWan's defaults are the Wan 2.1 VAE
        "vae": {
            "base_dim": 96,
            "z_dim": 16,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "attn_scales": [],
            "temperal_downsample": [False, True, True],
        },
        # UMT5-XXL's width and heads; 2 of its 24 layers and a byte vocabulary (see the docstring)
        "text_encoder": {
            "vocab_size": _BYTE_VOCAB,
            "d_model": 4096,
            "d_kv": 64,
            "d_ff": 10240,
            "num_layers": 2,
            "num_decoder_layers": 0,
            "num_heads": 64,
            "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128,
            "dropout_rate": 0.0,
            "feed_forward_proj": "gated-gelu",
            "layer_norm_epsilon": 1e-6,
        },
        "tokenizer": {"model_max_length": 512},
    },
}


def _check_preset(preset: str) -> dict[str, dict[str, Any]]:
    if preset not in PRESETS:
        from cammimic.errors import CammimicError

        raise CammimicError(
            f"random-weights preset '{preset}' is unknown. Try one of {sorted(PRESETS)}"
        )
    return PRESETS[preset]


def build_tokenizer(model_max_length: int = 512):
    """A byte-level tokenizer (``tokenizers`` BPE without merges) wrapped for transformers.

    Ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then the 256 bytes; each prompt ends with ``</s>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 printable stand-ins for bytes
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def build_components(preset: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """Random-weight ``transformer``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``.

    ``torch.manual_seed(seed)`` runs before each model, so every model is reproducible on its own.
    """
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    config = _check_preset(preset)
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel(**config["transformer"])
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(**config["vae"])
    torch.manual_seed(seed)
    special = {"pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}
    text_encoder = UMT5EncoderModel(UMT5Config(**config["text_encoder"], **special))
    for model in (transformer, vae, text_encoder):
        model.eval()
    tokenizer = build_tokenizer(**config["tokenizer"])
    scheduler = UniPCMultistepScheduler(**{**SCHEDULER_CONFIG, **config.get("scheduler", {})})
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


def save_components(directory, preset: str = "tiny", seed: int = 0) -> Path:
    """Build the preset's components and save them in diffusers layout under ``directory``.

    Writes ``transformer/ vae/ text_encoder/ tokenizer/ scheduler/`` and a ``model_index.json``
    like the one of ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``; returns the directory.
    """
    import transformers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    components = build_components(preset, seed)
    for name, component in components.items():
        component.save_pretrained(directory / name)
    provenance = {"preset": preset, "seed": seed, "transformers": transformers.__version__}
    write_model_index(
        directory, _cammimic_random_weights=provenance, **PRESETS[preset].get("model_index", {})
    )
    return directory


def write_model_index(directory, **provenance) -> Path:
    """``model_index.json`` of a Wan folder, with ``provenance`` keys recording what made it (and,
    for TI2V, ``expand_timesteps``: the pipeline's own config keys)."""
    import diffusers

    index = {
        "_class_name": "WanPipeline",
        "_diffusers_version": diffusers.__version__,
        **provenance,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    path = Path(directory) / "model_index.json"
    path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cammimic_wan.random_weights",
        description="Write random-weight Wan components in diffusers layout (for tests and benchmarks).",
    )
    parser.add_argument(
        "directory", help="folder to write (created; existing files of the same names are replaced)"
    )
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from cammimic.errors import CammimicError

    try:
        path = save_components(args.directory, args.preset, args.seed)
    except (CammimicError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
