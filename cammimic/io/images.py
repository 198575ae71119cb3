"""Reading and writing images, the pixel limits, resizing, and the argument checks the
other io modules share.

Images are ``(H, W, 3)`` uint8 RGB; sizes are ``(width, height)``. ``cv2`` and ``PIL`` are
imported on first use.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from cammimic.errors import CammimicError
from cammimic.io.files import atomic_path

__all__ = [
    "read_image",
    "as_image",
    "write_image",
    "resize_center_crop",
    "max_image_pixels",
    "IMAGE_SUFFIXES",
    "WRITE_IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
]

#: Image suffixes taken from a directory or glob when reading an image sequence.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Suffixes :func:`write_image` can write.
WRITE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Most pixels one image or one video frame may have (Pillow's decompression-bomb error
#: threshold): a larger header is refused before anything is decoded. Override with the
#: environment variable ``CAMMIMIC_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = 178_956_970
ENV_MAX_IMAGE_PIXELS = "CAMMIMIC_MAX_IMAGE_PIXELS"


def env_limit(env: str, default: int) -> int:
    text = os.environ.get(env)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise CammimicError(
            f"{env}={text[:40]!r} is invalid; set it to a positive number of pixels"
        )
    return value


def max_image_pixels() -> int:
    """The per-image (and per-video-frame) pixel limit in force now."""
    return env_limit(ENV_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS)


def check_image_pixels(width: int, height: int, what: str) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise CammimicError(
            f"{what} is {width}x{height} ({width * height / 1e6:.0f} Mpx), above the limit of "
            f"{limit / 1e6:.0f} Mpx per image (a decompression bomb?); shrink it, or raise the "
            f"limit with {ENV_MAX_IMAGE_PIXELS}=<pixels> if you trust the file"
        )


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_size(size, where: str) -> tuple[int, int]:
    ok = (
        isinstance(size, (tuple, list, np.ndarray))
        and len(size) == 2
        and all(is_int(v) and v > 0 for v in size)
    )
    if not ok:
        raise CammimicError(
            f"size {size!r} for {where} is invalid; pass (width, height) as two positive integers"
        )
    return int(size[0]), int(size[1])


def check_positive(value, name: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise CammimicError(f"{name}={value!r} for {where} is invalid; pass a positive number")
    return v


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------


def resize_center_crop(
    image_or_frames: np.ndarray, size: Sequence[int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Resize so ``size`` = (W, H) is covered, then centre-crop to exactly W x H.

    Works on one image ``(H, W, C)`` / ``(H, W)`` or on frames ``(T, H, W, C)``. The scale is
    ``max(W / w, H / h)``; shrinking uses ``cv2.INTER_AREA``, enlarging ``cv2.INTER_CUBIC``.

    Returns:
        The resized array (same dtype, leading dims kept, spatial size exactly ``H x W``) and the
        crop box ``(x, y, w, h)`` in source pixels: the region of the source that fills the
        output. The box is integer, so the output maps to it up to a sub-pixel aspect change.
    """
    import cv2

    arr = np.asarray(image_or_frames)
    width, height = check_size(size, "resize_center_crop")
    if arr.ndim == 2:
        src_h, src_w = arr.shape
    elif arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        src_h, src_w = arr.shape[:2]
    elif arr.ndim == 4:
        src_h, src_w = arr.shape[1:3]
    else:
        raise CammimicError(
            f"resize_center_crop expects (H, W, 3) or (T, H, W, 3) arrays, got {arr.shape}"
        )
    if src_w < 1 or src_h < 1:
        raise CammimicError(f"cannot resize an empty image of shape {arr.shape}")
    scale = max(width / src_w, height / src_h)
    crop_w = min(src_w, max(1, round(width / scale)))
    crop_h = min(src_h, max(1, round(height / scale)))
    x = (src_w - crop_w) // 2
    y = (src_h - crop_h) // 2
    box = (int(x), int(y), int(crop_w), int(crop_h))

    def one(img: np.ndarray) -> np.ndarray:
        img = img[y : y + crop_h, x : x + crop_w]
        if (crop_w, crop_h) == (width, height):
            return img.copy()
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        out = cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=interp)
        if out.ndim < img.ndim:  # cv2 drops a trailing channel axis of size 1
            out = out[..., None]
        return out

    if arr.ndim == 4:
        out = np.empty((arr.shape[0], height, width, arr.shape[3]), arr.dtype)
        for k in range(arr.shape[0]):
            out[k] = one(arr[k])
        return out, box
    return one(arr), box


