"""Does the CamMimic method work on mini? (docs/mini.md)

Builds the held-out pair manifest and runs ``cammimic eval`` on it with ``--backbone mini``:

* references: a crop of one *held-out* photograph (:data:`cammimic_mini.lab.data.HELD_OUT`: astronaut,
  coffee, chelsea; never seen in training) under a known camera motion, 64x64, 8 frames, mp4 —
  including motions and speeds absent from mini's captions (a diagonal pan with a zoom, a slow
  roll, a tilt with a roll, ...);
* user images: ANOTHER held-out photograph, 64x64 png;
* prompts: ``prompt`` = the user image's content, ``reference_prompt`` = the reference's content;
* ``pairs/manifest.csv`` and ``pairs/pairs.json`` (the true frame-to-frame homographies of every
  reference, the motion's parameters and whether mini's captions name it).

Then every method of the paper's table (``homography, base, motiondirector, cammimic`` and the
ablations ``-no-usc, -no-ortho, -no-hg``, ``-usc-only``, ``-no-usc-no-spatial``) and the
training-free camera terms (``base-warped-noise, cammimic-warped-noise, motionclone,
cammimic-camerascore``) run in one eval with mini's settings (:data:`CONFIG`, written to
``OUT/mini-method.toml``), and ``--record`` writes both tables into docs/mini.md. An eval folder
holds one method set (``cammimic eval`` refuses another set in it) and resumes; other sets go to
other folders under one ``--out`` (``--eval-dir NAME``), and ``--record`` merges them all.

    python benchmarks/mini_method.py --record                    # the shipped bundle, every method
    python benchmarks/mini_method.py --weights DIR --executor ray
    python benchmarks/mini_method.py --manifest-only --out /tmp/pairs
    python benchmarks/mini_method.py --methods homography        # no weights needed
    python benchmarks/mini_method.py --methods paper             # the paper's methods only
    python benchmarks/mini_method.py --methods training-free     # base, cammimic and the training-free terms
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mini.md"
BEGIN, END = "<!-- mini-method:begin -->", "<!-- mini-method:end -->"
#: The paper's table: its methods and ablations, and the readings the method issue added
#: (``cammimic-usc-only``; ``cammimic-no-usc-no-spatial``, the other reading of "no USC").
METHODS = (
    "homography",
    "base",
    "motiondirector",
    "cammimic",
    "cammimic-no-usc",
    "cammimic-no-ortho",
    "cammimic-no-hg",
    "cammimic-usc-only",
    "cammimic-no-usc-no-spatial",
)
#: Issue 23 §4: the training-free camera terms, tabled next to ``base`` and ``cammimic`` from the
#: same eval (``--methods training-free`` runs these and the two they are compared with).
TRAINING_FREE = (
    "base-warped-noise",
    "cammimic-warped-noise",
    "motionclone",
    "cammimic-camerascore",
)
BEGIN_TF, END_TF = "<!-- mini-training-free:begin -->", "<!-- mini-training-free:end -->"
SEED = 0
CANVAS = 160  # px: the region of the photograph the 64 px frame moves over (as in training)

#: The reference motions, per frame, in the units of ``cammimic_mini.lab.data.MOTIONS`` (dx, dy in
#: frame short sides, zoom factor, roll in degrees on screen), and whether mini's captions name
#: this motion at this speed (pans/tilts 0.04, 0.02, 0.064; zooms 1.04^{0.5,1,1.6}; rolls 3 deg x
#: {0.5, 1, 1.6}; the combos of data.COMBINATIONS).
MOTIONS: tuple[tuple[str, dict[str, float], bool], ...] = (
    ("pans left", {"dx": 0.04}, True),
    ("zooms in", {"zoom": 1.04}, True),
    ("diagonal pan (right and up) with a zoom in", {"dx": -0.03, "dy": 0.03, "zoom": 1.03}, False),
    ("slow roll clockwise (1 deg per frame)", {"roll": -1.0}, False),
    ("tilts up and rolls counterclockwise", {"dy": 0.04, "roll": 3.0}, False),
    ("very fast pan right (2x)", {"dx": -0.08}, False),
    ("slow zoom out with a tilt down", {"zoom": 1 / 1.02, "dy": -0.02}, False),
    ("rolls clockwise quickly", {"roll": -4.8}, True),
    ("tilts down and pans left", {"dy": -0.04, "dx": 0.04}, False),
    ("zooms in and rolls counterclockwise", {"zoom": 1.03, "roll": 2.0}, False),
    ("very slow pan left (0.3x)", {"dx": 0.012}, False),
    ("pans left and zooms in", {"dx": 0.04, "zoom": 1.04}, True),
)

#: Settings of every run, scaled from the paper's zeroscope setup (docs/mini.md explains why).
CONFIG = """\
# mini-method.toml: cammimic eval settings for the mini backbone (benchmarks/mini_method.py)
[run]
frames = 8
width = 64
height = 64
seed = 0

