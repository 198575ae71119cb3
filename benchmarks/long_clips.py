"""Longer than the backbone's clip (issue 25 §4): how the seams between Phase 2's windows look.

Renders a reference of ``--frames`` frames (default 32: four of mini's 8-frame windows) of a
scikit-image photograph under a known camera move (cammimic.synthetic, as benchmarks/mini_method.py
does), runs ``cammimic run`` on it with another photograph as the user image, and prints

* CameraScore over the whole output (run.json's) and across each seam: the mean per-pair distance
  (resolution-free, the score's own) over the frame pairs from the frame before the overlap to the
  frame after it, against the same over the pairs within the windows;
* the PSNR between neighbouring output frames at each seam (pairs touching an overlap) against the
  pairs within a window: a seam that jumps shows as a PSNR drop there.

    python benchmarks/long_clips.py --weights DIR                     # a mini bundle (backbone mini)
    python benchmarks/long_clips.py --backbone zeroscope --weights TINY --finetune-steps 2 --steps 3

Defaults are mini's settings of benchmarks/mini_method.py (64x64, ranks 8, 60 + 60 finetuning
steps, 25 sampling steps, the kornia estimator).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def seam_pairs(windows: list[tuple[int, int]]) -> list[list[int]]:
    """Per seam, the frame pairs (t, t + 1), by t, from the frame before the overlap to the one after it."""
    return [
        list(range(max(0, start - 1), min(prev_end, windows[-1][1] - 1)))
        for (_, prev_end), (start, _) in zip(windows, windows[1:])
    ]


def figures(run_dir: Path) -> dict:
    """Whole-output CameraScore, per-seam and within-window per-pair distances and neighbour PSNR."""
    from cammimic.io import read_video
    from cammimic.metrics import camera_score
    from cammimic.motion import MotionEstimate

    record = json.loads((run_dir / "run.json").read_text())
    motion = json.loads((run_dir / "motion.json").read_text())
    ref, out = (
        MotionEstimate.from_json(motion["reference"]),
        MotionEstimate.from_json(motion["output"]),
    )
    frames = read_video(run_dir / "output.mp4").frames
    windows = (
        [(w["start"], w["end"]) for w in record["windows"]["windows"]]
        if "windows" in record
        else [(0, len(frames))]
    )
    _, per_pair = camera_score(ref, out, per_pair=True)
    bad = {f.pair for f in (*ref.fallbacks, *out.fallbacks)}
    seams = seam_pairs(windows)
    at_seam = sorted({t for s in seams for t in s})
    within = [t for t in range(len(frames) - 1) if t not in at_seam]

    def mean(values):
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else math.nan

    neighbour = [psnr(frames[t], frames[t + 1]) for t in range(len(frames) - 1)]
    return {
        "frames": len(frames),
        "windows": windows,
        "camera_score": record.get("camera_score"),
        "seams": [
            {
                "pairs": [s[0], s[-1] + 1],
                "camera_score": mean([per_pair[t] for t in s if t not in bad]),
                "psnr": mean([neighbour[t] for t in s]),
            }
            for s in seams
        ],
        "within": {
            "camera_score": mean([per_pair[t] for t in within if t not in bad]),
            "psnr": mean([neighbour[t] for t in within]),
        },
        "seconds": record.get("seconds"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", required=True, help="a diffusers-layout weights folder (a mini bundle)"
    )
    parser.add_argument("--backbone", default="mini")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--move", default="pan", help="a cammimic.synthetic camera path kind")
    parser.add_argument(
        "--finetune-steps", type=int, default=60, help="stage 1 and stage 2 steps each"
    )
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/out/long_clips")
    args = parser.parse_args(argv)

    import cv2
    from skimage import data

    from cammimic.cli import main as cli
    from cammimic.io import write_image, write_video
    from cammimic.synthetic import camera_path, render_camera_motion

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    photo = cv2.resize(data.astronaut(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    reference = render_camera_motion(
        photo, camera_path(args.move, args.frames, args.size, args.size), args.size, args.size
    )
    write_video(out / "reference.mp4", reference, 8.0, crf=18)
    write_image(
        out / "user.png",
        cv2.resize(data.coffee(), (args.size, args.size), interpolation=cv2.INTER_AREA),
    )
    run_dir = out / "run"
    code = cli(
        [
            "run",
            str(out / "reference.mp4"),
            str(out / "user.png"),
            "--prompt",
            "a cup of coffee",
            "--reference-prompt",
            "an astronaut",
            "--backbone",
            args.backbone,
            "--weights",
            args.weights,
            "-o",
            str(run_dir),
            "--overwrite",
            "--frames",
            str(args.frames),
            "--width",
            str(args.size),
            "--height",
            str(args.size),
            "--stage1-steps",
            str(args.finetune_steps),
            "--stage2-steps",
            str(args.finetune_steps),
            "--steps",
            str(args.steps),
            "--spatial-rank",
            str(args.rank),
            "--temporal-rank",
            str(args.rank),
            "--estimator",
            "kornia",
            "--seed",
            str(args.seed),
            "-q",
        ]
    )
    if code:
        return code
    got = figures(run_dir)
    print(
        f"{got['frames']} frames in windows {got['windows']}: CameraScore {got['camera_score']:.4g} over the "
        f"whole output ({got['seconds']} s)"
    )
    w = got["within"]
    print(
        f"within windows: per-pair CameraScore {w['camera_score']:.4g}, neighbour PSNR {w['psnr']:.2f} dB"
    )
    for i, s in enumerate(got["seams"]):
        print(
            f"seam {i + 1} (pairs {s['pairs'][0]}..{s['pairs'][1]}): per-pair CameraScore {s['camera_score']:.4g}, "
            f"neighbour PSNR {s['psnr']:.2f} dB (jump {w['psnr'] - s['psnr']:+.2f} dB)"
        )
    (out / "figures.json").write_text(json.dumps(got, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
