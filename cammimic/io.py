"""Video and image input/output: read, sample, resize, and write atomically.

Conventions:

- Frames are ``(T, H, W, 3)`` uint8 RGB arrays; an image is ``(H, W, 3)`` uint8 RGB.
- Sizes are ``(width, height)``; crop boxes are ``(x, y, w, h)`` in source pixels.
- Videos are decoded with PyAV (the first video stream): frames are counted from the packets
  first and only those kept are converted and resized, so memory is bounded by what is kept
  (:data:`MAX_VIDEO_PIXELS`); one image or frame may hold at most :data:`MAX_IMAGE_PIXELS`. A directory of images or a glob pattern is read as an image sequence.
- Every file and directory written here appears atomically: it is written under a hidden
  temporary name next to its destination and renamed into place, so a failed or interrupted
  run never leaves a half-written file or replaces a good one.

``av``, ``cv2`` and ``PIL`` are imported on first use so ``import cammimic.io`` stays light.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import math
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.errors import CammimicError

__all__ = [
    "Video",
    "read_video",
    "read_image",
    "count_frames",
    "resize_center_crop",
    "write_video",
    "write_image",
    "write_text",
    "atomic_path",
    "output_directory",
    "check_output_directory",
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "WRITE_VIDEO_SUFFIXES",
    "WRITE_IMAGE_SUFFIXES",
    "DEFAULT_SEQUENCE_FPS",
    "MAX_IMAGE_PIXELS",
    "MAX_VIDEO_PIXELS",
]

#: Container suffixes :func:`read_video` expects (others are still tried with PyAV).
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
#: Image suffixes taken from a directory or glob when reading an image sequence.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Suffixes :func:`write_video` can write.
WRITE_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".gif")
#: Suffixes :func:`write_image` can write.
WRITE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Frame rate given to an image sequence unless ``sequence_fps`` says otherwise.
DEFAULT_SEQUENCE_FPS = 8.0
#: Most pixels one image or one video frame may have (Pillow's decompression-bomb error
#: threshold): a larger header is refused before anything is decoded. Override with the
#: environment variable ``CAMMIMIC_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = 178_956_970
#: Most pixels a video read may keep in memory, all kept frames together (after resizing):
#: 2**28, 768 MiB of RGB. Override with ``max_pixels=`` or ``CAMMIMIC_MAX_VIDEO_PIXELS``.
MAX_VIDEO_PIXELS = 2**28
ENV_MAX_IMAGE_PIXELS = "CAMMIMIC_MAX_IMAGE_PIXELS"
ENV_MAX_VIDEO_PIXELS = "CAMMIMIC_MAX_VIDEO_PIXELS"


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise CammimicError(f"{env}={text[:40]!r} is invalid; set it to a positive number of pixels")
    return value


def max_image_pixels() -> int:
    """The per-image (and per-video-frame) pixel limit in force now."""
    return _limit(ENV_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS)


def _check_image_pixels(width: int, height: int, what: str) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise CammimicError(
            f"{what} is {width}x{height} ({width * height / 1e6:.0f} Mpx), above the limit of "
            f"{limit / 1e6:.0f} Mpx per image (a decompression bomb?); shrink it, or raise the "
            f"limit with {ENV_MAX_IMAGE_PIXELS}=<pixels> if you trust the file"
        )


# --------------------------------------------------------------------------------------------
# The Video type
# --------------------------------------------------------------------------------------------


def _frames(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return arr


@attrs.frozen(eq=False)
class Video:
    """Frames read from a video file or image sequence, and where they came from."""

    #: ``(T, H, W, 3)`` uint8 RGB.
    frames: np.ndarray = attrs.field(converter=_frames, repr=lambda a: f"<{a.shape} {a.dtype}>")
    #: Frame rate of ``frames`` (after any sampling).
    fps: float
    #: Which source frames were taken, one per frame.
    indices: tuple[int, ...] = attrs.field(converter=tuple)
    #: Frame rate of the source.
    source_fps: float
    #: Number of frames in the source (as decoded).
    source_num_frames: int
    #: ``(width, height)`` of the source frames.
    source_size: tuple[int, int] = attrs.field(converter=tuple)
    #: ``(x, y, w, h)`` region of the source frames used, when resized/cropped; else None.
    crop: tuple[int, int, int, int] | None
    #: The file, directory or glob pattern read.
    path: str

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of ``frames``."""
        return (int(self.frames.shape[2]), int(self.frames.shape[1]))

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    def metadata(self) -> dict[str, Any]:
        """A JSON-ready dict of everything but the frames (plus ``num_frames`` and ``size``)."""
        return {
            "path": self.path,
            "num_frames": self.num_frames,
            "size": list(self.size),
            "fps": float(self.fps),
            "indices": [int(i) for i in self.indices],
            "source_fps": float(self.source_fps),
            "source_num_frames": int(self.source_num_frames),
            "source_size": [int(v) for v in self.source_size],
            "crop": None if self.crop is None else [int(v) for v in self.crop],
        }


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_size(size, where: str) -> tuple[int, int]:
    ok = (
        isinstance(size, (tuple, list, np.ndarray))
        and len(size) == 2
        and all(_is_int(v) and v > 0 for v in size)
    )
    if not ok:
        raise CammimicError(
            f"size {size!r} for {where} is invalid; pass (width, height) as two positive integers"
        )
    return int(size[0]), int(size[1])


