"""Two questions of issue 22 §6, on the tiny random-weight zeroscope-layout model (the tests').

1. Is δ (``finetune.spatial_weight``) inert? Stage 1 routes δ·L_spatial to the spatial LoRA's own
   Adam; Adam is invariant to a constant scale of its gradients (up to ε = 1e-8), so δ can only act
   through gradient clipping. Trains stage 1 for ``--steps`` steps at two δ and compares the spatial
   LoRAs, with clipping off and at the default norm 1.
2. Would pairing the spatial layers with temporal ``attn2`` too change stage 2? After stage 1, the
   stage-2 ``ortho_ratio`` ‖∇(λ·L_ortho)‖/‖∇L_spatial‖ (λ = 0.4, subspace) and L_ortho's value per
   pairing: ``attn1`` (the default) and ``attn1 + attn2``.

    python benchmarks/delta_and_pairs.py [--steps 20]

Figures in docs/method.md (δ, and which temporal layers the orthogonality loss pairs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import attrs
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import cv2
    from cammimic_unet3d.random_weights import save_components
    from conftest import clip, photo

    from cammimic.lora import LoraSpec, inject_loras, lora_state_dict
    from cammimic.plugins import get_host
    from cammimic.training import FinetuneSettings, finetune

    torch.set_num_threads(1)
    weights = save_components(Path(tempfile.mkdtemp()))
    host = get_host()
    frames, _ = clip("pan", 64, 64, frames=8, name="astronaut")
    image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)

    def prepared():
        backbone = host.create("backbone", "zeroscope", {"weights": str(weights)}).load(
            device="cpu"
        )
        layers = host.locate_attention_layers(backbone.name, backbone.denoiser, False)
        inject_loras(backbone.denoiser, layers, LoraSpec(rank=8), LoraSpec(rank=8), init_seed=0)
        embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
        kw = dict(
            reference_latents=backbone.encode_video(frames),
            reference_embeds=embeds[:1],
            image_latents=backbone.encode_video(image[None]),
            image_embeds=embeds[1:],
        )
        return backbone, layers, kw

    print(
        f"1. delta after {args.steps} stage-1 steps (spatial LoRA, max |difference| / max |change|)"
    )
    adam = torch.optim.Adam
    for eps, clip_norm in ((1e-8, 0.0), (1e-8, 1.0), (1e-20, 0.0)):

        class Adam(adam):  # Adam's ε set here (1e-8 is torch's default)
            def __init__(self, params, _eps=eps, **kw):
                super().__init__(params, eps=_eps, **kw)

        torch.optim.Adam = Adam
        runs = {}
        try:
            for delta in (0.5, 0.05):
                backbone, layers, kw = prepared()
                start = lora_state_dict(backbone.denoiser, "spatial")
                s = FinetuneSettings(
                    stage1_steps=args.steps,
                    stage2=False,
                    spatial_weight=delta,
                    max_grad_norm=clip_norm,
                    checkpoint_every=0,
                )
                finetune(backbone, layers, settings=s, progress=False, **kw)
                runs[delta] = (start, lora_state_dict(backbone.denoiser, "spatial"))
        finally:
            torch.optim.Adam = adam
        (s0, a), (_, b) = runs[0.5], runs[0.05]
        for part in ("lora_A", "lora_B"):
            keys = [k for k in a if part in k]
            diff = max(float((a[k] - b[k]).abs().max()) for k in keys)
            change = max(float((a[k] - s0[k]).abs().max()) for k in keys)
            print(
                f"   eps {eps:g}, max_grad_norm {clip_norm:g}, {part}: max|W(δ=0.5) − W(δ=0.05)| = {diff:.3g}, "
                f"max|ΔW| = {change:.3g}, ratio {diff / change:.3g}"
            )

    print(
        f"2. stage 2 after {args.steps} stage-1 steps: pairing attn1 vs attn1 + attn2 (λ = 0.4, subspace)"
    )
    for name in ("attn1", "attn1+attn2"):
        backbone, layers, kw = prepared()
        pairs = list(layers.pairs)
        if name != "attn1":
            pairs += [(sp, t.replace(".attn1.", ".attn2.")) for sp, t in layers.pairs]
        layers = attrs.evolve(layers, pairs=pairs)
        s = FinetuneSettings(stage1_steps=args.steps, stage2_steps=5, checkpoint_every=0)
        losses = finetune(backbone, layers, settings=s, progress=False, **kw).losses
        st2 = [r for r in losses if r["stage"] == 2]
        print(
            f"   {name:12s} {len(pairs):3d} pairs: ortho_ratio first/last {st2[0]['ortho_ratio']:.3g} / "
            f"{st2[-1]['ortho_ratio']:.3g}; L_ortho first/last {st2[0]['ortho']:.3g} / {st2[-1]['ortho']:.3g}; "
            f"L_spatial mean {sum(r['spatial'] for r in st2) / len(st2):.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
