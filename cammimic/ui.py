"""``cammimic ui``: a Gradio app over the run command, and its ``transfer`` API endpoint.

Each request becomes one ``cammimic run`` in a child process writing its own run directory
under ``runs_dir``: the queue runs one at a time (one GPU), Cancel interrupts the child (which
deletes its unfinished directory, as Ctrl-C does), and the progress bars of the training and
sampling loops (tqdm on the child's stderr) drive the app's progress bar.

Gradio is imported only by :func:`build_app` (``pip install "cammimic[ui]"``); the rest of this
module (building the command, following the job, collecting the outputs) is plain Python.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from cammimic.camera import EASES, PRESETS
from cammimic.errors import CammimicError

__all__ = ["require_gradio", "UISettings", "TransferRequest", "Job", "run_command", "collect_outputs", "build_app", "launch",
           "default_backbone", "is_hub_id", "NO_PRESET", "INPUT_NAMES"]

#: The preset choice meaning "use the uploaded reference video".
NO_PRESET = "none: use the uploaded video"
METHODS = ("homography", "cammimic")
#: The preset speeds a client may ask for (the form's slider).
SPEED_RANGE = (0.25, 4.0)
#: The longest prompt (or other text) a client may send.
MAX_TEXT = 2000
#: A Hub id, ``owner/name`` (see is_hub_id).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
#: The ``transfer`` endpoint's inputs, in order (docs/ui.md documents each).
INPUT_NAMES = ("reference_video", "camera_preset", "image", "prompt", "reference_prompt", "method", "backbone",
               "weights", "frames", "width", "height", "seed", "stage1_steps", "stage2_steps", "sampling_steps",
               "speed", "ease", "motion_strength", "motion_speed", "motion_reverse", "motion_smooth", "candidates")
#: The controls on the reference's motion a client may set (the form's sliders; docs/cli.md).
MOTION_RANGES = {"motion_strength": (-2.0, 2.0), "motion_speed": (0.25, 4.0), "motion_smooth": (0.0, 5.0)}
#: The whole numbers a client may send, and their ranges (docs/ui.md); the server's time and memory
#: are shared, so these are tighter than ``cammimic run``'s. ``frames``, ``width`` and ``height`` also
#: take 0, the method's default. ``UISettings.limits`` changes them.
INT_RANGES = {"frames": (2, 128), "width": (16, 2048), "height": (16, 2048), "seed": (0, 2**63 - 1),
              "stage1_steps": (1, 1000), "stage2_steps": (1, 1000), "sampling_steps": (1, 200),
              "candidates": (1, 8)}  # best of N: N samplings of the server's time
#: 0 means "the backbone's own value" (mini's 8 frames at 64x64, 60 + 60 finetuning steps, 25 sampling steps).
_ZERO_IS_DEFAULT = ("frames", "width", "height", "stage1_steps", "stage2_steps", "sampling_steps")


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
    return "mini" if "mini" in names and _mini_weights_installed() else "zeroscope"


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
        return ["zeroscope"]


@attrs.frozen
class UISettings:
    """How the app runs: where run directories go and what the form starts with."""

    runs_dir: Path = attrs.field(converter=lambda p: Path(p).resolve())
    backbone: str = "zeroscope"
    weights: str = ""
    method: str = "homography"
    #: Extra arguments for every ``cammimic run`` (e.g. ``["--device", "cpu"]``); the child runs in
    #: an empty folder, so paths in them must be absolute.
    extra_args: tuple[str, ...] = ()
    #: Folders whose sub-folders a web client may name as weights (``cammimic ui --weights-dir``);
    #: any other server path is refused. ``weights`` itself is always allowed.
    weights_dirs: tuple[Path, ...] = attrs.field(default=(), converter=lambda ps: tuple(Path(p).resolve() for p in ps))
    #: Largest upload in bytes (Gradio's ``max_file_size``; ``cammimic ui --max-upload-mb``).
    max_upload_bytes: int = 50 * 1024 * 1024
    #: Hub ids a web client may name as weights (``cammimic ui --allow-hub-id``); default none, so a
    #: client cannot make the server download a repository the operator did not choose.
    hub_ids: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Ranges of the whole numbers a client may send, overriding :data:`INT_RANGES` by name.
    limits: dict = attrs.field(factory=dict, converter=lambda d: {**INT_RANGES, **dict(d)})


@attrs.frozen
class TransferRequest:
    """The inputs of one transfer, as the form and the API give them."""

    reference_video: str | None = None
    camera_preset: str | None = None
    image: str | None = None
    prompt: str = ""
    reference_prompt: str = ""
    method: str = "homography"
    backbone: str = ""
    weights: str = ""
    frames: int = 0  #: 0: the method's default
    width: int = 0
    height: int = 0
    seed: int = 0
    stage1_steps: int = 0  #: 0: the backbone's (mini 60, zeroscope 150)
    stage2_steps: int = 0
    sampling_steps: int = 0  #: 0: the backbone's (mini 25, zeroscope 50)
    speed: float = 1.0
    ease: str = "in-out"
    motion_strength: float = 1.0  #: [motion] controls, applied to any reference
    motion_speed: float = 1.0
    motion_reverse: bool = False
    motion_smooth: float = 0.0
    candidates: int = 1  #: best of N (cammimic): N seeds sampled, the lowest valid CameraScore kept

    def reference(self) -> str:
        """The REFERENCE argument: ``camera:PRESET:speed=..,ease=..`` or the uploaded video."""
        preset = (self.camera_preset or "").strip()
        if preset and preset != NO_PRESET:
            if preset not in PRESETS:
                raise CammimicError(f"camera preset '{preset}' is unknown; valid: {', '.join(PRESETS)}")
            if self.ease not in EASES:
                raise CammimicError(f"ease '{self.ease}' is unknown; valid: {', '.join(EASES)}")
            try:
                speed = float(self.speed)
            except (TypeError, ValueError):
                speed = math.nan
            if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:  # also refuses NaN
                raise CammimicError(f"preset speed must be between {SPEED_RANGE[0]:g} and {SPEED_RANGE[1]:g} "
                                    f"(the slider's range), got {self.speed!r}")
            return f"camera:{preset}:speed={speed:g},ease={self.ease}"
        if not self.reference_video:
            raise CammimicError("upload a reference video or pick a camera preset")
        return str(self.reference_video)


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
        raise CammimicError(f"{shown} must be {zero}between {low} and {high} on this server, "
                            f"got {v if abs(v) < 10**30 else 'a number of ' + str(v.bit_length()) + ' bits'}")
    return v


def _text(value, name: str) -> str:
    """A client's text, as one value: bounded, without NUL (argv cannot hold one)."""
    text = str(value or "").strip()
    if len(text) > MAX_TEXT:
        raise CammimicError(f"{name} is {len(text)} characters long; at most {MAX_TEXT} are accepted")
    if "\0" in text:
        raise CammimicError(f"{name} contains a NUL character; remove it")
    return text


