"""Is mini competent? Does each motion phrase produce that camera motion?

For every trained single motion phrase and six content prompts, seeded samples of the model are
read back by a motion estimator and checked against the phrase (:mod:`cammimic_mini.competence`):
the direction must match in at least 90 % of samples, with estimator fallbacks on at most 5 % of
frame pairs, before mini is a proving ground. The mean CameraScore against the rendered motion of the phrase is reported too.

The estimator is ``kornia`` (direct photometric alignment) at the frames' own 64 px: mini's VAE
renders soft frames, on which SIFT finds too few matches. Before the samples, the benchmark
measures the estimator's ceiling on this model's frames: held-out clips rendered with known
motion, passed through the bundle's VAE, read back against their truth
(:func:`cammimic_mini.competence.ceiling`); a low ceiling says the estimator, not the model, fails.
Then how much the model uses its captions' motion words, and its content words for comparison
(:func:`cammimic_mini.competence.caption_preference`), which shows long before its samples move.
Per phrase it prints the mean signed move along the phrase's component: opposite phrases with
the same mean move mean the model ignores the direction words.

    python benchmarks/mini.py                                  # the shipped bundle
    python benchmarks/mini.py --weights DIR --seeds 2          # a bundle written by --export
    python benchmarks/mini.py --record                         # also write docs/mini.md
    python benchmarks/mini.py --weights DIR --strip docs/mini/samples-stepN.png   # the samples figure only
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "mini.md"
BEGIN, END = "<!-- mini-competence:begin -->", "<!-- mini-competence:end -->"
CONTENTS = ("a rocket on a launch pad", "galaxies in deep space", "a brick wall", "old coins",
            "a motorcycle in a garage", "a lawn of grass")
#: The captions of the samples figure in docs/mini.md (``--strip``): one row each, seed 0.
STRIP = ("a brick wall, the camera pans left", "old coins, the camera zooms in",
         "a rocket on a launch pad, the camera is static", "a lawn of grass, the camera tilts up")


def strip(backbone, out: Path, *, steps: int, guidance_scale: float) -> Path:
    """A PNG of the 8 frames (columns) of one seed-0 sample per :data:`STRIP` caption (rows), 2x."""
    from PIL import Image

    from cammimic.sampling import sample

    rows = []
    for caption in STRIP:
        z = sample(backbone, caption, num_frames=8, width=64, height=64, steps=steps,
                   guidance_scale=guidance_scale, seed=0, progress=False)
        rows.append(np.concatenate(list(backbone.decode_latents(z)), axis=1))
    image = Image.fromarray(np.concatenate(rows, axis=0))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(out, optimize=True)
    return out


def main(argv=None) -> int:
    """Run the check; bad weights or options end in one ``Error:`` line and exit status 2."""
    from cammimic.errors import CammimicError

    try:
        return _check(argv)
    except CammimicError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


def _check(argv) -> int:
    import cammimic_mini
    import torch
    from cammimic_mini import competence, data
    from cammimic_unet3d.backbone import UNet3DAdapter

    from cammimic.api import score_motions
    from cammimic.motion import MotionEstimate
    from cammimic.plugins import get_host
    from cammimic.sampling import sample

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(cammimic_mini.WEIGHTS))
    p.add_argument("--seeds", type=int, default=2, help="samples per (phrase, content)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--guidance-scale", type=float, default=9.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--estimator", default="kornia", help="motion estimator plugin (default: kornia)")
    p.add_argument("--upsample", type=int, default=None,
                   help="read frames enlarged this many times (default: 1 for kornia, 4 for others)")
    p.add_argument("--record", action="store_true")
    p.add_argument("--strip", type=Path, default=None, metavar="PNG",
                   help="only write the samples figure (one row per caption of STRIP) to PNG")
    args = p.parse_args(argv)
    if args.upsample is not None and args.upsample < 1:
        p.error(f"--upsample must be at least 1, got {args.upsample}")
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = UNet3DAdapter(name="mini", default_weights=args.weights, default_size=(64, 64),
                             default_num_frames=8).load(device="cpu")
    if args.strip is not None:
        print(strip(backbone, args.strip, steps=args.steps, guidance_scale=args.guidance_scale))
        return 0
    estimator = get_host().create("motion_estimator", args.estimator, {})
    upsample = args.upsample or (1 if args.estimator == "kornia" else 4)
    started = time.perf_counter()
    cal = competence.ceiling(backbone, estimator, upsample=upsample)
    print(f"estimator ceiling ({args.estimator}, x{upsample}): direction {cal['hits']}/{cal['clips']} and "
          f"fallbacks {cal['fallbacks']}/{cal['pairs']} on held-out clips through the bundle's VAE", flush=True)
    # t = 950: where the caption's direction is worth most to the loss (benchmarks/mini_direction_signal.py)
    pref = competence.caption_preference(backbone, clips=96, timesteps=(400, 600, 850, 950))
    pref_text = ", ".join(f"t = {t}: {v:.0%}" for t, v in pref.items())
    print(f"own motion caption denoises better than the opposite motion's ({pref_text}; 96 clips, 50 % = ignored)",
          flush=True)
    content_pref = competence.caption_preference(backbone, clips=48, timesteps=(400, 600, 850), swap="content")
    content_text = ", ".join(f"t = {t}: {v:.0%}" for t, v in content_pref.items())
    print(f"own content caption denoises better than another photograph's ({content_text}; 48 clips)", flush=True)
    rows = []
    for phrase in data.MOTIONS:
        truth = MotionEstimate(data.motion_path(phrase), data.WIDTH, data.HEIGHT, "rendered")
        hits = fallbacks = pairs = 0
        scores, along = [], []
        component = next(iter(competence.expected(phrase)), None)  # the phrase's (first) component
        for content in CONTENTS:
            for seed in range(args.seeds):
                z = sample(backbone, data.caption(content, phrase), num_frames=data.FRAMES, width=data.WIDTH,
                           height=data.HEIGHT, steps=args.steps, guidance_scale=args.guidance_scale, seed=seed,
                           progress=False)
                motion = competence.estimate_upsampled(estimator, backbone.decode_latents(z), upsample)
                hits += competence.shows(phrase, motion)
                if component is not None:
                    along.append(competence.moves(motion)[component])
                fallbacks += len(motion.fallbacks)
                pairs += data.FRAMES - 1
                result = score_motions(truth, motion)
                if result.valid:  # a clip the estimator could not read has no score, not a 0
                    scores.append(result.score)
        n = len(CONTENTS) * args.seeds
        mean = f"{np.mean(scores):.4f} ({len(scores)}/{n} valid)" if scores else f"none valid (0/{n})"
        # The mean signed move along the phrase's component, whatever the threshold: "pans left"
        # and "pans right" giving the same value at the same seeds means the words are ignored.
        move = f"{component} {np.mean(along):+.3f}" if along else "-"
        rows.append((phrase, hits / n, fallbacks / pairs, mean, n, move))
        print(f"{phrase:24s} direction {hits}/{n}  fallbacks {fallbacks}/{pairs}  mean move {move}  "
              f"CameraScore {mean}", flush=True)
    total = sum(r[1] * r[4] for r in rows) / sum(r[4] for r in rows)
    fb = float(np.mean([r[2] for r in rows]))
    ok = total >= 0.9 and fb <= 0.05
    verdict = "competent" if ok else "NOT competent"
    print(f"overall: direction {total:.1%}, fallbacks {fb:.1%} -> {verdict} "
          f"({time.perf_counter() - started:.0f} s)")
    if args.record:
        import json

        index = json.loads((Path(args.weights) / "model_index.json").read_text())
        meta = index.get("_cammimic_mini", {})
        lines = [BEGIN, "",
                 f"Bundle: {meta.get('unet_steps', '?')} UNet steps; {len(CONTENTS)} contents x {args.seeds} seeds per "
                 f"phrase, {args.steps} DDIM steps, guidance scale {args.guidance_scale}; estimator "
                 f"`{args.estimator}` on frames x{upsample}; "
                 f"{platform.processor() or platform.machine()}, torch {torch.__version__}.", "",
                 f"Estimator ceiling: held-out clips rendered with known motion and passed through the "
                 f"bundle's VAE read back with direction {cal['hits']}/{cal['clips']} and fallbacks "
                 f"{cal['fallbacks']}/{cal['pairs']} frame pairs.", "",
                 f"Motion words: the clip's own caption denoises better than the caption naming the opposite "
                 f"motion in {pref_text} of 96 fresh training-photograph clips (50 % = the words are ignored; "
                 f"`competence.caption_preference`); for the content words (another training photograph named "
                 f"instead): {content_text} of 48.", "",
                 "| phrase | direction matches | fallback pairs | mean move (cumulative) | CameraScore vs rendered |",
                 "|---|---|---|---|---|"]
        lines += [f"| {r[0]} | {r[1]:.0%} | {r[2]:.1%} | {r[5]} | {r[3]} |" for r in rows]
        lines += ["", f"**Overall: direction {total:.1%}, fallbacks {fb:.1%}: {verdict}** (bar: >= 90 %, <= 5 %).",
                  "", END]
        text = DOC.read_text(encoding="utf-8")
        start, end = text.index(BEGIN), text.index(END) + len(END)
        DOC.write_text(text[:start] + "\n".join(lines) + text[end:], encoding="utf-8")
        print(f"recorded in {DOC}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
