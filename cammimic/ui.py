"""``cammimic ui``: a Gradio app over :func:`cammimic.transfer`, and its ``transfer`` API endpoint.

Each request becomes one :func:`cammimic.transfer` call in a child process
(:mod:`cammimic.worker`) writing its own run directory under ``runs_dir``: the queue runs one at a
time (one GPU), Cancel interrupts the child (which deletes its unfinished directory, as Ctrl-C
does), and the API's progress callback, which the child sends back as JSON lines, drives the
app's progress bar. A field left at its default is left out of the call, so the config's
defaults (and a backbone's own recipe, as mini's) apply, as for ``cammimic run``.

Gradio is imported only by :func:`build_app` (``pip install "cammimic[ui]"``); the rest of this
module (checking a request, following the job, collecting the outputs) is plain Python.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from cammimic.camera import DEFAULT_SIZE, EASES, MAX_PATH_FILE_BYTES, PRESETS, load_path_file
from cammimic.config import COMPONENT_DEFAULTS, DEFAULTS
from cammimic.errors import CammimicError
from cammimic.worker import Job

__all__ = [
    "require_gradio",
    "UISettings",
    "TransferRequest",
    "Job",
    "transfer_call",
    "camera_reference",
    "collect_outputs",
    "build_app",
    "launch",
    "default_backbone",
    "is_hub_id",
    "NO_PRESET",
    "INPUT_NAMES",
    "FORM_DEFAULTS",
]

#: The preset choice meaning "use the uploaded reference video or camera file" (its text is older
#: than camera files; clients send it).
NO_PRESET = "none: use the uploaded video"
METHODS = ("homography", "cammimic")
#: The config's default backbone.
DEFAULT_BACKBONE = COMPONENT_DEFAULTS["backbone"]["name"]
#: The preset speeds a client may ask for (the form's slider).
SPEED_RANGE = (0.25, 4.0)
#: The longest prompt (or other text) a client may send.
MAX_TEXT = 2000
#: A Hub id, ``owner/name`` (see is_hub_id).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
#: The ``transfer`` endpoint's inputs, in order (docs/ui.md documents each); new ones go last, so a
#: client giving them by position keeps working.
INPUT_NAMES = (
    "reference_video",
    "camera_preset",
    "image",
    "prompt",
    "reference_prompt",
    "method",
    "backbone",
    "weights",
    "frames",
    "width",
    "height",
    "seed",
    "stage1_steps",
    "stage2_steps",
    "sampling_steps",
    "speed",
    "ease",
    "motion_strength",
    "motion_speed",
    "motion_reverse",
    "motion_smooth",
    "candidates",
    "camera_file",
    "window_overlap",
)
#: The controls on the reference's motion a client may set (the form's sliders; docs/cli.md), and
#: their settings ([motion]).
MOTION_RANGES = {
    "motion_strength": (-2.0, 2.0),
    "motion_speed": (0.25, 4.0),
    "motion_smooth": (0.0, 5.0),
}
MOTION_SETTINGS = {
    "motion_strength": "motion.strength",
    "motion_speed": "motion.speed",
    "motion_reverse": "motion.reverse",
    "motion_smooth": "motion.smooth",
}
#: The whole numbers a client may send, and their ranges (docs/ui.md); the server's time and memory
#: are shared, so these are tighter than ``cammimic run``'s. ``frames``, ``width`` and ``height`` also
#: take 0, the method's default. ``UISettings.limits`` changes them.
INT_RANGES = {
    "frames": (2, 128),
    "width": (16, 2048),
    "height": (16, 2048),
    "seed": (0, 2**63 - 1),
    "stage1_steps": (1, 1000),
    "stage2_steps": (1, 1000),
    "sampling_steps": (1, 200),
    "candidates": (1, 8),  # best of N: N samplings of the server's time
    "window_overlap": (0, 64),
}  # long clips: frames two windows share (0: a quarter of the window)
#: The setting each whole number sets (docs/config.md).
INT_SETTINGS = {
    "frames": "run.frames",
    "width": "run.width",
    "height": "run.height",
    "seed": "run.seed",
    "stage1_steps": "finetune.stage1_steps",
    "stage2_steps": "finetune.stage2_steps",
    "sampling_steps": "sampling.steps",
    "candidates": "run.candidates",
    "window_overlap": "sampling.window_overlap",
}
#: The settings only the cammimic method has (a diffusion model's); the homography method gets none.
CAMMIMIC_ONLY = ("stage1_steps", "stage2_steps", "sampling_steps", "candidates", "window_overlap")
#: 0 means "the backbone's own value" for these (mini's 8 frames at 64x64, 60 + 60 finetuning steps,
#: 25 sampling steps; the config's otherwise, zeroscope's 150 + 150 and 50).
_ZERO_IS_DEFAULT = ("frames", "width", "height", "stage1_steps", "stage2_steps", "sampling_steps")


def _setting_default(dotted: str):
    section, _, key = dotted.partition(".")
    return DEFAULTS[section][key]


#: What the form starts with, taken from the config's schema (docs/config.md); the finetuning steps
#: start at 0, the backbone's own (the schema's 150 unless the backbone's recipe says otherwise).
FORM_DEFAULTS: dict[str, Any] = {
    **{
        name: 0 if name in _ZERO_IS_DEFAULT else _setting_default(dotted)
        for name, dotted in INT_SETTINGS.items()
    },
    **{name: _setting_default(dotted) for name, dotted in MOTION_SETTINGS.items()},
    "speed": 1.0,
    "ease": EASES[0],  # a preset's own defaults (cammimic.camera)
}
#: Camera files a client may upload as the reference: a camera file or camera-path ``.json``
#: (``cammimic motion REF --camera-file``), or a RealEstate10K camera ``.txt``.
CAMERA_FILE_TYPES = (".json", ".txt")
#: The largest camera file accepted (a camera-path file's limit, 8 MB).
MAX_CAMERA_FILE_BYTES = MAX_PATH_FILE_BYTES
#: Where a RealEstate10K file's scene plane lies, in its translation units (`cammimic import-camera`'s default).
RE10K_DEPTH = 2.0


def is_hub_id(value: str) -> bool:
    """Whether ``value`` is a Hub id, ``owner/name``: the child runs in an empty folder, so one never names
    a server folder."""
    return bool(_HUB_ID.fullmatch(value)) and ".." not in value


def default_backbone(host=None) -> str:
    """The backbone the app selects first: ``$CAMMIMIC_UI_BACKBONE``, else ``mini`` where a plugin
    registers it and its weights are installed (the small offline backbone), else the config
    default (``zeroscope``)."""
    env = os.environ.get("CAMMIMIC_UI_BACKBONE")
    if env:
        return env
    names = backbone_names(host)
    return "mini" if "mini" in names and _mini_weights_installed() else DEFAULT_BACKBONE


def _mini_weights_installed() -> bool:
    """Whether the ``mini`` plugin's package holds its weights (a light import: a path check)."""
    try:
        import cammimic_mini
    except ImportError:
        return False
    return (cammimic_mini.WEIGHTS / "model_index.json").is_file()