[backbone]
name = "mini"

[motion_estimator]
name = "kornia"         # mini's soft 64 px frames: SIFT falls back on 19 % of VAE-reconstructed pairs, kornia on none

[lora]
spatial_rank = 8
temporal_rank = 8

[finetune]
stage1_steps = 60
stage2_steps = 60

[sampling]
steps = 25
guidance_scale = 1.0    # mini's: no classifier-free guidance, chosen by benchmarks/mini.py (docs/mini.md)
"""


def _error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 2


def _step(move: dict[str, float], size: int) -> np.ndarray:
    from cammimic.synthetic import camera_step

    args = {k: (v * size if k in ("dx", "dy") else v) for k, v in move.items()}
    return camera_step(size, size, **args)


def _region(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square of 60-100 % of the photograph's short side, resized to the canvas."""
    import cv2

    h, w = photo.shape[:2]
    side = int(rng.integers(int(0.6 * min(h, w)), min(h, w) + 1))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return cv2.resize(
        photo[y0 : y0 + side, x0 : x0 + side], (CANVAS, CANVAS), interpolation=cv2.INTER_AREA
    )


def _user_image(photo: np.ndarray, size: int) -> np.ndarray:
    """The whole photograph, centre-cropped square, at the model's size."""
    import cv2

    h, w = photo.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(photo[y0 : y0 + s, x0 : x0 + s], (size, size), interpolation=cv2.INTER_AREA)


