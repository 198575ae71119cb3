"""A differentiable direct (photometric) homography estimator on kornia and torch.

Every frame pair of a video is aligned at once, as one batch, by inverse-compositional
Gauss–Newton (Baker & Matthews 2004) on an image pyramid:

- frames go to grey (:func:`kornia.color.rgb_to_grayscale`) and into a Gaussian pyramid
  (:func:`kornia.geometry.transform.build_pyramid`) whose coarsest level has a short side of
  ``min_size`` to ``2 * min_size`` pixels, so per-frame motions of a few percent of the image are a
  fraction of a pixel there;
- the 8-DOF update is parametrised in *resolution-free* coordinates (centre at the origin, half
  the short side = 1, see :mod:`cammimic.homography`), so the normal equations are well
  conditioned and the homography carries from level to level unchanged;
- the template (frame i) gradients (:func:`kornia.filters.spatial_gradient`) and the steepest
  descent images are computed once per level; each iteration warps frame i+1 onto frame i with
  ``grid_sample``, re-weights the residuals (IRLS: Tukey or Huber with a MAD scale; zero weight
  where the warp samples outside frame i+1) and solves an 8x8 damped system per pair;
- a pair stops moving once its update shifts no corner by more than ``tolerance`` pixels (of
  that level). All of an iteration's sums come from one ``bmm`` and every other operation is
  elementwise or per image, so on CPU a pair gets bit-for-bit the same answer alone or in a
  batch (on GPU, up to rounding).

Everything but the robust weights (detached, as usual for IRLS) and the stop decisions is
differentiable, so gradients flow from the homographies back into the frames through the
unrolled iterations.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from cammimic.devices import resolve_device
from cammimic.errors import CammimicError
from cammimic.homography import resolution_free_matrix
from cammimic.motion import Fallback, MotionEstimate

__all__ = [
    "KorniaHomographyEstimator",
    "ROBUST_LOSSES",
    "align_homographies",
    "gauss_newton_level",
    "pyramid_levels",
    "robust_weights",
]

ROBUST_LOSSES = ("huber", "tukey", "none")
_ROBUST_C = {"huber": 1.345, "tukey": 4.685, "none": 0.0}
_MAD_SAMPLES = 16384  # residuals used per pair for the MAD scale
_SIGMA_FLOOR = 0.5 / 255  # half a grey level: below this, noise is quantisation
_DIVERGED_PX = (
    0.5  # a last update moving a corner more than this (finest level px) = no convergence
)
_TEXTURE_FLOOR = 1.0 / 255  # a frame whose grey levels vary less than this is uniform
_WORSE_FACTOR = (
    1.1  # aligned error above this x the error of no motion (+ half a grey level) = failure
)
_MAX_CORNER_SHIFT = 0.5  # a pair moving a corner more than this (x short side) is implausible


class KorniaHomographyEstimator:
    """Direct photometric homography estimation (inverse-compositional Gauss–Newton, IRLS).

    Args:
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``…
            Used by :meth:`estimate`; :meth:`estimate_tensor` runs where its input lives.
        levels: pyramid levels; ``0`` picks as many as keep the coarsest short side
            ``>= min_size``.
        min_size: the smallest short side (pixels) of the coarsest level when ``levels == 0``.
        finest_level: the finest pyramid level aligned (``0`` = full resolution); ``1`` skips
            the full-resolution level (about 3x faster, a little less accurate).
        iterations: the most Gauss–Newton iterations per level.
        tolerance: a pair stops iterating on a level once an update moves no image corner by
            more than this many pixels of that level.
        robust: the IRLS loss, ``"tukey"`` (rejects moving objects outright), ``"huber"`` or
            ``"none"`` (least squares); its scale is 1.4826 x the median absolute residual.
        damping: Levenberg–Marquardt damping, relative to the mean diagonal of the normal
            matrix; keeps textureless pairs finite.
        min_correlation: a pair whose aligned frames correlate (zero-normalised
            cross-correlation) less than this is treated as a failure (a cut, no texture).
        chunk_size: the most frame pairs :meth:`estimate` aligns in one batch; ``0`` = all.
    """

    name = "kornia"

    def __init__(
        self,
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
    ) -> None:
        _check_types(
            int,
            levels=levels,
            min_size=min_size,
            finest_level=finest_level,
            iterations=iterations,
            chunk_size=chunk_size,
        )
        _check_types(float, tolerance=tolerance, damping=damping, min_correlation=min_correlation)
        if robust not in ROBUST_LOSSES:
            raise CammimicError(
                f"kornia estimator: robust loss '{robust}' is unknown. Try one of {list(ROBUST_LOSSES)}"
            )
        checks = [
            (levels >= 0, f"levels must be >= 0 (0 = automatic), got {levels}"),
            (min_size >= 4, f"min_size must be >= 4 pixels, got {min_size}"),
            (finest_level >= 0, f"finest_level must be >= 0, got {finest_level}"),
            (iterations >= 1, f"iterations must be >= 1, got {iterations}"),
            (tolerance >= 0, f"tolerance must be >= 0, got {tolerance}"),
            (damping >= 0, f"damping must be >= 0, got {damping}"),
            (
                -1 <= min_correlation <= 1,
                f"min_correlation must be in [-1, 1], got {min_correlation}",
            ),
            (chunk_size >= 0, f"chunk_size must be >= 0 (0 = all pairs at once), got {chunk_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CammimicError(f"kornia estimator: {message}")
        if not isinstance(device, str):
            raise CammimicError(
                f"kornia estimator: device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}"
            )
        try:
            self.device = resolve_device(device)
        except CammimicError as exc:
            raise CammimicError(f"kornia estimator: {exc}") from exc
        self.levels = int(levels)
        self.min_size = int(min_size)
        self.finest_level = int(finest_level)
        self.iterations = int(iterations)
        self.tolerance = float(tolerance)
        self.robust = robust
        self.damping = float(damping)
        self.min_correlation = float(min_correlation)
        self.chunk_size = int(chunk_size)

    def __repr__(self) -> str:
        return (
            f"KorniaHomographyEstimator(device='{self.device}', levels={self.levels}, min_size={self.min_size}, "
            f"finest_level={self.finest_level}, iterations={self.iterations}, tolerance={self.tolerance}, "
            f"robust='{self.robust}')"
        )

    # ------------------------------------------------------------------ public API

    def estimate(self, frames: np.ndarray) -> MotionEstimate:
        """Estimate the T-1 frame-to-frame homographies of a video.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB, ``T >= 2``.

        Returns:
            A :class:`~cammimic.motion.MotionEstimate` in the frames' pixel grid. Pairs that fail
            (non-finite result, no convergence, worse than no motion, low correlation after
            alignment) get the previous pair's homography (identity for the first) and a
            :class:`~cammimic.motion.Fallback`. ``diagnostics`` holds per-pair lists:
            ``residual`` and ``identity_residual`` (mean absolute grey-level error, 0-255, after
            alignment and with no motion), ``correlation`` (ZNCC after alignment),
            ``valid_fraction`` (share of frame i seen in frame i+1) and ``last_update_px``.
        """
        frames = _check_frames_numpy(frames)
        t, height, width = frames.shape[:3]
        step = self.chunk_size or (t - 1)
        hs, stats = [], []
        with torch.no_grad():
            for start in range(0, t - 1, step):
                stop = min(start + step, t - 1)
                chunk = torch.from_numpy(np.ascontiguousarray(frames[start : stop + 1])).to(
                    self.device
                )
                chunk = chunk.permute(0, 3, 1, 2).float().div_(255.0)
                h_pix, info = self._run(chunk, with_stats=True)
                hs.append(h_pix.double().cpu().numpy())
                stats.append({k: v.double().cpu().numpy() for k, v in info.items()})
        h_all = np.concatenate(hs)
        info = {k: np.concatenate([s[k] for s in stats]) for k in stats[0]}

        fallbacks: list[Fallback] = []
        for i in range(t - 1):
            reason = self._failure(i, h_all[i], {k: v[i] for k, v in info.items()}, width, height)
            if reason is None:
                h_all[i] = h_all[i] / h_all[i, 2, 2]
                continue
            used = "previous pair" if i > 0 else "identity"
            h_all[i] = h_all[i - 1] if i > 0 else np.eye(3)
            fallbacks.append(Fallback(pair=i, reason=reason, used=used))

        for k in ("texture", "texture_first"):
            info.pop(k)
        diagnostics: dict[str, Any] = {
            "residual": _round_list(info["residual"] * 255),
            "identity_residual": _round_list(info["identity_residual"] * 255),
            "correlation": _round_list(info["correlation"]),
            "valid_fraction": _round_list(info["valid_fraction"]),
            "last_update_px": _round_list(info["last_update"]),
            "levels": self._num_levels(height, width),
            "device": str(self.device),
        }
        return MotionEstimate(
            homographies=h_all,
            width=width,
            height=height,
            estimator=self.name,
            fallbacks=tuple(fallbacks),
            diagnostics=diagnostics,
        )

    def estimate_tensor(self, frames: torch.Tensor) -> torch.Tensor:
        """Estimate frame-to-frame homographies, differentiably.

        Args:
            frames: :math:`(T, 3, H, W)` RGB in [0, 1], any floating dtype and device, ``T >= 2``.

        Returns:
            :math:`(T-1, 3, 3)` homographies in pixel coordinates (OpenCV convention, ``H[i]``
            maps frame i to frame i+1, ``H[2, 2] = 1``), on the input's device, in its dtype
            (float32 for half-precision inputs). Differentiable with respect to ``frames``
            through the unrolled Gauss–Newton iterations (the robust weights are detached).
            No fallbacks are applied: use :meth:`estimate` for that.

        Example:
            >>> frames = torch.rand(4, 3, 64, 64, requires_grad=True)
            >>> est = KorniaHomographyEstimator(device="cpu")
            >>> est.estimate_tensor(frames).shape
            torch.Size([3, 3, 3])
        """
        if not isinstance(frames, torch.Tensor):
            raise CammimicError(
                f"kornia estimator: estimate_tensor expects a torch.Tensor, got {type(frames).__name__}"
            )
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
            raise CammimicError(
                f"kornia estimator: estimate_tensor expects frames of shape (T, 3, H, W) with T >= 2, got {tuple(frames.shape)}"
            )
        if not frames.is_floating_point():
            raise CammimicError(
                f"kornia estimator: estimate_tensor expects floating-point frames in [0, 1], got {frames.dtype}"
            )
        _check_size(frames.shape[2], frames.shape[3])
        if frames.dtype not in (torch.float32, torch.float64):
            frames = frames.float()
        h_pix, _ = self._run(frames, with_stats=False)
        return h_pix

    # ------------------------------------------------------------------ internals

    def _num_levels(self, height: int, width: int) -> int:
        return pyramid_levels(
            height,
            width,
            levels=self.levels,
            min_size=self.min_size,
            finest_level=self.finest_level,
        )

    def _run(
        self, frames: torch.Tensor, *, with_stats: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Align ``frames`` (T, 3, H, W) float; return pixel homographies (T-1, 3, 3) and stats."""
        return align_homographies(
            frames,
            levels=self.levels,
            min_size=self.min_size,
            finest_level=self.finest_level,
            iterations=self.iterations,
            tolerance=self.tolerance,
            robust=self.robust,
            damping=self.damping,
            with_stats=with_stats,
        )

    def _failure(
        self, pair: int, h: np.ndarray, info: dict[str, float], width: int, height: int
    ) -> str | None:
        """Why the estimate ``h`` of one pair is not trusted, or None."""
        if info["texture"] < _TEXTURE_FLOOR:
            return f"no texture: frame {pair if info['texture_first'] else pair + 1} is uniform"
        if not np.all(np.isfinite(h)) or not all(
            np.isfinite(v) for k, v in info.items() if k != "correlation"
        ):
            return "alignment diverged (non-finite homography or residual)"
        if abs(h[2, 2]) < 1e-12:
            return "degenerate homography"
        if info["valid_fraction"] < 0.25:
            return f"frames overlap too little after alignment ({info['valid_fraction']:.0%})"
        corners = np.array(
            [[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float
        )
        moved = corners @ h.T
        if np.any(moved[:, 2] <= 0):
            return "alignment diverged: the homography flips the image (a cut?)"
        shift = np.linalg.norm(moved[:, :2] / moved[:, 2:3] - corners[:, :2], axis=1).max()
        if shift > _MAX_CORNER_SHIFT * min(width, height):
            return f"alignment diverged: a corner moves {shift:.0f} px (a cut?)"
        if info["last_update"] > _DIVERGED_PX:
            return f"did not converge (last update {info['last_update']:.2f} px)"
        # some slack: interpolation and the border make a perfect estimate of a still camera a
        # hair worse than the identity
        if info["residual"] > _WORSE_FACTOR * info["identity_residual"] + _SIGMA_FLOOR:
            return (
                f"alignment error {info['residual'] * 255:.2f} is worse than no motion "
                f"({info['identity_residual'] * 255:.2f} grey levels)"
            )
        corr = info["correlation"]
        if not np.isfinite(corr):
            return "no texture (a uniform frame)"
        if corr < self.min_correlation:
            return f"frames correlate only {corr:.2f} after alignment (a cut?); need {self.min_correlation:.2f}"
        return None


# ---------------------------------------------------------------------- the functional core


def pyramid_levels(
    height: int, width: int, *, levels: int = 0, min_size: int = 16, finest_level: int = 0
) -> int:
    """How many pyramid levels frames of ``height`` x ``width`` get.

    ``levels`` if given, else as many as keep the coarsest short side ``>= min_size``; never a
    level under 4 px on the short side, and always at least ``finest_level + 1``.
    """
    short = min(height, width)
    if not levels:
        levels = 1 + max(0, int(math.floor(math.log2(short / min_size))))
    # never go below 4 px on the short side
    levels = min(levels, 1 + max(0, int(math.floor(math.log2(short / 4)))))
    return max(levels, finest_level + 1)


def align_homographies(
    frames: torch.Tensor,
    *,
    levels: int = 0,
    min_size: int = 16,
    finest_level: int = 0,
    iterations: int = 10,
    tolerance: float = 0.01,
    robust: str = "tukey",
    damping: float = 1e-4,
    with_stats: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Align every consecutive frame pair of a clip at once, coarse to fine.

    Args:
        frames: :math:`(T, 3, H, W)` RGB in [0, 1], float32 or float64, ``T >= 2``.
        levels, min_size, finest_level: the pyramid (:func:`pyramid_levels`); the levels down
            to ``finest_level`` are aligned with :func:`gauss_newton_level`.
        iterations, tolerance, robust, damping: as in :func:`gauss_newton_level`.
        with_stats: also compute the per-pair photometric statistics.

    Returns:
        :math:`(T-1, 3, 3)` homographies in pixel coordinates (``H[i]`` maps frame i to frame
        i+1, ``H[2, 2] = 1``), in ``frames``' dtype (float64 when ``with_stats``), and ``{}`` or
        per-pair statistics :math:`(T-1,)`: ``residual``, ``identity_residual``,
        ``correlation``, ``valid_fraction``, ``texture``, ``texture_first``, ``last_update``.
        Differentiable with respect to ``frames`` (the robust weights are detached).
    """
    # oneDNN's convolutions are several times slower than the native ones on single-channel
    # images (the pyramid and gradient filters); use the native ones on CPU.
    with _native_cpu_convolutions(frames.device):
        t, _, height, width = frames.shape
        dtype, device = frames.dtype, frames.device
        gray = kornia.color.rgb_to_grayscale(frames)
        n_levels = pyramid_levels(
            height, width, levels=levels, min_size=min_size, finest_level=finest_level
        )
        pyramid = kornia.geometry.transform.build_pyramid(
            gray, n_levels, border_type="reflect", align_corners=False
        )

        short = min(height, width)
        ax, ay = short / width, short / height  # resolution-free -> grid_sample coordinates
        h_n = torch.eye(3, dtype=dtype, device=device).repeat(t - 1, 1, 1)
        last_update = torch.zeros(t - 1, dtype=dtype, device=device)
        for level in range(n_levels - 1, finest_level - 1, -1):
            img = pyramid[level]
            h_n, last_update = gauss_newton_level(
                img[:-1],
                img[1:],
                h_n,
                ax=ax,
                ay=ay,
                iterations=iterations,
                tolerance=tolerance,
                robust=robust,
                damping=damping,
            )

        # to pixel coordinates in float64: translations of hundreds of pixels lose digits in float32
        wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        n = torch.as_tensor(resolution_free_matrix(width, height), dtype=wide, device=device)
        h_pix = torch.linalg.inv(n) @ h_n.to(wide) @ n
        h_pix = h_pix / h_pix[:, 2:3, 2:3]
        if not with_stats:
            return h_pix.to(dtype), {}
        stats = _photometric_stats(gray[:-1], gray[1:], h_n, ax, ay)
        stats["last_update"] = last_update * (2**finest_level)
        return h_pix, stats


def gauss_newton_level(
    template: torch.Tensor,
    image: torch.Tensor,
    h_n: torch.Tensor,
    *,
    ax: float,
    ay: float,
    iterations: int = 10,
    tolerance: float = 0.01,
    robust: str = "tukey",
    damping: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-compositional Gauss–Newton (Baker & Matthews 2004) with IRLS, on one pyramid level.

    Args:
        template: :math:`(B, 1, h, w)` frames i (grey, float).
        image: :math:`(B, 1, h, w)` frames i+1, warped onto ``template``.
        h_n: :math:`(B, 3, 3)` current homographies in resolution-free coordinates
            (:mod:`cammimic.homography`).
        ax, ay: ``short side / width`` and ``short side / height`` of the full-resolution
            frames (resolution-free to ``grid_sample`` coordinates).
        iterations: the most iterations; a pair stops once an update moves no corner by more
            than ``tolerance`` pixels of this level.
        robust: the IRLS loss (:data:`ROBUST_LOSSES`, :func:`robust_weights`).
        damping: Levenberg–Marquardt damping relative to the mean diagonal of the normal matrix.

    Returns:
        The refined :math:`(B, 3, 3)` homographies and :math:`(B,)` the last update's largest
        corner shift in pixels of this level.
    """
    b, _, h, w = template.shape
    dtype, device = template.dtype, template.device
    u, v = _grid_uv(h, w, ax, ay, dtype, device)  # (N,) resolution-free coordinates
    px_per_unit = w * ax / 2  # pixels of this level per resolution-free unit

    grad = kornia.filters.spatial_gradient(template, mode="sobel", normalized=True)  # (B,1,2,h,w)
    gx = grad[:, 0, 0].reshape(b, -1) * px_per_unit
    gy = grad[:, 0, 1].reshape(b, -1) * (h * ay / 2)
    gr = gx * u + gy * v
    # steepest-descent images dT/dp at the identity, p = H - I (8 entries, row-major): (B,8,N)
    rows = (gx * u, gx * v, gx, gy * u, gy * v, gy, -gr * u, -gr * v)
    tmpl = template.reshape(b, -1)
    pts = torch.stack([u, v, torch.ones_like(u)])  # (3,N)
    # every reduction of an iteration is one bmm of [sd; r; 1] (B,10,N) with itself, weighted,
    # so a pair's sums do not depend on the batch it is in (bmv and sum kernels do)
    needs_grad = torch.is_grad_enabled() and (
        gx.requires_grad or h_n.requires_grad or image.requires_grad
    )
    ones = torch.ones(b, 1, h * w, dtype=dtype, device=device)
    if needs_grad:
        sd, aug_buf, mul_buf = torch.stack(rows, dim=1), None, None
    else:  # reuse buffers: large fresh allocations cost page faults on CPU
        aug_buf = torch.empty(b, 10, h * w, dtype=dtype, device=device)
        for k, row in enumerate(rows):
            aug_buf[:, k] = row
        aug_buf[:, 9] = 1
        sd, mul_buf = aug_buf[:, :8], torch.empty_like(aug_buf)
    del rows

    eye = torch.eye(3, dtype=dtype, device=device)
    corners = torch.tensor(
        [
            [-1 / ax, -1 / ay, 1],
            [1 / ax, -1 / ay, 1],
            [1 / ax, 1 / ay, 1],
            [-1 / ax, 1 / ay, 1],
        ],
        dtype=dtype,
        device=device,
    )
    active = torch.ones(b, dtype=torch.bool, device=device)
    shift = torch.zeros(b, dtype=dtype, device=device)
    for _ in range(iterations):
        warped, valid = _warp(image, h_n, pts, ax, ay)
        r = (warped - tmpl) * valid
        weights = robust_weights(r.detach(), valid, robust)
        if aug_buf is None:
            aug = torch.cat([sd, r[:, None], ones], dim=1)
            sums = (aug * weights[:, None]) @ aug.transpose(1, 2)  # (B,10,10)
        else:  # no autograd: reuse buffers (large fresh allocations cost page faults)
            aug_buf[:, 8] = r
            sums = torch.mul(aug_buf, weights[:, None], out=mul_buf) @ aug_buf.transpose(1, 2)
        hess, rhs, weight_sum = sums[:, :8, :8], sums[:, :8, 8], sums[:, 9, 9:]
        diag = torch.diagonal(hess, dim1=1, dim2=2)
        # relative damping, plus a floor worth a gradient of 0.1 grey level per pixel, so a
        # textureless pair gets a zero update instead of amplified rounding noise
        floor = weight_sum * (0.1 / 255 * px_per_unit) ** 2 + 1e-12
        lam = damping * diag.mean(dim=1, keepdim=True).detach() + floor
        hess = hess + torch.diag_embed(lam.expand_as(diag))
        dp = torch.linalg.solve(hess, rhs[..., None])[..., 0]
        dp = torch.where(torch.isfinite(dp), dp, torch.zeros_like(dp))
        dh = eye + F.pad(dp, (0, 1)).reshape(b, 3, 3)
        new = h_n @ torch.linalg.inv(dh)
        new = new / new[:, 2:3, 2:3]
        # largest corner shift of this update, in pixels of this level
        moved = corners @ dh.transpose(1, 2)
        moved = moved[..., :2] / moved[..., 2:3]
        step = (moved - corners[:, :2]).detach().norm(dim=-1).amax(dim=-1) * px_per_unit
        step = torch.nan_to_num(step, nan=float("inf"))
        h_n = torch.where(active[:, None, None], new, h_n)
        shift = torch.where(active, step, shift)
        active = active & (step > tolerance)
        if not bool(active.any()):
            break
    return h_n, shift


def robust_weights(r: torch.Tensor, valid: torch.Tensor, robust: str = "tukey") -> torch.Tensor:
    """IRLS weights :math:`(B, N)` for residuals ``r`` :math:`(B, N)`; zero where not ``valid`` :math:`(B, N)`.

    The scale is 1.4826 x the median absolute residual of the valid pixels (a subsample of at
    most 16384 per pair), floored at half a grey level; ``robust`` is ``"tukey"``, ``"huber"`` or
    ``"none"`` (least squares: the weights are ``valid``).
    """
    if robust == "none":
        return valid
    n = r.shape[1]
    stride = max(1, n // _MAD_SAMPLES)
    sample = torch.where(
        valid[:, ::stride] > 0,
        r[:, ::stride].abs(),
        torch.full_like(r[:, ::stride], float("nan")),
    )
    sigma = 1.4826 * torch.nanmedian(sample, dim=1).values
    sigma = torch.nan_to_num(sigma, nan=1.0).clamp_min(_SIGMA_FLOOR)[:, None]
    c = _ROBUST_C[robust] * sigma
    a = r.abs()
    if robust == "huber":
        wts = c / a.clamp_min(c)
    else:  # tukey
        wts = (1 - (a / c) ** 2).clamp_min(0) ** 2
    return wts * valid


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _native_cpu_convolutions(device: torch.device):
    """Switch oneDNN (mkldnn) convolutions off while on CPU, restoring the setting after."""
    if device.type != "cpu" or not torch.backends.mkldnn.enabled:
        yield
        return
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = True


def _check_types(kind: type, **params) -> None:
    for name, value in params.items():
        ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(
            value, bool
        )
        if not ok:
            raise CammimicError(
                f"kornia estimator: {name} must be {'a number' if kind is float else 'an integer'}, got {value!r}"
            )


def _check_size(height: int, width: int) -> None:
    if min(height, width) < 8:
        raise CammimicError(
            f"kornia estimator: frames of {width}x{height} are too small, need at least 8x8 pixels"
        )


def _check_frames_numpy(frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise CammimicError(
            f"kornia estimator: expected frames as a numpy array, got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise CammimicError(
            f"kornia estimator: expected frames of shape (T, H, W, 3) with T >= 2, got {frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise CammimicError(
            f"kornia estimator: expected uint8 RGB frames, got dtype {frames.dtype}"
        )
    _check_size(frames.shape[1], frames.shape[2])
    return frames


def _grid_uv(
    h: int, w: int, ax: float, ay: float, dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resolution-free coordinates :math:`(h*w,)` of the pixel centres of an ``h`` x ``w`` level.

    Pixel centres sit at grid_sample coordinates ``2 (x + 0.5) / w - 1`` on every pyramid level
    (``align_corners=False``), and resolution-free coordinates are those divided by ``(ax, ay)``.
    """
    gx = (torch.arange(w, dtype=dtype, device=device) + 0.5) * (2 / w) - 1
    gy = (torch.arange(h, dtype=dtype, device=device) + 0.5) * (2 / h) - 1
    gy, gx = torch.meshgrid(gy, gx, indexing="ij")
    return (gx / ax).reshape(-1), (gy / ay).reshape(-1)


def _warp(
    image: torch.Tensor, h_n: torch.Tensor, pts: torch.Tensor, ax: float, ay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` :math:`(B, 1, h, w)` at ``h_n`` :math:`(B, 3, 3)` applied to ``pts`` :math:`(3, N)`.

    ``pts`` are homogeneous resolution-free coordinates. Returns the samples :math:`(B, N)` and a
    validity mask :math:`(B, N)` (1 where all four bilinear taps are inside the image).
    """
    b, _, h, w = image.shape
    # elementwise rather than a broadcast matmul, whose rounding depends on the batch size
    u, v = pts[0], pts[1]
    m = h_n.reshape(b, 9, 1)
    z = m[:, 6] * u + m[:, 7] * v + m[:, 8]
    gx = (m[:, 0] * u + m[:, 1] * v + m[:, 2]) / z * ax
    gy = (m[:, 3] * u + m[:, 4] * v + m[:, 5]) / z * ay
    grid = torch.stack([gx, gy], dim=-1)[:, None]  # (B,1,N,2) grid_sample coordinates
    samples = F.grid_sample(
        image, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    with torch.no_grad():
        valid = (gx.abs() <= 1 - 1 / w) & (gy.abs() <= 1 - 1 / h) & (z > 0)
    return samples.reshape(b, -1), valid.to(image.dtype)


def _photometric_stats(
    template: torch.Tensor, image: torch.Tensor, h_n: torch.Tensor, ax: float, ay: float
) -> dict[str, torch.Tensor]:
    """Per-pair residuals (mean absolute, intensity 0-1), with and without motion, ZNCC and overlap."""
    b, _, h, w = template.shape
    u, v = _grid_uv(h, w, ax, ay, template.dtype, template.device)
    warped, valid = _warp(image, h_n, torch.stack([u, v, torch.ones_like(u)]), ax, ay)
    tmpl = template.reshape(b, -1)
    count = valid.sum(dim=1)
    residual = ((warped - tmpl).abs() * valid).sum(dim=1) / count.clamp_min(1)
    residual = torch.where(count > 0, residual, torch.full_like(residual, float("inf")))
    identity = (image.reshape(b, -1) - tmpl).abs().mean(dim=1)
    # zero-normalised cross-correlation over the overlap
    mean_t = (tmpl * valid).sum(1, keepdim=True) / count.clamp_min(1)[:, None]
    mean_w = (warped * valid).sum(1, keepdim=True) / count.clamp_min(1)[:, None]
    dt, dw = (tmpl - mean_t) * valid, (warped - mean_w) * valid
    denom = (dt.square().sum(1) * dw.square().sum(1)).sqrt()
    # under ~1 grey level of standard deviation there is no texture to align on
    floor = count * _TEXTURE_FLOOR**2
    textured = (dt.square().sum(1) > floor) & (dw.square().sum(1) > floor)
    zncc = torch.where(
        textured, (dt * dw).sum(1) / denom.clamp_min(1e-12), torch.full_like(denom, float("nan"))
    )
    std_t = template.reshape(b, -1).std(dim=1)
    std_i = image.reshape(b, -1).std(dim=1)
    return {
        "texture": torch.minimum(std_t, std_i),
        "texture_first": (std_t <= std_i).to(template.dtype),
        "residual": residual,
        "identity_residual": identity,
        "correlation": zncc,
        "valid_fraction": count / (h * w),
    }


def _round_list(values: np.ndarray, digits: int = 4) -> list[float | None]:
    return [round(float(x), digits) if np.isfinite(x) else None for x in values]
