"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s demo``."""

from __future__ import annotations

import os

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
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the examples: move examples/scene.jpg with the camera of examples/reference.mp4."""
    session.install("-e", ".")
    out = session.posargs[0] if session.posargs else "out/demo"
    session.run(
        "cammimic", "run", "examples/reference.mp4", "examples/scene.jpg",
        "--method", "homography", "--output", out, "--overwrite", "--gif",
    )
    session.log(f"results in {out}/: output.mp4, output.gif, side_by_side.mp4, trajectory.png, score.json, motion.json, config.toml, run.json")