def backbone_names(host=None) -> list[str]:
    try:
        if host is None:
            from cammimic.plugins import get_host

            host = get_host()
        return sorted(host.components("backbone"))
    except Exception:  # noqa: BLE001 - a broken plugin must not stop the app; `cammimic plugins` says why
        return [DEFAULT_BACKBONE]


@attrs.frozen
class UISettings:
    """How the app runs: where run directories go and what the form starts with."""

    runs_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    backbone: str = DEFAULT_BACKBONE
    weights: str = ""
    method: str = "homography"
    #: Settings for every run, as :func:`cammimic.transfer`'s keyword overrides (e.g.
    #: ``{"device": "cpu"}``); they win over a client's values. Paths in them must be absolute.
    overrides: dict = attrs.field(factory=dict, converter=dict)
    #: Folders whose sub-folders a web client may name as weights (``cammimic ui --weights-dir``);
    #: any other server path is refused. ``weights`` itself is always allowed.
    weights_dirs: tuple[Path, ...] = attrs.field(
        default=(), converter=lambda ps: tuple(Path(p).resolve() for p in ps)
    )
    #: Largest upload in bytes (Gradio's ``max_file_size``; ``cammimic ui --max-upload-mb``).
    max_upload_bytes: int = 50 * 1024 * 1024
    #: Hub ids a web client may name as weights (``cammimic ui --allow-hub-id``); default none, so a
    #: client cannot make the server download a repository the operator did not choose.
    hub_ids: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Ranges of the whole numbers a client may send, overriding :data:`INT_RANGES` by name.
    limits: dict = attrs.field(factory=dict, converter=lambda d: {**INT_RANGES, **dict(d)})


