"""The Python API: everything the command line does, callable from notebooks and other tools.

>>> import cammimic
>>> motion = cammimic.estimate_motion("examples/reference.mp4")          # doctest: +SKIP
>>> result = cammimic.score("reference.mp4", "generated.mp4")           # doctest: +SKIP
>>> run = cammimic.transfer("reference.mp4", "scene.jpg", "out/run1")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cammimic._version import __version__
from cammimic.config import Config, load_config
from cammimic.errors import CammimicError
from cammimic.motion import MotionEstimate
from cammimic.plugins import PluginHost, get_host

__all__ = ["estimate_motion", "score", "transfer", "finetune", "sample", "list_plugins", "ScoreResult", "RunResult"]


def _host(host: PluginHost | None, config: Config | None = None) -> PluginHost:
    if host is not None:
        return host
    return get_host(block=config["plugins"]["block"] if config is not None else ())


def _subsample(video, num_frames: int | None):
    """Keep ``num_frames`` frames evenly spread over ``video`` (a :class:`cammimic.io.Video`)."""
    total = len(video.frames)
    if not num_frames or num_frames == total:
        return video
    if num_frames < 2 or num_frames > total:
        raise CammimicError(f"{video.path} has {total} frames; --frames must be between 2 and {total}")
    idx = np.round(np.linspace(0, total - 1, num_frames)).astype(int)
    # Same convention as cammimic.io.read_video: the clip keeps its duration.
    return attrs.evolve(
        video,
        frames=video.frames[idx],
        indices=tuple(int(video.indices[i]) for i in idx),
        fps=video.fps * (num_frames - 1) / (total - 1),
    )


def _as_video(video, *, size=None, name="video", frames=None):
    """A :class:`cammimic.io.Video` from a path or frames; a path is read with only ``frames``
    frames (evenly sampled) decoded, so long or large files stay cheap."""
    from cammimic.io import DEFAULT_SEQUENCE_FPS, Video, read_video, resize_center_crop

    if isinstance(video, (str, Path)):
        if frames and frames > (total := _count(video)):
            raise CammimicError(f"{video} has {total} frames; --frames must be between 2 and {total}")
        return read_video(video, size=size, num_frames=frames or None)
    video = _subsample(video, frames) if isinstance(video, Video) else video
    if isinstance(video, Video):
        if size is not None and video.size != tuple(size):
            frames, crop = resize_center_crop(video.frames, size)
            video = attrs.evolve(video, frames=frames, crop=crop)
        return video
    frames = np.asarray(video)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise CammimicError(f"{name} must be a path or a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    crop = None
    src = (frames.shape[2], frames.shape[1])
    if size is not None:
        frames, crop = resize_center_crop(frames, size)
    return Video(
        frames=frames, fps=DEFAULT_SEQUENCE_FPS, indices=tuple(range(len(frames))), source_fps=DEFAULT_SEQUENCE_FPS,
        source_num_frames=len(frames), source_size=src, crop=crop, path=f"<{name} array>",
    )


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
    from cammimic.camera import reference_motion, resolve_reference

    est = _host(host).create("motion_estimator", estimator, params)
    video = resolve_reference(video, size=size, frames=frames)  # camera presets and path files
    vid = _subsample(_as_video(video, size=size, frames=frames), frames)
    motion = reference_motion(vid, est)
    return attrs.evolve(motion, diagnostics={**motion.diagnostics, "source": vid.metadata()})


@attrs.frozen(eq=False)
class ScoreResult:
    """CameraScore of a generated video against a reference, with the motions compared.

    Frame pairs that fell back in either video are left out of the scores; ``valid`` is false
    when more than ``max_fallback_share`` of either video's pairs fell back (see
    :mod:`cammimic.metrics`), and then ``reason`` says why. Print :meth:`summary`, not ``score``.
    """

    score: float  #: in the chosen variant, over the pairs estimated in both videos (nan if none)
    variant: str
    paper_score: float  #: the paper's pixel-homography CameraScore
    resolution_free_score: float
    per_pair: np.ndarray  #: per frame pair, in the chosen variant (fallback pairs included)
    reference: MotionEstimate
    generated: MotionEstimate
    valid: bool = True  #: false when too many pairs fell back for the score to mean anything
    reason: str = ""  #: why the score is invalid ("" when valid)
    max_fallback_share: float = 0.25

    @property
    def reference_fallbacks(self) -> int:
        return len(self.reference.fallbacks)

    @property
    def generated_fallbacks(self) -> int:
        return len(self.generated.fallbacks)

    @property
    def num_pairs(self) -> int:
        return len(self.per_pair)

    @property
    def pairs_used(self) -> int:
        from cammimic.metrics import fallback_pairs

        return self.num_pairs - len(fallback_pairs(self.reference) | fallback_pairs(self.generated))

    def summary(self) -> str:
        """One line for people: the score, or ``invalid`` and why (never a bare number then)."""
        fb = (f"fallbacks: reference {self.reference_fallbacks}/{self.num_pairs}, "
              f"generated {self.generated_fallbacks}/{self.num_pairs}")
        if not self.valid:
            return f"CameraScore invalid: {self.reason} ({fb}, estimator {self.generated.estimator})"
        return (f"CameraScore {self.score:.6g} ({self.variant}; paper variant {self.paper_score:.6g}) over "
                f"{self.pairs_used} of {self.num_pairs} frame pairs, {fb}, estimator {self.generated.estimator}")

    def manifest_fields(self) -> dict[str, Any]:
        """The score's entries in a run's ``run.json``."""
        return {
            "camera_score": self.score,
            "camera_score_variant": self.variant,
            "camera_score_valid": self.valid,
            "camera_score_reason": self.reason,
            "camera_score_fallbacks": {"reference": self.reference_fallbacks, "generated": self.generated_fallbacks,
                                       "pairs": self.num_pairs},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "camera_score": _finite_or_none(self.score),
            "variant": self.variant,
            "camera_score_paper": _finite_or_none(self.paper_score),
            "camera_score_resolution_free": _finite_or_none(self.resolution_free_score),
            "valid": self.valid,
            "reason": self.reason,
            "max_fallback_share": self.max_fallback_share,
            "num_pairs": self.num_pairs,
            "pairs_used": self.pairs_used,
            "reference_fallbacks": self.reference_fallbacks,
            "generated_fallbacks": self.generated_fallbacks,
            "per_pair": self.per_pair.tolist(),
            "estimator": self.generated.estimator,  # the reference may be an exact camera path
            "num_frames": self.reference.num_frames,
            "reference": {"width": self.reference.width, "height": self.reference.height,
                          "source": self.reference.diagnostics.get("source"),
                          "fallbacks": [f.to_json() for f in self.reference.fallbacks]},
            "generated": {"width": self.generated.width, "height": self.generated.height,
                          "source": self.generated.diagnostics.get("source"),
                          "fallbacks": [f.to_json() for f in self.generated.fallbacks]},
        }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def score_motions(reference: MotionEstimate, generated: MotionEstimate, *, variant: str = "resolution_free",
                  max_fallback_share: float | None = None) -> ScoreResult:
    """CameraScore of two motions already estimated, with its validity (see :class:`ScoreResult`)."""
    from cammimic.metrics import MAX_FALLBACK_SHARE, camera_score, validity

    share = MAX_FALLBACK_SHARE if max_fallback_share is None else float(max_fallback_share)
    chosen, per_pair = camera_score(reference, generated, variant=variant, per_pair=True)
    valid, reason = validity(reference, generated, max_fallback_share=share)
    return ScoreResult(
        score=chosen,
        variant=variant,
        paper_score=camera_score(reference, generated, variant="paper"),
        resolution_free_score=camera_score(reference, generated, variant="resolution_free"),
        per_pair=per_pair,
        reference=reference,
        generated=generated,
        valid=valid,
        reason=reason,
        max_fallback_share=share,
    )


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
    from cammimic.metrics import VARIANTS

    if variant not in VARIANTS:
        raise CammimicError(f"CameraScore variant '{variant}' is unknown. Try one of {list(VARIANTS)}")
    from cammimic.camera import is_camera_reference, reference_motion, resolve_reference

    est = _host(host).create("motion_estimator", estimator, params)
    if is_camera_reference(reference):  # rendered at the generated video's size and length
        generated = _as_video(generated, name="generated", frames=frames)  # read once
        reference = resolve_reference(reference, size=generated.size, frames=frames or len(generated.frames))
    n = frames or min(_count(reference), _count(generated))
    ref = _subsample(_as_video(reference, name="reference", frames=n), n)
    gen = _subsample(_as_video(generated, name="generated", frames=n), n)
    mr = reference_motion(ref, est)
    mg = est.estimate(gen.frames)
    mr = attrs.evolve(mr, diagnostics={**mr.diagnostics, "source": ref.metadata()})
    mg = attrs.evolve(mg, diagnostics={**mg.diagnostics, "source": gen.metadata()})
    return score_motions(mr, mg, variant=variant, max_fallback_share=max_fallback_share)


def _count(video) -> int:
    from cammimic.io import Video, count_frames

    if isinstance(video, (str, Path)):
        return count_frames(video)
    return len(video.frames) if isinstance(video, Video) else len(np.asarray(video))


def list_plugins(host: PluginHost | None = None) -> list[dict[str, Any]]:
    """Every plugin: name, distribution, version, hooks, and the components it provides."""
    return _host(host).plugins()


@attrs.frozen(eq=False)
class RunResult:
    """Where a run put its results, and the headline figures."""

    output_dir: Path
    files: dict[str, Path]
    camera_score: float
    manifest: dict[str, Any]


def _sha256(path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def _even(n: int) -> int:
    return max(2, n - n % 2)


def _resolve(config, overrides) -> Config:
    if not isinstance(config, Config):
        config = load_config(config)
    return config.with_overrides(
        {(k.replace("__", ".", 1) if "__" in k else k if k == "guidance" else f"run.{k}"): v
         for k, v in overrides.items()}
    )


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
    progress: bool = True,
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
        progress: show progress bars (cammimic method).
        **overrides: settings on top of the config, as ``section__key=value`` or, for the
            ``[run]`` section, bare ``key=value`` (e.g. ``prompt="a castle"``, ``frames=16``,
            ``finetune__stage1_steps=50``, ``backbone__weights="/models/zeroscope"``,
            ``method="homography"``, ``guidance=[]``).

    The cammimic method (the default) writes ``output.mp4``, ``weak.mp4`` (the weak video),
    ``side_by_side.mp4`` (reference | weak | output), ``trajectory.png``, ``lora/spatial.safetensors``,
    ``lora/temporal.safetensors``, ``lora/layers.json``, ``losses.csv``, ``score.json``,
    ``motion.json``, ``config.toml`` and ``run.json``. The homography method writes
    ``output.mp4``, ``side_by_side.mp4`` (reference | output), ``trajectory.png``, ``score.json``,
    ``motion.json``, ``config.toml`` and ``run.json``. Either directory appears complete or not at all.
    """
    config = _resolve(config, overrides)
    if config["run"]["method"] == "cammimic":
        _require_method_stack(config, _host(host, config))
        from cammimic.methods.cammimic import run_cammimic

        return run_cammimic(reference, image, output_dir, config=config, host=_host(host, config),
                            overwrite=overwrite, resume=resume, progress=progress)
    return _transfer_homography(reference, image, output_dir, config=config, overwrite=overwrite,
                                host=_host(host, config))