def _check_positive(value, name: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise CammimicError(f"{name}={value!r} for {where} is invalid; pass a positive number")
    return v


def _natural_key(path: str) -> list:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


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
    width, height = _check_size(size, "resize_center_crop")
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


#: EXIF orientation -> Pillow transpose method name (as ``ImageOps.exif_transpose`` uses).
_EXIF_TRANSPOSE = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``(H, W, ...)`` array, as Pillow's exif_transpose does."""
    op = _EXIF_TRANSPOSE.get(orientation)
    if op == "FLIP_LEFT_RIGHT":
        arr = arr[:, ::-1]
    elif op == "ROTATE_180":
        arr = arr[::-1, ::-1]
    elif op == "FLIP_TOP_BOTTOM":
        arr = arr[::-1]
    elif op == "TRANSPOSE":
        arr = np.swapaxes(arr, 0, 1)
    elif op == "ROTATE_270":
        arr = np.rot90(arr, -1)
    elif op == "TRANSVERSE":
        arr = np.swapaxes(arr[::-1, ::-1], 0, 1)
    elif op == "ROTATE_90":
        arr = np.rot90(arr, 1)
    return np.ascontiguousarray(arr)


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


def _image_size(path: Path) -> tuple[int, int]:
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


def _exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1 when absent or unreadable)."""
    from PIL import Image

    try:
        with _pillow_limit(), Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - orientation is best effort
        return 1


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
        size = _check_size(size, str(p))
    bg = _check_background(background)
    if not p.exists():
        raise CammimicError(f"image {p} does not exist; check the path")
    if p.is_dir():
        raise CammimicError(f"image {p} is a directory; pass an image file")
    try:
        _check_image_pixels(*_image_size(p), f"image {p}")
        high = _read_high_depth(p)
        if high is not None:
            rgb = _apply_orientation(_array_to_rgb(high, bg, "BGR"), _exif_orientation(p))
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


# --------------------------------------------------------------------------------------------
# Reading videos
# --------------------------------------------------------------------------------------------


def _sample_indices(
    times: np.ndarray, num_frames: int | None, fps: float | None, where: str
) -> np.ndarray:
    n = len(times)
    if num_frames is not None:
        if num_frames > n:
            raise CammimicError(
                f"num_frames={num_frames} but {where} has only {n} frames; pass num_frames <= {n}"
            )
        return np.rint(np.linspace(0, n - 1, num_frames)).astype(int)
    if fps is not None:
        rel = times - times[0]
        count = int(math.floor(rel[-1] * fps + 1e-6)) + 1
        targets = np.arange(count) / fps
        # nearest frame to each target time (ties go to the earlier frame)
        right = np.clip(np.searchsorted(rel, targets, side="left"), 0, n - 1)
        left = np.clip(right - 1, 0, n - 1)
        use_left = np.abs(rel[left] - targets) <= np.abs(rel[right] - targets) + 1e-9
        idx = np.where(use_left, left, right)
        if count < 2:
            raise CammimicError(
                f"sampling {where} at fps={fps:g} leaves {count} frame "
                f"(the clip lasts {rel[-1]:.3g} s); pass a higher fps"
            )
        return idx
    return np.arange(n)


def _video_error(p: Path, exc: BaseException) -> CammimicError:
    return CammimicError(
        f"video {p} cannot be decoded ({exc}); is it a video file? Re-encode it, e.g. as H.264 .mp4"
    )


def _open_stream(container, p: Path):
    if not container.streams.video:
        raise CammimicError(f"video {p} has no video stream; pass a file with video in it")
    return container.streams.video[0]


def _probe_video(p: Path, max_frames: int):
    """Count the frames of the first video stream from its packets (nothing is decoded).

    Returns ``(times, rate, (width, height), truncated)``: presentation times in seconds (or
    ``None`` per frame without a timestamp), the stream's frame rate (``None`` if unknown),
    the coded size from the stream header, and whether there are more than ``max_frames``.
    """
    import av

    pts: list[int | None] = []
    truncated = False
    try:
        with av.open(str(p)) as container:
            stream = _open_stream(container, p)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            size = (int(stream.codec_context.width or 0), int(stream.codec_context.height or 0))
            is_gif = container.format.name == "gif"
            base = stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:  # flush packets, edit-list leaders
                    continue
                if len(pts) >= max_frames:
                    truncated = True
                    break
                pts.append(packet.pts)
    except av.FFmpegError as exc:
        raise _video_error(p, exc) from exc
    if pts and all(t is not None for t in pts) and base is not None:
        times: list[float | None] = [float(t * base) for t in sorted(pts)]
    else:
        times = [None] * len(pts)
    fps = float(rate) if rate else None
    if is_gif and len(times) > 1 and all(t is not None for t in times):
        # GIF delays are whole centiseconds and FFmpeg's rate is a guess from the first delay:
        # use the mean rate of the timestamps, snapped to a whole number when within 1%.
        span = float(times[-1]) - float(times[0])
        if span > 0:
            fps = (len(times) - 1) / span
            if abs(fps - round(fps)) < 0.01 * fps:
                fps = float(round(fps))
    return times, fps, size, truncated


def _frame_to_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame as ``(H, W, 3)`` uint8 RGB, display rotation applied."""
    rgb = frame.to_ndarray(format="rgb24")
    k = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _decode_frames(
    p: Path, keep: Sequence[int], size: tuple[int, int] | None
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Decode the first video stream and keep only the frames numbered ``keep`` (in display
    order), each resized as it comes when ``size`` is given; returns them and the source size.

    Every frame passes through the decoder (inter-frame codecs need that) but only the kept
    ones are converted to RGB, so memory holds the kept frames plus the decoder's few buffers.
    """
    import av

    wanted = sorted(set(int(k) for k in keep))
    if not wanted:
        return [], (0, 0)
    last = wanted[-1]
    kept: dict[int, np.ndarray] = {}
    source_size = (0, 0)
    ordinal = -1
    try:
        with av.open(str(p)) as container:
            stream = _open_stream(container, p)
            stream.thread_type = "AUTO"
            stream.thread_count = min(4, os.cpu_count() or 1)
            wanted_set = set(wanted)
            for frame in container.decode(stream):
                ordinal += 1
                if ordinal > last:
                    break
                if ordinal not in wanted_set:
                    continue
                _check_image_pixels(frame.width, frame.height, f"video {p} frame {ordinal}")
                rgb = _frame_to_rgb(frame)
                this = (rgb.shape[1], rgb.shape[0])
                if kept and this != source_size and size is None:
                    raise CammimicError(
                        f"video {p} changes frame size from {source_size[0]}x{source_size[1]} to "
                        f"{this[0]}x{this[1]} at frame {ordinal}; pass size= to resize all frames"
                    )
                source_size = this
                if size is not None:
                    rgb, _ = resize_center_crop(rgb, size)
                kept[ordinal] = rgb
    except av.FFmpegError as exc:
        raise _video_error(p, exc) from exc
    if len(kept) < len(wanted):
        raise CammimicError(
            f"video {p} lists {last + 1} or more frames but only {ordinal + 1} could be decoded; "
            "it is damaged or truncated, re-encode it, e.g. as H.264 .mp4"
        )
    return [kept[k] for k in keep], source_size


def _check_total_pixels(count: int, size: tuple[int, int], where: str, max_pixels: int) -> None:
    total = count * size[0] * size[1]
    if total > max_pixels:
        raise CammimicError(
            f"{where}: keeping {count} frames of {size[0]}x{size[1]} needs {total / 1e6:.0f} Mpx, "
            f"above the limit of {max_pixels / 1e6:.0f} Mpx; sample fewer frames (--frames N), "
            f"downscale (--width/--height), or raise the limit with max_pixels= or "
            f"{ENV_MAX_VIDEO_PIXELS}=<pixels>"
        )


def _sequence_files(path_str: str, p: Path) -> list[str]:
    if p.is_dir():
        files = [str(f) for f in p.iterdir() if f.is_file()]
        what = f"directory {p}"
    else:
        files = [f for f in _glob.glob(path_str, recursive=True) if os.path.isfile(f)]
        what = f"glob pattern {path_str}"
    files = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise CammimicError(
            f"{what} contains no images ({', '.join(IMAGE_SUFFIXES)}); check the path"
        )
    return sorted(files, key=_natural_key)


def count_frames(path: str | os.PathLike, *, max_frames: int = 1000) -> int:
    """How many frames :func:`read_video` would see in ``path`` (at most ``max_frames``),
    from file names or the container's packets: nothing is decoded."""
    path_str = os.fspath(path)
    p = Path(path_str)
    if p.is_dir() or (not p.exists() and _glob.has_magic(path_str)):
        return min(len(_sequence_files(path_str, p)), max_frames)
    if not p.is_file():
        raise CammimicError(f"video {path_str} does not exist or is not a file; check the path")
    return len(_probe_video(p, max_frames)[0])


def read_video(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    size: Sequence[int] | None = None,
    max_frames: int = 1000,
    sequence_fps: float = DEFAULT_SEQUENCE_FPS,
    max_pixels: int | None = None,
) -> Video:
    """Read a video file, a directory of images, or a glob pattern of images.

    Files (mp4/mov/webm/mkv/avi/gif, anything FFmpeg reads) are decoded with PyAV: the frames
    of the first video stream, as RGB, with the container's display rotation applied. Image
    sequences (png/jpg/jpeg/bmp/tif/tiff/webp, natural sort so ``frame2`` < ``frame10``) run at
    ``sequence_fps``.

    Args:
        path: a video file, a directory of images or a glob pattern such as ``frames/*.png``.
        num_frames: sample this many frames evenly over the whole clip
            (indices ``round(linspace(0, T-1, N))``); the returned fps keeps the duration.
        fps: sample at this frame rate using the frames' timestamps (nearest frame to each
            ``k / fps``); must not exceed the source rate. Exclusive with ``num_frames``.
        size: ``(width, height)``: resize and centre-crop every frame to exactly this size.
        max_frames: decode at most this many source frames; a longer clip is cut (with a
            warning) to its first ``max_frames`` frames.
        sequence_fps: frame rate of an image sequence.
        max_pixels: most pixels the kept frames may hold together (count x width x height
            after resizing); ``None``: ``CAMMIMIC_MAX_VIDEO_PIXELS`` or :data:`MAX_VIDEO_PIXELS`.
            Above it the read is refused before decoding, with the way out.

    Memory stays bounded on hostile files: frames are counted from the container's packets
    first, then only the frames kept are converted and (with ``size``) resized as they are
    decoded; one frame larger than :data:`MAX_IMAGE_PIXELS` is refused from the header.

    Returns:
        A :class:`Video` with ``frames`` ``(T, H, W, 3)`` uint8 RGB.
    """
    path_str = os.fspath(path)
    p = Path(path_str)
    where = f"video {path_str}"
    if num_frames is not None and fps is not None:
        raise CammimicError(
            f"num_frames and fps were both given for {path_str}; pass only one of them"
        )
    if num_frames is not None and (not _is_int(num_frames) or num_frames < 2):
        raise CammimicError(
            f"num_frames={num_frames!r} for {path_str} is invalid; pass an integer >= 2"
        )
    if fps is not None:
        fps = _check_positive(fps, "fps", path_str)
    if size is not None:
        size = _check_size(size, path_str)
    if not _is_int(max_frames) or max_frames < 2:
        raise CammimicError(
            f"max_frames={max_frames!r} for {path_str} is invalid; pass an integer >= 2"
        )
    sequence_fps = _check_positive(sequence_fps, "sequence_fps", path_str)

    if max_pixels is None:
        max_pixels = _limit(ENV_MAX_VIDEO_PIXELS, MAX_VIDEO_PIXELS)
    elif not _is_int(max_pixels) or max_pixels < 1:
        raise CammimicError(
            f"max_pixels={max_pixels!r} for {path_str} is invalid; pass a positive integer"
        )

    # First how many frames there are and when (file names, or packets: nothing decoded),
    # then which to keep, then decode only those.
    is_sequence = p.is_dir() or (not p.exists() and _glob.has_magic(path_str))
    truncated = False
    if is_sequence:
        files = _sequence_files(path_str, p)
        if len(files) > max_frames:
            files, truncated = files[:max_frames], True
        source_fps = sequence_fps
        times = np.arange(len(files)) / source_fps
        where = f"image sequence {path_str}"
        first_size = _image_size(Path(files[0])) if files else (0, 0)
    else:
        if not p.exists():
            raise CammimicError(f"video {path_str} does not exist; check the path")
        if not p.is_file():
            raise CammimicError(f"video {path_str} is not a regular file; pass a video file")
        raw_times, rate, first_size, truncated = _probe_video(p, max_frames)
        _check_image_pixels(*first_size, f"video {path_str}")
        have_times = bool(raw_times) and all(t is not None for t in raw_times)
        if rate is None and have_times and len(raw_times) > 1:
            span = float(raw_times[-1]) - float(raw_times[0])
            rate = (len(raw_times) - 1) / span if span > 0 else None
        if rate is None or not math.isfinite(rate) or rate <= 0:
            raise CammimicError(
                f"video {path_str} has no usable frame rate; re-encode it with a fixed frame rate"
            )
        source_fps = float(rate)
        if have_times:
            times = np.asarray(raw_times, dtype=np.float64)
            if np.any(np.diff(times) <= 0):  # broken timestamps: fall back to the rate
                times = np.arange(len(raw_times)) / source_fps
        else:
            times = np.arange(len(raw_times)) / source_fps

    n = len(times)
    if n < 2:
        raise CammimicError(
            f"{where} has {n} frame{'s' if n != 1 else ''}; a video needs at least 2 frames"
        )
    if truncated:
        warnings.warn(
            f"{where} has more than max_frames={max_frames} frames; only the first "
            f"{max_frames} are used",
            stacklevel=2,
        )
    if fps is not None and fps > source_fps * 1.01:
        raise CammimicError(
            f"fps={fps:g} is above the frame rate of {where} ({source_fps:g}); "
            f"pass fps <= {source_fps:g} or omit it"
        )
    idx = _sample_indices(times, num_frames, fps, where)
    _check_total_pixels(len(idx), size or first_size, where, max_pixels)
    if is_sequence:
        frames: list[np.ndarray] = []
        source_size: tuple[int, int] = (0, 0)
        for k in idx:
            img = read_image(files[k])
            this = (img.shape[1], img.shape[0])
            if not frames:
                source_size, first = this, files[k]
            elif this != source_size:
                raise CammimicError(
                    f"image sequence {path_str}: {files[k]} is {this[0]}x{this[1]} but {first} is "
                    f"{source_size[0]}x{source_size[1]}; all images must have the same size"
                )
            if size is not None:
                img, _ = resize_center_crop(img, size)
            frames.append(img)
    else:
        frames, source_size = _decode_frames(p, idx, size)
    if fps is not None:
        out_fps = fps
    elif num_frames is not None:
        out_fps = source_fps * (num_frames - 1) / (n - 1)
    else:
        out_fps = source_fps
    crop = None
    if size is not None:
        _, crop = resize_center_crop(np.zeros((source_size[1], source_size[0]), np.uint8), size)
    return Video(
        frames=np.stack(frames),
        fps=float(out_fps),
        indices=tuple(int(i) for i in idx),
        source_fps=float(source_fps),
        source_num_frames=n,
        source_size=source_size,
        crop=crop,
        path=path_str,
    )


# --------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------


def _prepare_parent(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise CammimicError(
            f"cannot create the folder for {p}: a parent path is a file; choose another path"
        ) from exc
    except OSError as exc:
        raise CammimicError(f"cannot create the folder for {p} ({exc}); check permissions") from exc


def _temp_file(p: Path) -> Path:
    """Create an empty hidden temp file next to ``p`` keeping its suffix (umask applies)."""
    for _ in range(100):
        tmp = p.with_name(f".{p.stem}.tmp-{secrets.token_hex(4)}{p.suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CammimicError(
                f"cannot write {p} ({exc}); check the folder's permissions"
            ) from exc
        os.close(fd)
        return tmp
    raise CammimicError(f"cannot create a temporary file next to {p}")  # pragma: no cover


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically. Returns the path written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix); on success it replaces ``path`` in one
    rename, on failure it is removed and ``path`` is left as it was."""
    p = Path(path)
    _prepare_parent(p)
    tmp = _temp_file(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _check_frames(frames, p: Path) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1 or arr.dtype != np.uint8:
        raise CammimicError(
            f"cannot write {p}: frames must be a (T, H, W, 3) uint8 RGB array with T >= 1, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    return arr


def _rate(fps: float) -> Fraction:
    """A frame rate as a small fraction (29.97 -> 2997/100, 30000/1001 stays)."""
    return Fraction(fps).limit_denominator(1001)


def _encode_h264(tmp: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    import av
    import cv2

    rate = _rate(fps)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        # mbtree=0: libx264's macroblock-tree rate control (its AVX-512 code) read uninitialised
        # memory, so the same frames gave different files from call to call (4-7 distinct files
        # in 20 encodes of a 192x64 pan; tests/test_io.py::test_write_video_is_deterministic).
        # The cost: files 7-35 % larger at the same crf, PSNR within 0.3 dB.
        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"}
        for f in frames:
            # RGB -> YUV 4:2:0 (BT.601) by OpenCV: FFmpeg's swscale gave different bytes for the
            # same frames from call to call, and the same frames must give the same file.
            yuv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YUV_I420)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _encode_gif(tmp: Path, frames: np.ndarray, fps: float) -> None:
    """Animated GIF: Pillow picks each frame's palette, FFmpeg's GIF muxer writes the file.

    Pillow's own GIF writer merges identical consecutive frames (a still camera would lose
    frames), and stores one rounded delay; FFmpeg keeps every frame and spreads the
    centisecond rounding so the average rate is exact.
    """
    import av
    from PIL import Image

    rate = _rate(fps)
    with av.open(str(tmp), mode="w", format="gif", container_options={"loop": "0"}) as container:
        stream = container.add_stream("gif", rate=rate)
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = "pal8"
        for f in frames:
            q = Image.fromarray(f).quantize(
                256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
            palette = np.asarray(q.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
            argb = np.zeros((256, 4), np.uint8)
            argb[:, 0] = 255
            argb[: len(palette), 1:] = palette
            index = np.ascontiguousarray(np.asarray(q, dtype=np.uint8))
            frame = av.VideoFrame.from_ndarray((index, argb), format="pal8")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as a video, atomically.

    ``.mp4``/``.mov``/``.mkv`` are H.264 (libx264, yuv420p, constant quality ``crf``; width and
    height must be even); ``.gif`` is an animated GIF looping forever, every frame kept, with a
    256-colour palette per frame (delays are whole centiseconds, rounded so the average rate
    is ``fps``).
    The file is written under a hidden temporary name in the same folder and renamed into
    place, so an existing file at ``path`` stays untouched if writing fails. Parent folders are
    created. Returns the path written.
    """
    import av

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WRITE_VIDEO_SUFFIXES:
        raise CammimicError(
            f"cannot write video {p}: unsupported suffix '{p.suffix}'; "
            f"use one of {', '.join(WRITE_VIDEO_SUFFIXES)}"
        )
    arr = _check_frames(frames, p)
    fps = _check_positive(fps, "fps", str(p))
    if _rate(fps) <= 0:
        raise CammimicError(f"fps={fps!r} for {p} is too low to write; pass fps >= 0.001")
    if not _is_int(crf) or not 0 <= crf <= 51:
        raise CammimicError(f"crf={crf!r} for {p} is invalid; pass an integer in 0..51")
    height, width = arr.shape[1:3]
    if suffix != ".gif" and (width % 2 or height % 2):
        raise CammimicError(
            f"cannot write {p}: H.264 needs even width and height but the frames are "
            f"{width}x{height}; resize or crop them to {width - width % 2}x{height - height % 2}"
        )
    with atomic_path(p) as tmp:
        try:
            if suffix == ".gif":
                _encode_gif(tmp, arr, fps)
            else:
                _encode_h264(tmp, arr, fps, int(crf))
        except (av.FFmpegError, OSError) as exc:
            raise CammimicError(f"writing video {p} failed ({exc}); check disk space") from exc
    return p


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


