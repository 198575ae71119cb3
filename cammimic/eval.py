"""``cammimic eval``: the paper's evaluation over a manifest of (reference video, user image) pairs.

Each (item, method) pair is one run directory ``DIR/runs/ID/METHOD/`` written by the method
(a :class:`EvalMethod`, registered through the ``register_eval_methods`` hook), then scored by
every selected metric (:class:`EvalMetric`, ``register_eval_metrics``). The outcome of a pair is
kept in ``DIR/pairs/ID/METHOD.json``; ``results.csv``, ``summary.csv``, ``tradeoff.png`` and
``report.html`` are rebuilt from those files after every run, so an interrupted evaluation
resumes where it stopped (finished pairs are skipped, failed ones redone). ``eval.json``
records the resolved config, methods, metrics, versions and the manifest's hash; a directory
never mixes results of two configs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy as np

from cammimic.errors import CammimicError, one_line
from cammimic.eval_report import RESULT_COLUMNS, write_outputs

__all__ = [
    "EvalItem",
    "EvalSample",
    "EvalMethod",
    "EvalMetric",
    "read_manifest",
    "evaluate",
    "DEFAULT_METHODS",
    "DEFAULT_METRICS",
    "RESULT_COLUMNS",
]

MANIFEST_COLUMNS = ("reference", "image", "prompt", "reference_prompt")
#: The longest text a manifest cell may hold: a run's config refuses longer settings.
MAX_TEXT_SETTING = 10_000
DEFAULT_METHODS = (
    "homography",
    "base",
    "motiondirector",
    "cammimic",
    "cammimic-no-usc",
    "cammimic-no-ortho",
    "cammimic-no-hg",
)
#: Metrics that need no weights and always run; dinov2/clip/xclip run when asked for (--metrics).
DEFAULT_METRICS = ("first_frame", "in_view")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@attrs.frozen
class EvalItem:
    """One manifest row: a reference video, a user image and their prompts."""

    id: str
    reference: str  #: absolute path
    image: str  #: absolute path
    prompt: str  #: t_u, the user image's prompt
    reference_prompt: str  #: t_R's content part
    row: int  #: 1-based data row in the manifest

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(eq=False)
class EvalSample:
    """What a metric sees for one (item, method) pair; frames are ``(T, H, W, 3)`` uint8 RGB."""

    item: EvalItem
    method: str
    output: np.ndarray  #: the method's output video
    image: np.ndarray  #: the user image at the output's size ``(H, W, 3)``
    weak: np.ndarray  #: the weak video: the user image moved by the reference's homographies
    weak_masks: np.ndarray  #: ``(T, H, W)`` bool: where the weak video has content
    run_dir: Path


@runtime_checkable
class EvalMethod(Protocol):
    """What an eval-method factory returns (see the ``register_eval_methods`` hook).

    An optional ``uses_backbone`` attribute (default ``True``) says whether the method runs the
    eval's backbone; when any method does, every run's ``[run] frames/width/height`` are the
    backbone's for the item (:func:`item_geometry`)."""

    name: str

    def run(self, item: EvalItem, output_dir: Path, *, config, host) -> None: ...


@runtime_checkable
class EvalMetric(Protocol):
    """What an eval-metric factory returns (see the ``register_eval_metrics`` hook)."""

    name: str
    columns: tuple[str, ...]

    def compute(self, sample: EvalSample) -> dict[str, float]: ...


