"""Reading and writing videos: a file (decoded with PyAV), an image directory or a glob.

Frames are ``(T, H, W, 3)`` uint8 RGB. Frames are counted from the packets first and only those
kept are converted and resized, so memory is bounded by what is kept (:data:`MAX_VIDEO_PIXELS`).
Written videos appear atomically. ``av`` and ``cv2`` are imported on first use.
"""

from __future__ import annotations

import glob as _glob
import math
import os
import re
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.errors import CammimicError
from cammimic.io.files import atomic_path
from cammimic.io.images import (
    IMAGE_SUFFIXES,
    check_image_pixels,
    check_positive,
    check_size,
    env_limit,
    image_size,
    is_int,
    read_image,
    resize_center_crop,
)

__all__ = [
    "Video",
    "read_video",
    "count_frames",
    "write_video",
    "as_video",
    "subsample",
    "frame_count",
    "even_indices",
    "VIDEO_SUFFIXES",
    "WRITE_VIDEO_SUFFIXES",
    "DEFAULT_SEQUENCE_FPS",
    "MAX_VIDEO_PIXELS",
]

#: Container suffixes :func:`read_video` expects (others are still tried with PyAV).
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
#: Suffixes :func:`write_video` can write.
WRITE_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".gif")
#: Frame rate given to an image sequence unless ``sequence_fps`` says otherwise.
DEFAULT_SEQUENCE_FPS = 8.0
#: Most pixels a video read may keep in memory, all kept frames together (after resizing):
#: 2**28, 768 MiB of RGB. Override with ``max_pixels=`` or ``CAMMIMIC_MAX_VIDEO_PIXELS``.
MAX_VIDEO_PIXELS = 2**28
ENV_MAX_VIDEO_PIXELS = "CAMMIMIC_MAX_VIDEO_PIXELS"


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


def _natural_key(path: str) -> list:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


# --------------------------------------------------------------------------------------------
# Reading videos
# --------------------------------------------------------------------------------------------


def even_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame numbers spread evenly over ``total`` frames, first and last included:
    ``round(linspace(0, total - 1, count))``. Every even sampling (a file read with
    ``num_frames``, :func:`subsample`, a camera path's kept frames) takes these."""
    return np.rint(np.linspace(0, total - 1, count)).astype(int)


def _sample_indices(
    times: np.ndarray, num_frames: int | None, fps: float | None, where: str
) -> np.ndarray:
    n = len(times)
    if num_frames is not None:
        if num_frames > n:
            raise CammimicError(
                f"num_frames={num_frames} but {where} has only {n} frames; pass num_frames <= {n}"
            )
        return even_indices(n, num_frames)
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
                check_image_pixels(frame.width, frame.height, f"video {p} frame {ordinal}")
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


def check_total_pixels(count: int, size: tuple[int, int], where: str, max_pixels: int) -> None:
    """Refuse keeping ``count`` frames of ``size`` (width, height) when they exceed ``max_pixels`` in all."""
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
    if num_frames is not None and (not is_int(num_frames) or num_frames < 2):
        raise CammimicError(
            f"num_frames={num_frames!r} for {path_str} is invalid; pass an integer >= 2"
        )
    if fps is not None:
        fps = check_positive(fps, "fps", path_str)
    if size is not None:
        size = check_size(size, path_str)
    if not is_int(max_frames) or max_frames < 2:
        raise CammimicError(
            f"max_frames={max_frames!r} for {path_str} is invalid; pass an integer >= 2"
        )
    sequence_fps = check_positive(sequence_fps, "sequence_fps", path_str)

    if max_pixels is None:
        max_pixels = env_limit(ENV_MAX_VIDEO_PIXELS, MAX_VIDEO_PIXELS)
    elif not is_int(max_pixels) or max_pixels < 1:
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
        first_size = image_size(Path(files[0])) if files else (0, 0)
    else:
        if not p.exists():
            raise CammimicError(f"video {path_str} does not exist; check the path")
        if not p.is_file():
            raise CammimicError(f"video {path_str} is not a regular file; pass a video file")
        raw_times, rate, first_size, truncated = _probe_video(p, max_frames)
        check_image_pixels(*first_size, f"video {path_str}")
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
    check_total_pixels(len(idx), size or first_size, where, max_pixels)
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
    fps = check_positive(fps, "fps", str(p))
    if _rate(fps) <= 0:
        raise CammimicError(f"fps={fps!r} for {p} is too low to write; pass fps >= 0.001")
    if not is_int(crf) or not 0 <= crf <= 51:
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


# --------------------------------------------------------------------------------------------
# Videos from paths, Video objects or frame arrays
# --------------------------------------------------------------------------------------------


def subsample(video: Video, num_frames: int | None) -> Video:
    """Keep ``num_frames`` frames evenly spread over ``video``."""
    total = len(video.frames)
    if not num_frames or num_frames == total:
        return video
    if num_frames < 2 or num_frames > total:
        raise CammimicError(
            f"{video.path} has {total} frames; --frames must be between 2 and {total}"
        )
    idx = even_indices(total, num_frames)
    # Same convention as read_video: the clip keeps its duration.
    return attrs.evolve(
        video,
        frames=video.frames[idx],
        indices=tuple(int(video.indices[i]) for i in idx),
        fps=video.fps * (num_frames - 1) / (total - 1),
    )


def as_video(video, *, size=None, name: str = "video", frames: int | None = None) -> Video:
    """A :class:`Video` from a path, a :class:`Video` or ``(T, H, W, 3)`` uint8 frames; a path is
    read with only ``frames`` frames (evenly sampled) decoded, so long or large files stay cheap."""
    if isinstance(video, (str, Path)):
        if frames and frames > (total := frame_count(video)):
            raise CammimicError(
                f"{video} has {total} frames; --frames must be between 2 and {total}"
            )
        return read_video(video, size=size, num_frames=frames or None)
    video = subsample(video, frames) if isinstance(video, Video) else video
    if isinstance(video, Video):
        if size is not None and video.size != tuple(size):
            frames, crop = resize_center_crop(video.frames, size)
            video = attrs.evolve(video, frames=frames, crop=crop)
        return video
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise CammimicError(
            f"{name} must be a path or a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}"
        )
    crop = None
    src = (frames.shape[2], frames.shape[1])
    if size is not None:
        frames, crop = resize_center_crop(frames, size)
    return Video(
        frames=frames,
        fps=DEFAULT_SEQUENCE_FPS,
        indices=tuple(range(len(frames))),
        source_fps=DEFAULT_SEQUENCE_FPS,
        source_num_frames=len(frames),
        source_size=src,
        crop=crop,
        path=f"<{name} array>",
    )


def frame_count(video) -> int:
    """Frames in a path (counted from packets, nothing decoded), a :class:`Video` or an array."""
    if isinstance(video, (str, Path)):
        return count_frames(video)
    return len(video.frames) if isinstance(video, Video) else len(np.asarray(video))
