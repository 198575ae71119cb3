"""The homography toolkit: compose, invert, normalise, rescale and warp along a chain.

Conventions, used everywhere in cammimic:

- A video of T frames has T-1 *frame-to-frame* homographies ``H_i`` of shape ``(T-1, 3, 3)``
  mapping pixel coordinates of frame ``i`` to frame ``i+1``: ``x_{i+1} ~ H_i @ x_i``.
- Pixel coordinates follow OpenCV: ``(0, 0)`` is the *centre* of the top-left pixel, x to the
  right, y down. A pixel covers ``[x - 0.5, x + 0.5]``.
- Homographies are stored normalised so that ``H[2, 2] == 1``.
- The *chain* (cumulative homographies) ``C_k`` maps frame 0 to frame k: ``C_0 = I`` and
  ``C_{k+1} = H_k @ C_k``; it has shape ``(T, 3, 3)``.
- *Resolution-free* coordinates put the image centre at the origin and divide by half the
  short side, so the short side spans [-1, 1]. They are isotropic (a roll stays a rotation) and
  invariant to resizing and centre-cropping, which is how cammimic maps a reference video to the
  generation's resolution. Compare homographies of different resolutions in these coordinates.

Everything here is NumPy (float64). Functions accept a single ``(3, 3)`` matrix or a stack
``(..., 3, 3)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cammimic.errors import CammimicError

__all__ = [
    "normalize",
    "compose",
    "chain",
    "invert",
    "plane_homography",
    "resolution_free_matrix",
    "to_resolution_free",
    "from_resolution_free",
    "rescale",
    "transform_points",
    "corner_error",
    "warp_along_chain",
    "FILL_MODES",
]

FILL_MODES = ("black", "reflect", "replicate")


def _as_h(h) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    if h.shape[-2:] != (3, 3):
        raise CammimicError(f"expected homographies of shape (..., 3, 3), got {h.shape}")
    return h


def normalize(h) -> np.ndarray:
    """Scale homographies so that ``H[2, 2] == 1``. Shape ``(..., 3, 3)``."""
    h = _as_h(h)
    scale = h[..., 2:3, 2:3]
    if np.any(np.abs(scale) < 1e-12):
        raise CammimicError("a homography has H[2,2] == 0 and cannot be normalised")
    return h / scale


def compose(*hs) -> np.ndarray:
    """Compose homographies applied in order: ``compose(A, B)`` maps x to ``B @ A @ x``."""
    if not hs:
        raise CammimicError("compose needs at least one homography")
    out = _as_h(hs[0])
    for h in hs[1:]:
        out = _as_h(h) @ out
    return normalize(out)


def chain(homographies) -> np.ndarray:
    """Cumulative homographies of a video: ``(T-1, 3, 3)`` frame-to-frame -> ``(T, 3, 3)``.

    ``C[k]`` maps pixel coordinates of frame 0 to frame k (``C[0]`` is the identity).
    """
    hs = _as_h(homographies)
    if hs.ndim != 3:
        raise CammimicError(f"chain expects (T-1, 3, 3) homographies, got {hs.shape}")
    out = np.empty((hs.shape[0] + 1, 3, 3))
    out[0] = np.eye(3)
    for k, h in enumerate(hs):
        out[k + 1] = normalize(h @ out[k])
    return out


def invert(h) -> np.ndarray:
    """Invert homographies (``(..., 3, 3)``), normalised to ``H[2, 2] == 1``."""
    h = _as_h(h)
    try:
        return normalize(np.linalg.inv(h))
    except np.linalg.LinAlgError as exc:
        raise CammimicError("a homography is singular and cannot be inverted") from exc


def plane_homography(k_a, k_b, rotation, translation, normal, depth) -> np.ndarray:
    """The homography of a scene plane between two pinhole cameras a and b.

    ``H = K_b (R - t nᵀ/d) K_a⁻¹`` where ``X_b = R X_a + t`` (camera a's coordinates to camera
    b's) and the plane is ``nᵀ X_a + d = 0`` in camera a's coordinates: ``n`` its unit normal
    pointing towards camera a, ``d > 0`` its distance (a wall 5 units ahead: ``n = (0, 0, -1)``,
    ``d = 5``). Maps pixel coordinates of a to those of b, normalised so ``H[2, 2] = 1``.
    """
    k_a, k_b, r = (np.asarray(m, np.float64) for m in (k_a, k_b, rotation))
    t = np.asarray(translation, np.float64).reshape(3, 1)
    n = np.asarray(normal, np.float64).reshape(1, 3)
    return normalize(k_b @ (r - t @ n / float(depth)) @ np.linalg.inv(k_a))


def resolution_free_matrix(width: int, height: int) -> np.ndarray:
    """The matrix N taking pixel coordinates of a ``width`` x ``height`` image to resolution-free ones."""
    s = min(width, height) / 2.0
    return np.array(
        [[1 / s, 0, (0.5 - width / 2) / s], [0, 1 / s, (0.5 - height / 2) / s], [0, 0, 1]],
        dtype=np.float64,
    )


def to_resolution_free(h, width: int, height: int) -> np.ndarray:
    """Express pixel homographies of a ``width`` x ``height`` video in resolution-free coordinates."""
    n = resolution_free_matrix(width, height)
    return normalize(n @ _as_h(h) @ np.linalg.inv(n))


def from_resolution_free(h, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`to_resolution_free`: resolution-free homographies to pixel ones."""
    n = resolution_free_matrix(width, height)
    return normalize(np.linalg.inv(n) @ _as_h(h) @ n)


def _resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    # Exact for pixel centres: x' + 0.5 = (x + 0.5) * s.
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)