@attrs.frozen
class TransferRequest:
    """The inputs of one transfer, as the form and the API give them; the defaults are the form's
    (:data:`FORM_DEFAULTS`, from the config's schema)."""

    reference_video: str | None = None
    camera_preset: str | None = None
    image: str | None = None
    prompt: str = ""
    reference_prompt: str = ""
    method: str = "homography"
    backbone: str = ""
    weights: str = ""
    frames: int = FORM_DEFAULTS["frames"]  #: 0: the method's default
    width: int = FORM_DEFAULTS["width"]
    height: int = FORM_DEFAULTS["height"]
    seed: int = FORM_DEFAULTS["seed"]
    stage1_steps: int = FORM_DEFAULTS["stage1_steps"]  #: 0: the backbone's (mini 60, zeroscope 150)
    stage2_steps: int = FORM_DEFAULTS["stage2_steps"]
    sampling_steps: int = FORM_DEFAULTS[
        "sampling_steps"
    ]  #: 0: the backbone's (mini 25, zeroscope 50)
    speed: float = FORM_DEFAULTS["speed"]
    ease: str = FORM_DEFAULTS["ease"]
    motion_strength: float = FORM_DEFAULTS[
        "motion_strength"
    ]  #: [motion] controls, applied to any reference
    motion_speed: float = FORM_DEFAULTS["motion_speed"]
    motion_reverse: bool = FORM_DEFAULTS["motion_reverse"]
    motion_smooth: float = FORM_DEFAULTS["motion_smooth"]
    candidates: int = FORM_DEFAULTS[
        "candidates"
    ]  #: best of N (cammimic): N seeds sampled, the lowest valid CameraScore kept
    #: an uploaded camera file as the reference (camera file or camera-path .json, RealEstate10K .txt)
    camera_file: str | None = None
    window_overlap: int = FORM_DEFAULTS[
        "window_overlap"
    ]  #: long clips (cammimic): frames two windows share

    def reference(self, workdir: str | Path | None = None) -> str:
        """The reference: ``camera:PRESET:speed=..,ease=..``, the uploaded camera file
        (:func:`camera_reference`; a RealEstate10K file is converted into ``workdir``) or the
        uploaded video."""
        preset = (self.camera_preset or "").strip()
        if preset and preset != NO_PRESET:
            if preset not in PRESETS:
                raise CammimicError(
                    f"camera preset '{preset}' is unknown; valid: {', '.join(PRESETS)}"
                )
            if self.ease not in EASES:
                raise CammimicError(f"ease '{self.ease}' is unknown; valid: {', '.join(EASES)}")
            try:
                speed = float(self.speed)
            except (TypeError, ValueError):
                speed = math.nan
            if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:  # also refuses NaN
                raise CammimicError(
                    f"preset speed must be between {SPEED_RANGE[0]:g} and {SPEED_RANGE[1]:g} "
                    f"(the slider's range), got {self.speed!r}"
                )
            return f"camera:{preset}:speed={speed:g},ease={self.ease}"
        if self.camera_file and self.reference_video:
            raise CammimicError(
                "give a reference video or a camera file, not both (a camera preset uses neither)"
            )
        if self.camera_file:
            return camera_reference(
                self.camera_file,
                image=self.image,
                width=self.width,
                height=self.height,
                workdir=workdir,
            )
        if not self.reference_video:
            raise CammimicError(
                "upload a reference video or a camera file, or pick a camera preset"
            )
        return str(self.reference_video)


def camera_reference(path, *, image=None, width=0, height=0, workdir=None) -> str:
    """An uploaded camera file as the reference, checked now (one line, before anything starts):
    a camera file or camera-path ``.json`` as it is; a RealEstate10K ``.txt`` converted into
    ``workdir`` as ``cammimic import-camera`` does, for a video of ``width`` x ``height`` (when both
    are set; else the image's size) with the scene plane :data:`RE10K_DEPTH` ahead."""
    p = Path(path)
    kind = p.suffix.lower()
    if kind not in CAMERA_FILE_TYPES:
        raise CammimicError(
            f"the camera file must be a .json camera file (cammimic motion REF --camera-file) or "
            f"camera-path file, or a RealEstate10K camera .txt; '{p.name[:200]}' is neither"
        )
    names = {str(p): p.name}  # its errors name the upload, not its server path
    try:
        if kind == ".txt":
            from cammimic.camera_file import read_re10k

            if workdir is None:
                raise ValueError("a RealEstate10K camera file needs a workdir to be converted into")
            size = (width, height) if width and height else _image_size(image)
            data = read_re10k(p, width=int(size[0]), height=int(size[1]), depth=RE10K_DEPTH)
            data["source"]["realestate10k"] = p.name
            converted = Path(workdir) / f"{p.stem}.json"
            names[str(converted)] = p.name  # its errors too name the upload
            converted.write_text(json.dumps(data), encoding="utf-8")
            p = converted
        load_path_file(p)
    except CammimicError as exc:
        raise CammimicError(redact(str(exc), names)) from None
    return str(p)


