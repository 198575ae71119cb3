"""Camera motion of a video: the result type motion estimators return, and their contract."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

__all__ = ["MotionEstimate", "Fallback", "MotionEstimator"]


@attrs.frozen
class Fallback:
    """A frame pair whose homography could not be estimated, and what was used instead."""

    pair: int  #: index i of the pair (frame i -> frame i+1)
    reason: str  #: why estimation failed, e.g. "7 matches, need 12"
    used: str  #: what was used instead, e.g. "previous pair" or "identity"

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _homographies(value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (3, 3):
        raise ValueError(f"homographies must have shape (T-1, 3, 3), got {arr.shape}")
    arr = arr / arr[:, 2:3, 2:3]
    arr.setflags(write=False)
    return arr


@attrs.frozen(eq=False)
class MotionEstimate:
    """The camera motion of a video of T frames, as T-1 frame-to-frame homographies.

    ``homographies[i]`` maps pixel coordinates of frame i to frame i+1 (``x_{i+1} ~ H_i x_i``),
    normalised so ``H[2, 2] == 1``, in the pixel grid of ``width`` x ``height`` (see
    :mod:`cammimic.homography` for the conventions).
    """

    homographies: np.ndarray = attrs.field(converter=_homographies)
    width: int
    height: int
    estimator: str
    #: Frame pairs where estimation failed and a fallback was used.
    fallbacks: tuple[Fallback, ...] = attrs.field(default=(), converter=tuple)
    #: Estimator-specific per-pair figures (e.g. ``{"inliers": [...]}``), JSON-serialisable.
    diagnostics: dict[str, Any] = attrs.field(factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.homographies) + 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``estimator``, ``width``, ``height``, ``homographies`` (3x3 lists)…"""
        return {
            "estimator": self.estimator,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "convention": "H[i] maps pixel coordinates of frame i to frame i+1; H[2][2] = 1; "
            "pixel (0, 0) is the centre of the top-left pixel",
            "homographies": self.homographies.tolist(),
            "fallbacks": [f.to_json() for f in self.fallbacks],
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MotionEstimate:
        return cls(
            homographies=np.asarray(data["homographies"], dtype=np.float64),
            width=int(data["width"]),
            height=int(data["height"]),
            estimator=str(data["estimator"]),
            fallbacks=tuple(Fallback(**f) for f in data.get("fallbacks", [])),
            diagnostics=dict(data.get("diagnostics", {})),
        )


@runtime_checkable
class MotionEstimator(Protocol):
    """What a motion-estimator factory returns (see the ``register_motion_estimators`` hook).

    ``estimate`` takes the frames of one video as a ``(T, H, W, 3)`` uint8 RGB array, T >= 2,
    and returns a :class:`MotionEstimate` with T-1 homographies in that pixel grid. It must not
    raise on hard frame pairs (no texture, a cut): it records a :class:`Fallback` instead.
    """

    name: str

    def estimate(self, frames: np.ndarray) -> MotionEstimate: ...