# --------------------------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------------------------


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def check_output_directory(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[Any] = ()
) -> Path:
    """Fail early if ``path`` cannot be used as a run's output directory.

    A run replaces its output directory as a whole, so refused are: the filesystem root, the
    current directory or one of its parents, the home directory, a directory holding (at any depth) one of
    ``inputs`` (the files the run reads: paths; other objects are ignored), a file, a dangling
    symbolic link, and a non-empty directory unless ``overwrite``. The first three are refused
    even with ``overwrite``: replacing them would delete the user's files. Returns ``path``.
    """
    text = os.fspath(path)
    p = Path(text)
    if not text.strip():
        raise CammimicError("the output directory is empty; pass a folder name such as -o out/run1")
    real = _real(p)
    if real.parent == real:
        raise CammimicError(
            f"output directory {text} is the filesystem root; cammimic replaces its output "
            "directory as a whole, so pass a new folder such as -o out/run1"
        )
    cwd = _real(os.getcwd())
    if real == cwd or real in cwd.parents or real == _real("~"):
        what = ("the current directory" if real == cwd else "a parent of the current directory"
                if real in cwd.parents else "your home directory")
        raise CammimicError(
            f"output directory {text} is {what}; cammimic replaces its output directory as a "
            "whole, so pass a new folder such as -o out/run1"
        )
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue
        src = _real(item)
        if src == real or real in src.parents:
            raise CammimicError(
                f"output directory {text} contains the input {os.fspath(item)}, which the run "
                "would delete when it replaces the folder; pass a new folder such as -o out/run1"
            )
    if p.is_symlink() and not p.exists():
        raise CammimicError(
            f"output directory {text} is a symbolic link to {os.readlink(p)}, which does not "
            "exist; remove the link or choose another --output"
        )
    if p.exists():
        if not p.is_dir():
            raise CammimicError(
                f"output directory {text} exists and is a file; choose another --output"
            )
        if not overwrite and any(p.iterdir()):
            raise CammimicError(
                f"output directory {text} already exists and is not empty; "
                f"choose another --output or pass --overwrite"
            )
    return p


