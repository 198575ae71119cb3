"""The reference video, resolved once at the door: the frames used, the exact camera motion where
it is known, and where they came from.

A reference arrives as whatever the user gave: a video file, an image directory or glob, a camera
preset or camera-path file (:mod:`cammimic.camera`), a :class:`~cammimic.io.Video` or
``(T, H, W, 3)`` uint8 frames. :func:`resolve_reference` is the one place that asks which: every
entry point (the API's ``estimate_motion`` and ``score``, each method's runner, eval) calls it
once, and everything after it takes the :class:`Reference` it returns.

>>> ref = resolve_reference("camera:pan-left", size=(64, 48), frames=5)
>>> ref.num_frames, ref.size, ref.motion.homographies.shape
(5, (64, 48), (4, 3, 3))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic.camera import is_camera_reference, known_motion, render_reference
from cammimic.errors import CammimicError
from cammimic.io.files import sha256
from cammimic.io.video import Video, as_video, count_frames, read_video, subsample
from cammimic.motion import MotionEstimate

__all__ = ["Reference", "resolve_reference", "FrameRule", "UNLIMITED"]

#: How many frames to keep: a number, ``None`` (all), or a rule ``total -> count`` given how many
#: frames the reference has (the cammimic method: the paper's 16, moved to a count its backbone takes).
FrameRule = int | Callable[[int], int] | None
#: What a rule is asked for a camera path that sets no length of its own: it has as many as wanted.
UNLIMITED = 10**6


@attrs.frozen(eq=False)
class Reference:
    """The reference video as the method uses it.

    ``video`` holds the frames kept (sampled evenly, resized and centre-cropped) and where they
    came from (path, indices, fps, crop; for a camera path also the path and how it was drawn).
    ``motion`` is the exact frame-to-frame motion when the reference is a camera preset or path
    file, else ``None``: :meth:`camera_motion` then estimates it.
    """

    video: Video
    #: the path or camera text given; ``None`` for frames given in memory
    given: str | None = None
    #: SHA-256 of the file given (``None`` for a preset, frames, or a file that cannot be read)
    sha256: str | None = None

    @property
    def frames(self) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB."""
        return self.video.frames

    @property
    def num_frames(self) -> int:
        return self.video.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames."""
        return self.video.size

    @property
    def fps(self) -> float:
        return self.video.fps

    @property
    def motion(self) -> MotionEstimate | None:
        """The exact motion of a camera preset or path file (at :attr:`size`), else ``None``."""
        return known_motion(self.video)

    def metadata(self) -> dict[str, Any]:
        """The frames used, as JSON (``diagnostics["source"]`` of every motion of this reference)."""
        return self.video.metadata()

    def record(self) -> dict[str, Any]:
        """``run.json``'s ``reference`` entry: the frames used and the file's hash."""
        return {**self.metadata(), "sha256": self.sha256}

    def camera_motion(self, estimator) -> MotionEstimate:
        """The reference's camera motion: :attr:`motion` where known, else ``estimator``'s
        estimate of the frames; ``diagnostics["source"]`` records the frames used."""
        motion = self.motion or estimator.estimate(self.frames)
        return attrs.evolve(motion, diagnostics={**motion.diagnostics, "source": self.metadata()})

    def resized(self, size) -> Reference:
        """The same reference resized and centre-cropped to ``size`` = (width, height)."""
        return (
            self
            if tuple(size) == self.size
            else attrs.evolve(self, video=as_video(self.video, size=size))
        )


def _count(rule: FrameRule, total: int) -> int | None:
    return rule(total) if callable(rule) else rule


def resolve_reference(
    reference,
    *,
    size=None,
    frames: FrameRule = None,
    image=None,
    image_source: str | None = None,
    name: str = "reference",
) -> Reference:
    """Whatever the user gave as the reference, as a :class:`Reference`.

    Args:
        reference: a video file, image directory or glob; ``camera:NAME[:key=value,...]`` or a
            ``.json`` camera-path file; a :class:`~cammimic.io.Video`; ``(T, H, W, 3)`` uint8
            frames; or a :class:`Reference` (sampled and resized as asked, its record kept).
        size: ``(width, height)`` to resize and centre-crop to; ``None`` or a 0 in it keeps the
            reference's own size (a camera path is then drawn at the image's size or the default
            size, :func:`cammimic.camera.render_reference`).
        frames: how many frames to keep, spread evenly (:data:`FrameRule`). More than the
            reference has is refused in one line. A camera path without its own length is that
            long (a rule is asked for :data:`UNLIMITED`).
        image: what a camera path looks at: the user image as a path or an (H, W, 3) uint8
            array (decode it once with :func:`cammimic.io.as_image` and pass the array when the
            caller needs it too). Ignored for other references.
        image_source: how the record names an ``image`` array.
        name: what errors call the reference ("reference", "video").

    Only the frames kept are decoded from a file, resized as they come.
    """
    own = size is None or not all(size)
    if isinstance(reference, Reference):
        video = as_video(
            subsample(reference.video, _count(frames, reference.num_frames)),
            size=None if own else size,
        )
        return attrs.evolve(reference, video=video)
    given = str(reference) if isinstance(reference, (str, Path)) else None
    if is_camera_reference(
        reference
    ):  # a path has no size of its own: drawn at size, or its image's
        drawn = render_reference(
            reference,
            size=size,
            frames=_count(frames, UNLIMITED),
            image=image,
            image_source=image_source,
        )
        video = subsample(drawn, _count(frames, drawn.num_frames))
    elif given is not None:
        wanted = frames
        if wanted is not None:  # counted from the packets: nothing decoded
            total = count_frames(reference)
            wanted = _count(frames, total)
            if wanted and wanted > total:
                raise CammimicError(
                    f"{reference} has {total} frames; --frames must be between 2 and {total}"
                )
        video = read_video(reference, size=None if own else size, num_frames=wanted or None)
    else:
        video = reference if isinstance(reference, Video) else as_video(reference, name=name)
        video = as_video(
            subsample(video, _count(frames, video.num_frames)), size=None if own else size
        )
    return Reference(
        video=video, given=given, sha256=sha256(reference) if given is not None else None
    )
