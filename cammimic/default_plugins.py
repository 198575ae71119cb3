"""Components that belong to cammimic's core; always loaded, like any plugin."""

from __future__ import annotations

from cammimic.hookspecs import hookimpl


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