def rescale(h, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Rescale pixel homographies of a video resized from ``src_size`` to ``dst_size`` (width, height).

    Exact for pixel centres (``x' + 0.5 = (x + 0.5) * s``), so it composes with resizing the
    frames themselves; the paper's ``S^-1 H S`` drops the half-pixel terms.
    """
    a = _resize_matrix(src_size, dst_size)
    return normalize(a @ _as_h(h) @ np.linalg.inv(a))


def transform_points(h, points) -> np.ndarray:
    """Apply homographies ``(..., 3, 3)`` to points ``(..., N, 2)``."""
    h = _as_h(h)
    pts = np.asarray(points, dtype=np.float64)
    ones = np.ones(pts.shape[:-1] + (1,))
    hom = np.concatenate([pts, ones], axis=-1) @ np.swapaxes(h, -1, -2)
    return hom[..., :2] / hom[..., 2:3]


def corner_error(h_est, h_true, width: int, height: int) -> np.ndarray:
    """Mean distance in pixels between the image corners mapped by ``h_est`` and by ``h_true``.

    The standard accuracy measure for homography estimation; returns one value per matrix.
    """
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float)
    a = transform_points(h_est, corners)
    b = transform_points(h_true, corners)
    return np.linalg.norm(a - b, axis=-1).mean(axis=-1)


def warp_along_chain(
    image: np.ndarray,
    homographies,
    *,
    fill: Literal["black", "reflect", "replicate"] = "black",
) -> tuple[np.ndarray, np.ndarray]:
    """Move an image along a camera-motion chain: the *weak video* of CamMimic's Phase 2.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, frame 0 of the result.
        homographies: ``(T-1, 3, 3)`` frame-to-frame homographies in the image's pixel
            coordinates (resize the image to the output size first, see :mod:`cammimic.io`).
        fill: what fills areas the image does not cover: ``black``, ``reflect`` or ``replicate``.

    Returns:
        ``frames`` ``(T, H, W, 3)`` uint8 and ``masks`` ``(T, H, W)`` bool, True where the pixel
        comes from inside the image. Each frame warps the *original* image once by the composed
        homography, so there is no accumulated resampling blur.
    """
    import cv2

    if fill not in FILL_MODES:
        raise CammimicError(f"fill mode '{fill}' is unknown. Try one of {list(FILL_MODES)}")
    border = {
        "black": cv2.BORDER_CONSTANT,
        "reflect": cv2.BORDER_REFLECT_101,
        "replicate": cv2.BORDER_REPLICATE,
    }[fill]
    image = np.ascontiguousarray(image)
    size = (image.shape[1], image.shape[0])
    cum = chain(homographies)
    ones = np.ones(image.shape[:2], np.float32)
    frames = np.empty((len(cum), size[1], size[0], 3), np.uint8)
    masks = np.empty((len(cum), size[1], size[0]), bool)
    for k, c in enumerate(cum):
        frames[k] = cv2.warpPerspective(image, c, size, flags=cv2.INTER_LINEAR, borderMode=border)
        cover = cv2.warpPerspective(
            ones, c, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        masks[k] = cover > 0.999
    return frames, masks
