"""cammimic's MotionClone plugin: sampling steered by the reference's temporal attention.

``motionclone`` (Ling et al. 2024, "MotionClone: Training-Free Motion Cloning for Controllable
Video Generation"; code github.com/LPengYang/MotionClone) records the temporal attention of the
reference video's latents noised once, keeps each query's top-k keys (the sparse "primary"
temporal attention), and over the first sampling steps descends, through the denoiser, on how
far the sample's temporal attention is from the reference's on those keys. UNet3D backbones only
(zeroscope, modelscope, mini, unet3d); docs/plugins.md says what Wan would need.

Importing this module is cheap: torch and diffusers are imported when the term is prepared.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__
__all__ = ["motionclone_guidance", "register_guidance_terms"]


def motionclone_guidance(
    *,
    weight: float = 0.05,
    start: float = 0.0,
    end: float = 0.3,
    reference_timestep: int = 400,
    top_k: int = 1,
    blocks: str = "up_blocks.1",
):
    """Build the ``motionclone`` guidance term.

    Args:
        weight: the size of each descent step, as the RMS change of the predicted clean latents.
        start, end: the window of sampling steps it acts on, as fractions of the schedule
            (0 = first step, 1 = the step before the last); MotionClone guides only the early,
            noisiest steps, where the motion is laid out (its code: timesteps 999 to 700, 0.3).
        reference_timestep: the training timestep the reference latents are noised to for the
            one pass that records their temporal attention (MotionClone's ``add_noise_step``: 400).
        top_k: keys kept per query of the reference's temporal attention (the paper's k = 1).
        blocks: comma-separated prefixes of the UNet modules whose temporal attention is read
            (MotionClone's ``motion_guidance_blocks``: ``up_blocks.1``).

    Returns:
        A :class:`cammimic_motionclone.guide.MotionCloneGuidance`.
    """
    from cammimic_motionclone.guide import MotionCloneGuidance, check_parameters

    prefixes = check_parameters(weight, start, end, reference_timestep, top_k, blocks)
    return MotionCloneGuidance(
        weight=float(weight),
        start=float(start),
        end=float(end),
        reference_timestep=int(reference_timestep),
        top_k=int(top_k),
        blocks=prefixes,
    )


@cammimic.hookimpl
def register_guidance_terms(register):
    register(
        "motionclone",
        motionclone_guidance,
        description="MotionClone: descend on the distance between the sample's temporal attention and the "
        "reference's top-k (sparse) temporal attention over the first steps (UNet3D backbones)",
        requires=("torch", "diffusers"),
        extra="zeroscope",
    )
