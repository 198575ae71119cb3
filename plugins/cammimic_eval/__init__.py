"""cammimic-eval: the methods and metrics of ``cammimic eval`` (the paper's evaluation).

Methods: ``homography``, ``base``, ``motiondirector``, ``cammimic`` and the ablations
``cammimic-no-usc``, ``cammimic-no-ortho``, ``cammimic-no-hg``; the training-free camera terms
``base-warped-noise``, ``cammimic-warped-noise``, ``motionclone`` and ``cammimic-camerascore``
(the last two need the ``motionclone`` and ``camerascore`` guidance plugins). Metrics: ``first_frame``
(PSNR/SSIM to the user image), ``in_view`` (PSNR to the weak video where it has content),
``dinov2`` (scene preservation), ``clip`` (text alignment) and ``xclip`` (video-text
alignment). A first-party plugin written like a third-party one; heavy imports happen in the
factories.
"""

from __future__ import annotations

import cammimic

__version__ = cammimic.__version__

#: name -> (config overrides on top of the user's config, description)
METHODS: dict[str, tuple[dict, str]] = {
    "homography": (
        {"run.method": "homography"},
        "Naive baseline: the user image warped by the reference's homographies.",
    ),
    "base": (
        {
            "run.method": "cammimic",
            "finetune.stage1_steps": 0,
            "finetune.stage2_steps": 0,
            "sampling.spatial_scale": 0.0,
            "sampling.temporal_scale": 0.0,
            "guidance": [{"name": "none"}],
        },
        "The backbone prompted with t_I: no LoRA, no guidance.",
    ),
    "cammimic": (
        {"run.method": "cammimic"},
        "CamMimic: both stages, orthogonality, homography guidance.",
    ),
    # the paper's "no USC": no user-image stage; CamMimic has one spatial LoRA, so sampling keeps stage 1's
    "cammimic-no-usc": (
        {"run.method": "cammimic", "finetune.stage2": False},
        "Ablation: no user-image stage (USC, stage 2); samples with the stage-1 spatial LoRA.",
    ),
    # the other reading (MotionDirector's inference drops the reference's spatial LoRA)
    "cammimic-no-usc-no-spatial": (
        {"run.method": "cammimic", "finetune.stage2": False, "sampling.spatial_scale": 0.0},
        "Ablation: no user-image stage, and no spatial LoRA at sampling.",
    ),
    # the paper's "USC only" (Fig. 5): stage 2 kept, no ORTHO, no HG
    "cammimic-usc-only": (
        {"run.method": "cammimic", "finetune.orthogonality": False, "guidance": [{"name": "none"}]},
        "Ablation: user-image stage without orthogonality loss or homography guidance.",
    ),
    "cammimic-no-ortho": (
        {"run.method": "cammimic", "finetune.orthogonality": False},
        "Ablation: no orthogonality loss.",
    ),
    "cammimic-no-hg": (
        {"run.method": "cammimic", "guidance": [{"name": "none"}]},
        "Ablation: no homography guidance.",
    ),
    # training-free camera terms (issue 23): each is base or cammimic plus one term
    "base-warped-noise": (
        {
            "run.method": "cammimic",
            "finetune.stage1_steps": 0,
            "finetune.stage2_steps": 0,
            "sampling.spatial_scale": 0.0,
            "sampling.temporal_scale": 0.0,
            "guidance": [{"name": "none"}],
            "noise.name": "warped-noise",
        },
        "base with the initial noise warped along the reference's homographies (Go-with-the-Flow).",
    ),
    "cammimic-warped-noise": (
        {"run.method": "cammimic", "noise.name": "warped-noise"},
        "CamMimic with the initial noise warped along the reference's homographies.",
    ),
    "cammimic-camerascore": (
        {"run.method": "cammimic", "guidance": [{"name": "homography"}, {"name": "camerascore"}]},
        "CamMimic plus CameraScore guidance through the differentiable kornia estimator.",
    ),
    "motionclone": (
        {
            "run.method": "cammimic",
            "finetune.stage1_steps": 0,
            "finetune.stage2_steps": 0,
            "sampling.spatial_scale": 0.0,
            "sampling.temporal_scale": 0.0,
            "guidance": [{"name": "motionclone"}],
        },
        "base guided by the reference's sparse temporal attention (MotionClone; UNet3D backbones).",
    ),
}


def _config_method(name):
    def factory():
        from cammimic_eval.methods import ConfigMethod

        return ConfigMethod(name, METHODS[name][0])

    factory.__name__ = f"{name.replace('-', '_')}_method"
    return factory


def motiondirector_method():
    from cammimic_eval.methods import MotionDirectorMethod

    return MotionDirectorMethod()


def first_frame_metric():
    from cammimic_eval.metrics import FirstFrame

    return FirstFrame()


def in_view_metric():
    from cammimic_eval.metrics import InView

    return InView()


def dinov2_metric(*, weights: str = "facebook/dinov2-base", device: str = "auto"):
    """DINOv2 cosine similarity of each output frame's CLS embedding to the user image's (mean)."""
    from cammimic_eval.metrics import Dinov2Similarity

    return Dinov2Similarity(weights=weights, device=device)


def clip_metric(*, weights: str = "openai/clip-vit-base-patch32", device: str = "auto"):
    """CLIP cosine similarity of each output frame to the user prompt t_u, averaged over frames."""
    from cammimic_eval.metrics import ClipTextSimilarity

    return ClipTextSimilarity(weights=weights, device=device)


def xclip_metric(*, weights: str = "microsoft/xclip-base-patch32", device: str = "auto"):
    """X-CLIP video-text cosine similarity of the output video to the user prompt t_u."""
    from cammimic_eval.metrics import XClipSimilarity

    return XClipSimilarity(weights=weights, device=device)


@cammimic.hookimpl
def register_eval_methods(register):
    for name, (_, description) in METHODS.items():
        extra = None if name == "homography" else "zeroscope"
        requires = () if name == "homography" else ("torch", "diffusers", "peft")
        register(
            name, _config_method(name), description=description, requires=requires, extra=extra
        )
    register(
        "motiondirector",
        motiondirector_method,
        description="MotionDirector's LoRA swap: temporal LoRA from the reference and spatial LoRA from the image, "
        "trained in separate runs, combined at sampling without homography guidance.",
        requires=("torch", "diffusers", "peft"),
        extra="zeroscope",
    )


@cammimic.hookimpl
def register_eval_metrics(register):
    register(
        "first_frame",
        first_frame_metric,
        description="PSNR and SSIM of the first output frame to the user image.",
    )
    register(
        "in_view",
        in_view_metric,
        description="PSNR of the output to the weak video where the weak video has content.",
    )
    register(
        "dinov2",
        dinov2_metric,
        description="Scene preservation: DINOv2 similarity of output frames to the user image.",
        requires=("torch", "transformers"),
        extra="zeroscope",
    )
    register(
        "clip",
        clip_metric,
        description="Text alignment: CLIP similarity of output frames to the user prompt.",
        requires=("torch", "transformers"),
        extra="zeroscope",
    )
    register(
        "xclip",
        xclip_metric,
        description="Video-text alignment: X-CLIP similarity of the output video to the user prompt.",
        requires=("torch", "transformers"),
        extra="zeroscope",
    )
