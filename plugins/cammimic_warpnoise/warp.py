"""The density-preserving noise warp of ``warped-noise``.

Construction (Go-with-the-Flow's "infinite-resolution" noise, made finite):

1. A noise *canvas* in frame 0's latent coordinates covers frame 0's view and everything the
   other frames see of the plane (each frame's corners mapped back by its composed homography),
   at most ``reach`` frame sizes beyond frame 0 on each side.
2. The canvas is drawn at ``s = subpixels`` times the latent resolution, every fine cell i.i.d.
   N(0, 1).
3. Latent cell p of frame k is ``Σ_{q ∈ S_k(p)} Q_q / sqrt(|S_k(p)|)``, where ``S_k(p)`` are the
   fine cells whose centres the composed homography C_k (frame 0 → k) maps into p (nearest cell).

Why every frame is i.i.d. N(0, 1): each fine cell lands in at most one cell of frame k, so the
sets ``S_k(p)`` of one frame are disjoint; a normalised sum of n i.i.d. standard normals is
standard normal, and sums over disjoint sets are independent. A cell no fine cell lands in (the
camera left the canvas, or a zoom in by more than ``s``) gets fresh noise. Frame 0 is the canvas
itself (each cell sums its own s² fine cells), and a cell of frame k is correlated with the
cells of frame 0 its fine cells came from, in proportion to the share they brought: the noise
moves with the camera. Nearest-neighbour resampling of frame 0's latent noise would duplicate
values under a zoom in (correlated neighbours); bilinear resampling lowers the variance.
"""

from __future__ import annotations

import math

import numpy as np

from cammimic.errors import CammimicError
from cammimic.noise import NoiseContext, latent_homographies

__all__ = ["WarpedNoise", "warp_noise", "canvas_box", "check_parameters"]


def check_parameters(strength, subpixels, reach) -> None:
    """One line per bad parameter of ``warped-noise``, naming the value and the valid range."""
    if not 0.0 <= float(strength) <= 1.0:
        raise CammimicError(
            f"warped-noise strength {strength} is outside [0, 1] (the warped share of the variance)"
        )
    if not 1 <= int(subpixels) <= 32:
        raise CammimicError(
            f"warped-noise subpixels {subpixels} is outside [1, 32]; 8 follows motion to 1/8 cell"
        )
    if not 0.0 <= float(reach) <= 8.0:
        raise CammimicError(f"warped-noise reach {reach} is outside [0, 8] frame sizes")


def _project(
    h: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    den = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    ok = den > 1e-9  # points behind the camera's horizon map nowhere
    safe = np.where(ok, den, 1.0)
    return (
        (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / safe,
        (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / safe,
        ok,
    )


def canvas_box(
    homographies: np.ndarray, width: int, height: int, reach: float
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the latent cells (frame 0's coordinates, ``x0 <= x < x1``) the canvas
    needs so every frame's view lies on it, clipped to ``reach`` frame sizes beyond frame 0."""
    xs, ys = [-0.5, width - 0.5], [-0.5, height - 0.5]
    corners_x = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    corners_y = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    lo_x, hi_x = -0.5 - reach * width, width - 0.5 + reach * width
    lo_y, hi_y = -0.5 - reach * height, height - 0.5 + reach * height
    for h in homographies:
        x, y, ok = _project(np.linalg.inv(h), corners_x, corners_y)
        if not ok.all():  # the view reaches the horizon: as far as the canvas may go
            xs += [lo_x, hi_x]
            ys += [lo_y, hi_y]
            continue
        xs += list(x)
        ys += list(y)
    x0 = math.floor(max(min(xs), lo_x) + 0.5)
    x1 = math.ceil(min(max(xs), hi_x) + 0.5)
    y0 = math.floor(max(min(ys), lo_y) + 0.5)
    y1 = math.ceil(min(max(ys), hi_y) + 0.5)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def warp_noise(
    generator,
    shape,
    homographies: np.ndarray,
    *,
    strength: float = 1.0,
    subpixels: int = 8,
    reach: float = 2.0,
):
    """Initial noise ``shape = (B, C, T', h, w)`` whose frame k is frame 0's moved by
    ``homographies[k]`` (``(T', 3, 3)``, frame 0 → k at latent resolution, ``[0]`` the identity).

    Returns ``(noise, coverage)``: float32 CPU noise, and per frame the share of cells that
    come from the canvas (the rest is fresh noise).
    """
    import torch

    b, c, t, h, w = (int(v) for v in shape)
    hs = np.asarray(homographies, dtype=np.float64)
    if hs.shape != (t, 3, 3):
        raise CammimicError(
            f"warped-noise needs one homography per latent frame ({t}), got {hs.shape[0]}"
        )
    s = int(subpixels)
    x0, y0, x1, y1 = canvas_box(hs[1:], w, h, reach)
    fine = torch.randn(
        (b * c, (y1 - y0) * s, (x1 - x0) * s), generator=generator, dtype=torch.float32
    )
    fill = torch.randn((b, c, t, h, w), generator=generator, dtype=torch.float32)
    mix = (
        torch.randn((b, c, t, h, w), generator=generator, dtype=torch.float32)
        if strength < 1.0
        else None
    )
    # centres of the fine cells in frame 0's latent coordinates (cell centres at integers)
    fx = x0 - 0.5 + (np.arange((x1 - x0) * s) + 0.5) / s
    fy = y0 - 0.5 + (np.arange((y1 - y0) * s) + 0.5) / s
    gx, gy = np.meshgrid(fx, fy)
    flat = fine.reshape(b * c, -1)
    out = torch.empty((b, c, t, h, w), dtype=torch.float32)
    coverage = []
    for k in range(t):
        x, y, ok = _project(hs[k], gx, gy)
        ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
        ok &= (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        where = torch.from_numpy(np.flatnonzero(ok.ravel()))
        cell = torch.from_numpy((iy[ok] * w + ix[ok]).astype(np.int64))
        sums = torch.zeros((b * c, h * w), dtype=torch.float32).index_add_(1, cell, flat[:, where])
        count = torch.bincount(cell, minlength=h * w).to(torch.float32)
        frame = (sums / count.clamp(min=1).sqrt()).reshape(b, c, h, w)
        covered = (count > 0).reshape(h, w)
        out[:, :, k] = torch.where(covered, frame, fill[:, :, k])
        coverage.append(float(covered.float().mean()))
    if mix is not None:
        out = math.sqrt(strength) * out + math.sqrt(1.0 - strength) * mix
    return out, coverage


class WarpedNoise:
    """The ``warped-noise`` initialiser (see the module docstring for the construction)."""

    name = "warped-noise"

    def __init__(self, *, strength: float = 1.0, subpixels: int = 8, reach: float = 2.0):
        self.strength = strength
        self.subpixels = subpixels
        self.reach = reach
        #: per latent frame, the share of cells that came from the canvas in the last draw
        self.coverage: list[float] = []

    def draw(self, generator, context: NoiseContext):
        homs = latent_homographies(context)
        if homs is None:
            raise CammimicError(
                'noise initialiser "warped-noise" needs the reference\'s camera motion, and this sampling has '
                "none; sample through `cammimic run`/`sample` (or pass homographies), or use --noise iid"
            )
        noise, self.coverage = warp_noise(
            generator,
            context.shape,
            homs,
            strength=self.strength,
            subpixels=self.subpixels,
            reach=self.reach,
        )
        return noise