def _image_size(image) -> tuple[int, int]:
    """``(width, height)`` of the image from its header; the default render size when it has none
    (the run then says what is wrong with the image)."""
    from cammimic.io.images import image_size

    try:
        return image_size(Path(image)) if image else DEFAULT_SIZE
    except (OSError, ValueError):
        return DEFAULT_SIZE


def _int(value, name: str, limits: dict) -> int:
    """A client's whole number ``name`` within ``limits[name]`` (0 also for a default), else one line."""
    low, high = limits[name]
    shown = name.replace("_", " ")
    v = None
    if isinstance(value, int) and not isinstance(value, bool):
        v = value
    elif not isinstance(value, bool):
        try:
            number = float(value or 0)
            v = int(number) if number.is_integer() else None  # NaN, inf, 8.5: no whole number
        except (TypeError, ValueError, OverflowError):
            pass
    if v is None:
        raise CammimicError(f"{shown} must be a whole number, got {str(value)[:40]!r}")
    if not (low <= v <= high or (v == 0 and name in _ZERO_IS_DEFAULT)):
        zero = "0 (default) or " if name in _ZERO_IS_DEFAULT else ""
        raise CammimicError(
            f"{shown} must be {zero}between {low} and {high} on this server, "
            f"got {v if abs(v) < 10**30 else 'a number of ' + str(v.bit_length()) + ' bits'}"
        )
    return v


def _float(value, name: str) -> float:
    """A client's number ``name`` within :data:`MOTION_RANGES` (the slider's), else one line."""
    low, high = MOTION_RANGES[name]
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not low <= v <= high:  # also refuses NaN
        raise CammimicError(
            f"{name.replace('_', ' ')} must be between {low:g} and {high:g} (the slider's range), "
            f"got {value!r}"
        )
    return v


def _text(value, name: str) -> str:
    """A client's text, as one value: bounded, without NUL."""
    text = str(value or "").strip()
    if len(text) > MAX_TEXT:
        raise CammimicError(
            f"{name} is {len(text)} characters long; at most {MAX_TEXT} are accepted"
        )
    if "\0" in text:
        raise CammimicError(f"{name} contains a NUL character; remove it")
    return text


def _client_weights(value: str, settings: UISettings) -> str:
    """The weights of a client's value: the server's own weights, a Hub id, or a folder under
    ``settings.weights_dirs``. Anything else, present or absent, gets the same line, so a client
    cannot learn which server folders exist."""
    if not value or value == settings.weights:
        return settings.weights
    if value in settings.hub_ids and is_hub_id(value):
        return value  # the child runs in an empty folder: a Hub id never names a server folder
    path = Path(value)
    if path.is_absolute() and settings.weights_dirs:
        real = path.resolve()
        if (
            any(real != root and real.is_relative_to(root) for root in settings.weights_dirs)
            and real.is_dir()
        ):
            return str(real)
    raise CammimicError(
        f"weights '{value[:200]}' are not available on this server; give the app's weights (\"\"), "
        "a Hub id the server allows (cammimic ui --allow-hub-id) or a folder under a weights folder "
        "it allows (cammimic ui --weights-dir)"
    )


def _keyword(dotted: str) -> str:
    """:func:`cammimic.transfer`'s keyword of a setting: ``frames`` for ``run.frames``,
    ``finetune__stage1_steps`` for ``finetune.stage1_steps``."""
    section, _, key = dotted.partition(".")
    return key if section == "run" else f"{section}__{key}"


