"""The Python API: everything the command line does, callable from notebooks and other tools.

A thin facade: each function resolves the config and the plugin host and hands over to the
module doing the work (:mod:`cammimic.methods.cammimic`, :mod:`cammimic.methods.homography`,
:mod:`cammimic.camera`, :mod:`cammimic.metrics`); results are in :mod:`cammimic.results`.

>>> import cammimic
>>> motion = cammimic.estimate_motion("examples/reference.mp4")          # doctest: +SKIP
>>> result = cammimic.score("reference.mp4", "generated.mp4")           # doctest: +SKIP
>>> run = cammimic.transfer("reference.mp4", "scene.jpg", "out/run1")    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from cammimic.camera import is_camera_reference
from cammimic.config import Config, load_config
from cammimic.errors import CammimicError
from cammimic.io import as_video, frame_count, subsample
from cammimic.methods.cammimic import run_cammimic
from cammimic.methods.homography import run_homography
from cammimic.metrics import VARIANTS
from cammimic.motion import MotionEstimate
from cammimic.plugins import PluginHost, get_host
from cammimic.progress import ProgressCallback, report_progress
from cammimic.reference import resolve_reference
from cammimic.results import RunResult, ScoreResult, score_motions

__all__ = [
    "estimate_motion",
    "score",
    "transfer",
    "finetune",
    "sample",
    "list_plugins",
    "ScoreResult",
    "RunResult",
    "score_motions",
    "ProgressCallback",
]


def _host(host: PluginHost | None, config: Config | None = None) -> PluginHost:
    if host is not None:
        return host
    return get_host(block=config["plugins"]["block"] if config is not None else ())


def estimate_motion(
    video,
    *,
    estimator: str = "opencv",
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    params: dict[str, Any] | None = None,
    host: PluginHost | None = None,
) -> MotionEstimate:
    """The camera motion of a video as frame-to-frame homographies.

    Args:
        video: a path (video file, image directory or glob) or ``(T, H, W, 3)`` uint8 frames.
        estimator: a registered motion estimator (``cammimic plugins`` lists them).
        frames: sample this many frames evenly (default: all).
        size: resize and centre-crop to ``(width, height)`` first.
        params: the estimator's parameters.

    Returns:
        A :class:`~cammimic.motion.MotionEstimate`; ``diagnostics["source"]`` records the frames
        used (path, indices, fps, crop).
    """
    est = _host(host).create("motion_estimator", estimator, params)
    return resolve_reference(video, size=size, frames=frames, name="video").camera_motion(est)


def score(
    reference,
    generated,
    *,
    estimator: str = "opencv",
    frames: int | None = None,
    variant: str = "resolution_free",
    params: dict[str, Any] | None = None,
    host: PluginHost | None = None,
    max_fallback_share: float | None = None,
) -> ScoreResult:
    """CameraScore of ``generated`` against ``reference`` (paths or frame arrays); lower is better.

    Both videos are sampled evenly to the same number of frames: ``frames``, or the shorter
    video's length. Each is estimated at its own resolution; the default resolution-free
    variant makes the sizes irrelevant (see :mod:`cammimic.metrics`). Pairs that fell back in
    either video are left out; check ``result.valid`` (``max_fallback_share``, default 0.25).
    """
    if variant not in VARIANTS:
        raise CammimicError(
            f"CameraScore variant '{variant}' is unknown. Try one of {list(VARIANTS)}"
        )
    est = _host(host).create("motion_estimator", estimator, params)
    size = None
    if is_camera_reference(
        reference
    ):  # a camera path has no size of its own: drawn at the generated video's
        generated = as_video(generated, name="generated", frames=frames)  # read once
        size = generated.size
    ref = resolve_reference(
        reference, size=size, frames=frames or (lambda total: min(total, frame_count(generated)))
    )
    n = ref.num_frames
    gen = subsample(as_video(generated, name="generated", frames=n), n)
    mr = ref.camera_motion(est)
    mg = est.estimate(gen.frames)
    mg = attrs.evolve(mg, diagnostics={**mg.diagnostics, "source": gen.metadata()})
    return score_motions(mr, mg, variant=variant, max_fallback_share=max_fallback_share)


def list_plugins(host: PluginHost | None = None) -> list[dict[str, Any]]:
    """Every plugin: name, distribution, version, hooks, and the components it provides."""
    return _host(host).plugins()


def _resolve(config, overrides) -> Config:
    if not isinstance(config, Config):
        config = load_config(config)
    return config.with_overrides(
        {
            (k.replace("__", ".", 1) if "__" in k else k if k == "guidance" else f"run.{k}"): v
            for k, v in overrides.items()
        }
    )


def _run_cammimic(reference, image, output_dir, *, progress, **kw) -> RunResult:
    """:func:`run_cammimic` with ``progress`` a flag (tqdm bars or none) or a callback."""
    if callable(progress):
        with report_progress(progress):
            return run_cammimic(reference, image, output_dir, progress=False, **kw)
    return run_cammimic(reference, image, output_dir, progress=bool(progress), **kw)


def _require_method_stack(config: Config, host: PluginHost) -> None:
    """The cammimic method needs its backbone's libraries (torch, diffusers, …): say how to
    install them before anything is read or written."""
    name, _ = config.component("backbone")
    comp = host.get("backbone", name, where=f" ([backbone]{config.where})" if config.source else "")
    missing = comp.missing_requirements()
    if missing:
        raise CammimicError(
            f"the cammimic method with {comp.label} needs {', '.join(missing)}, which is not installed: "
            f"{comp.install_hint()} (or use --method homography, which needs no torch)"
        )


def transfer(
    reference,
    image,
    output_dir,
    *,
    config: Config | str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | ProgressCallback = True,
    host: PluginHost | None = None,
    **overrides: Any,
) -> RunResult:
    """Transfer the camera motion of ``reference`` onto ``image`` and write a run directory.

    Args:
        reference: path of the reference video (file, image directory or glob).
        image: path of the user image.
        output_dir: the run directory; an existing non-empty one needs ``overwrite=True``.
        config: a :class:`~cammimic.config.Config` or the path of a TOML file.
        resume: continue an interrupted finetuning from its checkpoint (cammimic method).
        progress: show progress bars on stderr (cammimic method); or a callback,
            ``progress(stage, step, total)``, told every training and sampling step instead (``stage``:
            ``"stage 1"``, ``"stage 2"`` or ``"sampling"``, once per candidate and window; ``step``: the
            steps done, from the starting one). An exception it raises stops the run as any error does:
            no run directory (a ``KeyboardInterrupt`` in Phase 1 also saves its checkpoint, as Ctrl-C).
        **overrides: settings on top of the config, as ``section__key=value`` or, for the
            ``[run]`` section, bare ``key=value`` (e.g. ``prompt="a castle"``, ``frames=16``,
            ``finetune__stage1_steps=50``, ``backbone__weights="/models/zeroscope"``,
            ``method="homography"``, ``guidance=[]``); ``candidates=4`` samples four seeds after one
            Phase 1 and keeps the lowest valid CameraScore (best of N, :mod:`cammimic.candidates`).

    The cammimic method (the default) writes ``output.mp4``, ``weak.mp4`` (the weak video),
    ``side_by_side.mp4`` (reference | weak | output), ``trajectory.png``, ``lora/spatial.safetensors``,
    ``lora/temporal.safetensors``, ``lora/layers.json``, ``losses.csv``, ``score.json``,
    ``motion.json``, ``config.toml`` and ``run.json``. The homography method writes
    ``output.mp4``, ``side_by_side.mp4`` (reference | output), ``trajectory.png``, ``score.json``,
    ``motion.json``, ``config.toml`` and ``run.json``. Either directory appears complete or not at all.
    With ``candidates`` above 1, ``candidates/seed-S.mp4`` holds every candidate and ``run.json`` lists
    them (seed, CameraScore, validity, scene figures, seconds); ``output.mp4`` is the kept one.
    """
    config = _resolve(config, overrides)
    if config["run"]["method"] == "homography" and config["run"]["candidates"] > 1:
        raise CammimicError(
            f"candidates = {config['run']['candidates']} has no effect with the homography method "
            "(a deterministic warp, no sampling); drop it or use method cammimic"
        )
    if config["run"]["method"] == "cammimic":
        _require_method_stack(config, _host(host, config))
        return _run_cammimic(
            reference,
            image,
            output_dir,
            config=config,
            host=_host(host, config),
            overwrite=overwrite,
            resume=resume,
            progress=progress,
        )
    return run_homography(
        reference, image, output_dir, config=config, host=_host(host, config), overwrite=overwrite
    )


def finetune(
    reference,
    image,
    output_dir,
    *,
    config: Config | str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | ProgressCallback = True,
    host: PluginHost | None = None,
    **overrides: Any,
) -> RunResult:
    """Phase 1 of CamMimic alone: train the spatial and temporal LoRAs and write them to
    ``output_dir/lora/`` with ``losses.csv``, ``weak.mp4``, ``config.toml`` and ``run.json``."""
    config = _resolve(config, overrides)
    _require_method_stack(config, _host(host, config))
    return _run_cammimic(
        reference,
        image,
        output_dir,
        config=config,
        host=_host(host, config),
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        phases=("finetune",),
    )


def sample(
    reference,
    image,
    output_dir,
    *,
    spatial_lora: str | Path,
    temporal_lora: str | Path,
    allow_other_base: bool = False,
    config: Config | str | Path | None = None,
    overwrite: bool = False,
    progress: bool | ProgressCallback = True,
    host: PluginHost | None = None,
    **overrides: Any,
) -> RunResult:
    """Phase 2 of CamMimic alone: sample with saved LoRAs (they may come from different runs:
    a spatial LoRA of one run with the temporal LoRA of another) and homography guidance."""
    config = _resolve(config, overrides)
    _require_method_stack(config, _host(host, config))
    return _run_cammimic(
        reference,
        image,
        output_dir,
        config=config,
        host=_host(host, config),
        overwrite=overwrite,
        progress=progress,
        phases=("sample",),
        spatial_lora=spatial_lora,
        temporal_lora=temporal_lora,
        allow_other_base=allow_other_base,
    )