# -- the manifest ---------------------------------------------------------------------------
def read_manifest(path) -> list[EvalItem]:
    """Read a CSV or JSONL manifest; every bad row is reported at once, one line each."""
    p = Path(path)
    if not p.is_file():
        raise CammimicError(
            f"manifest {p} does not exist; give a .csv or .jsonl file with columns {', '.join(MANIFEST_COLUMNS)}"
        )
    text = p.read_text(encoding="utf-8-sig")
    problems: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(
                    f"{p.name} row {n}: not valid JSON ({exc.msg} at column {exc.colno})"
                )
                continue
            if not isinstance(obj, dict):
                problems.append(
                    f"{p.name} row {n}: expected a JSON object with {', '.join(MANIFEST_COLUMNS)}"
                )
                continue
            rows.append((n, obj))
    elif p.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CammimicError(
                f"manifest {p} has no column {', '.join(missing)}; its header must name {', '.join(MANIFEST_COLUMNS)} "
                f"(and optionally id), got {', '.join(reader.fieldnames or []) or 'nothing'}"
            )
        rows = []
        try:
            for n, r in enumerate(reader, start=1):
                rows.append((n, r))
        except csv.Error as exc:
            raise CammimicError(
                f"manifest {p} row {len(rows) + 1} cannot be read as CSV ({exc}); "
                "shorten or fix that row"
            ) from None
    else:
        raise CammimicError(f"manifest {p} must be .csv or .jsonl, got '{p.suffix}'")
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for n, r in rows:
        bad = []
        for col in MANIFEST_COLUMNS:
            v = r.get(col)
            if not isinstance(v, str) or not v.strip():
                bad.append(f"column {col}: missing or empty")
            elif (
                len(v) > MAX_TEXT_SETTING
            ):  # what a run's config accepts; the report prints the prompts
                bad.append(
                    f"column {col}: {len(v)} characters long; at most {MAX_TEXT_SETTING} are accepted"
                )
        ident = r.get("id")
        ident = str(n) if ident is None or str(ident).strip() == "" else str(ident).strip()
        if not _ID.match(ident):
            bad.append(
                f"column id: '{ident}' must be letters, digits, '.', '_' or '-' (it names a folder)"
            )
        elif ident in seen:
            bad.append(
                f"column id: '{ident}' is also the id of row {seen[ident]}; ids must be unique"
            )
        paths = {}
        for col in ("reference", "image"):
            v = r.get(col)
            if col == "reference" and isinstance(v, str) and v.strip().startswith("camera:"):
                paths[col] = v.strip()  # a camera preset (cammimic.camera), checked when it runs
                continue
            if isinstance(v, str) and v.strip():
                q = Path(v.strip()).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if not q.exists() and not any(ch in v for ch in "*?["):
                    bad.append(
                        f"column {col}: {v} does not exist (relative paths are relative to {p.parent})"
                    )
                paths[col] = str(q)
        if bad:
            problems.extend(f"{p.name} row {n}, {b}" for b in bad)
            continue
        seen[ident] = n
        items.append(
            EvalItem(
                id=ident,
                reference=paths["reference"],
                image=paths["image"],
                prompt=r["prompt"].strip(),
                reference_prompt=r["reference_prompt"].strip(),
                row=n,
            )
        )
    if problems:
        raise CammimicError(
            f"manifest {p} has {len(problems)} problem(s); fix them and run again:\n  "
            + "\n  ".join(problems)
        )
    if not items:
        raise CammimicError(f"manifest {p} has no rows")
    return items


# -- plumbing shared by the executors ------------------------------------------------------
_MODELS: dict[tuple, Any] = {}  # per process: metrics are built once per worker


def _metric_instances(host, metrics: dict[str, dict[str, Any]]) -> list:
    out = []
    for name, params in metrics.items():
        key = (name, json.dumps(params, sort_keys=True))
        if key not in _MODELS:
            _MODELS[key] = host.create("eval_metric", name, params, where=" (--metrics)")
        out.append(_MODELS[key])
    return out


_BACKBONES: dict[tuple, Any] = {}  # per process: each backbone is loaded once, runs get copies


class _CachingHost:
    """The plugin host as an eval method sees it: a backbone is loaded once per worker process
    and each run gets a deep copy (LoRAs are injected into the copy, never into the cache).

    Costs one more copy of the weights in memory; saves reading them for every run.
    """

    def __init__(self, host):
        self._host = host

    def __getattr__(self, name):
        return getattr(self._host, name)

    def create(self, kind, name, params=None, *, where=""):
        made = self._host.create(kind, name, params, where=where)
        if kind == "backbone":
            return _CachedBackboneAdapter(
                made, (name, json.dumps(params or {}, sort_keys=True, default=str))
            )
        return made