def transfer_call(
    req: TransferRequest,
    run_dir: Path,
    settings: UISettings,
    backbones=None,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """The :func:`cammimic.transfer` call of a request, checked: ``{"reference", "image",
    "output_dir", "overrides"}`` (what :class:`cammimic.worker.Job` runs).

    Every client value is a value of a keyword argument, so none can become an option or an
    output path; a field at its form default is left out, so the config's default or the
    backbone's own recipe applies. ``backbones``: the names a client may choose (default: the
    installed ones and ``settings.backbone``). ``workdir``: where an uploaded RealEstate10K file
    is converted."""
    if req.method not in METHODS:
        raise CammimicError(f"method '{req.method}' is unknown; valid: {', '.join(METHODS)}")
    if not req.image:
        raise CammimicError("upload an image (the scene to move)")
    number = {name: _int(getattr(req, name), name, settings.limits) for name in INT_RANGES}
    motion = {name: _float(getattr(req, name), name) for name in MOTION_RANGES}
    reference, image = _text(req.reference(workdir), "the reference"), _text(req.image, "the image")
    overrides: dict[str, Any] = {"method": req.method}
    if req.method == "cammimic":
        prompt = _text(req.prompt, "the prompt")
        if not prompt:
            raise CammimicError("the cammimic method needs a prompt describing your image")
        backbone = _text(req.backbone, "the backbone") or settings.backbone
        known = sorted({settings.backbone, *(backbone_names() if backbones is None else backbones)})
        if backbone not in known:
            raise CammimicError(f"backbone '{backbone}' is unknown; valid: {', '.join(known)}")
        overrides |= {"prompt": prompt, "backbone__name": backbone}
        reference_prompt = _text(req.reference_prompt, "the reference prompt")
        if reference_prompt:
            overrides["reference_prompt"] = reference_prompt
        weights = _client_weights(_text(req.weights, "the weights"), settings)
        if weights:  # after the backbone's name, which drops the parameters of another backbone
            overrides["backbone__weights"] = weights
    for name, dotted in INT_SETTINGS.items():
        if number[name] != FORM_DEFAULTS[name] and (
            req.method == "cammimic" or name not in CAMMIMIC_ONLY
        ):
            overrides[_keyword(dotted)] = number[name]
    for name, value in {**motion, "motion_reverse": req.motion_reverse is True}.items():
        if value != FORM_DEFAULTS[name]:
            overrides[_keyword(MOTION_SETTINGS[name])] = value
    overrides |= settings.overrides
    return {
        "reference": reference,
        "image": image,
        "output_dir": str(run_dir),
        "overrides": overrides,
    }


def check_upload(path, what: str, upload_dir, max_bytes: int | None = None) -> str:
    """``path`` if it is a regular file that arrived through the app's upload (inside Gradio's
    ``upload_dir``), else a one-line error that names ``what`` but no server path."""
    if not path:
        return path
    try:
        real = Path(path).resolve()
        inside = real.is_relative_to(Path(upload_dir).resolve())
        st = real.stat() if inside else None
    except (OSError, ValueError, RuntimeError):
        inside, st = False, None
    if not inside or st is None or not stat.S_ISREG(st.st_mode):
        raise CammimicError(f"the {what} must be a file uploaded to this app; upload it again")
    if max_bytes and st.st_size > max_bytes:
        raise CammimicError(
            f"the {what} is {st.st_size / 2**20:.1f} MB; this app accepts at most "
            f"{max_bytes / 2**20:.0f} MB"
        )
    return str(real)


#: Absolute paths left in an error line (after the known ones are named).
_PATH = re.compile(r"(?<![\w.~])/[^\s'\",;()\[\]]+")


def redact(line: str, names: dict[str, str]) -> str:
    """``line`` without server paths: each key of ``names`` replaced by its value, any other
    absolute path by ``<server path>``."""
    for server, shown in sorted(names.items(), key=lambda kv: -len(kv[0])):
        if server:
            line = line.replace(server, shown)
    return _PATH.sub("<server path>", line)


def new_run_dir(settings: UISettings, method: str) -> Path:
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    return settings.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{method}-{secrets.token_hex(3)}"


def _score_markdown(run_dir: Path) -> str:
    from cammimic.report import read_json

    score = read_json(run_dir / "score.json")
    run = read_json(run_dir / "run.json") or {}
    if score is None:
        return "No CameraScore (no output video)."
    if score.get("valid", True) and score.get("camera_score") is not None:
        text = (
            f"**CameraScore {score['camera_score']:.4g}** ({score.get('variant')}; lower is better; "
            f"paper variant {score.get('camera_score_paper') or float('nan'):.4g}) · valid: **yes**"
        )
    else:  # never a bare number for a score over fallbacks (cammimic.metrics)
        text = (
            f"**CameraScore invalid**: {score.get('reason') or 'no frame pair could be compared'}"
        )
    if "reference_fallbacks" in score:
        pairs = score.get("num_pairs", "?")
        text += (
            f" · fallbacks: reference {score['reference_fallbacks']}/{pairs}, "
            f"output {score.get('generated_fallbacks')}/{pairs}"
        )
    elif run.get("fallbacks") is not None:
        text += f" · fallbacks: {len(run['fallbacks'])}"
    text += f" · estimator {score.get('estimator')}, {score.get('num_frames')} frames"
    if run.get("candidates"):  # best of N: report.html shows them all
        text += f" · best of {len(run['candidates'])} candidates: seed {run.get('kept_seed')} kept"
    return text


def collect_outputs(run_dir: Path) -> dict[str, Any]:
    """What the app shows for a finished run directory (paths exist or are None)."""

    def path(name):
        p = run_dir / name
        return str(p) if p.is_file() else None

    archive = shutil.make_archive(
        str(run_dir), "zip", root_dir=run_dir.parent, base_dir=run_dir.name
    )
    downloads = [
        p
        for p in (
            path("lora/spatial.safetensors"),
            path("lora/temporal.safetensors"),
            path("run.json"),
            path("report.html"),
            archive,
        )
        if p
    ]
    return {
        "output": path("output.mp4"),
        "side_by_side": path("side_by_side.mp4"),
        "weak": path("weak.mp4"),
        "trajectory": path("trajectory.png"),
        "score": _score_markdown(run_dir),
        "downloads": downloads,
        "run_dir": str(run_dir),
    }


#: Children not yet reaped. A cancelled child may take a few seconds to stop (it saves a
#: checkpoint and removes its directory); the next request waits for it, so one runs at a time.
RUNNING: set[Job] = set()


def run_transfer(
    req: TransferRequest, settings: UISettings, *, poll: float = 0.3
) -> Iterator[tuple[str, Any]]:
    """Run one request: yields ``("progress", (desc, n, total, status))`` while it runs, then
    ``("done", outputs)``. Closing the generator (a cancelled request) interrupts the child
    without waiting for it. Errors are one line without a server path (:func:`redact`)."""
    run_dir = new_run_dir(settings, req.method)
    # private to this request: the child's empty working folder, and a converted RealEstate10K file
    workdir = tempfile.mkdtemp(prefix="cammimic-ui-")
    names = {str(settings.runs_dir): "runs", str(run_dir): run_dir.name, workdir + os.sep: ""}
    names |= {
        str(upload): Path(upload).name
        for upload in (req.reference_video, req.image, req.camera_file)
        if upload
    }
    job = None
    try:
        call = transfer_call(
            req, run_dir, settings, workdir=workdir
        )  # a bad request fails before anything starts
        while any(not j.done() for j in list(RUNNING)):
            yield (
                "progress",
                (
                    "waiting for the previous run to stop",
                    0,
                    0,
                    "waiting for the previous run to stop",
                ),
            )
            time.sleep(poll)
        job = Job(call, run_dir, workdir)
        RUNNING.add(job)
        while not job.done():
            desc, n, total = job.stage or ("starting", 0, 0)
            yield "progress", (desc, n, total, job.status())
            time.sleep(poll)
        try:
            job.finish()
        except CammimicError as exc:  # the run's own line may name server paths
            raise CammimicError(redact(str(exc), names)) from None
        RUNNING.discard(job)
        job = None
    finally:
        if job is None:
            shutil.rmtree(
                workdir, ignore_errors=True
            )  # finished (the job removed it) or never started
        else:  # cancelled or failed: stop the child in the background, so Cancel returns at once

            def stop(job=job):
                try:
                    job.cancel()
                finally:
                    RUNNING.discard(job)

            threading.Thread(target=stop, daemon=True).start()
    yield "done", collect_outputs(run_dir)


def require_gradio():
    """The gradio module, or a one-line error saying how to install it."""
    try:
        import gradio
    except ImportError as exc:
        raise CammimicError('the app needs gradio: pip install "cammimic[ui]"') from exc
    return gradio


def build_app(settings: UISettings, *, host=None):
    """The Gradio Blocks app; ``.launch()`` it, or call :func:`launch`."""
    gr = require_gradio()

    backbones = backbone_names(host)
    if settings.backbone not in backbones:
        backbones = [settings.backbone, *backbones]
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts: works offline

    def transfer(
        reference_video,
        camera_preset,
        image,
        prompt,
        reference_prompt,
        method,
        backbone,
        weights,
        frames,
        width,
        height,
        seed,
        stage1_steps,
        stage2_steps,
        sampling_steps,
        speed=FORM_DEFAULTS["speed"],
        ease=FORM_DEFAULTS["ease"],
        motion_strength=FORM_DEFAULTS["motion_strength"],
        motion_speed=FORM_DEFAULTS["motion_speed"],
        motion_reverse=FORM_DEFAULTS["motion_reverse"],
        motion_smooth=FORM_DEFAULTS["motion_smooth"],
        candidates=FORM_DEFAULTS["candidates"],
        camera_file=None,
        window_overlap=FORM_DEFAULTS["window_overlap"],
        progress=gr.Progress(),
    ):
        req = TransferRequest(
            reference_video=reference_video,
            camera_preset=camera_preset,
            image=image,
            prompt=prompt or "",
            reference_prompt=reference_prompt or "",
            method=method,
            backbone=backbone or "",
            weights=weights or "",
            frames=frames,
            width=width,
            height=height,
            seed=seed,
            stage1_steps=stage1_steps,
            stage2_steps=stage2_steps,
            sampling_steps=sampling_steps,
            speed=speed,
            ease=ease,
            motion_strength=motion_strength,
            motion_speed=motion_speed,
            motion_reverse=bool(motion_reverse),
            motion_smooth=motion_smooth,
            candidates=candidates,
            camera_file=camera_file,
            window_overlap=window_overlap,
        )
        skip = (gr.skip(),) * 7
        try:
            # Gradio already refuses files a client did not upload; this also refuses FIFOs and
            # links out of the upload folder, before anything opens them
            upload_dir = gr.utils.get_upload_folder()
            limit = settings.max_upload_bytes
            req = attrs.evolve(
                req,
                reference_video=check_upload(
                    req.reference_video, "reference video", upload_dir, limit
                ),
                image=check_upload(req.image, "image", upload_dir, limit),
                camera_file=check_upload(
                    req.camera_file, "camera file", upload_dir, min(limit, MAX_CAMERA_FILE_BYTES)
                ),
            )
            for kind, value in run_transfer(req, settings):
                if kind == "progress":
                    desc, n, total, status = value
                    progress((n, total) if total else None, desc=desc)
                    yield (status, *skip)
                else:
                    name = Path(
                        value["run_dir"]
                    ).name  # its folder under the runs folder: no server path
                    yield (
                        f"done: {name}",
                        value["output"],
                        value["side_by_side"],
                        value["weak"],
                        value["trajectory"],
                        value["score"],
                        value["downloads"],
                        name,
                    )
        except CammimicError as exc:
            raise gr.Error(str(exc)) from None
        except Exception:  # noqa: BLE001 - its text may hold server paths: the log has it, the client a line
            import logging

            logging.getLogger(__name__).exception("transfer failed")
            raise gr.Error(
                "the transfer failed unexpectedly; the server's log has the details"
            ) from None

    with gr.Blocks(title="cammimic") as app:
        gr.Markdown(
            "# cammimic\nGive your image the camera motion of a video or of a camera preset. "
            "`homography` warps the image (seconds, CPU); `cammimic` is the paper's method (LoRA "
            "finetuning + guided sampling: needs backbone weights)."
        )
        with gr.Row():
            with gr.Column():
                reference_video = gr.Video(
                    label="Reference video (its camera motion)",
                    sources=["upload"],
                    elem_id="reference-video",
                )
                camera_file = gr.File(
                    label="…or a camera file: .json (cammimic motion --camera-file, editable) or "
                    "RealEstate10K .txt",
                    file_types=list(CAMERA_FILE_TYPES),
                    type="filepath",
                    elem_id="camera-file",
                )
                camera_preset = gr.Dropdown(
                    [NO_PRESET, *PRESETS],
                    value=NO_PRESET,
                    label="…or a camera preset",
                    elem_id="camera-preset",
                )
                image = gr.Image(
                    label="Your image (the scene)",
                    type="filepath",
                    sources=["upload"],
                    elem_id="user-image",
                )
                prompt = gr.Textbox(
                    "", label="Prompt: what your image shows (cammimic)", elem_id="prompt"
                )
                reference_prompt = gr.Textbox(
                    "",
                    label="Reference prompt: what the reference shows (cammimic)",
                    elem_id="reference-prompt",
                )
                method = gr.Radio(
                    list(METHODS), value=settings.method, label="Method", elem_id="method"
                )
                with gr.Row():
                    backbone = gr.Dropdown(
                        backbones,
                        value=settings.backbone,
                        label="Backbone",
                        allow_custom_value=True,
                        elem_id="backbone",
                    )
                    weights = gr.Textbox(
                        value=settings.weights,
                        label="Weights (local folder or Hub id)",
                        elem_id="weights",
                    )
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    d = FORM_DEFAULTS  # from the config's schema (docs/config.md)
                    with gr.Row():
                        frames = gr.Number(
                            d["frames"], label="Frames (0: default)", precision=0, elem_id="frames"
                        )
                        width = gr.Number(
                            d["width"], label="Width (0: default)", precision=0, elem_id="width"
                        )
                        height = gr.Number(
                            d["height"], label="Height (0: default)", precision=0, elem_id="height"
                        )
                        seed = gr.Number(d["seed"], label="Seed", precision=0, elem_id="seed")
                    with gr.Row():
                        stage1 = gr.Number(
                            d["stage1_steps"],
                            label="Stage 1 steps (0: the backbone's)",
                            precision=0,
                            elem_id="stage1-steps",
                        )
                        stage2 = gr.Number(
                            d["stage2_steps"],
                            label="Stage 2 steps (0: the backbone's)",
                            precision=0,
                            elem_id="stage2-steps",
                        )
                        steps = gr.Number(
                            d["sampling_steps"],
                            label="Sampling steps (0: the backbone's)",
                            precision=0,
                            elem_id="sampling-steps",
                        )
                    with gr.Row():
                        candidates = gr.Number(
                            d["candidates"],
                            label="Candidates (best of N, cammimic)",
                            precision=0,
                            elem_id="candidates",
                        )
                        window_overlap = gr.Number(
                            d["window_overlap"],
                            precision=0,
                            elem_id="window-overlap",
                            label="Window overlap (frames beyond the backbone's clip, "
                            "cammimic; 0: a quarter of the window)",
                        )
                    with gr.Row():
                        speed = gr.Slider(
                            *SPEED_RANGE,
                            value=d["speed"],
                            step=0.25,
                            label="Preset speed",
                            elem_id="speed",
                        )
                        ease = gr.Dropdown(
                            list(EASES), value=d["ease"], label="Preset ease", elem_id="ease"
                        )
                    with gr.Row():  # controls on the reference's motion, any reference (docs/ui.md)
                        m_strength = gr.Slider(
                            *MOTION_RANGES["motion_strength"],
                            value=d["motion_strength"],
                            step=0.05,
                            label="Motion strength",
                            elem_id="motion-strength",
                        )
                        m_speed = gr.Slider(
                            *MOTION_RANGES["motion_speed"],
                            value=d["motion_speed"],
                            step=0.25,
                            label="Motion speed",
                            elem_id="motion-speed",
                        )
                        m_reverse = gr.Checkbox(
                            d["motion_reverse"], label="Reverse motion", elem_id="motion-reverse"
                        )
                        m_smooth = gr.Slider(
                            *MOTION_RANGES["motion_smooth"],
                            value=d["motion_smooth"],
                            step=0.5,
                            label="Smooth motion (sigma, frames)",
                            elem_id="motion-smooth",
                        )
                with gr.Row():
                    run_btn = gr.Button("Transfer", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", elem_id="cancel")
            with gr.Column():
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                output = gr.Video(
                    label="Output",
                    interactive=False,
                    autoplay=True,
                    loop=True,
                    elem_id="output-video",
                )
                side = gr.Video(
                    label="Side by side: reference | (weak) | output",
                    interactive=False,
                    loop=True,
                    elem_id="side-by-side",
                )
                weak = gr.Video(
                    label="Weak video (cammimic)", interactive=False, elem_id="weak-video"
                )
                trajectory = gr.Image(
                    label="Camera trajectory", interactive=False, elem_id="trajectory"
                )
                score = gr.Markdown(label="CameraScore", elem_id="score")
                downloads = gr.File(
                    label="Downloads: LoRAs, run.json, report.html, run folder (zip)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
                run_dir = gr.Textbox(
                    label="Run directory (in the runs folder)", interactive=False, elem_id="run-dir"
                )
        inputs = [
            reference_video,
            camera_preset,
            image,
            prompt,
            reference_prompt,
            method,
            backbone,
            weights,
            frames,
            width,
            height,
            seed,
            stage1,
            stage2,
            steps,
            speed,
            ease,
            m_strength,
            m_speed,
            m_reverse,
            m_smooth,
            candidates,
            camera_file,
            window_overlap,
        ]
        outputs = [status, output, side, weak, trajectory, score, downloads, run_dir]
        event = run_btn.click(
            transfer,
            inputs,
            outputs,
            api_name="transfer",
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        cancel_btn.click(None, None, None, cancels=[event], api_visibility="private")
    app.queue(default_concurrency_limit=1)
    app.cammimic_theme = theme
    return app


def launch(
    *, host: str = "127.0.0.1", port: int | None = None, settings: UISettings, block: bool = True
):
    """Start the app on ``host:port`` (a free port when None); returns the app (and its URL as ``app.local_url``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_app(settings)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        share=False,
        show_error=True,
        allowed_paths=[str(settings.runs_dir)],
        theme=app.cammimic_theme,
        quiet=not block,
        max_file_size=settings.max_upload_bytes,
    )
    return app
