"""Components that belong to cammimic's core; always loaded, like any plugin."""

from __future__ import annotations

from cammimic.guidance import homography_guidance
from cammimic.hookspecs import hookimpl
from cammimic.noise import iid_noise


class NoGuidance:
    """Sampling without guidance: leaves the latents as they are (the paper's "no HG" ablation)."""

    name = "none"

    def apply(self, latents, state):
        return latents


def no_guidance() -> NoGuidance:
    return NoGuidance()


@hookimpl
def register_guidance_terms(register):
    register("none", no_guidance, description="No guidance: the latents are left as they are.")
    register(
        "homography",
        homography_guidance,
        description="The paper's homography guidance: pull the latents towards the weak video's (z_P).",
        requires=("torch",),
        extra="zeroscope",
    )


@hookimpl
def register_noise_initialisers(register):
    register(
        "iid",
        iid_noise,
        description="I.i.d. standard normal initial latents (every pipeline's default).",
        requires=("torch",),
        extra="zeroscope",
    )
