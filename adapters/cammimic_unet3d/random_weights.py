"""Random-weight UNet3D text-to-video components, built in code and saved in diffusers layout.

Tests and benchmarks use them to exercise the real loading path offline:

    >>> from cammimic_unet3d.random_weights import save_components
    >>> weights = save_components("/tmp/tiny-t2v")            # doctest: +SKIP
    >>> adapter.load(weights)                                  # doctest: +SKIP

Presets:

- ``"tiny"``: a 1.8 M-parameter UNet3D (block_out_channels (32, 64)), a 4-block AutoencoderKL
  (scale factor 8), a 2-layer 32-d CLIP text encoder. An 8-frame 64x64 UNet forward takes
  milliseconds on one CPU thread.
- ``"zeroscope"``: the architecture of ``cerspense/zeroscope_v2_576w`` (1.41 B-parameter UNet3D,
  Stable Diffusion's VAE, the OpenCLIP ViT-H text tower), with random weights: for timing and
  memory benchmarks without a download.

Both use a byte-level CLIP tokenizer made in code (every byte is a token, no merges), so token
ids stay below any preset's vocabulary size.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "PRESETS",
    "MAX_FRAMES",
    "build_components",
    "build_tokenizer",
    "save_components",
    "write_model_index",
]

#: The noise schedule of zeroscope and ModelScope (``scheduler/scheduler_config.json``).
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

_BYTE_VOCAB = 256 * 2 + 2  # every byte, every byte + "</w>", and the two special tokens

#: Whole-word tokens of the ``mini`` preset: the words that name a camera motion and its speed in
#: mini's captions (``cammimic_mini.lab.data``). Byte by byte, "pans left" and "pans right" differ
#: in a few bytes near a caption's end, and the jointly trained 2-layer encoder of a step-5,200
#: mini barely told them apart (hidden-state distance 12 against 56 for "pans left" versus
#: "is static"), while its samples' direction ignored the caption. As single tokens each word
#: starts from its own embedding. Every other word, and the method's rare token, stays bytes.
MOTION_WORDS: tuple[str, ...] = (
    "pans",
    "tilts",
    "zooms",
    "rolls",
    "left",
    "right",
    "up",
    "down",
    "in",
    "out",
    "clockwise",
    "counterclockwise",
    "is",
    "static",
    "and",
    "slowly",
    "quickly",
)

#: Constructor arguments of each model, per preset.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "unet": {
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
            "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
            "block_out_channels": (32, 64),
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "block_out_channels": (32, 32, 32, 32),
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 8,
            "sample_size": 64,
            "scaling_factor": 0.18215,
        },
        "text_encoder": {
            "vocab_size": 1000,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 32,
            "layer_norm_eps": 1e-5,
        },
    },
    # The architecture of the shipped proving-ground model ``mini`` (cammimic_mini): 64x64
    # frames, a scale-factor-4 VAE (16x16 latents), spatial attention below full resolution.
    "mini": {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
            "up_block_types": ("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"),
            "block_out_channels": (64, 96, 128),
            "layers_per_block": 1,
            "norm_num_groups": 32,
            "cross_attention_dim": 64,
            "attention_head_dim": 8,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * 3,
            "up_block_types": ("UpDecoderBlock2D",) * 3,
            "block_out_channels": (32, 64, 64),
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 16,
            "sample_size": 64,
            "scaling_factor": 1.0,
        },
        "text_encoder": {
            "vocab_size": _BYTE_VOCAB,  # grown by the "words" tokens in build_components
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 64,
            "layer_norm_eps": 1e-5,
        },
        "words": MOTION_WORDS,
    },
    "zeroscope": {
        "unet": {
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            "up_block_types": ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "norm_eps": 1e-5,
            "cross_attention_dim": 1024,
            "attention_head_dim": 64,
            "act_fn": "silu",
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "block_out_channels": (128, 256, 512, 512),
            "layers_per_block": 2,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 768,
            "scaling_factor": 0.18215,
        },
        "text_encoder": {
            "vocab_size": 49408,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 23,
            "num_attention_heads": 16,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 512,
            "layer_norm_eps": 1e-5,
        },
    },
}


def _check_preset(preset: str) -> dict[str, dict[str, Any]]:
    if preset not in PRESETS:
        from cammimic.errors import CammimicError

        raise CammimicError(
            f"random-weights preset '{preset}' is unknown. Try one of {sorted(PRESETS)}"
        )
    return PRESETS[preset]


def _byte_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode table as a vocabulary: every byte alone and at a word's end."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def _word_merges(words) -> list[tuple[str, str]]:
    """BPE merges that join each word into one token, built from its end ("f t</w>", "e ft</w>",
    "l eft</w>"): every intermediate token ends a word, so another word changes only where it
    shares an ending ("coins" becomes "c o i ns</w>", "cup" "c up</w>")."""
    merges: list[tuple[str, str]] = []
    for word in words:
        tail = word[-1] + "</w>"
        for ch in reversed(word[:-1]):
            if (ch, tail) not in merges:
                merges.append((ch, tail))
            tail = ch + tail
    return merges


def build_tokenizer(model_max_length: int = 77, words=()):
    """A CLIPTokenizer over single bytes, no files to download: ids < 514, plus one token for
    each of ``words`` (lower-case ASCII; ids from 514 on) and the word-final pieces its merges need."""
    from transformers import CLIPTokenizer

    vocab = _byte_vocab()
    merges = _word_merges(words)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    if "vocab" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers >= 5
        return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    with tempfile.TemporaryDirectory() as tmp:  # transformers 4: the slow tokenizer reads files
        vocab_file, merges_file = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
        )
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=model_max_length)


def build_components(preset: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """Random-weight ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and ``scheduler``.

    ``torch.manual_seed(seed)`` runs before each model, so every model is reproducible on its own.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = _check_preset(preset)
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(**config["unet"])
    torch.manual_seed(seed)
    vae = AutoencoderKL(**config["vae"])
    torch.manual_seed(seed)
    # the special tokens are the vocabulary's last two entries, as in CLIP's
    special = {
        "bos_token_id": _BYTE_VOCAB - 2,
        "eos_token_id": _BYTE_VOCAB - 1,
        "pad_token_id": _BYTE_VOCAB - 1,
    }
    words = config.get("words", ())
    tokenizer = build_tokenizer(config["text_encoder"]["max_position_embeddings"], words=words)
    text_config = dict(config["text_encoder"])
    if words:
        text_config["vocab_size"] = len(tokenizer.get_vocab())
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config, **special))
    for model in (unet, vae, text_encoder):
        model.eval()
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
    }


