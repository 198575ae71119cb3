"""cammimic's CameraScore-guidance plugin: sampling steered by the paper's metric itself.

``camerascore`` decodes the predicted clean latents, estimates their frame-to-frame homographies
with the differentiable kornia estimator (``cammimic_kornia``), and takes a gradient step on the
resolution-free CameraScore against the reference's homographies, over a window of steps.

Importing this module is cheap: torch and kornia are imported when the term is built.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["camerascore_guidance", "register_guidance_terms"]


def camerascore_guidance(
    *,
    weight: float = 0.05,
    start: float = 0.3,
    end: float = 0.8,
    iterations: int = 1,
    estimator_iterations: int = 5,
):
    """Build the ``camerascore`` guidance term.

    Args:
        weight: the size of each descent step, as the RMS change of the latents it makes.
        start, end: the window of sampling steps it acts on, as fractions of the schedule
            (0 = first step, 1 = the step before the last); early predictions are too blurred
            for an estimator to read.
        iterations: descent steps per sampling step.
        estimator_iterations: Gauss–Newton iterations per pyramid level of the kornia estimator
            (each is unrolled for the gradient: the cost grows with it).

    Returns:
        A :class:`cammimic_camerascore.guide.CameraScoreGuidance`.
    """
    from cammimic_camerascore.guide import CameraScoreGuidance, check_parameters

    check_parameters(weight, start, end, iterations, estimator_iterations)
    return CameraScoreGuidance(
        weight=float(weight),
        start=float(start),
        end=float(end),
        iterations=int(iterations),
        estimator_iterations=int(estimator_iterations),
    )


@cammimic.hookimpl
def register_guidance_terms(register):
    register(
        "camerascore",
        camerascore_guidance,
        description="Descend on the resolution-free CameraScore of the decoded prediction (differentiable kornia "
        "estimator) against the reference's homographies",
        requires=("torch", "kornia"),
        extra="zeroscope",
    )
