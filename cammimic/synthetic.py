"""Videos with a known camera motion, rendered from a still photograph.

Used by the tests (accuracy against truth), the benchmarks and ``examples/make_examples.py``.
A virtual camera looks at a large photograph; frame 0 is the centre crop and frame k is the
photograph seen through the composed frame-to-frame homographies, so the true motion is known
exactly.
"""

from __future__ import annotations

import math

import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import chain, normalize

__all__ = ["camera_step", "camera_path", "render_camera_motion", "add_moving_object"]


def camera_step(
    width: int,
    height: int,
    *,
    dx: float = 0.0,
    dy: float = 0.0,
    zoom: float = 1.0,
    roll: float = 0.0,
    px: float = 0.0,
    py: float = 0.0,
) -> np.ndarray:
    """One frame-to-frame homography (pixel coordinates) about the image centre.

    The image content is scaled by ``zoom`` (>1 zooms in), rotated by ``roll`` degrees
    (clockwise on screen), shifted by ``(dx, dy)`` pixels, and given a perspective tilt
    ``(px, py)`` (per half short side), all about the image centre.
    """
    cx, cy = (width - 1) / 2, (height - 1) / 2
    s = min(width, height) / 2
    a = math.radians(roll)
    rs = np.array(
        [
            [zoom * math.cos(a), -zoom * math.sin(a), 0],
            [zoom * math.sin(a), zoom * math.cos(a), 0],
            [0, 0, 1],
        ]
    )
    persp = np.array([[1, 0, 0], [0, 1, 0], [px / s, py / s, 1]])
    to_c = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], float)
    from_c = np.array([[1, 0, cx + dx], [0, 1, cy + dy], [0, 0, 1]], float)
    return normalize(from_c @ persp @ rs @ to_c)


def camera_path(
    kind: str, num_frames: int, width: int, height: int, magnitude: float = 1.0
) -> np.ndarray:
    """Frame-to-frame homographies ``(num_frames-1, 3, 3)`` of a named camera move.

    ``kind`` is one of pan, tilt, zoom, roll, pan_zoom, tilt_roll, orbit (pan + zoom + roll +
    slight perspective); ``magnitude`` scales the per-frame motion (1.0 is a clear but
    ordinary move: about 1% of the short side per frame).
    """
    s = min(width, height)
    m = magnitude
    steps = {
        "pan": dict(dx=-0.012 * s * m),
        "tilt": dict(dy=0.010 * s * m),
        "zoom": dict(zoom=1 + 0.012 * m),
        "roll": dict(roll=0.8 * m),
        "pan_zoom": dict(dx=-0.008 * s * m, zoom=1 + 0.008 * m),
        "tilt_roll": dict(dy=-0.007 * s * m, roll=-0.5 * m),
        "orbit": dict(
            dx=0.006 * s * m, dy=0.003 * s * m, zoom=1 + 0.005 * m, roll=0.4 * m, px=0.002 * m
        ),
    }
    if kind not in steps:
        raise CammimicError(f"camera move '{kind}' is unknown. Try one of {sorted(steps)}")
    t = np.arange(num_frames - 1)
    # Ease in and out a little, like a real operator, so frames do not all move alike.
    ease = 0.75 + 0.5 * np.sin(np.pi * (t + 0.5) / max(1, num_frames - 1))
    return np.stack(
        [
            camera_step(width, height, **{k: _scale(k, v, e) for k, v in steps[kind].items()})
            for e in ease
        ]
    )


def _scale(key: str, value: float, factor: float) -> float:
    return 1 + (value - 1) * factor if key == "zoom" else value * factor


def render_camera_motion(photo: np.ndarray, homographies, width: int, height: int) -> np.ndarray:
    """Render a ``(T, height, width, 3)`` uint8 video of ``photo`` under a known camera motion.

    Frame 0 is the centre ``width`` x ``height`` crop of ``photo``; frame k is the photograph
    seen through the chain of ``homographies`` (``(T-1, 3, 3)``, pixel coordinates of the
    video). Raises if a frame would see outside the photograph: use a larger photo.
    """
    import cv2

    ph, pw = photo.shape[:2]
    if pw < width or ph < height:
        raise CammimicError(f"the photo ({pw}x{ph}) is smaller than the video ({width}x{height})")
    m0 = np.array([[1, 0, -(pw - width) / 2], [0, 1, -(ph - height) / 2], [0, 0, 1]], float)
    cum = chain(homographies)
    ones = np.ones((ph, pw), np.float32)
    frames = np.empty((len(cum), height, width, 3), np.uint8)
    for k, c in enumerate(cum):
        m = c @ m0
        frames[k] = cv2.warpPerspective(photo, m, (width, height), flags=cv2.INTER_CUBIC)
        cover = cv2.warpPerspective(ones, m, (width, height), flags=cv2.INTER_LINEAR)
        if cover.min() < 0.999:
            raise CammimicError(
                f"frame {k} sees outside the photo: use a larger photo or a smaller move"
            )
    return frames


def add_moving_object(
    frames: np.ndarray, patch: np.ndarray, start: tuple[float, float], velocity: tuple[float, float]
) -> np.ndarray:
    """Paste ``patch`` (h, w, 3) into every frame, moving independently of the camera.

    Its top-left corner is at ``start + k * velocity`` in frame k (pixels). Returns a copy.
    """
    out = frames.copy()
    ph, pw = patch.shape[:2]
    height, width = frames.shape[1:3]
    for k in range(len(frames)):
        x = int(round(start[0] + k * velocity[0]))
        y = int(round(start[1] + k * velocity[1]))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + pw, width), min(y + ph, height)
        if x1 > x0 and y1 > y0:
            out[k, y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    return out
