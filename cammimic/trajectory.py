"""Per-frame camera trajectory (pan, tilt, zoom, roll) from homographies, and its plot.

Each frame-to-frame homography, in resolution-free coordinates (centre at 0, half the short
side = 1), is read as a similarity about the image centre:

- ``pan``: horizontal camera move, in half-short-sides; positive when the camera turns right
  (the scene moves left on screen).
- ``tilt``: vertical camera move; positive when the camera turns up (the scene moves down).
- ``zoom``: scale factor; above 1 when zooming in.
- ``roll``: degrees; positive when the scene turns clockwise on screen (camera rolls
  counter-clockwise).

Cumulative values (from frame 0) are what the plot shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cammimic.homography import chain, to_resolution_free

__all__ = ["decompose", "summarize", "plot_trajectories"]

FIELDS = ("pan", "tilt", "zoom", "roll")


def decompose(h: np.ndarray) -> dict[str, float]:
    """pan, tilt, zoom, roll of one normalised resolution-free homography (the module's reading)."""
    a = h[:2, :2]
    zoom = math.sqrt(abs(np.linalg.det(a)))
    roll = math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1]))
    return {"pan": -float(h[0, 2]), "tilt": float(h[1, 2]), "zoom": zoom, "roll": roll}


def summarize(motion) -> dict[str, list[float]]:
    """Per-step and cumulative pan, tilt, zoom, roll of a :class:`~cammimic.motion.MotionEstimate`.

    Returns a dict with ``step`` (one entry per frame pair) and ``cumulative`` (one per frame,
    starting at the identity), each mapping field name to a list of floats.
    """
    hn = to_resolution_free(motion.homographies, motion.width, motion.height)
    steps = [decompose(h) for h in hn]
    cum = [decompose(c) for c in chain(hn)]
    return {
        "step": {f: [s[f] for s in steps] for f in FIELDS},
        "cumulative": {f: [c[f] for c in cum] for f in FIELDS},
    }


def plot_trajectories(path, curves: dict[str, object], *, title: str = "Camera trajectory") -> Path:
    """Plot cumulative pan, tilt, zoom and roll of one or more motions (e.g. reference vs output).

    ``curves`` maps a label to a :class:`~cammimic.motion.MotionEstimate`. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cammimic.io import atomic_path

    units = {
        "pan": "half short sides",
        "tilt": "half short sides",
        "zoom": "scale",
        "roll": "degrees",
    }
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0), constrained_layout=True)
    for label, motion in curves.items():
        cum = summarize(motion)["cumulative"]
        for ax, f in zip(axes, FIELDS):
            ax.plot(range(len(cum[f])), cum[f], marker=".", label=label)
    for ax, f in zip(axes, FIELDS):
        ax.set_title(f"{f} ({units[f]})", fontsize=10)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
