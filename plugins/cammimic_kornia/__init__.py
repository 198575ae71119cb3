"""cammimic's kornia plugin: a differentiable, batched, direct homography estimator.

Importing this module is cheap: torch and kornia are imported when the factory is called.
"""

from __future__ import annotations

import cammimic

__all__ = ["kornia_estimator", "register_motion_estimators"]


def kornia_estimator(
    *,
    device: str = "auto",
    levels: int = 0,
    min_size: int = 16,
    finest_level: int = 0,
    iterations: int = 10,
    tolerance: float = 0.01,
    robust: str = "tukey",
    damping: float = 1e-4,
    min_correlation: float = 0.5,
    chunk_size: int = 0,
):
    """Build the ``kornia`` motion estimator (photometric inverse-compositional Gauss–Newton).

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda[:n]"``.
        levels: pyramid levels; ``0`` = as many as keep the coarsest short side >= ``min_size``.
        min_size: the smallest short side in pixels of the coarsest pyramid level.
        finest_level: the finest level aligned; ``1`` skips full resolution (faster).
        iterations: the most Gauss–Newton iterations per pyramid level.
        tolerance: stop a pair on a level once an update moves no corner more than this (px).
        robust: IRLS loss, ``"huber"``, ``"tukey"`` or ``"none"``; its scale is the residuals' MAD.
        damping: Levenberg–Marquardt damping relative to the normal matrix's mean diagonal.
        min_correlation: below this correlation after alignment a pair counts as failed (a cut).
        chunk_size: the most frame pairs aligned in one batch (``0`` = all pairs at once).

    Returns:
        A :class:`cammimic_kornia.estimator.KorniaHomographyEstimator`; besides ``estimate``
        (NumPy frames in, :class:`cammimic.motion.MotionEstimate` out) it has
        ``estimate_tensor`` (``(T, 3, H, W)`` tensor in, ``(T-1, 3, 3)`` homographies out,
        differentiable).
    """
    from cammimic_kornia.estimator import KorniaHomographyEstimator

    return KorniaHomographyEstimator(
        device=device,
        levels=levels,
        min_size=min_size,
        finest_level=finest_level,
        iterations=iterations,
        tolerance=tolerance,
        robust=robust,
        damping=damping,
        min_correlation=min_correlation,
        chunk_size=chunk_size,
    )


@cammimic.hookimpl
def register_motion_estimators(register):
    register(
        "kornia",
        kornia_estimator,
        description="Direct photometric homography alignment on kornia/torch: batched, differentiable, GPU-ready",
        requires=("torch", "kornia"),
        extra="kornia",
    )
