"""Accuracy and speed of the motion estimators on real photographs with known camera motion.

For each estimator and size, renders 16-frame clips of every camera move in
``cammimic.synthetic.camera_path`` (plus H.264-compressed and moving-object variants), and
reports the mean corner error against the truth and the time per frame pair.

    python benchmarks/motion_estimators.py            # prints a table
    python benchmarks/motion_estimators.py --record   # also records it in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from cammimic.homography import corner_error
from cammimic.io import read_video, write_video
from cammimic.plugins import PluginHost
from cammimic.synthetic import add_moving_object, camera_path, render_camera_motion

KINDS = ["pan", "tilt", "zoom", "roll", "pan_zoom", "tilt_roll", "orbit"]
SIZES = [(256, 256), (576, 320)]
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- motion-estimators:begin -->", "<!-- motion-estimators:end -->"


def scenarios(width, height, frames=16):
    photo = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    for kind in KINDS:
        h = camera_path(kind, frames, width, height)
        yield kind, render_camera_motion(photo, h, width, height), h
    h = camera_path("orbit", frames, width, height, 1.5)
    clean = render_camera_motion(cv2.resize(data.coffee(), None, fx=2, fy=2), h, width, height)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "c.mp4", clean, 12.0, crf=23)
        yield "orbit, H.264 crf 23", read_video(path).frames, h
    h = camera_path("pan_zoom", frames, width, height)
    frames_ = render_camera_motion(photo, h, width, height)
    patch = cv2.resize(data.coffee(), None, fx=0.25, fy=0.25)[20:84, 40:104]
    yield (
        "pan_zoom, moving object",
        add_moving_object(frames_, patch, (width * 0.3, height * 0.4), (5, -3)),
        h,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default="opencv,kornia")
    parser.add_argument(
        "--record", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args()
    host = PluginHost().load()
    rows = []
    for name in args.estimators.split(","):
        est = host.create("motion_estimator", name)
        for width, height in SIZES:
            errors, times = [], []
            for label, frames, truth in scenarios(width, height):
                est.estimate(frames[:3])  # warm-up (first call builds kernels, threads)
                t0 = time.perf_counter()
                m = est.estimate(frames)
                times.append((time.perf_counter() - t0) / (len(frames) - 1))
                err = float(corner_error(m.homographies, truth, width, height).mean())
                errors.append(err)
                print(
                    f"{name:7s} {width}x{height} {label:26s} corner error {err:.3f} px  "
                    f"{times[-1] * 1000:6.1f} ms/pair  fallbacks {len(m.fallbacks)}"
                )
            rows.append(
                (
                    name,
                    f"{width}x{height}",
                    np.mean(errors),
                    np.max(errors),
                    np.median(times) * 1000,
                )
            )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only"
    table = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine}, torch threads = default; 16-frame clips, "
        f"{len(KINDS) + 2} scenarios per size (7 camera moves, one H.264-compressed, one with a moving object).",
        "",
        "| estimator | size | mean corner error (px) | worst scenario (px) | time per frame pair (ms) |",
        "|---|---|---|---|---|",
    ]
    table += [f"| {n} | {s} | {m:.3f} | {w:.3f} | {t:.1f} |" for n, s, m, w, t in rows]
    print("\n".join(table))
    if args.record:
        text = (
            DOC.read_text()
            if DOC.exists()
            else f"# Benchmarks\n\n## Motion estimators\n\n{BEGIN}\n{END}\n"
        )
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n" + "\n".join(table) + f"\n{END}{tail}")
        print(f"recorded in {DOC}")


if __name__ == "__main__":
    main()
