"""Where CamMimic's spatial and temporal LoRAs live in Wan's full 3D attention: a measurement.

Wan has no temporal modules: each block has one self-attention over all ``T'·h·w`` tokens.
This script puts both LoRAs on the tiny random-weight Wan (``cammimic_wan.random_weights``,
float32, CPU) and trains them the CamMimic way on a real photograph moved by a known pan:

- the **spatial** LoRA on single-frame "image mode" passes (one frame encoded alone = one latent
  frame, so self-attention is spatial only) with the temporal LoRA at scale 0;
- the **temporal** LoRA on the whole clip (3 latent frames), the spatial LoRA on beside it
  except on 20 % of the steps (CamMimic's spatial masking): stage 1 as ``cammimic.training`` runs it.

It compares two placements:

- ``shared``: both LoRAs on ``attn1.{to_q,to_k,to_v,to_out.0}``;
- ``qk``: spatial LoRA on all four, temporal LoRA on ``to_q``/``to_k`` only (where attention
  goes, so which token of the next frame a token follows; ``to_v``/``to_out.0`` carry content):
  what ``cammimic_wan.locator`` places;
- ``split``: temporal LoRA on ``to_q``/``to_k``, spatial on ``to_v``/``to_out.0`` — disjoint
  layers, as the UNet3D split had.

and reports, for each trained LoRA, how much it changes the two parts of the clip prediction
``f(clip) = P + D``: ``P`` = each latent frame denoised alone (block-diagonal attention; RoPE is
relative, so this is the clip pass without cross-frame attention) and ``D`` = what cross-frame
attention adds. A spatial (appearance) LoRA should move ``P`` more than ``D``; a temporal
(motion) LoRA should move ``D`` relative to its size more than the spatial one does.
Also: gradient routing (exact zeros) and the cosine between the image-mode and whole-clip
gradients of the shared base weights.

    python benchmarks/wan_seam.py [--steps 60] [--seeds 3]

Prints one JSON object; docs/wan.md records a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PLACEMENTS = ("shared", "qk", "split")


def _photo_clip(frames: int, size: int):
    import cv2
    from skimage import data

    from cammimic.synthetic import camera_path, render_camera_motion

    img = cv2.resize(data.astronaut(), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    h = camera_path("pan", frames, size, size, magnitude=3.0)
    return render_camera_motion(img, h, size, size)


def _inject(model, spatial, temporal, rank, seed):
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import set_adapter

    torch.manual_seed(seed)
    for name, targets in (("spatial", spatial), ("temporal", temporal)):
        regex = "^(?:" + "|".join(t.replace(".", r"\.") for t in targets) + ")$"
        cfg = LoraConfig(r=rank, lora_alpha=rank, target_modules=regex, init_lora_weights=True)
        inject_adapter_in_model(cfg, model, adapter_name=name)
    set_adapter(model, ["spatial", "temporal"])
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)


def _params(model, adapter):
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n]


def _scales(model, **scales):
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        if isinstance(m, LoraLayer):
            for a, s in scales.items():
                if a in m.scaling:
                    m.scaling[a] = s * m.lora_alpha[a] / m.r[a]


def _parts(bb, z, t, emb):
    """``(P, D)`` of the clip prediction: frames alone, and what cross-frame attention adds."""
    import torch

    with torch.no_grad():
        full = bb.predict_noise(z, t, emb)
        alone = torch.cat(
            [bb.predict_noise(z[:, :, j : j + 1], t, emb) for j in range(z.shape[2])], dim=2
        )
    return alone, full - alone


def run(
    steps: int, seed: int, placement: str, bb_dir: Path, rank: int = 4, lr: float = 2e-3
) -> dict:
    import torch
    from cammimic_wan.backbone import WanAdapter
    from cammimic_wan.locator import wan_lora_targets

    bb = WanAdapter().load(str(bb_dir), device="cpu")
    model = bb.denoiser
    frames = _photo_clip(9, 128)
    z_clip = bb.encode_video(frames)  # (1, 16, 3, 16, 16)
    z_frames = bb.encode_frames(frames)  # (9, 16, 1, 16, 16)
    emb = bb.encode_prompt(["an astronaut, camera motion of sks"])
    targets, _ = wan_lora_targets(model)  # the four self-attention projections of each block
    if placement == "shared":
        spatial, temporal = targets, targets
    elif placement == "qk":
        spatial = targets
        temporal = [n for n in targets if n.endswith(("to_q", "to_k"))]
    else:
        spatial = [n for n in targets if n.endswith(("to_v", "to_out.0"))]
        temporal = [n for n in targets if n.endswith(("to_q", "to_k"))]
    _inject(model, spatial, temporal, rank, seed)
    gen = torch.Generator().manual_seed(seed)

    def loss_on(z):
        t = bb.sample_training_timesteps(1, gen)
        noisy, target = bb.noise_and_target(z, torch.randn(z.shape, generator=gen), t)
        return torch.nn.functional.mse_loss(bb.predict_noise(noisy, t, emb), target)

    # 1. routing: which adapter an image-mode / a masked clip pass can reach (B=0 at init: perturb B)
    with torch.no_grad():
        for p in _params(model, "spatial") + _params(model, "temporal"):
            p.add_(torch.randn(p.shape, generator=gen) * 1e-2)
    routing = {}
    for what, z, sc in (
        ("image", z_frames[:1], {"spatial": 1.0, "temporal": 0.0}),
        ("clip_masked", z_clip, {"spatial": 0.0, "temporal": 1.0}),
    ):
        _scales(model, **sc)
        model.zero_grad(set_to_none=True)
        loss_on(z).backward()
        routing[what] = {
            a: float(
                sum(
                    float(p.grad.abs().sum()) if p.grad is not None else 0.0
                    for p in _params(model, a)
                )
            )
            for a in ("spatial", "temporal")
        }
    model.zero_grad(set_to_none=True)

    # 2. gradient overlap on the shared base weights (image mode vs whole clip, and image vs image)
    base = [m.base_layer.weight for n, m in model.named_modules() if n in set(targets)]
    _scales(model, spatial=0.0, temporal=0.0)
    for w in base:
        w.requires_grad_(True)

    def grad_of(z, n=6):
        gs = None
        for _ in range(n):
            g = torch.autograd.grad(loss_on(z), base)
            gs = g if gs is None else [a + b for a, b in zip(gs, g)]
        return torch.cat([g.flatten() for g in gs])

    g_img_a = grad_of(z_frames[1:2])
    g_img_b = grad_of(z_frames[5:6])
    g_clip = grad_of(z_clip)
    cos = torch.nn.functional.cosine_similarity
    overlap = {
        "image_vs_clip": float(cos(g_img_a, g_clip, dim=0)),
        "image_vs_image": float(cos(g_img_a, g_img_b, dim=0)),
    }
    for w in base:
        w.requires_grad_(False)

    # 3. train each LoRA its own way (B back to zero: a fresh start)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.zero_()
    t_fix = torch.tensor([600.0])
    noise = torch.randn(z_clip.shape, generator=torch.Generator().manual_seed(123))
    probe, _ = bb.noise_and_target(z_clip, noise, t_fix)
    _scales(model, spatial=0.0, temporal=0.0)
    P0, D0 = _parts(bb, probe, t_fix, emb)
    # CamMimic's stage 1: each step the temporal LoRA learns from the whole clip (the spatial LoRA
    # on, or off with probability 0.2) and the spatial LoRA from one frame in image mode.
    opts = {a: torch.optim.Adam(_params(model, a), lr=lr) for a in ("spatial", "temporal")}
    hist = {"spatial": [], "temporal": []}
    for _ in range(steps):
        masked = bool(torch.rand((), generator=gen) < 0.2)
        _scales(model, spatial=0.0 if masked else 1.0, temporal=1.0)
        loss_t = loss_on(z_clip)
        torch.autograd.backward(loss_t, inputs=_params(model, "temporal"))
        _scales(model, spatial=1.0, temporal=0.0)
        loss_s = loss_on(z_frames[int(torch.randint(0, 9, (1,), generator=gen))][None])
        torch.autograd.backward(loss_s, inputs=_params(model, "spatial"))
        for opt in opts.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        hist["temporal"].append(float(loss_t))
        hist["spatial"].append(float(loss_s))
    k = max(1, steps // 5)
    losses = {
        a: {"first": float(np.mean(h[:k])), "last": float(np.mean(h[-k:]))} for a, h in hist.items()
    }
    effect = {}
    for adapter, other in (("spatial", "temporal"), ("temporal", "spatial")):
        _scales(model, **{adapter: 1.0, other: 0.0})
        P, D = _parts(bb, probe, t_fix, emb)
        dP = float((P - P0).norm() / P0.norm())
        dD = float((D - D0).norm() / D0.norm())
        effect[adapter] = {
            "rel_change_per_frame_P": dP,
            "rel_change_cross_frame_D": dD,
            "cross_frame_share": float((D - D0).norm() / ((P - P0).norm() + (D - D0).norm())),
        }
    _scales(model, spatial=1.0, temporal=1.0)
    return {
        "placement": placement,
        "seed": seed,
        "routing_grad_abs_sum": routing,
        "grad_cosine": overlap,
        "losses": losses,
        "effect": effect,
        "D0_over_P0": float(D0.norm() / P0.norm()),
    }


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from cammimic_wan.random_weights import save_components

    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_components(Path(tmp) / "tiny-wan", "tiny", seed=0)
        for placement in PLACEMENTS:
            for seed in range(args.seeds):
                results.append(run(args.steps, seed, placement, weights))
    summary = {}
    for placement in PLACEMENTS:
        rows = [r for r in results if r["placement"] == placement]
        summary[placement] = {
            f"{a}.{k}": round(float(np.mean([r["effect"][a][k] for r in rows])), 4)
            for a in ("spatial", "temporal")
            for k in ("rel_change_per_frame_P", "rel_change_cross_frame_D", "cross_frame_share")
        }
        for a in ("spatial", "temporal"):
            summary[placement][f"{a}.loss_drop"] = round(
                float(
                    np.mean([1 - r["losses"][a]["last"] / r["losses"][a]["first"] for r in rows])
                ),
                4,
            )
        summary[placement]["grad_cosine.image_vs_clip"] = round(
            float(np.mean([r["grad_cosine"]["image_vs_clip"] for r in rows])), 4
        )
        summary[placement]["grad_cosine.image_vs_image"] = round(
            float(np.mean([r["grad_cosine"]["image_vs_image"] for r in rows])), 4
        )
    out = {
        "setup": {
            "model": "cammimic_wan tiny preset (random weights), float32, CPU, 1 thread",
            "clip": "skimage astronaut, pan, 9 frames 128x128 -> latents 3x16x16",
            "steps": args.steps,
            "seeds": args.seeds,
            "lora_rank": 4,
            "lr": 2e-3,
        },
        "summary": summary,
        "runs": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
