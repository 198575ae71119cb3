"""Camera presets and camera-path files as the reference: camera motion without a reference clip.

Anywhere a REFERENCE is taken (``run``, ``finetune``, ``sample``, ``motion``, ``score``, eval
manifests) it may also be

- a **preset**: ``camera:NAME[:key=value,...]``, NAME one of :data:`PRESETS` (several joined by
  ``+``, e.g. ``camera:pan-left+zoom-in``), keys ``speed`` (motion per frame, 1 = about 1% of
  the short side per frame), ``frames`` (length of the path, default 16) and ``ease``
  (``in-out`` default, ``linear``, ``in``, ``out``); or
- a **camera-path file** (``.json``): per-frame homographies, or per-frame cameras
  (intrinsics ``K``, rotation ``R``, translation ``t``) and a scene plane, turned into
  homographies ``H = K_b (R - t nᵀ/d) K_a⁻¹`` (see :func:`plane_homography` and docs/cli.md).

:func:`render_reference` turns such a text into a :class:`CameraVideo`: the frames of an image
moved along the path (the user image for the cammimic method, whose stage 1 learns from it) and
the exact motion, which :func:`known_motion` reads back. Callers do not dispatch on the kind of
reference themselves: :func:`cammimic.reference.resolve_reference` does, once, and its
:class:`~cammimic.reference.Reference` carries that motion as ``Reference.motion``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import (
    chain,
    from_resolution_free,
    invert,
    normalize,
    plane_homography,
    to_resolution_free,
)
from cammimic.io import Video
from cammimic.motion import MotionEstimate
from cammimic.synthetic import camera_step

__all__ = [
    "PRESETS",
    "KEYS",
    "EASES",
    "PREFIX",
    "CameraPath",
    "CameraVideo",
    "is_camera_reference",
    "parse",
    "load_path_file",
    "plane_homography",
    "render_reference",
    "render_path",
    "known_motion",
]

PREFIX = "camera:"
#: Per-frame move at speed 1 (``camera_step`` arguments in units of the short side; orbit in degrees).
PRESETS: dict[str, dict[str, float]] = {
    "pan-left": {"dx": 0.012},  # the camera turns left: the scene moves right on screen
    "pan-right": {"dx": -0.012},
    "tilt-up": {"dy": 0.010},  # the camera turns up: the scene moves down on screen
    "tilt-down": {"dy": -0.010},
    "zoom-in": {"zoom": 0.012},  # log-scale per frame: zoom-out is the exact inverse
    "zoom-out": {"zoom": -0.012},
    "roll-cw": {"roll": -0.8},  # the camera rolls clockwise: the scene turns counter-clockwise
    "roll-ccw": {"roll": 0.8},
    "orbit-left": {"orbit": 1.0},  # degrees per frame around the point at the image centre
    "orbit-right": {"orbit": -1.0},
}
KEYS = ("speed", "frames", "ease")
EASES = ("in-out", "linear", "in", "out")
DEFAULT_FRAMES = 16
#: Size a path is rendered at when neither a size nor an image says otherwise (zeroscope's).
DEFAULT_SIZE = (576, 320)
#: Horizontal field of view of the pinhole camera the orbit presets assume.
ORBIT_FOV_DEGREES = 50.0
#: Largest zoom applied to frame 0 of a rendered path so that later frames stay inside the image.
MAX_COVER_ZOOM = 3.0
#: Distance of the scene plane in the orbit presets, in units of the distance to the point orbited.
ORBIT_PLANE_DEPTH = 2.0
#: Longest camera path (frames), preset or file: twenty minutes at 8 fps. Only the frames kept
#: (``--frames`` samples evenly) are drawn, within the video pixel limit (cammimic.io).
MAX_PATH_FRAMES = 10_000
#: Largest preset speed (the per-frame move grows linearly with it).
MAX_SPEED = 100.0
#: Largest camera-path file read (about 10,000 frames of camera file with room to spare).
MAX_PATH_FILE_BYTES = 8 * 2**20
#: Largest "width"/"height" a camera-path file may state.
MAX_PATH_SIDE = 65_536
#: Most a path may scale the image's area, either way, before its motion counts as degenerate.
MAX_AREA_SCALE = 1e4

_VALID = (
    f"valid: camera:NAME[:key=value,...] with NAME in {', '.join(PRESETS)} (join with +), "
    f"keys speed=NUMBER in (0, {MAX_SPEED:g}], frames=INTEGER in [2, {MAX_PATH_FRAMES}], "
    f"ease={'|'.join(EASES)}; or a camera-path .json file"
)


def _ease(kind: str, steps: int) -> np.ndarray:
    """Per-step multipliers of a move (mean 1, so the total motion does not depend on the ease)."""
    u = np.linspace(0.0, 1.0, steps + 1)
    p = {"linear": u, "in": u**2, "out": 1 - (1 - u) ** 2, "in-out": u * u * (3 - 2 * u)}[kind]
    return np.diff(p) * steps


def _orbit_step(width: int, height: int, degrees: float) -> np.ndarray:
    """The camera circles the point on its optical axis at distance 1 by ``degrees`` (yaw), looking at it.

    Homography approximation: the scene is one plane facing the camera at distance 2 (a
    background twice as far as the point orbited), so the background slides opposite to the
    camera and foreshortens; a real orbit would add parallax between near and far objects.
    """
    f = (width / 2) / math.tan(math.radians(ORBIT_FOV_DEGREES) / 2)
    k = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    a = math.radians(degrees)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    pivot = np.array([0.0, 0.0, 1.0])
    centre = pivot - ry @ pivot  # camera b's centre in camera a's coordinates
    r = ry.T
    return plane_homography(k, k, r, -r @ centre, (0, 0, -1), ORBIT_PLANE_DEPTH)


@attrs.frozen(eq=False)
class CameraPath:
    """A camera motion given as a preset or a path file: frame-to-frame homographies at any size."""

    spec: str  #: the text the user gave
    kind: str  #: "preset" or "file"
    num_frames: int
    moves: tuple[str, ...] = ()  #: preset names (kind "preset")
    speed: float = 1.0
    ease: str = "in-out"
    #: (T-1, 3, 3) resolution-free homographies (kind "file")
    file_homographies: np.ndarray | None = None
    sha256: str | None = None  #: of the path file

    def homographies(self, width: int, height: int) -> np.ndarray:
        """``(num_frames - 1, 3, 3)`` frame-to-frame homographies in pixels of a ``width`` x ``height`` video."""
        if self.kind == "file":
            return from_resolution_free(self.file_homographies, width, height)
        s = min(width, height)
        out = []
        for e in _ease(self.ease, self.num_frames - 1) * self.speed:
            h = np.eye(3)
            for move in self.moves:
                p = PRESETS[move]
                if "orbit" in p:
                    step = _orbit_step(width, height, p["orbit"] * e)
                else:
                    step = camera_step(
                        width,
                        height,
                        dx=p.get("dx", 0.0) * s * e,
                        dy=p.get("dy", 0.0) * s * e,
                        zoom=math.exp(p.get("zoom", 0.0) * e),
                        roll=p.get("roll", 0.0) * e,
                    )
                h = step @ h
            out.append(normalize(h))
        return np.stack(out)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"spec": self.spec, "kind": self.kind, "num_frames": self.num_frames}
        if self.kind == "preset":
            data |= {"moves": list(self.moves), "speed": self.speed, "ease": self.ease}
        else:
            data["sha256"] = self.sha256
        return data


def is_camera_reference(reference) -> bool:
    """True for ``camera:...`` presets and ``.json`` camera-path files."""
    if not isinstance(reference, (str, Path)):
        return False
    text = str(reference)
    return text.startswith(PREFIX) or text.lower().endswith(".json")


def _bad(spec: str, what: str) -> CammimicError:
    return CammimicError(f"camera reference '{spec}': {what}; {_VALID}")


def parse(reference, *, frames: int | None = None) -> CameraPath:
    """A :class:`CameraPath` from ``camera:NAME[:key=value,...]`` or a path-file name.

    ``frames`` is the path length when the text does not give one (default 16).
    """
    text = str(reference)
    if not text.startswith(PREFIX):
        return load_path_file(text)
    body = text[len(PREFIX) :]
    name, _, opts = body.partition(":")
    moves = tuple(m.strip() for m in name.split("+"))
    for m in moves:
        if m not in PRESETS:
            raise _bad(text, f"preset '{m}' is unknown" if m else "no preset name")
    values: dict[str, str] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in KEYS or not eq:
            raise _bad(
                text,
                f"'{item}' is not a key=value with a known key"
                if key in KEYS
                else f"key '{key}' is unknown",
            )
        values[key] = value.strip()
    try:
        speed = float(values.get("speed", 1.0))
        if not (math.isfinite(speed) and 0 < speed <= MAX_SPEED):
            raise ValueError
    except ValueError:
        raise _bad(
            text, f"speed={values['speed'][:40]} is not a number in (0, {MAX_SPEED:g}]"
        ) from None
    n = frames or DEFAULT_FRAMES
    if "frames" in values:
        try:
            n = int(values["frames"])
            if n < 2:
                raise ValueError
        except ValueError:
            raise _bad(text, f"frames={values['frames'][:40]} is not an integer >= 2") from None
    if n > MAX_PATH_FRAMES:
        raise _bad(
            text,
            f"a path of {n} frames is longer than the limit of {MAX_PATH_FRAMES}; "
            "give fewer frames (frames=N, or --frames N)",
        )
    ease = values.get("ease", "in-out")
    if ease not in EASES:
        raise _bad(text, f"ease={ease} is unknown")
    return CameraPath(spec=text, kind="preset", num_frames=n, moves=moves, speed=speed, ease=ease)


_FILE_HELP = (
    'a camera-path file is JSON with "width", "height" and either "homographies" (T-1 '
    'frame-to-frame 3x3 lists in pixels of width x height, or "coordinates": "resolution_free") '
    'or "cameras" (one per frame: "K" 3x3 (or a top-level "K"), "R" 3x3 world-to-camera, optional "t" [x,y,z]) '
    'with "plane": {"depth": d, "normal": [nx,ny,nz]} (frame 0\'s camera coordinates, normal towards the camera, default [0,0,-1]); see docs/cli.md'
)


def _matrix(value, where: str, shape=(3, 3)) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != shape or not np.all(np.isfinite(arr)):
        raise CammimicError(
            f"{where} must be a {'x'.join(map(str, shape))} list of finite numbers; {_FILE_HELP}"
        )
    return arr


def load_path_file(path) -> CameraPath:
    """Read a camera-path JSON file (see :data:`_FILE_HELP` and docs/cli.md). Never executes code."""
    p = Path(path)
    if not p.exists():
        raise CammimicError(
            f"camera-path file {p} does not exist; give a .json camera path or one of {_VALID}"
        )
    if not p.is_file():  # a FIFO would block the read forever
        raise CammimicError(
            f"camera-path file {p} is not a regular file (a folder, FIFO or device); "
            "give a .json camera-path file"
        )
    if p.stat().st_size > MAX_PATH_FILE_BYTES:
        raise CammimicError(
            f"camera-path file {p} is {p.stat().st_size / 2**20:.1f} MB, above the limit of "
            f"{MAX_PATH_FILE_BYTES / 2**20:.0f} MB; a path has at most {MAX_PATH_FRAMES} frames"
        )
    raw = p.read_bytes()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CammimicError(
            f"camera-path file {p} is not valid JSON ({exc}); {_FILE_HELP}"
        ) from None
    except RecursionError:
        raise CammimicError(
            f"camera-path file {p} nests its JSON too deeply to read; {_FILE_HELP}"
        ) from None
    if not isinstance(data, dict):
        raise CammimicError(f"camera-path file {p} must hold a JSON object; {_FILE_HELP}")
    if data.get("format") == "cammimic-camera":  # the editable camera file (cammimic.camera_file)
        from cammimic.camera_file import path_homographies

        rf, _ = path_homographies(data, f"camera file {p}")
        return CameraPath(
            spec=str(p),
            kind="file",
            num_frames=len(rf) + 1,
            file_homographies=rf,
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    coords = data.get("coordinates", "pixels")
    if coords not in ("pixels", "resolution_free"):
        raise CammimicError(
            f"camera-path file {p}: coordinates '{coords}' is unknown; valid: pixels, resolution_free"
        )
    width, height = data.get("width"), data.get("height")
    if coords == "pixels" or "cameras" in data:
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_PATH_SIDE
            for v in (width, height)
        ):
            raise CammimicError(
                f'camera-path file {p} needs integer "width" and "height" in '
                f"[1, {MAX_PATH_SIDE}]; {_FILE_HELP}"
            )
    for key in ("homographies", "cameras"):
        if (
            isinstance(data.get(key), list)
            and len(data[key]) + (key == "homographies") > MAX_PATH_FRAMES
        ):
            raise CammimicError(
                f"camera-path file {p}: {len(data[key])} {key} make a path longer than the limit of "
                f"{MAX_PATH_FRAMES} frames; shorten the path"
            )
    if "homographies" in data:
        hs = data["homographies"]
        if not isinstance(hs, list) or not hs:
            raise CammimicError(
                f'camera-path file {p}: "homographies" must be a non-empty list; {_FILE_HELP}'
            )
        hs = np.stack(
            [_matrix(h, f"camera-path file {p}: homographies[{i}]") for i, h in enumerate(hs)]
        )
        for i in np.flatnonzero(np.abs(hs[:, 2, 2]) < 1e-12)[:1]:
            raise CammimicError(
                f"camera-path file {p}: homographies[{i}] has H[2][2] = 0 (it sends the image's "
                "corner to infinity); scale each matrix so that H[2][2] = 1"
            )
        rf = hs if coords == "resolution_free" else to_resolution_free(hs, width, height)
    elif "cameras" in data:
        rf = to_resolution_free(_camera_homographies(data, p), width, height)
    else:
        raise CammimicError(
            f'camera-path file {p} has neither "homographies" nor "cameras"; {_FILE_HELP}'
        )
    with np.errstate(all="ignore"):  # an overflowing determinant is refused when the path is drawn
        singular = np.any(np.abs(np.linalg.det(rf)) < 1e-9)
    if singular:
        raise CammimicError(f"camera-path file {p}: a homography is singular; check the matrices")
    return CameraPath(
        spec=str(p),
        kind="file",
        num_frames=len(rf) + 1,
        file_homographies=normalize(rf),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _camera_homographies(data: dict, p: Path) -> np.ndarray:
    cams = data["cameras"]
    if not isinstance(cams, list) or len(cams) < 2 or not all(isinstance(c, dict) for c in cams):
        raise CammimicError(
            f'camera-path file {p}: "cameras" must list at least 2 objects; {_FILE_HELP}'
        )
    plane = data.get("plane") or {}
    if not isinstance(plane, dict):
        raise CammimicError(
            f'camera-path file {p}: "plane" must be an object such as '
            f'{{"depth": 5, "normal": [0, 0, -1]}}; {_FILE_HELP}'
        )
    normal = _matrix(plane.get("normal", [0, 0, -1]), f"camera-path file {p}: plane.normal", (3,))
    if not np.linalg.norm(normal) > 0:
        raise CammimicError(
            f"camera-path file {p}: plane.normal is [0, 0, 0]; give the plane's normal, e.g. [0, 0, -1]"
        )
    depth = plane.get("depth")
    needs_plane = any("t" in c for c in cams)
    if needs_plane and not (
        isinstance(depth, (int, float))
        and not isinstance(depth, bool)
        and 0 < depth < 1e300
        and math.isfinite(depth)
    ):
        raise CammimicError(
            f'camera-path file {p}: cameras with a translation "t" need "plane": '
            f'{{"depth": d > 0, "normal": [nx, ny, nz]}}; {_FILE_HELP}'
        )
    normal = normal / (np.linalg.norm(normal) or 1.0)
    ks, rs, ts = [], [], []
    for i, c in enumerate(cams):
        where = f"camera-path file {p}: cameras[{i}]"
        if "K" not in c and "K" not in data:
            raise CammimicError(f'{where} has no "K" (and there is no top-level "K"); {_FILE_HELP}')
        ks.append(_matrix(c.get("K", data.get("K")), f"{where}.K"))
        if not abs(np.linalg.det(ks[-1])) > 1e-12:
            raise CammimicError(
                f"{where}.K is singular (determinant 0); a camera matrix is "
                "[[f, 0, cx], [0, f, cy], [0, 0, 1]] with the focal length f > 0 in pixels"
            )
        r = _matrix(c.get("R", np.eye(3).tolist()), f"{where}.R")
        if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
            raise CammimicError(f"{where}.R is not a rotation matrix (R Rᵀ = I, det 1)")
        rs.append(r)
        ts.append(_matrix(c.get("t", [0, 0, 0]), f"{where}.t", (3,)))
    # Homography frame 0 -> frame k from the relative pose; frame-to-frame by composition.
    to_k = []
    for k in range(len(cams)):
        r_rel = rs[k] @ rs[0].T
        t_rel = ts[k] - r_rel @ ts[0]
        to_k.append(plane_homography(ks[0], ks[k], r_rel, t_rel, normal, depth or 1.0))
    return np.stack([normalize(to_k[k + 1] @ np.linalg.inv(to_k[k])) for k in range(len(cams) - 1)])


@attrs.frozen(eq=False)
class CameraVideo(Video):
    """A reference video rendered along a :class:`CameraPath`; it carries the exact motion."""

    camera: CameraPath | None = None
    #: (T, 3, 3) cumulative homographies of the rendered frames (frame 0 -> k), pixels of ``render_size``
    camera_chain: np.ndarray | None = None
    render_size: tuple[int, int] = (0, 0)
    render: dict[str, Any] = attrs.field(factory=dict)  #: how it was rendered (source, cover zoom)

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "camera": self.camera.to_json() if self.camera else None,
            "render": self.render,
        }


def _cover_zoom(cum: np.ndarray, width: int, height: int) -> tuple[float, bool]:
    """Smallest zoom of frame 0 (about the centre, <= MAX_COVER_ZOOM) keeping every frame inside the image."""
    from cammimic.homography import transform_points

    corners = np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]]
    )
    cx, cy = (width - 1) / 2, (height - 1) / 2

    inverse = invert(cum)

    def inside(s: float) -> bool:
        z_inv = np.array([[1 / s, 0, cx - cx / s], [0, 1 / s, cy - cy / s], [0, 0, 1]])
        pts = transform_points(
            z_inv @ inverse, corners
        )  # all frames at once: long paths stay quick
        return not (
            pts[..., 0].min() < -0.5 - 1e-6
            or pts[..., 0].max() > width - 0.5 + 1e-6
            or pts[..., 1].min() < -0.5 - 1e-6
            or pts[..., 1].max() > height - 0.5 + 1e-6
        )

    if inside(1.0):
        return 1.0, True
    if not inside(MAX_COVER_ZOOM):
        return MAX_COVER_ZOOM, False
    lo, hi = 1.0, MAX_COVER_ZOOM
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    return hi, True


def _texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A seeded multi-scale random texture: something to render a path on when there is no image."""
    import cv2

    rng = np.random.default_rng(seed)
    acc = np.zeros((height, width, 3), np.float32)
    for cell in (4, 16, 64):
        small = rng.random((max(2, height // cell), max(2, width // cell), 3)).astype(np.float32)
        acc += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    acc -= acc.min()
    return (255 * acc / max(acc.max(), 1e-6)).astype(np.uint8)


def _kept(camera: CameraPath, keep: int | None) -> np.ndarray:
    """The frame indices drawn: all, or ``keep`` spread evenly (as ``--frames`` samples a video)."""
    from cammimic.io.video import even_indices

    n = camera.num_frames
    if not keep or keep >= n:
        return np.arange(n)
    return even_indices(n, max(2, keep))


def _check_drawable(camera: CameraPath, count: int, width: int, height: int) -> None:
    """The pixel limits a video read has (cammimic.io), before anything is drawn."""
    from cammimic.io.images import check_image_pixels
    from cammimic.io.video import (
        ENV_MAX_VIDEO_PIXELS,
        MAX_VIDEO_PIXELS,
        check_total_pixels,
        env_limit,
    )

    where = f"camera reference '{camera.spec}'"
    check_image_pixels(width, height, where)
    check_total_pixels(
        count, (width, height), where, env_limit(ENV_MAX_VIDEO_PIXELS, MAX_VIDEO_PIXELS)
    )


def _check_motion(camera: CameraPath, cum: np.ndarray, width: int, height: int) -> None:
    """Refuse a path whose camera leaves the scene plane: a non-finite homography, the plane
    behind the camera (or crossing its horizon), or the image scaled beyond ``MAX_AREA_SCALE``."""
    corners = np.array(
        [
            [-0.5, -0.5, 1],
            [width - 0.5, -0.5, 1],
            [width - 0.5, height - 0.5, 1],
            [-0.5, height - 0.5, 1],
        ]
    )
    with np.errstate(all="ignore"):
        finite = np.all(np.isfinite(cum), axis=(1, 2))
        pts = np.einsum("tij,cj->tci", np.where(finite[:, None, None], cum, np.eye(3)), corners)
        w = pts[..., 2]
        xy = pts[..., :2] / np.where(w > 0, w, 1.0)[..., None]
        x, y = xy[..., 0], xy[..., 1]
        area = 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y, axis=1))
        scale = area / (width * height)
    for k in range(len(cum)):
        if not finite[k]:
            what = "its homography is not finite (the motion overflows)"
        elif not np.all(w[k] > 0):
            what = "the scene plane is behind the camera (or crosses its horizon), so the image would be seen from behind"
        elif not (1 / MAX_AREA_SCALE <= scale[k] <= MAX_AREA_SCALE):
            what = (
                f"the image is scaled {math.sqrt(scale[k]):.3g}x, beyond "
                f"{math.sqrt(MAX_AREA_SCALE):g}x either way"
            )
        else:
            continue
        if camera.kind == "preset":
            fix = f"use a lower speed= (now {camera.speed:g}) or fewer frames= (now {camera.num_frames})"
        else:
            fix = f"fix the file's matrices up to frame {k}"
        raise CammimicError(f"camera reference '{camera.spec}': at frame {k} {what}; {fix}")


def render_path(
    camera: CameraPath, image: np.ndarray, *, source: str = "image", keep: int | None = None
) -> CameraVideo:
    """The video of ``image`` (H, W, 3 uint8) seen by a camera moving along ``camera``.

    Frame 0 is the image, zoomed about its centre just enough (at most ``MAX_COVER_ZOOM``) that
    no later frame looks past its edges (beyond that, edges are reflected); frame k is frame 0
    moved by the composed homographies, so the video's motion is exactly the path. ``keep``:
    draw only that many frames, spread evenly (the video's ``indices`` name them). A path whose
    motion is degenerate (:func:`_check_motion`) or too large to draw is refused in one line.
    """
    import cv2

    height, width = image.shape[:2]
    kept = _kept(camera, keep)
    _check_drawable(camera, len(kept), width, height)
    with np.errstate(all="ignore"):
        try:
            cum = chain(camera.homographies(width, height))
        except (OverflowError, FloatingPointError, CammimicError):
            cum = np.full((camera.num_frames, 3, 3), np.nan)
    _check_motion(camera, cum, width, height)
    zoom, covered = _cover_zoom(cum, width, height)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    z = np.array([[zoom, 0, cx - zoom * cx], [0, zoom, cy - zoom * cy], [0, 0, 1]])
    frames = np.stack(
        [
            cv2.warpPerspective(
                image,
                cum[k] @ z,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
            for k in kept
        ]
    )
    fps = (
        8.0 * (len(kept) - 1) / (camera.num_frames - 1)
    )  # as video sampling: the clip keeps its duration
    return CameraVideo(
        frames=frames,
        fps=fps,
        indices=tuple(int(k) for k in kept),
        source_fps=8.0,
        source_num_frames=camera.num_frames,
        source_size=(width, height),
        crop=None,
        path=camera.spec,
        camera=camera,
        camera_chain=cum,
        render_size=(width, height),
        render={"source": source, "cover_zoom": round(zoom, 4), "covered": covered},
    )


def render_reference(
    reference, *, size=None, frames=None, image=None, image_source: str | None = None
) -> CameraVideo:
    """A camera preset or path file drawn as the reference video.

    Args:
        reference: ``camera:NAME[:key=value,...]`` or a ``.json`` camera-path file.
        size: ``(width, height)`` to draw at; default (or a 0 in it) the image's size (even,
            long side at most 1024) or, without an image, :data:`DEFAULT_SIZE`.
        frames: the path length when the preset does not set ``frames`` (default 16); at most
            that many frames are drawn, spread evenly.
        image: what the camera looks at: a path or an (H, W, 3) uint8 array (the user image,
            decoded once by the caller; it is resized and centre-cropped to ``size``). Without
            one, a seeded random texture.
        image_source: how the record names an ``image`` array (default ``"<image array>"``).

    Returns:
        A :class:`CameraVideo` at 8 fps whose :func:`known_motion` is the path's exact motion.
        :func:`cammimic.reference.resolve_reference` calls this for any camera reference.
    """
    from cammimic.io import as_image, resize_center_crop

    camera = parse(reference, frames=frames)
    arr = None
    if image is not None:
        arr = as_image(image)
        if image_source is None:
            image_source = str(image) if isinstance(image, (str, Path)) else "<image array>"
    if size is None or not all(size):
        if arr is None:
            size = DEFAULT_SIZE
        else:
            h, w = arr.shape[:2]
            f = min(1.0, 1024 / max(w, h))
            size = (max(2, int(w * f) // 2 * 2), max(2, int(h * f) // 2 * 2))
    width, height = int(size[0]), int(size[1])
    _check_drawable(
        camera, len(_kept(camera, frames)), width, height
    )  # before the texture or the resize
    if arr is None:
        return render_path(camera, _texture(width, height), source="texture", keep=frames)
    return render_path(
        camera, resize_center_crop(arr, (width, height))[0], source=image_source, keep=frames
    )


def known_motion(video) -> MotionEstimate | None:
    """The exact motion of a :class:`CameraVideo` (after any frame sampling or resizing), else None."""
    if not isinstance(video, CameraVideo) or video.camera_chain is None:
        return None
    c = video.camera_chain[list(video.indices)]
    hs = np.stack([normalize(c[k + 1] @ invert(c[k])) for k in range(len(c) - 1)])
    width, height = video.size
    if (width, height) != tuple(video.render_size):
        # Resize + centre crop keeps resolution-free coordinates (cammimic.homography).
        hs = from_resolution_free(to_resolution_free(hs, *video.render_size), width, height)
    return MotionEstimate(
        homographies=hs,
        width=width,
        height=height,
        estimator="camera path",
        diagnostics={"camera": video.camera.to_json()},
    )