# --------------------------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------------------------


def _check_background(background) -> np.ndarray:
    bg = np.asarray(background)
    if bg.shape != (3,) or not np.all((bg >= 0) & (bg <= 255)):
        raise CammimicError(
            f"background {background!r} is invalid; pass an (r, g, b) tuple of values in 0..255"
        )
    return bg.astype(np.float64)


def _composite(rgb: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Composite ``rgb`` (float, 0..255) with ``alpha`` (float, 0..1) over ``bg``; uint8 out."""
    a = alpha[..., None]
    out = rgb * a + bg * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_float255(arr: np.ndarray) -> np.ndarray:
    """Samples of any depth to float on the 0..255 scale."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 257.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0
    if np.issubdtype(arr.dtype, np.integer):  # 32-bit "I" images holding 16-bit data
        return np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    raise ValueError(f"unsupported sample type {arr.dtype}")


def _array_to_rgb(arr: np.ndarray, bg: np.ndarray, channel_order: str = "RGB") -> np.ndarray:
    """(H, W), (H, W, 1..4) samples of any depth -> (H, W, 3) uint8 RGB, alpha composited."""
    if arr.ndim == 2:
        arr = arr[..., None]
    chans = arr.shape[2]
    f = _to_float255(arr)
    if chans == 1:
        rgb, alpha = np.repeat(f, 3, axis=2), None
    elif chans == 2:
        rgb, alpha = np.repeat(f[..., :1], 3, axis=2), f[..., 1] / 255.0
    elif chans in (3, 4):
        rgb = f[..., :3]
        if channel_order == "BGR":
            rgb = rgb[..., ::-1]
        alpha = f[..., 3] / 255.0 if chans == 4 else None
    else:
        raise ValueError(f"unsupported number of channels {chans}")
    if alpha is None:
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return _composite(rgb, alpha, bg)


def _read_high_depth(path: Path) -> np.ndarray | None:
    """16-bit / float PNG and TIFF through OpenCV (Pillow truncates 16-bit RGB); else None."""
    import cv2

    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        return None
    if suffix == ".png":  # skip the second decode for 8-bit PNGs: bit depth is IHDR byte 24
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            head = fh.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] != 16:
                return None
    try:
        data = np.fromfile(path, dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error, ValueError):
        return None
    if arr is None or arr.dtype == np.uint8:
        return None
    return arr


@contextlib.contextmanager
def _pillow_limit() -> Iterator[None]:
    """Pillow's own bomb check at cammimic's limit (its error fires at twice its setting)."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_image_pixels() // 2 + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG (IHDR) or TIFF (first IFD) from its header bytes."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 24:
            return struct.unpack(">II", head[16:24])
        if head[:4] not in (b"II*\x00", b"MM\x00*"):
            return None
        end = "<" if head[:2] == b"II" else ">"
        fh.seek(struct.unpack(end + "I", head[4:8])[0])
        (count,) = struct.unpack(end + "H", fh.read(2))
        found: dict[int, int] = {}
        for _ in range(min(count, 4096)):
            entry = fh.read(12)
            if len(entry) < 12:
                break
            tag, kind = struct.unpack(end + "HH", entry[:4])
            if tag in (256, 257):
                fmt = "H" if kind == 3 else "I"
                found[tag] = struct.unpack(end + fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
        if 256 in found and 257 in found:
            return found[256], found[257]
    return None


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file's header alone (nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # read the header only; the caller compares with the limit
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except UnidentifiedImageError:
        size = _header_size(path)  # e.g. float TIFF that only OpenCV reads
        if size is None:
            raise
        return int(size[0]), int(size[1])
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _exif_transposed(rgb: np.ndarray, path: Path) -> np.ndarray:
    """``rgb`` (decoded by OpenCV, which ignores EXIF) turned as the file's EXIF orientation says,
    by Pillow's ``ImageOps.exif_transpose`` (the orientation is best effort: unreadable = none)."""
    from PIL import ExifTags, Image, ImageOps

    try:
        with _pillow_limit(), Image.open(path) as im:
            orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 - orientation is best effort
        return rgb
    if orientation == 1:
        return rgb
    out = Image.fromarray(rgb)
    out.getexif()[ExifTags.Base.Orientation] = orientation
    return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(out)))