def _client_weights(value: str, settings: UISettings) -> str:
    """The ``--weights`` of a client's value: the server's own weights, a Hub id, or a folder under
    ``settings.weights_dirs``. Anything else, present or absent, gets the same line, so a client
    cannot learn which server folders exist."""
    if not value or value == settings.weights:
        return settings.weights
    if value in settings.hub_ids and is_hub_id(value):
        return value  # the child runs in an empty folder: a Hub id never names a server folder
    path = Path(value)
    if path.is_absolute() and settings.weights_dirs:
        real = path.resolve()
        if any(real != root and real.is_relative_to(root) for root in settings.weights_dirs) and real.is_dir():
            return str(real)
    raise CammimicError(f"weights '{value[:200]}' are not available on this server; give the app's weights (\"\"), "
                        "a Hub id the server allows (cammimic ui --allow-hub-id) or a folder under a weights folder "
                        "it allows (cammimic ui --weights-dir)")


def run_command(req: TransferRequest, run_dir: Path, settings: UISettings, backbones=None) -> list[str]:
    """The ``cammimic run`` command line of a request (a list for ``subprocess``, no shell).

    Every client value travels as ``--option=VALUE`` or after ``--``, so none can become an option
    (``--output``, ``--overwrite``, ``--debug``). ``backbones``: the names a client may choose
    (default: the installed ones and ``settings.backbone``)."""
    if req.method not in METHODS:
        raise CammimicError(f"method '{req.method}' is unknown; valid: {', '.join(METHODS)}")
    if not req.image:
        raise CammimicError("upload an image (the scene to move)")
    reference, image = _text(req.reference(), "the reference"), _text(req.image, "the image")
    number = {name: _int(getattr(req, name), name, settings.limits) for name in INT_RANGES}
    cmd = [sys.executable, "-m", "cammimic", "run", f"--output={run_dir}", f"--method={req.method}",
           f"--seed={number['seed']}"]
    for name in ("frames", "width", "height"):
        if number[name]:
            cmd.append(f"--{name}={number[name]}")
    if req.method == "cammimic":
        prompt = _text(req.prompt, "the prompt")
        if not prompt:
            raise CammimicError("the cammimic method needs a prompt describing your image")
        backbone = _text(req.backbone, "the backbone") or settings.backbone
        known = sorted({settings.backbone, *(backbone_names() if backbones is None else backbones)})
        if backbone not in known:
            raise CammimicError(f"backbone '{backbone}' is unknown; valid: {', '.join(known)}")
        cmd += [f"--prompt={prompt}", f"--backbone={backbone}"]
        reference_prompt = _text(req.reference_prompt, "the reference prompt")
        if reference_prompt:
            cmd.append(f"--reference-prompt={reference_prompt}")
        weights = _client_weights(_text(req.weights, "the weights"), settings)
        if weights:
            cmd.append(f"--weights={weights}")
        for name, option in (("stage1_steps", "--stage1-steps"), ("stage2_steps", "--stage2-steps"),
                             ("sampling_steps", "--steps")):
            if number[name]:  # 0: left to the backbone (mini's own recipe, zeroscope's the paper's)
                cmd.append(f"{option}={number[name]}")
        if number["candidates"] > 1:
            cmd.append(f"--candidates={number['candidates']}")
    for name, (low, high) in MOTION_RANGES.items():
        try:
            value = float(getattr(req, name))
        except (TypeError, ValueError):
            value = math.nan
        if not low <= value <= high:  # also refuses NaN
            raise CammimicError(f"{name.replace('_', ' ')} must be between {low:g} and {high:g} (the slider's range), "
                                f"got {getattr(req, name)!r}")
        if value != {"motion_smooth": 0.0}.get(name, 1.0):
            cmd.append(f"--{name.replace('_', '-')}={value:g}")
    if req.motion_reverse is True:
        cmd.append("--motion-reverse")
    return cmd + list(settings.extra_args) + ["--", reference, image]


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
        raise CammimicError(f"the {what} is {st.st_size / 2**20:.1f} MB; this app accepts at most "
                            f"{max_bytes / 2**20:.0f} MB")
    return str(real)