def build_manifest(folder, pairs: int = 12, seed: int = SEED) -> Path:
    """Write ``pairs`` held-out (reference, user image) pairs, manifest.csv and pairs.json into
    ``folder``; returns the manifest's path. Deterministic for a seed."""
    from cammimic_mini.lab import data

    from cammimic.errors import CammimicError
    from cammimic.io import write_image, write_text, write_video
    from cammimic.synthetic import render_camera_motion

    folder = Path(folder)
    size, frames = data.WIDTH, data.FRAMES
    names = sorted(data.HELD_OUT)
    photos = {n: data.load_photo(n) for n in names}
    ordered = [(a, b) for a in names for b in names if a != b]  # 6 (reference, user) photo pairs
    rng = np.random.default_rng(seed)
    rows, record = [], {}
    for i in range(pairs):
        label, move, in_captions = MOTIONS[i % len(MOTIONS)]
        ref_name, user_name = ordered[(i + i // len(MOTIONS)) % len(ordered)]
        hs = np.repeat(_step(move, size)[None], frames - 1, axis=0)
        for _ in range(100):
            try:
                clip = render_camera_motion(_region(photos[ref_name], rng), hs, size, size)
            except CammimicError:
                continue
            if data.texture(clip[0]) >= data.MIN_TEXTURE:
                break
        else:  # pragma: no cover - the held-out photographs are textured
            raise CammimicError(f"no textured crop of {ref_name} found for pair {i}")
        pid = f"p{i:02d}"
        write_video(folder / f"{pid}-ref.mp4", clip, 8.0)
        write_image(folder / f"{pid}-img.png", _user_image(photos[user_name], size))
        rows.append(
            {
                "id": pid,
                "reference": f"{pid}-ref.mp4",
                "image": f"{pid}-img.png",
                "prompt": data.HELD_OUT[user_name],
                "reference_prompt": data.HELD_OUT[ref_name],
            }
        )
        record[pid] = {
            "reference_photo": ref_name,
            "image_photo": user_name,
            "motion": label,
            "per_frame": move,
            "in_captions": in_captions,
            "homographies": hs.round(10).tolist(),
        }
    lines = ["id,reference,image,prompt,reference_prompt"]
    lines += [
        ",".join(r[k] for k in ("id", "reference", "image", "prompt", "reference_prompt"))
        for r in rows
    ]
    meta = {
        "generator": "benchmarks/mini_method.py",
        "seed": seed,
        "pairs": pairs,
        "width": size,
        "height": size,
        "frames": frames,
        "fps": 8.0,
        "canvas": CANVAS,
        "homographies": "frame-to-frame, pixel coordinates of the 64x64 reference (cammimic.synthetic)",
        "items": record,
    }
    write_text(folder / "pairs.json", json.dumps(meta, indent=1) + "\n")
    return write_text(folder / "manifest.csv", "\n".join(lines) + "\n")


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def summarize(eval_dir) -> list[dict]:
    """Per method: summary.csv's row plus the estimator fallback share of the outputs
    (fallen-back frame pairs / all frame pairs, over the runs that finished)."""
    eval_dir = Path(eval_dir)
    with open(eval_dir / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    with open(eval_dir / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    for s in summary:
        ok = [r for r in results if r["method"] == s["method"] and r["status"] == "ok"]
        fb = sum(_float(r["output_fallbacks"]) for r in ok)
        pairs = sum(_float(r["num_pairs"]) for r in ok)
        s["fallback_share"] = fb / pairs if pairs else math.nan
        s["seconds_per_run"] = (
            sum(_float(r.get("seconds")) for r in ok) / len(ok) if ok else math.nan
        )
    return summary


def _ci(s: dict, c: str, fmt: str = "{:.3g}") -> str:
    v = _float(s.get(c))
    if not math.isfinite(v):
        return "–"
    lo, hi = _float(s.get(f"{c}_lo")), _float(s.get(f"{c}_hi"))
    return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _num(s: dict, c: str, fmt: str) -> str:
    v = _float(s.get(c))
    return fmt.format(v) if math.isfinite(v) else "–"


def table(summary: list[dict]) -> list[str]:
    """The markdown table and the comparisons the issue asks for (cammimic vs base, HG, ORTHO)."""
    lines = [
        "| method | n | valid / invalid | CameraScore (resolution-free) | CameraScore (paper) | "
        "output fallback share | PSNR first | SSIM first | PSNR in view | s / run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['method']} | {s['n']} | {s['n_valid']} / {s['n_invalid']} | {_ci(s, 'camera_score')} | "
            f"{_ci(s, 'camera_score_paper')} | {_num(s, 'fallback_share', '{:.1%}')} | "
            f"{_num(s, 'psnr_first', '{:.1f}')} | {_num(s, 'ssim_first', '{:.3f}')} | "
            f"{_num(s, 'psnr_in_view', '{:.1f}')} | {_num(s, 'seconds_per_run', '{:.0f}')} |"
        )
    by = {s["method"]: _float(s.get("camera_score")) for s in summary}

    def ratio(a, b):
        x, y = by.get(a, math.nan), by.get(b, math.nan)
        return x / y if math.isfinite(x) and math.isfinite(y) and y > 0 else math.nan

    lines.append("")
    checks = [
        ("cammimic", "base", "cammimic / base", "<= 0.5 if the method works"),
        (
            "cammimic",
            "cammimic-no-hg",
            "cammimic / cammimic-no-hg",
            "< 1 if homography guidance helps",
        ),
        ("cammimic", "cammimic-no-ortho", "cammimic / cammimic-no-ortho", "< 1 if ORTHO helps"),
        (
            "base-warped-noise",
            "base",
            "base-warped-noise / base",
            "<= 0.5: the claim of issue 23 §4",
        ),
        (
            "cammimic-warped-noise",
            "cammimic",
            "cammimic-warped-noise / cammimic",
            "< 1 if warped noise helps",
        ),
        ("motionclone", "base", "motionclone / base", "< 1 if temporal-attention guidance helps"),
        (
            "cammimic-camerascore",
            "cammimic",
            "cammimic-camerascore / cammimic",
            "< 1 if CameraScore guidance helps",
        ),
    ]
    for a, b, name, want in checks:
        r = ratio(a, b)
        if a in by and b in by:
            lines.append(
                f"- {name} (mean CameraScore): {'–' if not math.isfinite(r) else f'{r:.2f}'} ({want})"
            )
    return lines


def record(
    eval_dirs,
    doc: Path,
    *,
    command: str,
    weights: str,
    markers: tuple[str, str] = (BEGIN, END),
    methods=None,
) -> None:
    """Replace the text between the mini-method markers (or ``markers``) of ``doc`` by the summary
    table of ``methods`` (all of the evals' by default), merged over ``eval_dirs`` (one eval folder
    per method set; a method found in several is taken from the first); methods asked for but
    absent are named."""
    begin, end = markers
    from cammimic.io import write_text

    eval_dirs = [
        Path(d) for d in ([eval_dirs] if isinstance(eval_dirs, (str, Path)) else eval_dirs)
    ]
    info = json.loads((eval_dirs[0] / "eval.json").read_text())
    meta = {}
    index = Path(weights) / "model_index.json" if weights else None
    if index and index.is_file():
        meta = json.loads(index.read_text()).get("_cammimic_mini", {})
    items = info["manifest"]["items"]
    summary, seen = [], set()
    for d in eval_dirs:
        for row in summarize(d):
            if row["method"] not in seen:
                seen.add(row["method"])
                summary.append(row)
    if methods is not None:
        order = {m: i for i, m in enumerate(methods)}
        summary = sorted(
            (s for s in summary if s["method"] in order), key=lambda s: order[s["method"]]
        )
    lines = [
        begin,
        "",
        f"`{command}`: {items} held-out pairs, bundle of {meta.get('unet_steps', '?')} UNet steps, "
        f"{platform.processor() or platform.machine()}, cammimic {info['cammimic_version']}, "
        f"torch {info['versions'].get('torch')}. Mean over valid scores [95 % bootstrap interval]; "
        "lower CameraScore is better.",
        "",
    ]
    lines += table(summary)
    missing = [m for m in (methods or ()) if m not in {s["method"] for s in summary}]
    if missing:
        lines += ["", f"Not run: {', '.join(missing)}."]
    lines += ["", end]
    text = doc.read_text(encoding="utf-8")
    start, stop = text.index(begin), text.index(end) + len(end)
    write_text(doc, text[:start] + "\n".join(lines) + text[stop:])


def main(argv=None) -> int:
    import cammimic_mini

    from cammimic.errors import CammimicError

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights",
        default=str(cammimic_mini.WEIGHTS),
        help="mini's bundle (a diffusers folder, e.g. from `python -m cammimic_mini.lab.train --export DIR`); "
        "default: the shipped one",
    )
    p.add_argument(
        "--methods",
        default="all",
        help="comma-separated eval methods, or 'all' (default: "
        + ",".join(METHODS + TRAINING_FREE)
        + "), 'paper' ("
        + ",".join(METHODS)
        + ") or 'training-free' (base, cammimic and "
        + ",".join(TRAINING_FREE)
        + ")",
    )
    p.add_argument(
        "--pairs", type=int, default=12, help="pairs in the manifest (>= 1; the tables need >= 12)"
    )
    p.add_argument(
        "--out",
        default="out/mini-method",
        help="pairs/, the eval folders and mini-method.toml go here",
    )
    p.add_argument(
        "--eval-dir",
        default="eval",
        metavar="NAME",
        help="the eval folder under --out (default: eval). An eval folder holds one method set: run "
        "another set into another NAME; --record merges every eval folder under --out",
    )
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--manifest-only", action="store_true", help="write the pairs and stop")
    p.add_argument(
        "--record",
        action="store_true",
        help="write both tables (the paper's methods; the training-free terms) into docs/mini.md",
    )
    p.add_argument(
        "--record-training-free",
        action="store_true",
        help="the same as --record (kept for old commands)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    aliases = {
        "all": list(METHODS + TRAINING_FREE),
        "paper": list(METHODS),
        "training-free": ["base", "cammimic", *TRAINING_FREE],
    }
    methods = aliases.get(args.methods.strip()) or [
        m.strip() for m in args.methods.split(",") if m.strip()
    ]
    args.record = args.record or args.record_training_free
    if args.pairs < 1:
        return _error(f"--pairs must be >= 1, got {args.pairs}")
    if args.record and args.pairs < 12:
        return _error("--record writes the tables of docs/mini.md: it needs --pairs >= 12")
    needs_weights = any(m != "homography" for m in methods)
    if (
        not args.manifest_only
        and needs_weights
        and not (Path(args.weights) / "model_index.json").is_file()
    ):
        return _error(
            f"mini's weights are not at {args.weights} (no model_index.json): no bundle has "
            "passed mini's bar yet (docs/mini.md); pass --weights DIR with a bundle from `python -m cammimic_mini.lab.train --export DIR`, "
            "or run --methods homography"
        )
    out = Path(args.out)
    pairs_dir = out / "pairs"
    settings = {"seed": SEED, "pairs": args.pairs}
    try:
        if (pairs_dir / "pairs.json").is_file():
            old = json.loads((pairs_dir / "pairs.json").read_text())
            if {"seed": old.get("seed"), "pairs": old.get("pairs")} != settings:
                return _error(
                    f"{pairs_dir} holds a manifest of {old.get('pairs')} pairs; give another --out for "
                    f"{args.pairs}"
                )
            manifest = pairs_dir / "manifest.csv"
            print(f"reusing the manifest {manifest}", file=sys.stderr)
        elif pairs_dir.exists() and any(pairs_dir.iterdir()):
            return _error(
                f"{pairs_dir} exists and was not written by this script; give another --out"
            )
        else:
            manifest = build_manifest(pairs_dir, args.pairs)
            print(
                f"wrote {manifest} ({args.pairs} pairs) and {pairs_dir / 'pairs.json'}",
                file=sys.stderr,
            )
        if args.manifest_only:
            return 0
        from cammimic.cli import main as cli
        from cammimic.io import write_text

        config = write_text(out / "mini-method.toml", CONFIG)
        cmd = [
            "eval",
            str(manifest),
            "-o",
            str(out / args.eval_dir),
            "--methods",
            ",".join(methods),
            "--backbone",
            "mini",
            "--config",
            str(config),
            "--executor",
            args.executor,
        ]
        if needs_weights:
            cmd += ["--weights", str(Path(args.weights).resolve())]
        if args.quiet:
            cmd.append("-q")
        started = time.perf_counter()
        code = cli(cmd)
        print(
            f"cammimic {' '.join(cmd)}: exit {code} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
        if code:
            return code
        for line in table(summarize(out / args.eval_dir)):
            print(line)
        if args.record:
            command = "python benchmarks/mini_method.py --record" + (
                f" --methods {args.methods}" if args.methods != "all" else ""
            )
            evals = [out / args.eval_dir] + sorted(
                d
                for d in out.glob("eval*")
                if d != out / args.eval_dir and (d / "summary.csv").is_file()
            )
            record(evals, DOC, command=command, weights=args.weights, methods=list(METHODS))
            record(
                evals,
                DOC,
                command=command,
                weights=args.weights,
                markers=(BEGIN_TF, END_TF),
                methods=["base", "cammimic", *TRAINING_FREE],
            )
            print(f"recorded in {DOC}", file=sys.stderr)
    except CammimicError as exc:
        return _error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
