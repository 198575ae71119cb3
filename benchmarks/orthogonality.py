"""How much the orthogonality loss steers stage 2: ‖∇(λ·L_ortho)‖ / ‖∇L_spatial‖ per definition.

Adam moves each parameter by its own gradient's sign and size history, so what decides whether
λ·L_ortho "bites" is how its gradient on the spatial LoRA compares with L_spatial's gradient on
the same parameters. This script measures both pieces where they can be measured cheaply on a
CPU and combines them at zeroscope's real layer widths (no 1.4 B-parameter UNet needed):

1. On the tiny random-weight zeroscope-layout model (the tests' model) it trains stage 1 for
   ``--stage1-steps`` steps with the default learning rate and measures, at the start of stage 2,
   the per-element RMS of the spatial LoRA's gradient of L_spatial (the user image, averaged over
   fixed timesteps and noise), of B (both groups) and of A's drift from its initialisation.
   Adam's per-element step is about the learning rate whatever the layer width, so these
   per-element sizes carry over to wider layers (an assumption, stated in docs/method.md).
   It also runs a few stage-2 steps per definition at λ = 1 and prints the ``ortho_ratio``
   finetuning logs (measured, tiny widths 32/64).
2. At the real widths C = 320, 640, 1280 it builds one C×C spatial/temporal Linear pair, puts
   rank-32 LoRAs on them with peft's initialisation (:func:`cammimic.lora.inject_loras`), sets
   B and A's drift to the sizes measured in 1 (independent random directions), and computes
   the exact gradient of L_ortho (one of zeroscope's 64 pairs: the loss is their mean, so 1/64
   of the pair's term) with :func:`cammimic.training.orthogonality_loss`. ‖∇L_spatial‖ for the
   layer is the measured per-element RMS × √(2·r·C).

    python benchmarks/orthogonality.py [--stage1-steps 60]

Figures in docs/method.md#the-orthogonality-loss and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

WIDTHS = (320, 640, 1280)  # zeroscope's block widths (all 64 pairs are C×C at one of these)
PAIRS = 64  # spatial/temporal pairs in the zeroscope UNet
RANK = 32
TARGET = 0.3  # a ratio that steers without dominating


def tiny_measurements(stage1_steps: int, seed: int = 0) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import cv2
    from cammimic_unet3d.random_weights import save_components
    from conftest import clip, photo

    from cammimic.lora import LoraSpec, inject_loras, lora_parameters, lora_state_dict
    from cammimic.plugins import get_host
    from cammimic.training import FinetuneSettings, finetune

    torch.set_num_threads(1)
    weights = save_components(Path(tempfile.mkdtemp()))
    host = get_host()

    def prepared():
        backbone = host.create("backbone", "zeroscope", {"weights": str(weights)}).load(
            device="cpu"
        )
        layers = host.locate_attention_layers(backbone.name, backbone.denoiser, False)
        inject_loras(backbone.denoiser, layers, LoraSpec(rank=8), LoraSpec(rank=8), init_seed=seed)
        frames, _ = clip("pan", 64, 64, frames=8)
        image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)
        embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
        kw = dict(
            reference_latents=backbone.encode_video(frames),
            reference_embeds=embeds[:1],
            image_latents=backbone.encode_video(image[None]),
            image_embeds=embeds[1:],
        )
        return backbone, layers, kw

    backbone, layers, kw = prepared()
    start = {a: lora_state_dict(backbone.denoiser, a) for a in ("spatial", "temporal")}
    finetune(
        backbone,
        layers,
        settings=FinetuneSettings(
            stage1_steps=stage1_steps, stage2=False, checkpoint_every=0, seed=seed
        ),
        progress=False,
        **kw,
    )
    after = {a: lora_state_dict(backbone.denoiser, a) for a in ("spatial", "temporal")}

    def rms(tensors):
        flat = torch.cat([t.flatten().float() for t in tensors])
        return float(flat.square().mean().sqrt())

    out = {
        "B_rms": rms([v for a in after for k, v in after[a].items() if "lora_B" in k]),
        "A_drift_rms": rms(
            [after[a][k] - start[a][k] for a in after for k in after[a] if "lora_A" in k]
        ),
    }
    # ∇L_spatial on the user image at the start of stage 2 (fixed timesteps and noise)
    params = lora_parameters(backbone.denoiser, "spatial")
    for p in params:
        p.requires_grad_(True)
    sched = backbone.training_scheduler()
    g = torch.Generator().manual_seed(1234)
    img = kw["image_latents"].float()
    for t in (100, 300, 500, 700, 900):
        noise = torch.randn(img.shape, generator=g)
        tt = torch.tensor([t])
        with backbone.temporal_bypass():
            pred = backbone.predict_noise(sched.add_noise(img, noise, tt), tt, kw["image_embeds"])
        (torch.nn.functional.mse_loss(pred.float(), noise) / 5).backward()
    out["grad_rms"] = rms([p.grad for p in params])
    out["grad_rms_B"] = rms(
        [p.grad for n, p in zip(range(len(params)), params, strict=True) if p.shape[1] == 8]
    )
    for p in params:
        p.grad = None
        p.requires_grad_(False)

    # what finetuning logs: a few stage-2 steps per definition at λ = 1
    for definition in ("cosine", "inner", "subspace"):
        backbone, layers, kw = prepared()
        settings = FinetuneSettings(
            stage1_steps=stage1_steps,
            stage2_steps=3,
            orthogonality_weight=1.0,
            orthogonality_definition=definition,
            checkpoint_every=0,
            seed=seed,
        )
        result = finetune(backbone, layers, settings=settings, progress=False, **kw)
        out[f"tiny_ratio_{definition}"] = float(
            np.mean([r["ortho_ratio"] for r in result.losses if r["stage"] == 2])
        )
    return out


def real_width_ratios(measured: dict[str, float], seed: int = 0) -> dict[tuple[str, int], float]:
    from cammimic.components import AttentionLayers
    from cammimic.lora import LoraSpec, inject_loras, lora_parameters
    from cammimic.training import orthogonality_loss

    ratios = {}
    for c in WIDTHS:
        model = torch.nn.ModuleDict(
            {"s": torch.nn.Linear(c, c, bias=False), "t": torch.nn.Linear(c, c, bias=False)}
        )
        layers = AttentionLayers(spatial=["s"], temporal=["t"], pairs=[("s", "t")])
        inject_loras(model, layers, LoraSpec(rank=RANK), LoraSpec(rank=RANK), init_seed=seed)
        g = torch.Generator().manual_seed(seed + c)
        with torch.no_grad():
            for adapter in ("spatial", "temporal"):
                a, b = lora_parameters(model, adapter)
                a.add_(measured["A_drift_rms"] * torch.randn(a.shape, generator=g))
                b.copy_(measured["B_rms"] * torch.randn(b.shape, generator=g))
        params = lora_parameters(model, "spatial")
        spatial_norm = measured["grad_rms"] * math.sqrt(sum(p.numel() for p in params))
        for definition in ("cosine", "inner", "subspace"):
            loss = orthogonality_loss(model, layers.pairs, definition=definition) / PAIRS
            grads = torch.autograd.grad(loss, params)
            ortho_norm = float(torch.sqrt(sum(gr.square().sum() for gr in grads)))
            ratios[(definition, c)] = ortho_norm / spatial_norm
            if definition == "cosine":
                ratios[("cos2 value", c)] = float(loss.detach()) * PAIRS
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1-steps", type=int, default=60)
    args = parser.parse_args()
    measured = tiny_measurements(args.stage1_steps)
    print(
        f"tiny model after stage 1 ({args.stage1_steps} steps, lr 5e-4):",
        ", ".join(f"{k} {v:.3g}" for k, v in measured.items()),
    )
    ratios = real_width_ratios(measured)
    print(f"\nat zeroscope widths, rank {RANK}, per pair (loss = mean of {PAIRS} pairs), λ = 1:")
    print(
        f"{'definition':10s} "
        + " ".join(f"C={c:<12d}" for c in WIDTHS)
        + f" λ for ratio {TARGET} (per width)"
    )
    for definition in ("cosine", "inner", "subspace"):
        r = [ratios[(definition, c)] for c in WIDTHS]
        lam = [TARGET / x if x > 0 else math.inf for x in r]
        print(
            f"{definition:10s} "
            + " ".join(f"{x:<14.3g}" for x in r)
            + " "
            + " ".join(f"{x:.3g}" for x in lam)
        )
    print(
        "cos² value "
        + " ".join(f"{ratios[('cos2 value', c)]:<14.3g}" for c in WIDTHS)
        + " (1/C²: "
        + ", ".join(f"{1 / c**2:.2g}" for c in WIDTHS)
        + ")"
    )


if __name__ == "__main__":
    main()