def _pil_to_rgb(im, bg: np.ndarray) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = (
            im.convert("RGBA") if ("transparency" in im.info or mode == "PA") else im.convert("RGB")
        )
        mode = im.mode
    if mode in ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    if mode in ("RGBA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")  # also un-premultiplies La/RGBa
        return _array_to_rgb(np.asarray(im), bg)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _array_to_rgb(np.asarray(im), bg)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_image(
    path: str | os.PathLike,
    *,
    size: Sequence[int] | None = None,
    background: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Handles RGB, RGBA/LA/transparent palette (composited over ``background``), grayscale,
    palette, 16-bit PNG/TIFF (1, 2, 3 or 4 channels; scaled to 8 bit by /257 with rounding),
    float TIFF in [0, 1] and CMYK, and applies the EXIF orientation of photos.

    Args:
        path: the image file.
        size: optional ``(width, height)``; the image is resized and centre-cropped to it
            (see :func:`resize_center_crop`).
        background: ``(r, g, b)`` colour transparent pixels are composited over.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if size is not None:
        size = check_size(size, str(p))
    bg = _check_background(background)
    if not p.exists():
        raise CammimicError(f"image {p} does not exist; check the path")
    if p.is_dir():
        raise CammimicError(f"image {p} is a directory; pass an image file")
    if not p.is_file():  # a FIFO would block the read forever
        raise CammimicError(
            f"image {p} is not a regular file (a FIFO, device or socket); pass an image file"
        )
    try:
        check_image_pixels(*image_size(p), f"image {p}")
        high = _read_high_depth(p)
        if high is not None:
            rgb = _exif_transposed(_array_to_rgb(high, bg, "BGR"), p)
        else:
            with _pillow_limit(), Image.open(p) as im:
                im.load()
                rgb = _pil_to_rgb(ImageOps.exif_transpose(im), bg)
    except UnidentifiedImageError as exc:
        raise CammimicError(
            f"image {p} is not an image file Pillow can read; convert it to PNG or JPEG"
        ) from exc
    except Image.DecompressionBombError as exc:  # a frame inside larger than the header says
        raise CammimicError(
            f"image {p} holds more pixels than the limit of {max_image_pixels() / 1e6:.0f} Mpx "
            f"(a decompression bomb?); raise {ENV_MAX_IMAGE_PIXELS} only if you trust the file"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise CammimicError(
            f"image {p} cannot be read ({exc}); it may be truncated or corrupt, re-export it"
        ) from exc
    if size is not None:
        rgb, _ = resize_center_crop(rgb, size)
    return rgb


def as_image(image, *, name: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image from a path (read with :func:`read_image`) or an array
    (checked, not copied): the user image, decoded once however many places take it."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise CammimicError(
            f"{name} must be a path or an (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}"
        )
    return arr


def write_image(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` gray) image as PNG or JPEG, atomically.

    ``quality`` is the JPEG quality. Returns the path written.
    """
    from PIL import Image

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WRITE_IMAGE_SUFFIXES:
        raise CammimicError(
            f"cannot write image {p}: unsupported suffix '{p.suffix}'; "
            f"use one of {', '.join(WRITE_IMAGE_SUFFIXES)}"
        )
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise CammimicError(
            f"cannot write {p}: image must be (H, W, 3) or (H, W) uint8, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    img = Image.fromarray(np.ascontiguousarray(arr))
    with atomic_path(p) as tmp:
        try:
            if suffix == ".png":
                img.save(tmp, format="PNG")
            else:
                img.save(tmp, format="JPEG", quality=int(quality))
        except OSError as exc:
            raise CammimicError(f"writing image {p} failed ({exc}); check disk space") from exc
    return p