class _CachedBackboneAdapter:
    def __init__(self, adapter, key):
        self._adapter = adapter
        self._key = key

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def load(self, *args, **kwargs):
        import copy

        key = (self._key, repr(args), repr(sorted(kwargs.items())))
        if key not in _BACKBONES:
            _BACKBONES[key] = self._adapter.load(*args, **kwargs)
        return copy.deepcopy(_BACKBONES[key])


def _with_backbone_recipe(config, host):
    """``config`` with the eval backbone's ``recipe_defaults`` (:func:`cammimic.backbones.resolve_recipe`)
    for the settings the user left unset, so every method of the eval, ``homography`` included
    (its motion estimator), runs with them; unchanged where the backbone cannot be built here."""
    from cammimic.backbones import resolve_recipe

    try:
        name, params = config.component("backbone")
        adapter = host.create("backbone", name, params, where=" ([backbone])")
    except Exception:  # noqa: BLE001 - no backbone here (e.g. homography alone without torch)
        return config
    recipe = resolve_recipe(adapter, config)
    return config.with_overrides(recipe) if recipe else config


def item_geometry(item: EvalItem, config, host) -> dict[str, Any] | None:
    """The frame count and size every method of ``item`` runs at: ``{"frames", "width", "height"}``.

    Resolved once per item from the backbone the eval uses, as a ``cammimic`` run resolves them
    (``[run] frames/width/height``, else the backbone's size and the paper's 16 frames moved to a
    count the backbone takes, at most the reference's), and given to every method, ``homography``
    included: per-pair motion grows with the frame stride, so CameraScore and the PSNR metrics
    compare like with like only on the same frames at the same size (issue 22 §5). ``{"error"}``
    when the item's inputs cannot be read (each of its pairs then fails with that line); ``None``
    when the backbone's plugin cannot be built here (then only ``homography`` can run anyway).
    """
    from cammimic.backbones import check_num_frames, fit_num_frames
    from cammimic.methods.cammimic import PAPER_NUM_FRAMES
    from cammimic.reference import resolve_reference

    run = config["run"]
    try:
        name, params = config.component("backbone")
        adapter = host.create("backbone", name, params, where=" ([backbone])")
    except Exception:  # noqa: BLE001 - no backbone here (e.g. homography alone without torch): each method's own
        return None
    try:
        width = run["width"] or adapter.default_size[0]
        height = run["height"] or adapter.default_size[1]
        if run["frames"]:
            check_num_frames(adapter, run["frames"])
            return {"frames": int(run["frames"]), "width": int(width), "height": int(height)}
        reference = resolve_reference(
            item.reference,
            size=(width, height),
            image=item.image,
            frames=lambda total: fit_num_frames(adapter, PAPER_NUM_FRAMES, total),
        )
        return {"frames": reference.num_frames, "width": int(width), "height": int(height)}
    except Exception as exc:  # noqa: BLE001 - reported on each of the item's rows
        return {"error": one_line(exc)}


