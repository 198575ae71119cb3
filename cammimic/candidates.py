"""Best of N: after one Phase 1, sample Phase 2 with N seeds and keep the candidate whose camera
follows the reference best, by CameraScore.

Candidate ``i`` samples with seed ``run.seed + i`` (so candidate 0 is the run without
candidates, bit for bit). Each is scored against the reference's motion with CameraScore, and
with three scene-preservation figures that need no weights: PSNR and SSIM of its first frame to
the user image, and PSNR to the weak video where the weak video shows the image. The kept one is
the valid candidate with the lowest CameraScore (ties: the higher first-frame SSIM, then the
lower seed); when no candidate's score is valid, candidate 0 is kept, as a run without
candidates would have written it. Cost: one Phase 1 and N samplings, each followed by a motion
estimate of its output.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.motion import MotionEstimate
from cammimic.results import ScoreResult, score_motions

__all__ = [
    "Candidate",
    "candidate_seeds",
    "scene_figures",
    "choose",
    "sample_candidates",
    "write_candidates",
    "candidate_path",
]


@attrs.frozen(eq=False)
class Candidate:
    """One Phase 2 sampling of a best-of-N run, with its scores."""

    index: int  #: 0 .. N-1; candidate 0 uses the run's seed
    seed: int
    frames: np.ndarray  #: the decoded video, ``(T, H, W, 3)`` uint8
    motion: MotionEstimate  #: its camera motion
    scored: ScoreResult  #: CameraScore against the reference's motion
    scene: dict[
        str, float
    ]  #: ``psnr_first``, ``ssim_first``, ``psnr_in_view`` (see :func:`scene_figures`)
    seconds: float  #: sampling, motion estimate and scoring
    #: per guidance term, what it reported while sampling this candidate (its ``history``; ``None``
    #: for a term that reports nothing): a term forgets it when the next candidate starts
    guidance_history: tuple = ()

    def to_json(self, *, kept: bool) -> dict[str, Any]:
        """Its entry in ``run.json``'s ``candidates`` list."""
        return {
            "index": self.index,
            "seed": self.seed,
            "camera_score": _finite_or_none(self.scored.score),
            "camera_score_valid": self.scored.valid,
            "camera_score_reason": self.scored.reason,
            "generated_fallbacks": self.scored.generated_fallbacks,
            **{k: _finite_or_none(v) for k, v in self.scene.items()},
            "seconds": round(self.seconds, 3),
            "video": candidate_path(self.seed),
            "kept": kept,
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def candidate_seeds(seed: int, n: int) -> list[int]:
    """The seeds of ``n`` candidates: ``seed``, ``seed + 1``, … (modulo 2⁶³, the seed's range)."""
    return [(int(seed) + i) % 2**63 for i in range(int(n))]


def candidate_path(seed: int) -> str:
    """Where a candidate's video lies in the run directory."""
    return f"candidates/seed-{int(seed)}.mp4"


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    if not d.size:
        return float("nan")
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: Gaussian window sigma 1.5) of two uint8 RGB images, mean over channels
    (the eval's ``ssim_first``; core does not import the eval plugin)."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)

    def blur(z):
        return cv2.sepFilter2D(z, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)

    out = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        pad = 5 if min(s.shape) > 10 else 0
        out.append(s[pad : s.shape[0] - pad, pad : s.shape[1] - pad].mean())
    return float(np.mean(out))


def scene_figures(frames: np.ndarray, image: np.ndarray, weak=None) -> dict[str, float]:
    """Scene preservation of a candidate, without weights: ``psnr_first`` and ``ssim_first`` of its
    first frame to the user image (CamMimic's output starts there), and ``psnr_in_view``: PSNR to
    the weak video ``weak`` (a :class:`~cammimic.methods.homography.Transfer`) over the pixels where
    it shows the user image (nan without ``weak``)."""
    figures = {"psnr_first": _psnr(frames[0], image), "ssim_first": _ssim(frames[0], image)}
    figures["psnr_in_view"] = (
        _psnr(frames, weak.frames, np.asarray(weak.masks, dtype=bool))
        if weak is not None
        else float("nan")
    )
    return figures


def choose(candidates: Sequence[Candidate]) -> int:
    """The position of the kept candidate: the valid one with the lowest CameraScore (ties: the
    higher ``ssim_first``, then the earlier seed); candidate 0 when none is valid."""

    def key(i: int):
        c = candidates[i]
        ssim = c.scene.get("ssim_first", float("nan"))
        return (c.scored.score, -ssim if math.isfinite(ssim) else math.inf, i)

    valid = [
        i for i, c in enumerate(candidates) if c.scored.valid and math.isfinite(c.scored.score)
    ]
    return min(valid, key=key) if valid else 0


def sample_candidates(
    sample: Callable[[int], np.ndarray],
    seeds: Sequence[int],
    *,
    estimator,
    reference_motion: MotionEstimate,
    image: np.ndarray,
    weak=None,
    variant: str = "resolution_free",
    max_fallback_share: float | None = None,
    on_candidate: Callable[[Candidate], None] | None = None,
    guidance_terms: Sequence[Any] = (),
) -> list[Candidate]:
    """Sample ``sample(seed)`` for every seed, estimate each video's motion with ``estimator`` and
    score it against ``reference_motion``. With one seed the calls are exactly a run's without
    candidates (no scene figures are computed then). Each candidate keeps a copy of what the
    ``guidance_terms`` sampling used reported for it (``guidance_history``)."""
    out = []
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        frames = sample(int(seed))
        motion = estimator.estimate(frames)
        scored = score_motions(
            reference_motion, motion, variant=variant, max_fallback_share=max_fallback_share
        )
        scene = scene_figures(frames, image, weak) if len(seeds) > 1 else {}
        history = tuple(
            copy.deepcopy(list(h)) if (h := getattr(term, "history", None)) else None
            for term in guidance_terms
        )
        out.append(
            Candidate(
                index=i,
                seed=int(seed),
                frames=frames,
                motion=motion,
                scored=scored,
                scene=scene,
                seconds=time.perf_counter() - start,
                guidance_history=history,
            )
        )
        if on_candidate is not None:
            on_candidate(out[-1])
    return out


def write_candidates(
    folder: Path, candidates: Sequence[Candidate], fps: float, *, crf: int
) -> dict[str, Path]:
    """Each candidate's video as ``candidates/seed-S.mp4`` under ``folder`` (only with more than one)."""
    from cammimic.io import write_video

    if len(candidates) < 2:
        return {}
    return {
        f"candidate_{c.seed}": write_video(
            Path(folder) / candidate_path(c.seed), c.frames, fps, crf=crf
        )
        for c in candidates
    }
