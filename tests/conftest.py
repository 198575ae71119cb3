"""Shared fixtures: real photographs, videos with known camera motion, an isolated plugin host."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
try:  # keep torch from oversubscribing a 2-core CI machine
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is in the test extra
    pass


def photo(name: str = "astronaut", scale: float = 2.0) -> np.ndarray:
    """A real photograph from scikit-image, enlarged so a virtual camera can move over it."""
    import cv2
    from skimage import data

    img = getattr(data, name)()
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


def clip(
    kind: str,
    width: int = 256,
    height: int = 256,
    frames: int = 16,
    name: str = "astronaut",
    magnitude: float = 1.0,
):
    """``(frames, true_homographies)`` of a photograph under a named camera move."""
    from cammimic.synthetic import camera_path, render_camera_motion

    h = camera_path(kind, frames, width, height, magnitude)
    return render_camera_motion(photo(name), h, width, height), h


def load_benchmark(name: str):
    """The module ``benchmarks/NAME.py`` (benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_pair(folder, size: int = 128, frames: int = 8) -> tuple:
    """``(reference.mp4, user.png)`` in ``folder``: the astronaut under a known pan, and the coffee
    photograph as the user's image, both ``size`` px square (the method's end-to-end inputs)."""
    import cv2

    from cammimic.io import write_image, write_video

    video, _ = clip("pan", size, size, frames=frames, name="astronaut")
    write_video(folder / "ref.mp4", video, 8.0, crf=18)
    write_image(
        folder / "user.png", cv2.resize(photo("coffee"), (size, size), interpolation=cv2.INTER_AREA)
    )
    return folder / "ref.mp4", folder / "user.png"


def h264_roundtrip(frames: np.ndarray, tmp_path, crf: int = 23) -> np.ndarray:
    """Frames after H.264 compression, as a user's video would be."""
    from cammimic.io import read_video, write_video

    path = write_video(tmp_path / f"clip-crf{crf}.mp4", frames, 12.0, crf=crf)
    return read_video(path).frames


@pytest.fixture
def plugin_host(monkeypatch):
    """A fresh plugin host that loads only cammimic's own entry points (no third-party ones)."""
    from cammimic.plugins import PluginHost

    host = PluginHost()
    monkeypatch.setattr(
        host,
        "entry_points",
        lambda: [ep for ep in PluginHost.entry_points(host) if ep.value.startswith("cammimic")],
    )
    return host.load()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A tiny random-weight UNet3D text-to-video model saved in diffusers layout (offline)."""
    from cammimic_unet3d.random_weights import save_components

    return save_components(tmp_path_factory.mktemp("tiny-weights"), preset="tiny", seed=0)