#: The frames each preset's model samples at once, written into ``model_index.json`` (the adapter's
#: ``max_frames``; a longer run is sampled in windows): tiny 16, as ModelScope, so the tests' runs of
#: up to 16 frames sample at once; mini its native 8.
MAX_FRAMES = {"tiny": 16, "mini": 8}


def save_components(
    directory, preset: str = "tiny", seed: int = 0, max_frames: int | None = None
) -> Path:
    """Build the preset's components and save them in diffusers layout under ``directory``.

    ``max_frames``: the frames the folder states its model samples at once (``None``: the preset's,
    :data:`MAX_FRAMES`).

    Writes ``unet/ vae/ text_encoder/ tokenizer/ scheduler/`` and a ``model_index.json`` like
    the one of ``damo-vilab/text-to-video-ms-1.7b``; returns the directory.
    """
    import transformers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    components = build_components(preset, seed)
    for name, component in components.items():
        component.save_pretrained(directory / name)
    from cammimic.backbones import MAX_FRAMES_KEY

    provenance = {"preset": preset, "seed": seed, "transformers": transformers.__version__}
    write_model_index(
        directory,
        _cammimic_random_weights=provenance,
        **{MAX_FRAMES_KEY: int(max_frames or MAX_FRAMES.get(preset, 16))},
    )
    return directory


def write_model_index(directory, **provenance) -> Path:
    """``model_index.json`` of a UNet3D text-to-video folder (the layout of
    ``damo-vilab/text-to-video-ms-1.7b``), with ``provenance`` keys recording what made it."""
    import diffusers

    index = {
        "_class_name": "TextToVideoSDPipeline",
        "_diffusers_version": diffusers.__version__,
        **provenance,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    path = Path(directory) / "model_index.json"
    path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return path