def run_pair(
    item: EvalItem,
    method: str,
    out_dir: str,
    config_toml: str,
    metrics: dict[str, dict[str, Any]],
    block: tuple[str, ...] = (),
    geometry: dict[str, Any] | None = None,
    host=None,
) -> dict[str, Any]:
    """Run one (item, method) pair and score it; never raises: a failure is a row with its error.

    ``geometry`` (:func:`item_geometry`) sets the frames and size of the run; the row records
    what the run used (``frames``, ``width``, ``height``, ``frame_indices``). Top-level and
    picklable so the Ray executor can ship it to a worker; there ``host`` is ``None`` and the
    worker loads the installed plugins (entry points) itself.
    """
    import shutil

    from cammimic.config import from_dict
    from cammimic.plugins import get_host

    started = time.perf_counter()
    row: dict[str, Any] = {"id": item.id, "method": method, "status": "failed", "error": ""}
    run_dir = Path(out_dir) / "runs" / item.id / method
    try:
        import tomllib
    except ImportError:  # pragma: no cover
        import tomli as tomllib
    try:
        host = host or get_host(block=block)
        config = from_dict(tomllib.loads(config_toml))
        if geometry is not None:
            if "error" in geometry:
                raise CammimicError(geometry["error"])
            config = config.with_overrides(
                {
                    "run.frames": geometry["frames"],
                    "run.width": geometry["width"],
                    "run.height": geometry["height"],
                }
            )
        runner = host.create("eval_method", method, None, where=" (--methods)")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        runner.run(item, run_dir, config=config, host=_CachingHost(host))
        row.update(_score_row(run_dir))
        row.update(_geometry_row(run_dir))
        sample = _sample(item, method, run_dir)
        for metric in _metric_instances(host, metrics):
            values = metric.compute(sample)
            row.update({k: float(v) for k, v in values.items()})
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one failing item must not stop the others
        row["error"] = one_line(exc)
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _score_row(run_dir: Path) -> dict[str, Any]:
    score = json.loads((run_dir / "score.json").read_text())
    return {
        "camera_score": score.get("camera_score"),
        "camera_score_paper": score.get("camera_score_paper"),
        "valid": bool(score.get("valid", True)),
        "reference_fallbacks": score.get("reference_fallbacks"),
        "output_fallbacks": score.get("generated_fallbacks"),
        "num_pairs": score.get("num_pairs"),
    }


def _geometry_row(run_dir: Path) -> dict[str, Any]:
    """The frames and size the run used, from its run.json (the reference's frame indices too)."""
    run = json.loads((run_dir / "run.json").read_text())
    indices = (run.get("reference") or {}).get("indices") or []
    return {
        "frames": run.get("num_frames"),
        "width": run.get("width"),
        "height": run.get("height"),
        "frame_indices": " ".join(str(int(i)) for i in indices),
    }


def _sample(item: EvalItem, method: str, run_dir: Path) -> EvalSample:
    from cammimic.io import read_image, read_video
    from cammimic.methods.homography import transfer_homography
    from cammimic.motion import MotionEstimate

    output = read_video(run_dir / "output.mp4").frames
    h, w = output.shape[1:3]
    image = read_image(item.image, size=(w, h))
    ref_motion = MotionEstimate.from_json(
        json.loads((run_dir / "motion.json").read_text())["reference"]
    )
    weak = transfer_homography(image, ref_motion, fill="black")
    return EvalSample(
        item=item,
        method=method,
        output=output,
        image=image,
        weak=np.asarray(weak.frames),
        weak_masks=np.asarray(weak.masks, bool),
        run_dir=run_dir,
    )


# -- executors ------------------------------------------------------------------------------
def _local(tasks, submit_args, on_result: Callable[[dict], None], host) -> None:
    for args in tasks:
        on_result(run_pair(*submit_args(args), host=host))


