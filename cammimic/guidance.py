"""Guidance terms of Phase 2 (homography-guided sampling).

The paper's update (eq. 5) after every sampling step but the last::

    ẑ_t = z_t − λ_G · ∇_{z_t} ‖z_t − z_P‖²  =  z_t − 2 λ_G (z_t − z_P)

where z_P are the VAE latents of the weak video (the user image moved along the reference's
homographies). Each step pulls the latents a fraction 2 λ_G of the way towards z_P.

Where the pull acts (``acts_on``):

- ``"x0"`` (default): on the model's prediction of the clean latents x̂₀ at each step, *before*
  the scheduler's step, which then receives the prediction converted back to the model's
  output type (ε, v or flow velocity; :func:`cammimic.sampling.to_clean`). Every sampler keeps
  it: a multistep solver (UniPC, DPM-Solver++) stores the guided output, and z_t keeps the
  noise the schedule expects.
- ``"z_t"``: the paper's literal update on z_t *after* the scheduler's step. UniPC's corrector
  rebuilds the next sample from the previous step's input and undoes most of it (a Gaussian toy
  denoiser, 50 steps, λ_G = 0.02: distance to z_P 1.40 → 1.19 under UniPC, 1.38 → 0.20 under
  DDIM; docs/method.md#guidance-under-every-sampler).
"""

from __future__ import annotations

import math

import attrs

from cammimic.components import GuidanceState
from cammimic.config import setting
from cammimic.errors import CammimicError
from cammimic.sampling import erode_mask

__all__ = ["HomographyGuidance", "homography_guidance", "COMPARE", "ACTS_ON"]

#: What z_t is compared with: the clean weak-video latents z_P (the paper's text), or z_P noised to
#: the noise level of z_t with one fixed noise draw (so the pull does not remove noise the
#: scheduler still expects).
COMPARE = ("latents", "noised")
#: Where the pull acts: the predicted clean latents before the scheduler's step, or z_t after it.
ACTS_ON = ("x0", "z_t")


@attrs.define
class HomographyGuidance:
    """Pull the sampled latents towards the weak video's latents z_P (the paper's HG)."""

    # The parameters' schema: defaults, ranges and choices, read by the factory's checks.
    weight: float = setting(
        0.3,
        "λ_G: each step pulls x̂₀ (or z_t) a fraction 2 λ_G of the way to z_P; 0.3 on x̂₀ is "
        "as strong as the paper's update at 0.02 on z_t under 50 DDIM steps.",
        range=(0, 0.5),
    )
    start: float = setting(
        0.0, "First step of the window, as a fraction of the schedule (0 = first).", range=(0, 1)
    )
    end: float = setting(
        1.0, "Last step of the window, as a fraction (1 = the step before the last).", range=(0, 1)
    )
    masked: bool = setting(True, "Leave out-of-view regions of the weak video alone.")
    mask_erode: int = setting(
        2,
        "With masked: also leave alone the latent cells within this many cells of an "
        "out-of-view one, whose latents the VAE encoder computed partly from the black fill "
        "(mini's VAE moves them by 0.47-0.92 of the latents' std 1 cell away, 0.06-0.20 "
        "2 cells away, under 0.05 beyond). 0: the plain min-pool mask.",
        range=(0, 16),
    )
    compare: str = setting(
        "latents",
        "Compare z_t with z_P (latents) or z_P noised to z_t's level (noised; "
        'acts_on = "z_t" only).',
        choices=COMPARE,
    )
    acts_on: str = setting(
        "x0",
        "Pull the predicted clean latents x̂₀ before each scheduler step (x0; every sampler "
        "keeps it) or z_t after it (z_t, the paper's literal update; UniPC undoes most of it).",
        choices=ACTS_ON,
    )
    name: str = "homography"

    def apply(self, latents, state: GuidanceState):
        """``latents`` (x̂₀ or z_t, as :attr:`acts_on` says) pulled towards z_P, or themselves
        (the same object) outside the window and at the last step."""
        last = state.num_steps - 1
        if state.step >= last or state.target is None or self.weight == 0:
            return latents  # never after the last step: the output is the model's own
        position = state.step / max(last - 1, 1)
        if not self.start <= position <= self.end:
            return latents
        target = state.extras.get("noised_target") if self.compare == "noised" else state.target
        if target is None:
            raise CammimicError(
                'homography guidance with compare = "noised" needs a scheduler with add_noise'
            )
        grad = 2.0 * (latents - target.to(latents.dtype))
        if self.masked and state.mask is not None:
            grad = grad * erode_mask(state.mask, self.mask_erode).to(latents.dtype)
        return latents - self.weight * grad


_SCHEMA = attrs.fields(HomographyGuidance)


def homography_guidance(
    weight: float = _SCHEMA.weight.default,
    start: float = _SCHEMA.start.default,
    end: float = _SCHEMA.end.default,
    masked: bool = _SCHEMA.masked.default,
    compare: str = _SCHEMA.compare.default,
    acts_on: str = _SCHEMA.acts_on.default,
    mask_erode: int = _SCHEMA.mask_erode.default,
) -> HomographyGuidance:
    """Factory of the ``homography`` guidance term (its parameters are the config's keys)."""
    for label, value in (("weight", weight), ("start", start), ("end", end)):
        try:
            ok = not isinstance(value, bool) and math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CammimicError(
                f"homography guidance {label} {value!r} is not a finite number; use e.g. weight 0.02"
            )
    lo, hi = _SCHEMA.start.metadata["range"]
    if not lo <= start <= end <= hi:
        raise CammimicError(
            f"homography guidance needs {lo} <= start <= end <= {hi}, got start={start}, end={end}"
        )
    lo, hi = _SCHEMA.weight.metadata["range"]
    if weight < lo or weight > hi:
        raise CammimicError(
            f"homography guidance weight {weight} is outside [{lo}, {hi}]; {hi} already replaces x̂₀ (or z_t) by z_P at every step"
        )
    lo, hi = _SCHEMA.mask_erode.metadata["range"]
    if (
        isinstance(mask_erode, bool)
        or not isinstance(mask_erode, int)
        or not lo <= mask_erode <= hi
    ):
        raise CammimicError(
            f"homography guidance mask_erode {mask_erode!r} is not a whole number of latent cells in [{lo}, {hi}]; "
            f"use e.g. mask_erode = {_SCHEMA.mask_erode.default} (the VAE's measured reach) or 0 (no erosion)"
        )
    choices = _SCHEMA.compare.metadata["choices"]
    if compare not in choices:
        raise CammimicError(
            f"homography guidance compare '{compare}' is unknown. Try one of {list(choices)}"
        )
    choices = _SCHEMA.acts_on.metadata["choices"]
    if acts_on not in choices:
        raise CammimicError(
            f"homography guidance acts_on '{acts_on}' is unknown. Try one of {list(choices)}"
        )
    if compare == "noised" and acts_on != "z_t":
        raise CammimicError(
            'homography guidance compare = "noised" compares noisy z_t with z_P at its level, so it needs '
            'acts_on = "z_t"; with acts_on = "x0" the clean prediction is compared with clean z_P (compare = "latents")'
        )
    return HomographyGuidance(
        weight=weight,
        start=start,
        end=end,
        masked=masked,
        compare=compare,
        acts_on=acts_on,
        mask_erode=mask_erode,
    )
