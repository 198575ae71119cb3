"""CameraScore: how closely the camera motion of a generated video follows a reference (lower is better).

The paper defines ``CameraScore = (1/N) sum_i ||H_R,i - H_G,i||_F^2`` over the N consecutive-frame
homographies of the reference (R) and the generated (G) video, each normalised to
``H[2, 2] = 1``. In pixel coordinates that number depends on resolution: the translation
entries are in pixels, so the same camera move at 576x320 and at 256x256 scores far from 0.
cammimic's default, the *resolution-free* variant, first expresses each homography in
resolution-free coordinates (:func:`cammimic.homography.to_resolution_free`: centred, divided
by half the short side), so identical camera motion scores ~0 whatever the two resolutions,
and scores of runs at different sizes can be compared. ``variant="paper"`` gives the paper's
number, for comparison with published tables.
"""

from __future__ import annotations

from typing import Literal

from cammimic.errors import CammimicError
from cammimic.homography import normalize, to_resolution_free

VARIANTS = ("resolution_free", "paper")

__all__ = ["camera_score", "VARIANTS"]


def camera_score(
    reference,
    generated,
    *,
    variant: Literal["resolution_free", "paper"] = "resolution_free",
    per_pair: bool = False,
):
    """CameraScore between two camera motions.

    Args:
        reference, generated: :class:`cammimic.motion.MotionEstimate` objects (their ``width``
            and ``height`` are used by the resolution-free variant) with the same number of
            frames.
        variant: ``resolution_free`` (default) or ``paper`` (raw pixel homographies).
        per_pair: also return the ``(N,)`` per-pair squared Frobenius distances.

    Returns:
        The score (float), or ``(score, per_pair_values)`` if ``per_pair``.
    """
    if variant not in VARIANTS:
        raise CammimicError(f"CameraScore variant '{variant}' is unknown. Try one of {list(VARIANTS)}")
    hr, hg = reference.homographies, generated.homographies
    if hr.shape != hg.shape:
        raise CammimicError(
            f"CameraScore needs videos with the same number of frames: the reference has "
            f"{len(hr) + 1}, the generated video {len(hg) + 1}; sample both to the same --frames"
        )
    if variant == "resolution_free":
        hr = to_resolution_free(hr, reference.width, reference.height)
        hg = to_resolution_free(hg, generated.width, generated.height)
    else:
        hr, hg = normalize(hr), normalize(hg)
    d = ((hr - hg) ** 2).sum(axis=(-1, -2))
    score = float(d.mean())
    return (score, d) if per_pair else score