def _ray(
    tasks, submit_args, on_result, *, address: str | None, num_cpus: int | None, num_gpus: float
) -> None:
    try:
        import ray
    except ImportError:
        raise CammimicError(
            '--executor ray needs Ray, which is not installed: pip install "cammimic[ray]"'
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            else:
                ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
        except Exception as exc:  # noqa: BLE001
            raise CammimicError(
                f"could not start or join Ray{' at ' + address if address else ''}: {one_line(exc)}"
            ) from exc
    try:
        remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=3)(run_pair)
        pending = {remote.remote(*submit_args(a)): a for a in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                args = pending.pop(ref)
                try:
                    on_result(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - a worker that died after its retries
                    item, method = args
                    on_result(
                        {
                            "id": item.id,
                            "method": method,
                            "status": "failed",
                            "error": one_line(exc),
                            "seconds": 0.0,
                        }
                    )
    finally:
        if started_here:
            ray.shutdown()


# -- the command ----------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    from cammimic.io import write_text

    write_text(path, text)


def evaluate(
    manifest,
    output_dir,
    *,
    methods=DEFAULT_METHODS,
    metrics: dict[str, dict[str, Any]] | None = None,
    config=None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    ray_num_gpus: float | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    host=None,
) -> dict[str, Any]:
    """Evaluate ``methods`` on every manifest item; returns ``{"ran", "skipped", "failed", "files"}``.

    ``metrics`` maps metric name to its parameters (e.g. ``{"dinov2": {"weights": DIR}}``);
    the weight-free :data:`DEFAULT_METRICS` are always added. ``config``: a
    :class:`~cammimic.config.Config` or TOML path, the settings of every run (seed, frames,
    size, backbone, steps...). ``ray_num_gpus``: GPUs per Ray task (default: 1 when CUDA is
    present, else 0).
    """
    from cammimic import __version__
    from cammimic.config import Config, load_config
    from cammimic.plugins import get_host

    config = config if isinstance(config, Config) else load_config(config)
    host = host or get_host(block=config["plugins"]["block"])
    items = read_manifest(manifest)
    methods = [
        m.strip()
        for m in (methods.split(",") if isinstance(methods, str) else methods)
        if m.strip()
    ]
    if not methods:
        raise CammimicError("--methods is empty; name at least one, e.g. homography,cammimic")
    if len(set(methods)) != len(methods):
        raise CammimicError(f"--methods names a method twice: {','.join(methods)}")
    for m in methods:
        host.get("eval_method", m, where=" (--methods)")
    metrics = {**{m: {} for m in DEFAULT_METRICS}, **(metrics or {})}
    for name in metrics:
        host.get("eval_metric", name, where=" (--metrics)")
    # Build every metric here once: a missing weight folder or an offline Hub id fails now, in
    # one line, before any run starts.
    _metric_instances(host, metrics)
    if executor not in ("local", "ray"):
        raise CammimicError(f"--executor '{executor}' is unknown. Try one of ['local', 'ray']")

    out = Path(output_dir)
    # The backbone's own settings (mini: step counts, ranks, estimator) where the user set none,
    # resolved here once: each run re-reads the whole config below, where every key looks set.
    config = _with_backbone_recipe(config, host)
    config_toml = config.to_toml()
    settings = {"config": config_toml, "methods": sorted(methods), "metrics": metrics}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    eval_json = out / "eval.json"
    if out.exists() and not out.is_dir():
        raise CammimicError(f"--output {out} is a file, not a folder; give a new or empty folder")
    if eval_json.exists():
        from cammimic.eval_report import read_pair

        previous = read_pair(eval_json, "eval record")
        if previous.get("fingerprint") != fingerprint:
            raise CammimicError(
                f"{out} holds results of a different evaluation (config, methods or metrics differ from {eval_json}); "
                "give a new --output, or the same settings to resume"
            )
    elif out.exists() and any(f.name != LOCK for f in out.iterdir()):
        raise CammimicError(
            f"{out} exists and is not an eval directory (no eval.json); give a new or empty --output"
        )
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        return _evaluate(
            out,
            lock,
            items,
            methods,
            metrics,
            config,
            config_toml,
            fingerprint,
            eval_json,
            manifest,
            executor,
            ray_address,
            ray_num_cpus,
            ray_num_gpus,
            progress,
            echo,
            host,
            __version__,
        )
    finally:
        lock.close()


LOCK = ".eval.lock"


def _lock(out: Path):
    """An exclusive lock on ``out`` for this process (released when the file closes, or the process dies)."""
    f = open(out / LOCK, "a+")  # noqa: SIM115 - held open for the whole evaluation
    try:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - no flock (Windows): no lock
        pass
    except OSError:
        f.close()
        raise CammimicError(
            f"another cammimic eval is writing to {out} (it holds {out / LOCK}); wait for it "
            "to finish, or give another --output"
        ) from None
    return f


def _inputs(item: EvalItem) -> dict[str, Any]:
    """What a pair's results depend on in the manifest: the files' hashes (a preset's text) and prompts."""
    from cammimic.io.files import sha256

    ref = item.reference if item.reference.startswith("camera:") else sha256(item.reference)
    return {
        "reference": ref,
        "image": sha256(item.image),
        "prompt_sha256": _text_hash(item.prompt),
        "reference_prompt_sha256": _text_hash(item.reference_prompt),
    }


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _evaluate(
    out,
    lock,
    items,
    methods,
    metrics,
    config,
    config_toml,
    fingerprint,
    eval_json,
    manifest,
    executor,
    ray_address,
    ray_num_cpus,
    ray_num_gpus,
    progress,
    echo,
    host,
    __version__,
):
    from cammimic.eval_report import read_pair
    from cammimic.io.files import sha256

    record = {
        "fingerprint": fingerprint,
        "cammimic_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": _versions(),
        "plugins": {
            kind: {n: host.component_record(kind, n) for n in names}
            for kind, names in (("eval_method", methods), ("eval_metric", list(metrics)))
        },
        "manifest": {
            "path": str(Path(manifest).resolve()),
            "sha256": sha256(manifest),
            "items": len(items),
        },
        "methods": methods,
        "metrics": metrics,
        "executor": executor,
        "ray": {"address": ray_address, "num_cpus": ray_num_cpus, "num_gpus_per_task": ray_num_gpus}
        if executor == "ray"
        else None,
        "config": config.data,
        "config_toml": config_toml,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write(eval_json, json.dumps(record, indent=2, default=str) + "\n")

    pairs_dir = out / "pairs"
    todo, skipped = [], 0
    inputs = {item.id: _inputs(item) for item in items}
    for item in items:
        for m in methods:
            f = pairs_dir / item.id / f"{m}.json"
            done = read_pair(f) if f.exists() else {}
            if done.get("status") == "ok" and done.get("inputs") == inputs[item.id]:
                skipped += 1
            else:
                if (
                    done.get("status") == "ok"
                ):  # finished, but on other inputs: never paired with the new ones
                    echo(
                        f"redoing item {item.id} method {m}: its reference, image or prompts changed since "
                        f"{f} was written"
                    )
                todo.append((item, m))
    if skipped:
        echo(f"resuming: skipping {skipped} finished (item, method) pair(s); {len(todo)} to run")

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="eval", unit="run")
    failed = []

    def on_result(row: dict[str, Any]) -> None:
        row["inputs"] = inputs[row["id"]]
        _atomic_write(
            pairs_dir / row["id"] / f"{row['method']}.json", json.dumps(row, indent=2) + "\n"
        )
        if row["status"] != "ok":
            failed.append(row)
            echo(f"failed: item {row['id']} method {row['method']}: {row['error']}")
        if bar is not None:
            bar.set_postfix_str(f"{row['id']}/{row['method']}", refresh=False)
            bar.update(1)

    block = tuple(config["plugins"]["block"])
    # every method of an item runs on the same frames at the same size (issue 22 §5), the backbone's
    # when a method uses one (an eval of backbone-free methods alone keeps their own: nothing to match)
    uses_backbone = any(
        getattr(host.create("eval_method", m, None), "uses_backbone", True) for m in methods
    )
    geometry = {
        item.id: item_geometry(item, config, host) if uses_backbone else None
        for item in {i.id: i for i, _ in todo}.values()
    }

    def submit_args(task):
        item, m = task
        return item, m, str(out), config_toml, metrics, block, geometry[item.id]

    try:
        if executor == "local":
            _local(todo, submit_args, on_result, host)
        else:
            num_gpus = ray_num_gpus
            if num_gpus is None:
                try:
                    import torch

                    num_gpus = 1.0 if torch.cuda.is_available() else 0.0
                except ImportError:
                    num_gpus = 0.0
            _ray(
                todo,
                submit_args,
                on_result,
                address=ray_address,
                num_cpus=ray_num_cpus,
                num_gpus=num_gpus,
            )
    finally:
        if bar is not None:
            bar.close()
    files = write_outputs(out, items, methods, metrics, host)
    return {"ran": len(todo), "skipped": skipped, "failed": len(failed), "files": files}


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in (
        "numpy",
        "opencv-python-headless",
        "torch",
        "diffusers",
        "transformers",
        "peft",
        "ray",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
