"""Is mini a base model CamMimic can be measured on? (the bar of docs/mini.md)

CamMimic never asks its base model to follow a motion word: the reference's motion reaches the
output through the temporal LoRA and homography guidance. What it needs of a base model is frames
that form one scene seen by a moving camera, readable by the motion estimator; content that
follows the prompt; and motion of realistic size, so that an untreated model's motion differs
from a reference's and the method has something to correct. So, over six content prompts x every
single motion phrase of the training captions x ``--seeds`` seeds, sampled at the settings the
method benchmark uses (:data:`cammimic_mini.SAMPLING`), read by the estimator it uses (kornia at
64 px):

* estimator fallbacks on at most 5 % of frame pairs;
* content preference at least 90 % at every timestep measured
  (:func:`cammimic_mini.lab.competence.caption_preference` with ``swap="content"``);
* motion kind: samples captioned "is static" move less than a quarter of what samples with a
  motion phrase move, and the motion-phrase samples move at least a third of the training speed
  (mean resolution-free motion per frame pair, :func:`cammimic_mini.lab.competence.motion_size`;
  the training speed is the same measure on the rendered phrases at normal speed).

Reported, not required: direction agreement with the words (the old bar: the seed, not the
caption, decides the direction; docs/mini.md), the mean CameraScore against the rendered phrase,
the held-out VAE PSNR, the estimator's ceiling on held-out clips through the bundle's VAE, and the
motion-word preference. ``--guidance-scale`` takes a comma list: each scale is measured in turn
(how mini's CFG scale was chosen).

    python benchmarks/mini.py                                  # the shipped bundle
    python benchmarks/mini.py --weights DIR --guidance-scale 1,3,5,9
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
CONTENTS = (
    "a rocket on a launch pad",
    "galaxies in deep space",
    "a brick wall",
    "old coins",
    "a motorcycle in a garage",
    "a lawn of grass",
)
#: The captions of the samples figure in docs/mini.md (``--strip``): one row each, seed 0.
STRIP = (
    "a brick wall, the camera pans left",
    "old coins, the camera zooms in",
    "a rocket on a launch pad, the camera is static",
    "a lawn of grass, the camera tilts up",
)


def strip(backbone, out: Path, *, steps: int, guidance_scale: float) -> Path:
    """A PNG of the 8 frames (columns) of one seed-0 sample per :data:`STRIP` caption (rows), 2x."""
    from PIL import Image

    from cammimic.sampling import sample

    rows = []
    for caption in STRIP:
        z = sample(
            backbone,
            caption,
            num_frames=8,
            width=64,
            height=64,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=0,
            progress=False,
        )
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


def _bar(
    backbone, estimator, upsample: int, *, seeds: int, steps: int, guidance_scale: float
) -> dict:
    """Sample every (single phrase, content, seed) and read it back: the figures of one setting."""
    from cammimic_mini.lab import competence, data

    from cammimic.api import score_motions
    from cammimic.motion import MotionEstimate
    from cammimic.sampling import sample

    rows = []
    for phrase in data.MOTIONS:
        truth = MotionEstimate(data.motion_path(phrase), data.WIDTH, data.HEIGHT, "rendered")
        hits = fallbacks = pairs = 0
        scores, along, sizes = [], [], []
        component = next(iter(competence.expected(phrase)), None)  # the phrase's (first) component
        for content in CONTENTS:
            for seed in range(seeds):
                z = sample(
                    backbone,
                    data.caption(content, phrase),
                    num_frames=data.FRAMES,
                    width=data.WIDTH,
                    height=data.HEIGHT,
                    steps=steps,
                    guidance_scale=guidance_scale,
                    seed=seed,
                    progress=False,
                )
                motion = competence.estimate_upsampled(
                    estimator, backbone.decode_latents(z), upsample
                )
                hits += competence.shows(phrase, motion)
                if component is not None:
                    along.append(competence.moves(motion)[component])
                size = competence.motion_size(motion)
                if np.isfinite(size):
                    sizes.append(size)
                fallbacks += len(motion.fallbacks)
                pairs += data.FRAMES - 1
                result = score_motions(truth, motion)
                if result.valid:  # a clip the estimator could not read has no score, not a 0
                    scores.append(result.score)
        n = len(CONTENTS) * seeds
        rows.append(
            {
                "phrase": phrase,
                "n": n,
                "hits": hits,
                "fallbacks": fallbacks,
                "pairs": pairs,
                "scores": scores,
                "move": f"{component} {np.mean(along):+.3f}" if along else "-",
                "size": float(np.mean(sizes)) if sizes else float("nan"),
                "truth_size": competence.motion_size(truth),
            }
        )
    moving = [r for r in rows if r["phrase"] != "is static"]
    static = next(r for r in rows if r["phrase"] == "is static")
    out = {
        "guidance_scale": guidance_scale,
        "steps": steps,
        "rows": rows,
        "fallback_share": sum(r["fallbacks"] for r in rows) / sum(r["pairs"] for r in rows),
        "moving_size": float(np.mean([r["size"] for r in moving])),
        "static_size": static["size"],
        "training_size": float(np.mean([r["truth_size"] for r in moving])),
        "direction": sum(r["hits"] for r in moving) / sum(r["n"] for r in moving),
        "camera_score": float(np.mean([s for r in rows for s in r["scores"]]))
        if any(r["scores"] for r in rows)
        else float("nan"),
        "valid": sum(len(r["scores"]) for r in rows),
        "samples": sum(r["n"] for r in rows),
    }
    out["static_ratio"] = out["static_size"] / out["moving_size"]
    out["speed_ratio"] = out["moving_size"] / out["training_size"]
    return out


def _verdict(fig: dict, content_pref: dict) -> tuple[bool, list[str]]:
    """The bar: each requirement with its figure and whether it holds."""
    checks = [
        (fig["fallback_share"] <= 0.05, f"fallbacks {fig['fallback_share']:.1%} (<= 5 %)"),
        (
            min(content_pref.values()) >= 0.9,
            f"content preference {min(content_pref.values()):.0%} at worst (>= 90 %)",
        ),
        (
            fig["static_ratio"] < 0.25,
            f"'is static' moves {fig['static_ratio']:.2f} x the motion phrases (< 0.25)",
        ),
        (
            fig["speed_ratio"] >= 1 / 3,
            f"motion phrases move {fig['speed_ratio']:.2f} x the training speed (>= 0.33)",
        ),
    ]
    return all(ok for ok, _ in checks), [
        ("pass: " if ok else "FAIL: ") + text for ok, text in checks
    ]


def _check(argv) -> int:
    import cammimic_mini
    import torch
    from cammimic_mini.lab import competence
    from cammimic_unet3d.backbone import UNet3DAdapter

    from cammimic.plugins import get_host

    defaults = cammimic_mini.SAMPLING
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(cammimic_mini.WEIGHTS))
    p.add_argument("--seeds", type=int, default=2, help="samples per (phrase, content)")
    p.add_argument(
        "--steps", type=int, default=defaults["steps"], help="DDIM steps (default: mini's)"
    )
    p.add_argument(
        "--guidance-scale",
        default=str(defaults["guidance_scale"]),
        help="CFG scale, or a comma list of scales to measure in turn (default: mini's)",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--estimator", default="kornia", help="motion estimator plugin (default: kornia)"
    )
    p.add_argument(
        "--upsample",
        type=int,
        default=None,
        help="read frames enlarged this many times (default: 1 for kornia, 4 for others)",
    )
    p.add_argument("--record", action="store_true")
    p.add_argument(
        "--strip",
        type=Path,
        default=None,
        metavar="PNG",
        help="only write the samples figure (one row per caption of STRIP) to PNG",
    )
    args = p.parse_args(argv)
    if args.upsample is not None and args.upsample < 1:
        p.error(f"--upsample must be at least 1, got {args.upsample}")
    try:
        scales = [float(v) for v in args.guidance_scale.split(",")]
    except ValueError:
        p.error(
            f"--guidance-scale must be a number or a comma list of numbers, got {args.guidance_scale!r}"
        )
    if args.seeds < 1 or args.steps < 1:
        p.error("--seeds and --steps must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = UNet3DAdapter(
        name="mini", default_weights=args.weights, default_size=(64, 64), default_num_frames=8
    ).load(device="cpu")
    if args.strip is not None:
        print(strip(backbone, args.strip, steps=args.steps, guidance_scale=scales[0]))
        return 0
    estimator = get_host().create("motion_estimator", args.estimator, {})
    upsample = args.upsample or (1 if args.estimator == "kornia" else 4)
    started = time.perf_counter()
    cal = competence.ceiling(backbone, estimator, upsample=upsample)
    print(
        f"estimator ceiling ({args.estimator}, x{upsample}): direction {cal['hits']}/{cal['clips']} and "
        f"fallbacks {cal['fallbacks']}/{cal['pairs']} on held-out clips through the bundle's VAE "
        f"(their PSNR {cal['psnr']:.2f} dB)",
        flush=True,
    )
    content_pref = competence.caption_preference(
        backbone, clips=48, timesteps=(400, 600, 850), swap="content"
    )
    content_text = ", ".join(f"t = {t}: {v:.0%}" for t, v in content_pref.items())
    print(
        f"own content caption denoises better than another photograph's ({content_text}; 48 clips)",
        flush=True,
    )
    pref = competence.caption_preference(backbone, clips=48, timesteps=(600, 950))
    pref_text = ", ".join(f"t = {t}: {v:.0%}" for t, v in pref.items())
    print(
        f"own motion caption denoises better than the opposite motion's ({pref_text}; 48 clips, 50 % = ignored)",
        flush=True,
    )
    figures = []
    for scale in scales:
        fig = _bar(
            backbone, estimator, upsample, seeds=args.seeds, steps=args.steps, guidance_scale=scale
        )
        ok, lines = _verdict(fig, content_pref)
        fig["ok"], fig["lines"] = ok, lines
        figures.append(fig)
        for r in fig["rows"]:
            mean = (
                f"{np.mean(r['scores']):.4f} ({len(r['scores'])}/{r['n']})"
                if r["scores"]
                else f"none valid (0/{r['n']})"
            )
            print(
                f"  cfg {scale:g}  {r['phrase']:24s} motion/pair {r['size']:.3f} (rendered {r['truth_size']:.3f})  "
                f"fallbacks {r['fallbacks']}/{r['pairs']}  direction {r['hits']}/{r['n']}  mean move {r['move']}  "
                f"CameraScore {mean}",
                flush=True,
            )
        print(
            f"cfg {scale:g}, {args.steps} steps: "
            + "; ".join(lines)
            + f" -> {'PASSES' if ok else 'does NOT pass'} (direction {fig['direction']:.0%}, "
            f"CameraScore {fig['camera_score']:.4f}, {fig['valid']}/{fig['samples']} valid)",
            flush=True,
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.record:
        import json

        index = json.loads((Path(args.weights) / "model_index.json").read_text())
        meta = index.get("_cammimic_mini", {})
        lines = [
            BEGIN,
            "",
            f"Bundle: {meta.get('unet_steps', '?')} UNet steps (EMA); {len(CONTENTS)} contents x {args.seeds} "
            f"seeds x {len(figures[0]['rows'])} phrases = {figures[0]['samples']} samples per setting, "
            f"{args.steps} DDIM steps; estimator `{args.estimator}` on frames x{upsample}; "
            f"{platform.processor() or platform.machine()}, torch {torch.__version__}. "
            f"Reproduce: `python benchmarks/mini.py --guidance-scale {args.guidance_scale} --seeds {args.seeds} "
            f"--steps {args.steps}{' --weights DIR' if Path(args.weights) != cammimic_mini.WEIGHTS else ''}`.",
            "",
            f"Content words: the clip's own caption denoises better than one naming another training "
            f'photograph in {content_text} of 48 clips (`competence.caption_preference(swap="content")`). '
            f"Motion words (reported): {pref_text} of 48 (50 % = ignored).",
            "",
            f"Held-out VAE PSNR {cal['psnr']:.2f} dB; the estimator reads held-out clips through the VAE with "
            f"direction {cal['hits']}/{cal['clips']} and fallbacks {cal['fallbacks']}/{cal['pairs']} pairs.",
            "",
            "| CFG scale | fallbacks (<= 5 %) | 'is static' / motion phrases (< 0.25) | motion / training speed (>= 0.33) "
            "| direction agreement (reported) | CameraScore vs rendered (reported) | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for fig in figures:
            lines.append(
                f"| {fig['guidance_scale']:g} | {fig['fallback_share']:.1%} | {fig['static_ratio']:.2f} "
                f"({fig['static_size']:.3f} / {fig['moving_size']:.3f}) | {fig['speed_ratio']:.2f} "
                f"({fig['moving_size']:.3f} / {fig['training_size']:.3f}) | {fig['direction']:.0%} | "
                f"{fig['camera_score']:.4f} ({fig['valid']}/{fig['samples']} valid) | "
                f"{'passes' if fig['ok'] else 'fails'} |"
            )
        lines += [
            "",
            "Per phrase at mini's CFG scale "
            f"({defaults['guidance_scale']:g}; motion per frame pair, resolution-free):",
            "",
            "| phrase | motion / pair | rendered | fallback pairs | direction | mean move | CameraScore |",
            "|---|---|---|---|---|---|---|",
        ]
        chosen = next(
            (f for f in figures if f["guidance_scale"] == defaults["guidance_scale"]), figures[0]
        )
        for r in chosen["rows"]:
            mean = (
                f"{np.mean(r['scores']):.4f} ({len(r['scores'])}/{r['n']})"
                if r["scores"]
                else "none valid"
            )
            lines.append(
                f"| {r['phrase']} | {r['size']:.3f} | {r['truth_size']:.3f} | {r['fallbacks']}/{r['pairs']} | "
                f"{r['hits']}/{r['n']} | {r['move']} | {mean} |"
            )
        lines += ["", END]
        text = DOC.read_text(encoding="utf-8")
        start, end = text.index(BEGIN), text.index(END) + len(END)
        DOC.write_text(text[:start] + "\n".join(lines) + text[end:], encoding="utf-8")
        print(f"recorded in {DOC}")
    return (
        0
        if all(f["ok"] for f in figures if f["guidance_scale"] == defaults["guidance_scale"])
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
