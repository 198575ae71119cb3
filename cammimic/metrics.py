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

Fallbacks. A motion estimator that cannot read a frame pair substitutes a neighbour's homography
or the identity (:class:`cammimic.motion.Fallback`). A score over substituted pairs measures the
substitute, not the video: two unreadable videos both fall back to identity and score a
"perfect" 0. So pairs that fell back in *either* video are left out of the mean, and a score
is *valid* only if at most ``MAX_FALLBACK_SHARE`` (25 %) of either video's pairs fell back and
at least one pair is left. An invalid score is reported as invalid with the reason, never as a
bare number (:func:`validity`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import normalize, to_resolution_free

VARIANTS = ("resolution_free", "paper")
#: A score is invalid when more than this share of either video's frame pairs fell back.
MAX_FALLBACK_SHARE = 0.25

__all__ = ["camera_score", "validity", "fallback_pairs", "VARIANTS", "MAX_FALLBACK_SHARE"]


def fallback_pairs(motion) -> frozenset[int]:
    """Indices of the frame pairs of ``motion`` whose homography is a fallback, not a measurement."""
    return frozenset(int(f.pair) for f in motion.fallbacks)


def validity(
    reference, generated, *, max_fallback_share: float = MAX_FALLBACK_SHARE
) -> tuple[bool, str]:
    """``(valid, reason)``: whether a CameraScore of these two motions means anything.

    Invalid when more than ``max_fallback_share`` of either video's frame pairs fell back, or
    when no pair was estimated in both videos; ``reason`` says which (``""`` when valid).
    """
    n = len(reference.homographies)
    reasons = []
    for label, m in (("reference", reference), ("generated", generated)):
        k = len(fallback_pairs(m))
        if k > max_fallback_share * n:
            reasons.append(
                f"{k} of {n} {label}-video frame pairs fell back (more than {max_fallback_share:.0%})"
            )
    used = n - len(fallback_pairs(reference) | fallback_pairs(generated))
    if used == 0 and not reasons:
        reasons.append("no frame pair was estimated in both videos")
    if reasons:
        return False, "; ".join(reasons) + ": the estimator could not read the motion"
    return True, ""


def camera_score(
    reference,
    generated,
    *,
    variant: Literal["resolution_free", "paper"] = "resolution_free",
    per_pair: bool = False,
    exclude_fallbacks: bool = True,
):
    """CameraScore between two camera motions.

    Args:
        reference, generated: :class:`cammimic.motion.MotionEstimate` objects (their ``width``
            and ``height`` are used by the resolution-free variant) with the same number of
            frames.
        variant: ``resolution_free`` (default) or ``paper`` (raw pixel homographies).
        per_pair: also return the ``(N,)`` per-pair squared Frobenius distances (every pair,
            fallbacks included).
        exclude_fallbacks: leave pairs that fell back in either video out of the mean
            (default); the score is ``nan`` when no pair is left. See :func:`validity`.

    Returns:
        The score (float), or ``(score, per_pair_values)`` if ``per_pair``.
    """
    if variant not in VARIANTS:
        raise CammimicError(
            f"CameraScore variant '{variant}' is unknown. Try one of {list(VARIANTS)}"
        )
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
    keep = np.ones(len(d), bool)
    if exclude_fallbacks:
        keep[sorted(fallback_pairs(reference) | fallback_pairs(generated))] = False
    score = float(d[keep].mean()) if keep.any() else float("nan")
    return (score, d) if per_pair else score