def _temp_dir(p: Path, tag: str) -> Path:
    for _ in range(100):
        tmp = p.with_name(f".{p.name}.{tag}-{secrets.token_hex(4)}")
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        except OSError as exc:
            raise CammimicError(
                f"cannot create a temporary folder next to {p} ({exc}); check permissions"
            ) from exc
        return tmp
    raise CammimicError(f"cannot create a temporary folder next to {p}")  # pragma: no cover


@contextlib.contextmanager
def output_directory(
    path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[Any] = ()
) -> Iterator[Path]:
    """Give a run a fresh directory that replaces ``path`` only if the run succeeds.

    Checks ``path`` first (see :func:`check_output_directory`; ``inputs`` as there), then yields a new hidden
    temporary directory next to it. On normal exit the temporary directory is moved into place:
    an existing ``path`` is renamed aside, the new one renamed in, the old one deleted. On an
    exception (including KeyboardInterrupt) the temporary directory is deleted, ``path`` is left
    exactly as it was, and the exception propagates.
    """
    inputs = list(inputs)
    check_output_directory(path, overwrite=overwrite, inputs=inputs)
    p = Path(os.path.abspath(os.fspath(path)))
    _prepare_parent(p)
    tmp = _temp_dir(p, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # success: move into place
    old: Path | None = None
    try:
        if os.path.lexists(p):
            if not p.is_dir():
                raise CammimicError(
                    f"output directory {p} became a file during the run; results kept in {tmp}"
                )
            if p.is_symlink() or any(p.iterdir()):
                if not overwrite and not p.is_symlink():
                    raise CammimicError(
                        f"output directory {p} was filled by something else during the run; "
                        f"results kept in {tmp}"
                    )
                # a link to a directory is replaced by the results; its target is left alone
                old = p.with_name(f".{p.name}.old-{secrets.token_hex(4)}")
                os.rename(p, old)
            else:
                os.rmdir(p)
        try:
            os.rename(tmp, p)
        except OSError:
            if old is not None:
                os.rename(old, p)
            raise
    except OSError as exc:
        raise CammimicError(
            f"could not move the results into {p} ({exc}); they are kept in {tmp}"
        ) from exc
    if old is not None:
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
