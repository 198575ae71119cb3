"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s demo``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

# Installed before the extras so they do not pull a CUDA build of torch (several GB).
# Override for another build, e.g. CAMMIMIC_TORCH="torch==2.13.0+cu128".
TORCH = os.environ.get("CAMMIMIC_TORCH", "torch==2.13.0")


@nox.session
def tests(session: nox.Session) -> None:
    """Install cammimic with its test extra and run the test suite (offline, CPU, a few minutes)."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    # One worker per core (pytest-xdist); a test file's tests stay together on one worker, in
    # order, because docs examples and some fixtures build on the ones before them.
    session.run("pytest", "-n", "auto", "--dist", "loadfile", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: the formatting (``ruff format``) and the lint rules, with the version the tree was formatted with."""
    session.install("ruff==0.17.6")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the examples: move examples/scene.jpg with the camera of examples/reference.mp4.

    Offline and on any machine it runs the homography method, then the full CamMimic method on
    ``mini`` (the small demonstration model shipped with cammimic, docs/mini.md). With CAMMIMIC_WEIGHTS set to zeroscope weights (a local diffusers-layout folder, or
    a Hub id where the Hub is reachable) it runs the full method on zeroscope instead (a GPU is
    strongly advised).
    """
    weights = os.environ.get("CAMMIMIC_WEIGHTS")
    out = session.posargs[0] if session.posargs else "out/demo"
    shipped = Path("adapters/cammimic_mini/weights/model_index.json").is_file()
    if weights or shipped:
        session.install(TORCH)
        session.install("-e", ".[zeroscope]")
    else:
        session.install("-e", ".")
    session.run(
        "cammimic",
        "run",
        "examples/reference.mp4",
        "examples/scene.jpg",
        "--method",
        "homography",
        "--output",
        out,
        "--overwrite",
        "--gif",
    )
    session.log(
        f"results in {out}/: report.html (open it in a browser), output.mp4, output.gif, side_by_side.mp4, trajectory.png, score.json, motion.json, config.toml, run.json"
    )
    prompts = ["--prompt", "an astronaut", "--reference-prompt", "a rocket on a launch pad"]
    if weights:
        session.run(
            "cammimic",
            "run",
            "examples/reference.mp4",
            "examples/scene.jpg",
            *prompts,
            "--weights",
            weights,
            "--output",
            f"{out}-cammimic",
            "--overwrite",
            "--gif",
        )
        session.log(
            f"CamMimic results in {out}-cammimic/: output.mp4, weak.mp4, side_by_side.mp4, lora/, losses.csv, score.json, ..."
        )
        return
    if not shipped:
        session.log(
            "the full CamMimic method needs a text-to-video model: mini's weights are missing from this "
            "checkout (adapters/cammimic_mini/weights, docs/mini.md); set CAMMIMIC_WEIGHTS=/path/to/zeroscope_v2_576w "
            "to run it on zeroscope"
        )
        return
    # mini's own defaults (64x64, 8 frames, its step counts, ranks, CFG scale and the kornia
    # estimator that reads its soft 64 px frames), the ones docs/mini.md measured.
    session.run(
        "cammimic",
        "run",
        "examples/reference.mp4",
        "examples/scene.jpg",
        *prompts,
        "--backbone",
        "mini",
        "--output",
        f"{out}-mini",
        "--overwrite",
        "--gif",
    )
    session.log(
        f"CamMimic on mini (a small demonstration model, not one for real use) in {out}-mini/: "
        "report.html, output.mp4, output.gif, weak.mp4, side_by_side.mp4, lora/, losses.csv, score.json, run.json"
    )
