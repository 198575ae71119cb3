"""What the API returns: a CameraScore with the motions compared, and where a run put its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.metrics import MAX_FALLBACK_SHARE, camera_score, fallback_pairs, validity
from cammimic.motion import MotionEstimate

__all__ = ["ScoreResult", "RunResult", "score_motions"]


@attrs.frozen(eq=False)
class ScoreResult:
    """CameraScore of a generated video against a reference, with the motions compared.

    Frame pairs that fell back in either video are left out of the scores; ``valid`` is false
    when more than ``max_fallback_share`` of either video's pairs fell back (see
    :mod:`cammimic.metrics`), and then ``reason`` says why. Print :meth:`summary`, not ``score``.
    """

    score: float  #: in the chosen variant, over the pairs estimated in both videos (nan if none)
    variant: str
    paper_score: float  #: the paper's pixel-homography CameraScore
    resolution_free_score: float
    per_pair: np.ndarray  #: per frame pair, in the chosen variant (fallback pairs included)
    reference: MotionEstimate
    generated: MotionEstimate
    valid: bool = True  #: false when too many pairs fell back for the score to mean anything
    reason: str = ""  #: why the score is invalid ("" when valid)
    max_fallback_share: float = 0.25

    @property
    def reference_fallbacks(self) -> int:
        return len(self.reference.fallbacks)

    @property
    def generated_fallbacks(self) -> int:
        return len(self.generated.fallbacks)

    @property
    def num_pairs(self) -> int:
        return len(self.per_pair)

    @property
    def pairs_used(self) -> int:
        return self.num_pairs - len(fallback_pairs(self.reference) | fallback_pairs(self.generated))

    def summary(self) -> str:
        """One line for people: the score, or ``invalid`` and why (never a bare number then)."""
        fb = (
            f"fallbacks: reference {self.reference_fallbacks}/{self.num_pairs}, "
            f"generated {self.generated_fallbacks}/{self.num_pairs}"
        )
        if not self.valid:
            return (
                f"CameraScore invalid: {self.reason} ({fb}, estimator {self.generated.estimator})"
            )
        return (
            f"CameraScore {self.score:.6g} ({self.variant}; paper variant {self.paper_score:.6g}) over "
            f"{self.pairs_used} of {self.num_pairs} frame pairs, {fb}, estimator {self.generated.estimator}"
        )

    def manifest_fields(self) -> dict[str, Any]:
        """The score's entries in a run's ``run.json``."""
        return {
            "camera_score": self.score,
            "camera_score_variant": self.variant,
            "camera_score_valid": self.valid,
            "camera_score_reason": self.reason,
            "camera_score_fallbacks": {
                "reference": self.reference_fallbacks,
                "generated": self.generated_fallbacks,
                "pairs": self.num_pairs,
            },
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "camera_score": _finite_or_none(self.score),
            "variant": self.variant,
            "camera_score_paper": _finite_or_none(self.paper_score),
            "camera_score_resolution_free": _finite_or_none(self.resolution_free_score),
            "valid": self.valid,
            "reason": self.reason,
            "max_fallback_share": self.max_fallback_share,
            "num_pairs": self.num_pairs,
            "pairs_used": self.pairs_used,
            "reference_fallbacks": self.reference_fallbacks,
            "generated_fallbacks": self.generated_fallbacks,
            "per_pair": self.per_pair.tolist(),
            "estimator": self.generated.estimator,  # the reference may be an exact camera path
            "num_frames": self.reference.num_frames,
            "reference": {
                "width": self.reference.width,
                "height": self.reference.height,
                "source": self.reference.diagnostics.get("source"),
                "fallbacks": [f.to_json() for f in self.reference.fallbacks],
            },
            "generated": {
                "width": self.generated.width,
                "height": self.generated.height,
                "source": self.generated.diagnostics.get("source"),
                "fallbacks": [f.to_json() for f in self.generated.fallbacks],
            },
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def score_motions(
    reference: MotionEstimate,
    generated: MotionEstimate,
    *,
    variant: str = "resolution_free",
    max_fallback_share: float | None = None,
) -> ScoreResult:
    """CameraScore of two motions already estimated, with its validity (see :class:`ScoreResult`)."""
    share = MAX_FALLBACK_SHARE if max_fallback_share is None else float(max_fallback_share)
    chosen, per_pair = camera_score(reference, generated, variant=variant, per_pair=True)
    valid, reason = validity(reference, generated, max_fallback_share=share)
    return ScoreResult(
        score=chosen,
        variant=variant,
        paper_score=camera_score(reference, generated, variant="paper"),
        resolution_free_score=camera_score(reference, generated, variant="resolution_free"),
        per_pair=per_pair,
        reference=reference,
        generated=generated,
        valid=valid,
        reason=reason,
        max_fallback_share=share,
    )


@attrs.frozen(eq=False)
class RunResult:
    """Where a run put its results, and the headline figures."""

    output_dir: Path
    files: dict[str, Path]
    camera_score: float
    manifest: dict[str, Any]
