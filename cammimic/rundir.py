"""What every transfer method shares: seeding, the provenance record of ``run.json``, the files
common to every run (videos, trajectory, motion and score JSON, config) and the run-directory
writer that makes the directory appear whole or not at all.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cammimic._version import __version__
from cammimic.config import Config
from cammimic.errors import CammimicError
from cammimic.io import output_directory, sha256, write_video
from cammimic.io.files import bounded
from cammimic.motion import MotionEstimate
from cammimic.reference import Reference
from cammimic.report import write_run_report
from cammimic.results import RunResult, ScoreResult
from cammimic.trajectory import plot_trajectories, summarize

__all__ = [
    "seed_all",
    "even",
    "check_even_size",
    "provenance",
    "input_records",
    "write_outputs",
    "write_run",
]


def seed_all(seed: int, *, torch: bool = False) -> None:
    """Seed OpenCV (RANSAC/MAGSAC sampling), NumPy and, with ``torch=True``, torch."""
    import cv2

    cv2.setRNGSeed(int(seed) % 2**31)
    np.random.seed(int(seed) % 2**32)
    if torch:
        import torch as _torch

        _torch.manual_seed(int(seed) % 2**63)


def even(n: int) -> int:
    """``n`` rounded down to an even number, at least 2 (H.264 needs even sizes)."""
    return max(2, n - n % 2)


def check_even_size(width: int, height: int) -> None:
    if width % 2 or height % 2:
        raise CammimicError(
            f"--width/--height must be even for H.264 video, got {width}x{height}; "
            f"try {even(width)}x{even(height)}"
        )


def provenance(
    method: str, *, phases: Iterable[str] | None = None, **runtime: Any
) -> dict[str, Any]:
    """The head of every ``run.json``: the cammimic version, the method (and its ``phases``), when,
    and on what (Python, platform, then ``runtime`` such as torch, device and dtype)."""
    record: dict[str, Any] = {"cammimic_version": __version__, "method": method}
    if phases is not None:
        record["phases"] = list(phases)
    record.update(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        python=sys.version.split()[0],
        platform=platform.platform(),
        **runtime,
    )
    return record


def input_records(reference: Reference, image) -> dict[str, Any]:
    """``run.json``'s ``reference`` (:meth:`Reference.record <cammimic.reference.Reference.record>`)
    and ``image`` entries."""
    is_path = isinstance(image, (str, Path))
    return {
        "reference": reference.record(),
        "image": {
            "path": str(image) if is_path else "<array>",
            "sha256": sha256(image) if is_path else None,
        },
    }


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def write_outputs(
    tmp: Path,
    *,
    config: Config,
    fps: float,
    motions: Mapping[str, MotionEstimate],
    output_frames: np.ndarray | None = None,
    side_by_side: list[np.ndarray] | None = None,
    scored: ScoreResult | None = None,
) -> dict[str, Path]:
    """The files every run writes into ``tmp``: ``output.mp4`` and ``side_by_side.mp4`` (the
    panels side by side) and ``output.gif`` (``[output] gif``) when there is an output,
    ``score.json`` when scored, and always ``trajectory.png``, ``motion.json`` and ``config.toml``."""
    crf = config["output"]["crf"]
    files: dict[str, Path] = {}
    if output_frames is not None:
        files["output"] = write_video(tmp / "output.mp4", output_frames, fps, crf=crf)
        files["side_by_side"] = write_video(
            tmp / "side_by_side.mp4", np.concatenate(side_by_side, axis=2), fps, crf=crf
        )
        if config["output"]["gif"]:
            files["gif"] = write_video(tmp / "output.gif", output_frames, fps)
    if scored is not None:
        files["score"] = _write_json(tmp / "score.json", scored.to_json())
    files["trajectory"] = plot_trajectories(tmp / "trajectory.png", dict(motions))
    motion: dict[str, Any] = {k: v.to_json() for k, v in motions.items()}
    motion["trajectory"] = {k: summarize(v) for k, v in motions.items()}
    files["motion"] = _write_json(tmp / "motion.json", motion)
    (tmp / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    files["config"] = tmp / "config.toml"
    return files


def write_run(
    output_dir,
    write_files: Callable[[Path], dict[str, Path]],
    manifest: dict[str, Any],
    *,
    started: float,
    overwrite: bool,
    inputs: Iterable[Any],
    camera_score: float,
) -> RunResult:
    """Write a run directory: ``write_files(tmp)`` writes the method's files into a hidden folder,
    then ``run.json`` (``manifest`` and the seconds since ``started``) and ``report.html``; the
    folder replaces ``output_dir`` only if all of it was written. Texts in ``manifest`` longer than
    :data:`~cammimic.io.files.MAX_RECORDED_CHARS` are recorded cut, with their length and SHA-256."""
    with output_directory(output_dir, overwrite=overwrite, inputs=inputs) as tmp:
        files = write_files(tmp)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        manifest = bounded(manifest)
        (tmp / "run.json").write_text(
            json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
        )
        write_run_report(tmp, title=f"cammimic run: {Path(output_dir).name}")
    out = Path(output_dir)
    files = {k: out / v.relative_to(tmp) for k, v in files.items()} | {
        "run": out / "run.json",
        "report": out / "report.html",
    }
    return RunResult(output_dir=out, files=files, camera_score=camera_score, manifest=manifest)
