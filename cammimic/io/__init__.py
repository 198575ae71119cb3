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

The package is split by responsibility: :mod:`cammimic.io.images` (images, pixel limits, resizing),
:mod:`cammimic.io.video` (videos) and :mod:`cammimic.io.files` (atomic files, run directories, hashes).
``av``, ``cv2`` and ``PIL`` are imported on first use so ``import cammimic.io`` stays light.
"""

from __future__ import annotations

from cammimic.io.files import (
    atomic_path,
    check_output_directory,
    output_directory,
    sha256,
    write_text,
)
from cammimic.io.images import (
    ENV_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    WRITE_IMAGE_SUFFIXES,
    as_image,
    max_image_pixels,
    read_image,
    resize_center_crop,
    write_image,
)
from cammimic.io.video import (
    DEFAULT_SEQUENCE_FPS,
    ENV_MAX_VIDEO_PIXELS,
    MAX_VIDEO_PIXELS,
    VIDEO_SUFFIXES,
    WRITE_VIDEO_SUFFIXES,
    Video,
    as_video,
    count_frames,
    even_indices,
    frame_count,
    read_video,
    subsample,
    write_video,
)

__all__ = [
    "Video",
    "read_video",
    "read_image",
    "as_image",
    "count_frames",
    "resize_center_crop",
    "write_video",
    "write_image",
    "write_text",
    "atomic_path",
    "output_directory",
    "check_output_directory",
    "sha256",
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "WRITE_VIDEO_SUFFIXES",
    "WRITE_IMAGE_SUFFIXES",
    "DEFAULT_SEQUENCE_FPS",
    "MAX_IMAGE_PIXELS",
    "MAX_VIDEO_PIXELS",
    "ENV_MAX_IMAGE_PIXELS",
    "ENV_MAX_VIDEO_PIXELS",
    "max_image_pixels",
    "as_video",
    "subsample",
    "even_indices",
    "frame_count",
]