#: Absolute paths left in a child's error line (after the known ones are named).
_PATH = re.compile(r"(?<![\w.~])/[^\s'\",;()\[\]]+")


def redact(line: str, names: dict[str, str]) -> str:
    """``line`` without server paths: each key of ``names`` replaced by its value, any other
    absolute path by ``<server path>``."""
    for server, shown in sorted(names.items(), key=lambda kv: -len(kv[0])):
        if server:
            line = line.replace(server, shown)
    return _PATH.sub("<server path>", line)


# tqdm on the child's stderr: "stage 1:  50%|#####     | 2/4 [00:01<00:01,  1.50it/s]"
_BAR = re.compile(r"(?P<desc>stage \d|sampling):\s*\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)")


class Job:
    """One ``cammimic run`` in a child process, followed from its stderr."""

    def __init__(self, cmd: list[str], run_dir: Path, names: dict[str, str] | None = None):
        self.run_dir = run_dir
        #: server path -> what a client may see of it, for the error line (:func:`redact`)
        self.names = {str(run_dir): run_dir.name, **(names or {})}
        self.started = time.monotonic()
        self.stage: tuple[str, int, int] | None = None
        self.lines: list[str] = []
        env = dict(os.environ, PYTHONUNBUFFERED="1", CAMMIMIC_DEBUG="0")
        # an empty working folder: a client's relative value (a Hub id) never names a server file
        self.cwd = tempfile.mkdtemp(prefix="cammimic-ui-")
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                         start_new_session=True, cwd=self.cwd)
        except BaseException:
            shutil.rmtree(self.cwd, ignore_errors=True)
            raise
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout = ""

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self.proc.stderr.read1(4096) if hasattr(self.proc.stderr, "read1") else self.proc.stderr.read(4096)
            if not chunk:
                break
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for raw in parts:
                self._line(raw.decode("utf-8", "replace"))
        if buf:
            self._line(buf.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        m = _BAR.search(line)
        if m:
            self.stage = (m["desc"], int(m["n"]), int(m["total"]))
        elif line.strip():
            self.lines.append(line.strip())

    def _close(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.cwd, ignore_errors=True)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def status(self) -> str:
        secs = time.monotonic() - self.started
        if self.stage:
            desc, n, total = self.stage
            return f"{desc}: step {n}/{total} ({secs:.0f} s)"
        return f"running ({secs:.0f} s)"

    def finish(self) -> None:
        """Wait for the child; raise its one-line error if it failed."""
        self.stdout = self.proc.stdout.read().decode("utf-8", "replace") if self.proc.stdout else ""
        self.proc.wait()
        self._reader.join(timeout=5)
        self._close()
        if self.proc.returncode != 0:
            errors = [line for line in self.lines if line.startswith("Error:")]
            line = (errors[-1][len("Error:"):].strip() if errors else
                    f"the run failed (exit {self.proc.returncode}): {' '.join(self.lines[-3:])}")
            raise CammimicError(redact(line, self.names))

    def cancel(self, grace: float = 10.0) -> None:
        """Interrupt the child as Ctrl-C would (it removes its unfinished directory), then kill it."""
        if not self.done():
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        self._close()
        if self.proc.returncode == 0:
            return
        # A killed child cannot clean up: its hidden temporary directory is ours to remove.
        for tmp in self.run_dir.parent.glob(f".{self.run_dir.name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.run_dir.with_name(self.run_dir.name + ".checkpoints"), ignore_errors=True)


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
        text = (f"**CameraScore {score['camera_score']:.4g}** ({score.get('variant')}; lower is better; "
                f"paper variant {score.get('camera_score_paper') or float('nan'):.4g}) · valid: **yes**")
    else:  # never a bare number for a score over fallbacks (cammimic.metrics)
        text = f"**CameraScore invalid**: {score.get('reason') or 'no frame pair could be compared'}"
    if "reference_fallbacks" in score:
        pairs = score.get("num_pairs", "?")
        text += (f" · fallbacks: reference {score['reference_fallbacks']}/{pairs}, "
                 f"output {score.get('generated_fallbacks')}/{pairs}")
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

    archive = shutil.make_archive(str(run_dir), "zip", root_dir=run_dir.parent, base_dir=run_dir.name)
    downloads = [p for p in (path("lora/spatial.safetensors"), path("lora/temporal.safetensors"), path("run.json"),
                             path("report.html"), archive) if p]
    return {
        "output": path("output.mp4"), "side_by_side": path("side_by_side.mp4"), "weak": path("weak.mp4"),
        "trajectory": path("trajectory.png"), "score": _score_markdown(run_dir), "downloads": downloads,
        "run_dir": str(run_dir),
    }


#: Children not yet reaped. A cancelled child may take a few seconds to stop (it saves a
#: checkpoint and removes its directory); the next request waits for it, so one runs at a time.
RUNNING: set[Job] = set()


def run_transfer(req: TransferRequest, settings: UISettings, *, poll: float = 0.3) -> Iterator[tuple[str, Any]]:
    """Run one request: yields ``("progress", (desc, n, total, status))`` while it runs, then
    ``("done", outputs)``. Closing the generator (a cancelled request) interrupts the child
    without waiting for it."""
    cmd_dir = new_run_dir(settings, req.method)
    cmd = run_command(req, cmd_dir, settings)  # a bad request fails before anything starts
    while any(not j.done() for j in list(RUNNING)):
        yield "progress", ("waiting for the previous run to stop", 0, 0, "waiting for the previous run to stop")
        time.sleep(poll)
    names = {str(settings.runs_dir): "runs"}
    for upload in (req.reference_video, req.image):
        if upload:
            names[str(upload)] = Path(upload).name
    job = Job(cmd, cmd_dir, names)
    RUNNING.add(job)
    finished = False
    try:
        while not job.done():
            desc, n, total = job.stage or ("starting", 0, 0)
            yield "progress", (desc, n, total, job.status())
            time.sleep(poll)
        job.finish()
        finished = True
    finally:
        if finished:
            RUNNING.discard(job)
        else:  # cancelled or failed: stop the child in the background, so Cancel returns at once
            def stop():
                try:
                    job.cancel()
                finally:
                    RUNNING.discard(job)

            threading.Thread(target=stop, daemon=True).start()
    yield "done", collect_outputs(cmd_dir)


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
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline

    def transfer(reference_video, camera_preset, image, prompt, reference_prompt, method, backbone, weights, frames,
                 width, height, seed, stage1_steps, stage2_steps, sampling_steps, speed, ease, motion_strength=1.0,
                 motion_speed=1.0, motion_reverse=False, motion_smooth=0.0, candidates=1, progress=gr.Progress()):
        req = TransferRequest(reference_video=reference_video, camera_preset=camera_preset, image=image, prompt=prompt or "",
                              reference_prompt=reference_prompt or "", method=method, backbone=backbone or "",
                              weights=weights or "", frames=frames, width=width, height=height, seed=seed,
                              stage1_steps=stage1_steps, stage2_steps=stage2_steps, sampling_steps=sampling_steps,
                              speed=speed, ease=ease, motion_strength=motion_strength, motion_speed=motion_speed,
                              motion_reverse=bool(motion_reverse), motion_smooth=motion_smooth,
                              candidates=candidates)
        skip = (gr.skip(),) * 7
        try:
            # Gradio already refuses files a client did not upload; this also refuses FIFOs and
            # links out of the upload folder, before anything opens them
            upload_dir = gr.utils.get_upload_folder()
            req = attrs.evolve(req, reference_video=check_upload(req.reference_video, "reference video", upload_dir,
                                                                 settings.max_upload_bytes),
                               image=check_upload(req.image, "image", upload_dir, settings.max_upload_bytes))
            for kind, value in run_transfer(req, settings):
                if kind == "progress":
                    desc, n, total, status = value
                    progress((n, total) if total else None, desc=desc)
                    yield (status, *skip)
                else:
                    name = Path(value["run_dir"]).name  # its folder under the runs folder: no server path
                    yield (f"done: {name}", value["output"], value["side_by_side"], value["weak"],
                           value["trajectory"], value["score"], value["downloads"], name)
        except CammimicError as exc:
            raise gr.Error(str(exc)) from None
        except Exception:  # noqa: BLE001 - its text may hold server paths: the log has it, the client a line
            import logging

            logging.getLogger(__name__).exception("transfer failed")
            raise gr.Error("the transfer failed unexpectedly; the server's log has the details") from None

    with gr.Blocks(title="cammimic") as app:
        gr.Markdown("# cammimic\nGive your image the camera motion of a video or of a camera preset. "
                    "`homography` warps the image (seconds, CPU); `cammimic` is the paper's method (LoRA "
                    "finetuning + guided sampling: needs backbone weights).")
        with gr.Row():
            with gr.Column():
                reference_video = gr.Video(label="Reference video (its camera motion)", sources=["upload"],
                                           elem_id="reference-video")
                camera_preset = gr.Dropdown([NO_PRESET, *PRESETS], value=NO_PRESET, label="…or a camera preset",
                                            elem_id="camera-preset")
                image = gr.Image(label="Your image (the scene)", type="filepath", sources=["upload"],
                                 elem_id="user-image")
                prompt = gr.Textbox("", label="Prompt: what your image shows (cammimic)", elem_id="prompt")
                reference_prompt = gr.Textbox("", label="Reference prompt: what the reference shows (cammimic)",
                                              elem_id="reference-prompt")
                method = gr.Radio(list(METHODS), value=settings.method, label="Method", elem_id="method")
                with gr.Row():
                    backbone = gr.Dropdown(backbones, value=settings.backbone, label="Backbone",
                                           allow_custom_value=True, elem_id="backbone")
                    weights = gr.Textbox(value=settings.weights, label="Weights (local folder or Hub id)",
                                         elem_id="weights")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    with gr.Row():
                        frames = gr.Number(0, label="Frames (0: default)", precision=0, elem_id="frames")
                        width = gr.Number(0, label="Width (0: default)", precision=0, elem_id="width")
                        height = gr.Number(0, label="Height (0: default)", precision=0, elem_id="height")
                        seed = gr.Number(0, label="Seed", precision=0, elem_id="seed")
                    with gr.Row():
                        stage1 = gr.Number(0, label="Stage 1 steps (0: the backbone's)", precision=0,
                                           elem_id="stage1-steps")
                        stage2 = gr.Number(0, label="Stage 2 steps (0: the backbone's)", precision=0,
                                           elem_id="stage2-steps")
                        steps = gr.Number(0, label="Sampling steps (0: the backbone's)", precision=0,
                                          elem_id="sampling-steps")
                        candidates = gr.Number(1, label="Candidates (best of N, cammimic)", precision=0,
                                               elem_id="candidates")
                    with gr.Row():
                        speed = gr.Slider(0.25, 4, value=1, step=0.25, label="Preset speed", elem_id="speed")
                        ease = gr.Dropdown(list(EASES), value="in-out", label="Preset ease", elem_id="ease")
                    with gr.Row():  # controls on the reference's motion, any reference (docs/ui.md)
                        m_strength = gr.Slider(-2, 2, value=1, step=0.05, label="Motion strength",
                                               elem_id="motion-strength")
                        m_speed = gr.Slider(0.25, 4, value=1, step=0.25, label="Motion speed", elem_id="motion-speed")
                        m_reverse = gr.Checkbox(False, label="Reverse motion", elem_id="motion-reverse")
                        m_smooth = gr.Slider(0, 5, value=0, step=0.5, label="Smooth motion (sigma, frames)",
                                             elem_id="motion-smooth")
                with gr.Row():
                    run_btn = gr.Button("Transfer", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", elem_id="cancel")
            with gr.Column():
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                output = gr.Video(label="Output", interactive=False, autoplay=True, loop=True, elem_id="output-video")
                side = gr.Video(label="Side by side: reference | (weak) | output", interactive=False, loop=True,
                                elem_id="side-by-side")
                weak = gr.Video(label="Weak video (cammimic)", interactive=False, elem_id="weak-video")
                trajectory = gr.Image(label="Camera trajectory", interactive=False, elem_id="trajectory")
                score = gr.Markdown(label="CameraScore", elem_id="score")
                downloads = gr.File(label="Downloads: LoRAs, run.json, report.html, run folder (zip)",
                                    file_count="multiple", interactive=False, elem_id="downloads")
                run_dir = gr.Textbox(label="Run directory (in the runs folder)", interactive=False, elem_id="run-dir")
        inputs = [reference_video, camera_preset, image, prompt, reference_prompt, method, backbone, weights, frames,
                  width, height, seed, stage1, stage2, steps, speed, ease, m_strength, m_speed, m_reverse, m_smooth,
                  candidates]
        outputs = [status, output, side, weak, trajectory, score, downloads, run_dir]
        event = run_btn.click(transfer, inputs, outputs, api_name="transfer", concurrency_limit=1,
                              concurrency_id="gpu")
        cancel_btn.click(None, None, None, cancels=[event], api_visibility="private")
    app.queue(default_concurrency_limit=1)
    app.cammimic_theme = theme
    return app


def launch(*, host: str = "127.0.0.1", port: int | None = None, settings: UISettings, block: bool = True):
    """Start the app on ``host:port`` (a free port when None); returns the app (and its URL as ``app.local_url``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_app(settings)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, share=False, show_error=True,
               allowed_paths=[str(settings.runs_dir)], theme=app.cammimic_theme, quiet=not block,
               max_file_size=settings.max_upload_bytes)
    return app

