"""Controls on a reference's camera motion: strength, speed, reverse and smoothing.

They act on the reference's frame-to-frame homographies before the weak video is built, so every
method and every reference kind (video, ``camera:`` preset, camera-path file) takes them, and the
output is scored against the motion as controlled. All four work in the Lie algebra of the
homography group: each step ``H`` (resolution-free coordinates, scaled to determinant 1) is
``exp(L)`` with ``L = log H``.

Applied in this fixed order (each is the identity at its default):

1. ``smooth`` σ (frames; default 0): the per-step logs ``L_i`` are low-passed by a Gaussian of
   standard deviation σ frames (renormalised at the ends), which removes hand-shake and keeps
   the trend.
2. ``strength`` S (default 1): each step becomes ``H^S = exp(S·L)``; 0.5 is half the motion,
   0 a still camera, -1 the opposite move.
3. ``reverse`` (default off): the path played backwards (steps inverted, in reverse order).
4. ``speed`` X (default 1): the path is retimed to be covered in ``round((T-1)/X) + 1`` frames;
   a frame between two reference frames sits on the geodesic between them
   (``C(k + f) = H_k^f C_k``). The output has that many frames.

``diagnostics["controls"]`` of the controlled motion records the settings and, per output
frame, the reference time it shows (``times``), so a side-by-side can show the matching
reference frames (:func:`reference_frames`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import chain, from_resolution_free, invert, normalize, to_resolution_free
from cammimic.motion import Fallback, MotionEstimate

__all__ = ["MotionControls", "expm", "logm", "power", "apply_controls", "reference_frames"]

#: Most frames a retimed path may have (as ``[run] frames``).
MAX_FRAMES = 1000


# -- matrix exponential and logarithm (NumPy only: the core runs without SciPy or torch) -------------


def expm(a) -> np.ndarray:
    """Matrix exponential of ``(..., n, n)`` real matrices (scaling and squaring, Taylor series)."""
    a = np.asarray(a, np.float64)
    norm = float(np.abs(a).sum(axis=-1).max()) if a.size else 0.0
    s = max(0, int(math.ceil(math.log2(norm / 0.25)))) if norm > 0.25 else 0
    x = a / 2.0**s
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    out, term = eye.copy(), eye.copy()
    for k in range(1, 20):
        term = term @ x / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """Principal square root by the Denman–Beavers iteration."""
    y, z = a.copy(), np.broadcast_to(np.eye(a.shape[-1]), a.shape).copy()
    for _ in range(100):
        y_next = 0.5 * (y + np.linalg.inv(z))
        z = 0.5 * (z + np.linalg.inv(y))
        done = np.abs(y_next - y).max() < 1e-15 * max(1.0, np.abs(y_next).max())
        y = y_next
        if done:
            break
    return y


def logm(a) -> np.ndarray:
    """Principal matrix logarithm of ``(..., n, n)`` real matrices (inverse scaling and squaring).

    Raises :class:`CammimicError` when a matrix has no real logarithm (an eigenvalue on the
    negative real axis, e.g. a homography that mirrors the image).
    """
    a = np.asarray(a, np.float64)
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    eig = np.linalg.eigvals(a)
    if np.any((np.abs(eig.imag) < 1e-12) & (eig.real <= 0)):
        raise CammimicError(
            "a homography has no real logarithm (it mirrors or collapses the image)"
        )
    x, k = a.copy(), 0
    while np.abs(x - eye).max() > 0.05 and k < 40:
        x, k = _sqrtm(x), k + 1
    # log X = 2 artanh(Z), Z = (X - I)(X + I)^-1: converges fast for X near I
    z = (x - eye) @ np.linalg.inv(x + eye)
    z2, term, out = z @ z, z.copy(), z.copy()
    for n in range(1, 30):
        term = term @ z2
        out = out + term / (2 * n + 1)
    return 2.0 ** (k + 1) * out


def _unit_det(h: np.ndarray) -> np.ndarray:
    """Homographies scaled to determinant 1 (the same maps; their logs are traceless)."""
    det = np.linalg.det(h)
    if np.any(det <= 0):
        raise CammimicError(
            "a homography has a determinant <= 0 (it mirrors the image); it has no strength, "
            "speed or smoothing; check the reference's motion"
        )
    return h / np.cbrt(det)[..., None, None]


def power(h, s: float) -> np.ndarray:
    """``H^s = exp(s log H)`` of homographies ``(..., 3, 3)``, normalised so ``H[2, 2] = 1``."""
    return normalize(expm(s * logm(_unit_det(np.asarray(h, np.float64)))))


# -- the controls ----------------------------------------------------------------------------------


@attrs.frozen
class MotionControls:
    """Strength, speed, reverse and smoothing of a reference's motion (the ``[motion]`` section)."""

    strength: float = 1.0
    speed: float = 1.0
    reverse: bool = False
    smooth: float = 0.0

    def __attrs_post_init__(self):
        for name in ("strength", "speed", "smooth"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise CammimicError(f"motion {name} must be a finite number, got {value!r}")
        if self.speed <= 0:
            raise CammimicError(
                f"motion speed must be > 0 (2 = twice as fast, 0.5 = half), got {self.speed}"
            )
        if self.smooth < 0:
            raise CammimicError(
                f"motion smooth must be >= 0 (a Gaussian's sigma in frames), got {self.smooth}"
            )

    @classmethod
    def from_config(cls, config) -> MotionControls:
        """The controls of a :class:`~cammimic.config.Config`'s ``[motion]`` section."""
        m = config["motion"]
        return cls(
            strength=m["strength"], speed=m["speed"], reverse=m["reverse"], smooth=m["smooth"]
        )

    @property
    def is_identity(self) -> bool:
        return self.strength == 1 and self.speed == 1 and not self.reverse and self.smooth == 0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def apply(
        self, motion: MotionEstimate, *, fit_frames: Callable[[int], int] | None = None
    ) -> MotionEstimate:
        """The controlled motion (see the module docstring). ``fit_frames`` moves the retimed
        frame count to one the backbone takes (e.g. Wan's 4k+1)."""
        return apply_controls(motion, self, fit_frames=fit_frames)


def _gaussian_smooth(logs: np.ndarray, sigma: float) -> np.ndarray:
    """Low-pass ``(N, 3, 3)`` along the first axis; the kernel is renormalised at the ends."""
    n = len(logs)
    idx = np.arange(n)
    w = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("ij,jkl->ikl", w, logs)


def _retime(
    steps: np.ndarray, times: np.ndarray, speed: float, fit_frames
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps ``(T-1, 3, 3)`` covered in ``round((T-1)/speed) + 1`` frames; also the output frames'
    reference times and their positions on the input's frame axis."""
    t = len(steps) + 1
    n = max(2, int(round((t - 1) / speed)) + 1)
    if n > MAX_FRAMES:  # every frame is drawn and kept in memory
        raise CammimicError(
            f"motion speed {speed:g} would make {t} reference frames {n} output frames, above the "
            f"limit of {MAX_FRAMES}; use a larger speed or fewer --frames"
        )
    if fit_frames is not None:
        n = max(2, int(fit_frames(n)))
    pos = np.linspace(0.0, t - 1, n)
    cum = chain(steps)
    logs = logm(_unit_det(steps))
    at = []
    for p in pos:
        k = min(int(math.floor(p)), t - 2)
        f = p - k
        at.append(
            cum[k] if f == 0 else normalize(expm(f * logs[k]) @ cum[k]) if f < 1 else cum[k + 1]
        )
    at = np.stack(at)
    new = np.stack([normalize(at[j + 1] @ invert(at[j])) for j in range(n - 1)])
    return new, np.interp(pos, np.arange(t), times), pos


def apply_controls(
    motion: MotionEstimate,
    controls: MotionControls,
    *,
    fit_frames: Callable[[int], int] | None = None,
) -> MotionEstimate:
    """``motion`` under ``controls`` (smooth, strength, reverse, then speed); unchanged when they are
    all at their defaults. Fallback pairs follow the steps they came from."""
    if controls.is_identity:
        return motion
    w, h = motion.width, motion.height
    steps = to_resolution_free(motion.homographies, w, h)
    t = len(steps) + 1
    times = np.arange(t, dtype=np.float64)
    # which input pairs each step comes from, to carry fallbacks through
    sources: list[set[int]] = [{i} for i in range(t - 1)]
    if controls.smooth > 0 or controls.strength != 1:
        logs = logm(_unit_det(steps))
        if controls.smooth > 0:
            logs = _gaussian_smooth(logs, controls.smooth)
        steps = normalize(expm(controls.strength * logs))
    if controls.reverse:
        steps = invert(steps[::-1])
        times, sources = times[::-1].copy(), sources[::-1]
    if controls.speed != 1:
        steps, times, pos = _retime(steps, times, controls.speed, fit_frames)
        sources = [
            set().union(
                *sources[int(math.floor(a)) : max(int(math.ceil(b)), int(math.floor(a)) + 1)]
            )
            for a, b in zip(pos[:-1], pos[1:])
        ]
    failed = {f.pair: f for f in motion.fallbacks}
    fallbacks = []
    for j, src in enumerate(sources):
        hit = sorted(src & failed.keys())
        if hit:
            f = failed[hit[0]]
            fallbacks.append(
                Fallback(pair=j, reason=f"from reference pair {f.pair}: {f.reason}", used=f.used)
            )
    controlled = {
        **controls.to_json(),
        "reference_frames": t,
        "frames": len(steps) + 1,
        "times": [round(float(x), 6) for x in times],
    }
    return MotionEstimate(
        homographies=from_resolution_free(steps, w, h),
        width=w,
        height=h,
        estimator=motion.estimator,
        fallbacks=tuple(fallbacks),
        diagnostics={**motion.diagnostics, "controls": controlled},
    )


def reference_frames(frames: np.ndarray, motion: MotionEstimate) -> np.ndarray:
    """The reference frames matching each frame of a controlled ``motion`` (nearest in time), for
    a side-by-side; ``frames`` unchanged when the motion was not retimed or reversed."""
    controls = motion.diagnostics.get("controls")
    if not controls or len(controls["times"]) != motion.num_frames:
        return frames
    idx = np.clip(np.round(np.asarray(controls["times"])).astype(int), 0, len(frames) - 1)
    return frames[idx]
