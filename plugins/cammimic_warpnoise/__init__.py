"""cammimic's warped-noise plugin: the reference's camera motion in the initial latents x_T.

``warped-noise`` draws the initial noise of frame k as frame 0's noise moved along the reference
video's composed homographies (at latent resolution), with a density-preserving warp that keeps
every frame i.i.d. standard normal (Go-with-the-Flow, Burgert et al., CVPR 2025). See
:mod:`cammimic_warpnoise.warp` for the construction.

Importing this module is cheap: torch is imported when noise is drawn.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["warped_noise", "register_noise_initialisers"]


def warped_noise(*, strength: float = 1.0, subpixels: int = 8, reach: float = 2.0):
    """Build the ``warped-noise`` initialiser.

    Args:
        strength: the share of each element's variance that is warped noise, in [0, 1]; the
            rest is fresh noise (``sqrt(s)·warped + sqrt(1 − s)·fresh`` stays N(0, 1)).
            ``1``: frame k is frame 0's noise moved (where the camera saw it); ``0``: i.i.d.
        subpixels: each latent cell of the noise canvas is split into ``subpixels²`` finer
            cells that move on their own; a cell of frame k sums those that land in it. More
            follows sub-cell motion more finely; zooms in by more than this factor leave gaps
            (filled with fresh noise).
        reach: how far the noise canvas (frame 0's view and what later frames see beyond it)
            reaches past frame 0's view on each side, in frame widths and heights; a camera
            that travels further sees fresh noise there.

    Returns:
        A :class:`cammimic_warpnoise.warp.WarpedNoise`.
    """
    from cammimic_warpnoise.warp import WarpedNoise, check_parameters

    check_parameters(strength, subpixels, reach)
    return WarpedNoise(strength=float(strength), subpixels=int(subpixels), reach=float(reach))


@cammimic.hookimpl
def register_noise_initialisers(register):
    register(
        "warped-noise",
        warped_noise,
        description="Frame 0's noise moved along the reference's homographies (density-preserving, stays N(0, 1))",
        requires=("torch",),
        extra="zeroscope",
    )
