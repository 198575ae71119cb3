"""One stage-1 step's LoRA gradients in float16 / bfloat16 against float32, at ModelScope's latent size.

Builds the tiny random-weight zeroscope-layout model (the tests' model), puts rank-4 LoRAs on it
and runs one stage-1 step (:func:`cammimic.training.finetune`) on seeded random latents of
``--frames`` x ``--size`` x ``--size`` (ModelScope: 16 x 32 x 32; zeroscope: 16 x 40 x 72), with
the frozen denoiser in each dtype. It records the gradients the optimisers see (unscaled, before
clipping) and prints their relative L2 error against float32 and the share of gradients that are
exactly zero where float32's are not, for:

* ``float16 plain``: the old path, a plain backward through the float16 UNet (no autocast, no
  loss scaling);
* ``float16``: autocast + ``torch.amp.GradScaler`` (what finetuning does now);
* ``bfloat16``: autocast, no scaler.

float16 convolutions are slow on a CPU: the 16 x 32 x 32 run takes a few minutes.

    python benchmarks/mixed_precision.py [--frames 16 --size 32] [--zero-b]

Figures in docs/method.md#mixed-precision and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument(
        "--zero-b", action="store_true", help="keep B at zero (the LoRAs as injected)"
    )
    args = parser.parse_args()

    from cammimic_unet3d.random_weights import save_components

    from cammimic import training
    from cammimic.lora import LoraSpec, inject_loras, lora_parameters
    from cammimic.plugins import get_host

    torch.set_num_threads(1)
    weights = save_components(Path(tempfile.mkdtemp()))
    host = get_host()
    mixed_precision, clip_grad = training.mixed_precision, training._clip

    def gradients(dtype, precision=None):
        backbone = host.create("backbone", "zeroscope", {"weights": str(weights)}).load(
            device="cpu"
        )
        if dtype != torch.float32:
            backbone.denoiser.to(dtype)
            backbone.dtype = dtype
        layers = host.locate_attention_layers(backbone.name, backbone.denoiser, False)
        inject_loras(backbone.denoiser, layers, LoraSpec(rank=4), LoraSpec(rank=4), init_seed=0)
        g = torch.Generator().manual_seed(5)
        if not args.zero_b:  # a LoRA some steps into training: B != 0, so A gets gradients too
            with torch.no_grad():
                for p in lora_parameters(backbone.denoiser, "spatial") + lora_parameters(
                    backbone.denoiser, "temporal"
                ):
                    if p.shape[1] == 4:
                        p.copy_(1e-2 * torch.randn(p.shape, generator=g))
        latents = torch.randn(1, 4, args.frames, args.size, args.size, generator=g)
        embeds = torch.randn(1, 77, 32, generator=g)
        got = []

        def record(params, max_norm):
            got.append(torch.cat([p.grad.flatten().clone() for p in params]))
            return clip_grad(params, max_norm)

        training._clip = record
        if precision is not None:
            training.mixed_precision = lambda d: precision
        started = time.perf_counter()
        try:
            training.finetune(
                backbone,
                layers,
                reference_latents=latents,
                reference_embeds=embeds,
                progress=False,
                settings=training.FinetuneSettings(
                    stage1_steps=1, stage2=False, checkpoint_every=0, spatial_mask_probability=0.0
                ),
            )
        finally:
            training._clip, training.mixed_precision = clip_grad, mixed_precision
        return torch.cat(got), time.perf_counter() - started

    reference, seconds = gradients(torch.float32)
    print(
        f"latents 4x{args.frames}x{args.size}x{args.size}, B {'zero' if args.zero_b else 'random'}; "
        f"float32 step {seconds:.1f} s"
    )
    cases = [
        (
            "float16 plain",
            torch.float16,
            training._Precision(torch.float16, autocast=False, scaler=False),
        ),
        ("float16", torch.float16, None),
        ("bfloat16", torch.bfloat16, None),
    ]
    for name, dtype, precision in cases:
        grads, seconds = gradients(dtype, precision)
        error = float((grads - reference).norm() / reference.norm())
        zeros = float(
            ((grads == 0) & (reference != 0)).float().sum() / (reference != 0).float().sum()
        )
        print(
            f"{name:14s} relative L2 error {100 * error:6.2f} %   flushed to zero {100 * zeros:.2f} %   "
            f"step {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