def finetune(
    reference,
    image,
    output_dir,
    *,
    config: Config | str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    host: PluginHost | None = None,
    **overrides: Any,
) -> RunResult:
    """Phase 1 of CamMimic alone: train the spatial and temporal LoRAs and write them to
    ``output_dir/lora/`` with ``losses.csv``, ``weak.mp4``, ``config.toml`` and ``run.json``."""
    config = _resolve(config, overrides)
    _require_method_stack(config, _host(host, config))
    from cammimic.methods.cammimic import run_cammimic

    return run_cammimic(reference, image, output_dir, config=config, host=_host(host, config),
                        overwrite=overwrite, resume=resume, progress=progress, phases=("finetune",))


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
    progress: bool = True,
    host: PluginHost | None = None,
    **overrides: Any,
) -> RunResult:
    """Phase 2 of CamMimic alone: sample with saved LoRAs (they may come from different runs:
    a spatial LoRA of one run with the temporal LoRA of another) and homography guidance."""
    config = _resolve(config, overrides)
    _require_method_stack(config, _host(host, config))
    from cammimic.methods.cammimic import run_cammimic

    return run_cammimic(reference, image, output_dir, config=config, host=_host(host, config),
                        overwrite=overwrite, progress=progress, phases=("sample",), spatial_lora=spatial_lora,
                        temporal_lora=temporal_lora, allow_other_base=allow_other_base)


