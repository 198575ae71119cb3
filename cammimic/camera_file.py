"""The camera as a file a person edits: per-frame pan, tilt, zoom and roll, plus the exact homographies.

A *camera file* is a camera-path ``.json`` with ``"format": "cammimic-camera"``; every command
that takes a REFERENCE accepts it (``cammimic.camera.load_path_file`` reads it through
:func:`path_homographies`). ``cammimic motion REF --camera-file FILE`` writes one from any
reference, ``cammimic import-camera`` from a RealEstate10K camera file (CameraCtrl, CamI2V).

Per frame k it holds the camera's position relative to frame 0 in ``cammimic motion``'s units
(:mod:`cammimic.trajectory`): ``pan`` and ``tilt`` in half short sides, ``zoom`` a factor,
``roll`` in degrees, and ``homography``, the exact frame-0-to-k homography in pixels. **The four
numbers are authoritative**: a frame's camera is ::

    C'_k = S(pan, tilt, zoom, roll) · S(pan, tilt, zoom, roll of homography)⁻¹ · homography

(S the similarity of the four numbers, in resolution-free coordinates; repeated until ``C'_k``
reads back as the four numbers, which perspective makes take a few rounds), so unedited numbers
give the exact homography back, edited ones are exactly the camera's, and the homography
contributes only what the four numbers cannot say (perspective, shear). Without ``homography`` a
frame is ``S(pan, tilt, zoom, roll)`` alone.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import (
    chain,
    invert,
    normalize,
    plane_homography,
    to_resolution_free,
)

__all__ = ["FORMAT", "similarity", "decompose", "to_camera_file", "path_homographies", "read_re10k"]

FORMAT = "cammimic-camera"
VERSION = 1
FIELDS = ("pan", "tilt", "zoom", "roll")
#: Bounds of a camera file, as of camera-path files (cammimic.camera).
MAX_FRAMES = 10_000
MAX_SIDE = 65_536
#: A number differing from its homography's by more than this counts as edited.
EDIT_TOLERANCE = 1e-6

_EDIT = (
    "pan, tilt, zoom and roll are authoritative: change any of them, per frame, and the camera follows. "
    "'homography' (frame 0 -> this frame, pixels) adds only what they cannot express (perspective, shear): "
    "a frame's camera is S(numbers) * S(numbers of homography)^-1 * homography. Delete 'homography' to use the "
    "numbers alone. Frames may be added or removed; the list is the path, frame 0 first."
)
_UNITS = {
    "pan": "half short sides, relative to frame 0; positive: the camera turns right (the scene moves left)",
    "tilt": "half short sides; positive: the camera turns up (the scene moves down)",
    "zoom": "scale factor; above 1: zoomed in",
    "roll": "degrees; positive: the scene turns clockwise on screen",
}
_HELP = (
    'a camera file ("format": "cammimic-camera") needs "width", "height" and "frames": a list of at least 2 '
    'objects with numbers "pan", "tilt", "zoom" (> 0), "roll" and optionally "homography" (3x3); see docs/cli.md'
)


def similarity(pan: float, tilt: float, zoom: float, roll: float) -> np.ndarray:
    """The resolution-free similarity whose pan, tilt, zoom and roll (trajectory's reading) are these."""
    a = math.radians(roll)
    return np.array(
        [
            [zoom * math.cos(a), -zoom * math.sin(a), -pan],
            [zoom * math.sin(a), zoom * math.cos(a), tilt],
            [0.0, 0.0, 1.0],
        ]
    )


def decompose(h: np.ndarray) -> dict[str, float]:
    """pan, tilt, zoom, roll of a resolution-free homography (as :func:`cammimic.trajectory.summarize`)."""
    from cammimic import trajectory

    return trajectory.decompose(normalize(h))


def to_camera_file(
    motion, *, fps: float | None = None, source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The editable camera file of a :class:`~cammimic.motion.MotionEstimate`, as a JSON-ready dict."""
    w, h = motion.width, motion.height
    cum = chain(motion.homographies)
    frames = []
    for k, c in enumerate(cum):
        numbers = decompose(to_resolution_free(c, w, h))
        frames.append(
            {
                "frame": k,
                **{f: round(numbers[f], 10) + 0.0 for f in FIELDS},
                "homography": c.tolist(),
            }
        )
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "edit": _EDIT,
        "units": _UNITS,
        "width": w,
        "height": h,
    }
    if fps:
        data["fps"] = float(fps)
    data["frames"] = frames
    data["source"] = source or {"estimator": motion.estimator}
    return data


def _number(value, where: str, positive: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise CammimicError(
            f"{where} must be a finite number{' > 0' if positive else ''}, got {value!r}; {_HELP}"
        )
    return float(value)


def _homography(value, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
        raise CammimicError(f"{where} must be a 3x3 list of finite numbers; {_HELP}")
    return arr


def path_homographies(data: dict, where: str) -> tuple[np.ndarray, list[int]]:
    """The ``(T-1, 3, 3)`` resolution-free frame-to-frame homographies of a camera file's dict,
    and the frames whose numbers were edited (differ from their homography's)."""
    width, height = data.get("width"), data.get("height")
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE
        for v in (width, height)
    ):
        raise CammimicError(
            f'{where} needs integer "width" and "height" in [1, {MAX_SIDE}]; {_HELP}'
        )
    if data.get("version", VERSION) != VERSION:
        raise CammimicError(
            f"{where}: camera file version {data.get('version')!r} is unknown; this cammimic reads "
            f"version {VERSION}"
        )
    frames = data.get("frames")
    if (
        not isinstance(frames, list)
        or len(frames) < 2
        or not all(isinstance(f, dict) for f in frames)
    ):
        raise CammimicError(f'{where}: "frames" must list at least 2 objects; {_HELP}')
    if len(frames) > MAX_FRAMES:
        raise CammimicError(
            f"{where}: {len(frames)} frames, above the limit of {MAX_FRAMES}; shorten the path"
        )
    cams, edited = [], []
    for k, f in enumerate(frames):
        at = f"{where}: frames[{k}]"
        numbers = {
            name: _number(f.get(name), f"{at}.{name}", positive=name == "zoom") for name in FIELDS
        }
        s = similarity(**numbers)
        if "homography" in f:
            c = to_resolution_free(_homography(f["homography"], f"{at}.homography"), width, height)
            if abs(np.linalg.det(c)) < 1e-12:
                raise CammimicError(
                    f"{at}.homography is singular; fix it or delete it to use the numbers alone"
                )
            own = decompose(c)
            if any(abs(numbers[n] - own[n]) > EDIT_TOLERANCE for n in FIELDS):
                edited.append(k)
            # perspective makes the reading slightly non-linear: repeat until it reads the numbers
            for _ in range(50):
                c = normalize(s @ np.linalg.inv(similarity(**own)) @ c)
                own = decompose(c)
                if all(abs(numbers[n] - own[n]) < 1e-12 for n in FIELDS):
                    break
        else:
            c = s
        cams.append(c)
    steps = np.stack([normalize(cams[k + 1] @ invert(cams[k])) for k in range(len(cams) - 1)])
    return steps, edited


# -- RealEstate10K camera files (CameraCtrl, CamI2V) ------------------------------------------------


def read_re10k(
    path,
    *,
    width: int,
    height: int,
    depth: float = 2.0,
    normal=(0.0, 0.0, -1.0),
    frames: int | None = None,
) -> dict[str, Any]:
    """A camera file from a RealEstate10K camera ``.txt`` through the scene-plane approximation.

    The file's first line is the clip's URL; every other line is one frame: ``timestamp fx fy cx
    cy k1 k2`` then the 3x4 world-to-camera matrix ``[R | t]`` row by row (19 numbers), the
    intrinsics normalised by the image's width and height (CameraCtrl's and CamI2V's format).
    Each frame's homography is that of a plane ``depth`` units ahead of frame 0's camera (the
    file's translation units; ``inf``: rotation only) with ``normal`` in frame 0's coordinates,
    ``H = K_k (R - t nᵀ/d) K_0⁻¹`` (:func:`cammimic.homography.plane_homography`), for a
    ``width`` x ``height`` video. ``frames``: sample that many frames evenly (default: all).
    """
    from cammimic.motion import MotionEstimate

    p = Path(path)
    if not p.is_file():
        raise CammimicError(
            f"RealEstate10K camera file {p} does not exist; give the .txt of a clip"
        )
    if not (isinstance(depth, (int, float)) and depth > 0 and not math.isnan(depth)):
        raise CammimicError(
            f"--depth {depth} must be a number > 0 (the plane's distance; inf: rotation only)"
        )
    raw = p.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise CammimicError(f"RealEstate10K camera file {p} is not UTF-8 text") from None
    rows, url = [], None
    for i, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(x) for x in parts]
        except ValueError:
            if i == 0:
                url = line.strip()  # the clip's URL
                continue
            raise CammimicError(
                f"{p} line {i + 1}: not numbers; each frame line is: timestamp fx fy cx cy k1 k2 "
                "and the 3x4 world-to-camera matrix row by row (19 numbers)"
            ) from None
        if len(values) != 19 or not all(math.isfinite(v) for v in values):
            raise CammimicError(
                f"{p} line {i + 1}: {len(values)} numbers, a frame line has 19 finite ones: "
                "timestamp fx fy cx cy k1 k2 and the 3x4 world-to-camera matrix row by row"
            )
        rows.append(values)
    if len(rows) < 2:
        raise CammimicError(f"{p} holds {len(rows)} frame line(s); a camera path needs at least 2")
    if frames is not None:
        if frames < 2:
            raise CammimicError(f"--frames {frames} must be at least 2")
        idx = np.unique(np.round(np.linspace(0, len(rows) - 1, min(frames, len(rows)))).astype(int))
        rows = [rows[i] for i in idx]
    n = np.asarray(normal, np.float64)
    n = n / (np.linalg.norm(n) or 1.0)
    ks, poses = [], []
    for i, r in enumerate(rows):
        fx, fy, cx, cy = r[1:5]
        if fx <= 0 or fy <= 0:
            raise CammimicError(f"{p} frame {i}: focal lengths fx={fx}, fy={fy} must be > 0")
        # normalised intrinsics to pixels; pixel (0, 0) is the centre of the top-left pixel
        ks.append(
            np.array(
                [[fx * width, 0, cx * width - 0.5], [0, fy * height, cy * height - 0.5], [0, 0, 1]]
            )
        )
        m = np.asarray(r[7:], np.float64).reshape(3, 4)
        rot, t = m[:, :3], m[:, 3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
            raise CammimicError(
                f"{p} frame {i}: the rotation is not a rotation matrix (R Rᵀ = I, det 1)"
            )
        poses.append((rot, t))
    r0, t0 = poses[0]
    to_k = []
    for k, (rk, tk) in enumerate(poses):
        r_rel = rk @ r0.T
        t_rel = np.zeros(3) if math.isinf(depth) else tk - r_rel @ t0
        to_k.append(
            plane_homography(ks[0], ks[k], r_rel, t_rel, n, 1.0 if math.isinf(depth) else depth)
        )
    steps = np.stack(
        [normalize(to_k[k + 1] @ np.linalg.inv(to_k[k])) for k in range(len(to_k) - 1)]
    )
    if np.any(np.abs(np.linalg.det(steps)) < 1e-9) or np.any(np.linalg.det(steps) < 0):
        raise CammimicError(
            f"{p}: with the plane at depth {depth} a frame sees the plane edge-on or from behind; "
            "give a larger --depth"
        )
    motion = MotionEstimate(
        homographies=steps, width=width, height=height, estimator="RealEstate10K cameras"
    )
    ts = [r[0] for r in rows]
    fps = (len(ts) - 1) / ((ts[-1] - ts[0]) / 1e6) if ts[-1] > ts[0] else None
    return to_camera_file(
        motion,
        fps=fps,
        source={
            "realestate10k": str(p),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "url": url,
            "plane": {"depth": "inf" if math.isinf(depth) else float(depth), "normal": n.tolist()},
            "timestamps_us": ts,
            "intrinsics": "normalised fx, fy, cx, cy times the width and height",
        },
    )
