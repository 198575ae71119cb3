"""The homography method: move the user image along the reference video's camera motion.

Frame 0 is the user image; frame k is the image warped once by the composed reference
homographies H_{k-1} ... H_0. This is the paper's naive-homography baseline and, unchanged,
the weak video that guides CamMimic's Phase 2 sampling.
"""

from __future__ import annotations

import attrs
import numpy as np

from cammimic.homography import warp_along_chain
from cammimic.motion import MotionEstimate


@attrs.frozen(eq=False)
class Transfer:
    """What a transfer method produced, in memory."""

    frames: np.ndarray  #: (T, H, W, 3) uint8, the output video
    masks: np.ndarray  #: (T, H, W) bool, True where the pixel shows the user image
    reference_motion: MotionEstimate  #: the camera motion that was transferred


def transfer_homography(image: np.ndarray, reference_motion: MotionEstimate, *, fill: str = "black") -> Transfer:
    """Warp ``image`` (H, W, 3 uint8, already at the motion's resolution) along ``reference_motion``."""
    if image.shape[:2] != (reference_motion.height, reference_motion.width):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the motion is "
            f"{reference_motion.width}x{reference_motion.height}; resize the image first"
        )
    frames, masks = warp_along_chain(image, reference_motion.homographies, fill=fill)
    return Transfer(frames=frames, masks=masks, reference_motion=reference_motion)