def _transfer_homography(reference, image, output_dir, *, config: Config, overwrite: bool, host: PluginHost) -> RunResult:
    from cammimic.io import check_output_directory, output_directory, read_image

    started = time.perf_counter()
    inputs = (reference, image, config.source)
    check_output_directory(output_dir, overwrite=overwrite, inputs=inputs)
    run = config["run"]

    est_name, est_params = config.component("motion_estimator")
    where = f" ([motion_estimator]{config.where})" if config.source else ""
    estimator = host.create("motion_estimator", est_name, est_params, where=where)

    from cammimic.camera import reference_motion, resolve_reference

    # A camera preset or path file becomes the image moved along that path (exact motion).
    reference = resolve_reference(reference, size=(run["width"], run["height"]), frames=run["frames"] or None,
                                  image=image)
    reference_video = _as_video(reference, name="reference", frames=run["frames"] or None)
    width = run["width"] or _even(reference_video.size[0])
    height = run["height"] or _even(reference_video.size[1])
    if width % 2 or height % 2:
        raise CammimicError(f"--width/--height must be even for H.264 video, got {width}x{height}; try {_even(width)}x{_even(height)}")
    ref = _as_video(reference_video, size=(width, height), name="reference")
    user_image = read_image(image, size=(width, height))

    import cv2

    cv2.setRNGSeed(int(run["seed"]) % 2**31)  # RANSAC/MAGSAC sampling
    np.random.seed(int(run["seed"]) % 2**32)

    from cammimic.methods.homography import transfer_homography

    ref_motion = reference_motion(ref, estimator)
    ref_motion = attrs.evolve(ref_motion, diagnostics={**ref_motion.diagnostics, "source": ref.metadata()})
    result = transfer_homography(user_image, ref_motion, fill=config["homography"]["fill"])
    out_motion = estimator.estimate(result.frames)
    scored = score_motions(ref_motion, out_motion, variant=config["score"]["variant"],
                           max_fallback_share=config["score"]["max_fallback_share"])

    fps = run["fps"] or ref.fps
    # Record what was actually used, so the written config.toml reproduces this run.
    config = config.with_overrides(
        {"run.method": "homography", "run.frames": len(result.frames), "run.width": width, "run.height": height, "run.fps": float(fps)}
    )
    used_plugins = {
        "motion_estimator": _component_record(host, "motion_estimator", est_name),
    }
    manifest = {
        "cammimic_version": __version__,
        "method": run["method"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "seed": run["seed"],
        "width": width,
        "height": height,
        "num_frames": len(result.frames),
        "fps": fps,
        "reference": {**ref.metadata(), "sha256": _sha256(reference) if isinstance(reference, (str, Path)) else None},
        "image": {"path": str(image), "sha256": _sha256(image)},
        "components": used_plugins,
        "fallbacks": [f.to_json() for f in ref_motion.fallbacks],
        "valid_fraction": [float(m.mean()) for m in result.masks],
        **scored.manifest_fields(),
    }
    files = {}
    with output_directory(output_dir, overwrite=overwrite, inputs=inputs) as tmp:
        files = _write_run(tmp, ref.frames, result.frames, ref_motion, out_motion, scored, config, manifest, fps)
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        (tmp / "run.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        from cammimic.report import write_run_report

        write_run_report(tmp, title=f"cammimic run: {Path(output_dir).name}")
    out = Path(output_dir)
    files = {k: out / v.name for k, v in files.items()} | {"run": out / "run.json", "report": out / "report.html"}
    return RunResult(output_dir=out, files=files, camera_score=scored.score, manifest=manifest)


def _component_record(host: PluginHost, kind: str, name: str) -> dict[str, Any]:
    comp = host.get(kind, name)
    info = host.info.get(comp.plugin)
    return {
        "name": name,
        "plugin": comp.plugin,
        "distribution": info.distribution if info else None,
        "version": info.version if info else None,
    }


def _write_run(tmp: Path, ref_frames, out_frames, ref_motion, out_motion, scored, config, manifest, fps):
    from cammimic.io import write_video
    from cammimic.trajectory import plot_trajectories, summarize

    crf = config["output"]["crf"]
    files = {
        "output": write_video(tmp / "output.mp4", out_frames, fps, crf=crf),
        "side_by_side": write_video(tmp / "side_by_side.mp4", np.concatenate([ref_frames, out_frames], axis=2), fps, crf=crf),
        "trajectory": plot_trajectories(tmp / "trajectory.png", {"reference": ref_motion, "output": out_motion}),
    }
    if config["output"]["gif"]:
        files["gif"] = write_video(tmp / "output.gif", out_frames, fps)
    (tmp / "score.json").write_text(json.dumps(scored.to_json(), indent=2) + "\n", encoding="utf-8")
    motion = {
        "reference": ref_motion.to_json(),
        "output": out_motion.to_json(),
        "trajectory": {"reference": summarize(ref_motion), "output": summarize(out_motion)},
    }
    (tmp / "motion.json").write_text(json.dumps(motion, indent=2) + "\n", encoding="utf-8")
    (tmp / "config.toml").write_text(config.to_toml(), encoding="utf-8")
    files.update(score=tmp / "score.json", motion=tmp / "motion.json", config=tmp / "config.toml")
    return files
