"""The homography method: move the user image along the reference video's camera motion.

Frame 0 is the user image; frame k is the image warped once by the composed reference
homographies H_{k-1} ... H_0. This is the paper's naive-homography baseline and, unchanged,
the weak video that guides CamMimic's Phase 2 sampling.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import numpy as np

from cammimic.config import Config
from cammimic.homography import warp_along_chain
from cammimic.io import as_image, check_output_directory, resize_center_crop
from cammimic.motion import MotionEstimate
from cammimic.motion_controls import MotionControls, reference_frames
from cammimic.plugins import PluginHost
from cammimic.reference import resolve_reference
from cammimic.results import RunResult, score_motions
from cammimic.rundir import (
    check_even_size,
    even,
    input_records,
    provenance,
    seed_all,
    write_outputs,
    write_run,
)

__all__ = ["Transfer", "transfer_homography", "run_homography"]


@attrs.frozen(eq=False)
class Transfer:
    """What a transfer method produced, in memory."""

    frames: np.ndarray  #: (T, H, W, 3) uint8, the output video
    masks: np.ndarray  #: (T, H, W) bool, True where the pixel shows the user image
    reference_motion: MotionEstimate  #: the camera motion that was transferred


def transfer_homography(
    image: np.ndarray, reference_motion: MotionEstimate, *, fill: str = "black"
) -> Transfer:
    """Warp ``image`` (H, W, 3 uint8, already at the motion's resolution) along ``reference_motion``."""
    if image.shape[:2] != (reference_motion.height, reference_motion.width):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the motion is "
            f"{reference_motion.width}x{reference_motion.height}; resize the image first"
        )
    frames, masks = warp_along_chain(image, reference_motion.homographies, fill=fill)
    return Transfer(frames=frames, masks=masks, reference_motion=reference_motion)


def run_homography(
    reference, image, output_dir, *, config: Config, host: PluginHost, overwrite: bool = False
) -> RunResult:
    """``cammimic run --method homography``: warp the image along the reference's camera motion,
    score the result and write the run directory (see :func:`cammimic.api.transfer`)."""
    # 1. check the inputs and the output directory
    started = time.perf_counter()
    inputs = (reference, image, config.source)
    check_output_directory(output_dir, overwrite=overwrite, inputs=inputs)
    run = config["run"]

    # 2. load the estimator and read the inputs
    est_name, est_params = config.component("motion_estimator")
    where = f" ([motion_estimator]{config.where})" if config.source else ""
    estimator = host.create("motion_estimator", est_name, est_params, where=where)
    # The user image is decoded once: a camera preset or path file becomes it moved along that
    # path (exact motion).
    picture = as_image(image)
    ref = resolve_reference(
        reference,
        size=(run["width"], run["height"]),
        frames=run["frames"] or None,
        image=picture,
        image_source=str(image) if isinstance(image, (str, Path)) else None,
    )
    width = run["width"] or even(ref.size[0])
    height = run["height"] or even(ref.size[1])
    check_even_size(width, height)
    ref = ref.resized((width, height))
    user_image = resize_center_crop(picture, (width, height))[0]
    seed_all(run["seed"])

    # 3. transfer and score
    ref_motion = ref.camera_motion(estimator)
    ref_motion = MotionControls.from_config(config).apply(
        ref_motion
    )  # [motion] strength, speed, ...
    result = transfer_homography(user_image, ref_motion, fill=config["homography"]["fill"])
    out_motion = estimator.estimate(result.frames)
    scored = score_motions(
        ref_motion,
        out_motion,
        variant=config["score"]["variant"],
        max_fallback_share=config["score"]["max_fallback_share"],
    )

    # 4. write the run directory
    fps = run["fps"] or ref.fps
    # Record what was actually used, so the written config.toml reproduces this run.
    config = config.with_overrides(
        {
            "run.method": "homography",
            "run.frames": len(ref.frames),
            "run.width": width,
            "run.height": height,
            "run.fps": float(fps),
        }
    )
    manifest = {
        **provenance(run["method"]),
        "seed": run["seed"],
        "width": width,
        "height": height,
        "num_frames": len(result.frames),
        "fps": fps,
        **input_records(ref, image),
        "components": {"motion_estimator": host.component_record("motion_estimator", est_name)},
        "fallbacks": [f.to_json() for f in ref_motion.fallbacks],
        "valid_fraction": [float(m.mean()) for m in result.masks],
        **scored.manifest_fields(),
    }

    def write_files(tmp: Path) -> dict[str, Path]:
        return write_outputs(
            tmp,
            config=config,
            fps=fps,
            motions={"reference": ref_motion, "output": out_motion},
            output_frames=result.frames,
            scored=scored,
            side_by_side=[reference_frames(ref.frames, ref_motion), result.frames],
        )

    return write_run(
        output_dir,
        write_files,
        manifest,
        started=started,
        overwrite=overwrite,
        inputs=inputs,
        camera_score=scored.score,
    )
