"""The ``cammimic`` command line. Every command is a thin layer over :mod:`cammimic.api`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from cammimic import config as schema
from cammimic._version import __version__
from cammimic.errors import CammimicError

CONFIG_HELP = "TOML config file (see docs/config.md); command-line options override it."

#: option's Python name -> (the setting it overrides, the option): filled by :func:`_setting`,
#: read by :func:`_overrides`. Every option that overrides a config setting is made there.
SETTING_OPTIONS: dict[str, tuple[str, schema.Option]] = {}


def _setting(dotted: str, *, help: str | None = None, also: bool = False):
    """The click option of the setting ``"section.key"``, derived from the config schema: flag,
    type (choices, the option's lower bound), flag-ness and help. ``help`` replaces the schema's
    for a command where the option means something narrower; ``also`` adds the `run`-only text."""
    if dotted in schema.COMPONENT_OPTIONS:
        opt, default = schema.COMPONENT_OPTIONS[dotted], None
    else:
        meta = schema.field(dotted)
        opt, default = meta.metadata["option"], meta.default
    text = help or opt.help
    if also and opt.also:  # "... (default: 16)." -> "... (default: 16; --method homography: all)."
        text = text.removesuffix(").") + opt.also + ")."
    known = SETTING_OPTIONS.setdefault(opt.name, (dotted, opt))
    if known[0] != dotted:  # a mistake in the schema, caught when cammimic.cli is imported
        raise ValueError(f"{opt.flag} would override both {known[0]} and {dotted}")
    if opt.sets is not None:
        return _tagged(dotted, click.option(opt.flag, is_flag=True, default=None, help=text))
    kind: object = None
    if dotted in schema.COMPONENT_OPTIONS or isinstance(default, str):
        choices = (
            () if dotted in schema.COMPONENT_OPTIONS else schema.field(dotted).metadata["choices"]
        )
        kind = click.Choice(list(choices)) if choices else None
    elif isinstance(default, int) and not isinstance(default, bool):
        kind = click.IntRange(min=opt.min) if opt.min is not None else int
    elif isinstance(default, float):
        kind = (
            click.FloatRange(min=opt.min, min_open=opt.min_open) if opt.min is not None else float
        )
    return _tagged(dotted, click.option(opt.flag, type=kind, help=text))


def _tagged(dotted: str, decorator):
    """``decorator`` that also marks its click parameter with the setting it overrides (for the docs)."""

    def apply(f):
        f = decorator(f)
        f.__click_params__[-1].setting = dotted
        return f

    return apply


def _overrides(kw) -> dict:
    """``{"section.key": value}`` of the setting options in ``kw`` (unset ones are ``None``)."""
    out = {}
    for name, (dotted, opt) in SETTING_OPTIONS.items():
        value = kw.get(name)
        out[dotted] = (opt.sets if value else None) if opt.sets is not None else value
    return out


def _config(path, overrides):
    return schema.load_config(path).with_overrides(overrides)


def _host(config):
    from cammimic.plugins import get_host, warn_failed

    host = get_host(block=config["plugins"]["block"])
    warn_failed()
    return host


def _write_json(path: str, data) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    from cammimic.io import write_text

    write_text(path, text)
    click.echo(f"wrote {path}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cammimic")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def cli(debug):
    """Transfer the camera motion of a reference video onto your own image.

    \b
    cammimic motion VIDEO            camera motion of a video (homographies, pan/tilt/zoom/roll)
    cammimic score REF GENERATED     CameraScore: how well GENERATED follows REF's camera (lower is better)
    cammimic run REF IMAGE --prompt TEXT -o DIR
                                     move IMAGE with REF's camera motion (CamMimic)
    cammimic finetune REF IMAGE ...  Phase 1 alone: train the spatial/temporal LoRAs
    cammimic sample REF IMAGE --lora DIR ...
                                     Phase 2 alone: sample from saved LoRAs
    cammimic eval MANIFEST -o DIR    the paper's evaluation: methods x pairs, metrics, report
    cammimic plugins                 installed plugins and the components they provide
    cammimic ui                      the web app (pip install "cammimic[ui]")
    cammimic import-camera CAMS.txt -o camera.json
                                     RealEstate10K cameras as an editable camera file

    REF may also be a camera preset such as camera:zoom-in or camera:pan-left:speed=2,frames=24
    (pan-left/right, tilt-up/down, zoom-in/out, roll-cw/ccw, orbit-left/right), a camera-path
    .json file or a camera file (cammimic motion REF --camera-file); see docs/cli.md.
    """


@cli.command()
@click.argument("video", type=click.Path())
@_setting(
    "motion_estimator.name", help="Motion estimator (default: opencv; see `cammimic plugins`)."
)
@click.option("--frames", type=click.IntRange(min=2), help="Sample N frames evenly (default: all).")
@click.option(
    "--width", type=click.IntRange(min=8), help="Resize and centre-crop to this width first."
)
@click.option(
    "--height", type=click.IntRange(min=8), help="Resize and centre-crop to this height first."
)
@click.option("--json", "json_path", help="Write the motion as JSON here ('-' for stdout).")
@click.option(
    "--plot", "plot_path", type=click.Path(), help="Write the pan/tilt/zoom/roll plot here (PNG)."
)
@click.option(
    "--camera-file",
    "camera_path",
    type=click.Path(),
    help="Write the editable camera file here: per-frame pan, tilt, zoom, roll (authoritative) and the "
    "exact homographies; `run` takes it as REF.",
)
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
def motion(video, estimator, frames, width, height, json_path, plot_path, camera_path, config_path):
    """Estimate the camera motion of VIDEO as frame-to-frame homographies."""
    from cammimic.api import estimate_motion
    from cammimic.trajectory import plot_trajectories, summarize

    if (width is None) != (height is None):
        raise CammimicError("give both --width and --height, or neither")
    config = _config(config_path, _overrides({"estimator": estimator}))
    host = _host(config)
    name, params = config.component("motion_estimator")
    size = (width, height) if width else None
    result = estimate_motion(
        video, estimator=name, frames=frames, size=size, params=params, host=host
    )
    if json_path:
        data = result.to_json()
        data["trajectory"] = summarize(result)
        data["cammimic_version"] = __version__
        data["config"] = {k: v for k, v in config.data.items() if v is not None}
        _write_json(json_path, data)
    if plot_path:
        plot_trajectories(plot_path, {Path(video).name: result})
        click.echo(f"wrote {plot_path}", err=True)
    if camera_path:
        from cammimic.camera_file import to_camera_file

        source = {
            "reference": str(video),
            "estimator": result.estimator,
            "cammimic_version": __version__,
        }
        _write_json(camera_path, to_camera_file(result, source=source))
    if json_path != "-":
        cum = summarize(result)["cumulative"]
        click.echo(
            f"{result.num_frames} frames at {result.width}x{result.height}, estimator {result.estimator}: "
            f"pan {cum['pan'][-1]:+.3f}, tilt {cum['tilt'][-1]:+.3f}, zoom {cum['zoom'][-1]:.3f}x, "
            f"roll {cum['roll'][-1]:+.2f} deg (total, first to last frame)"
        )
        for f in result.fallbacks:
            click.echo(f"fallback: pair {f.pair}: {f.reason}; used {f.used}", err=True)


@cli.command()
@click.argument("reference", type=click.Path())
@click.argument("generated", type=click.Path())
@_setting("motion_estimator.name")
@click.option(
    "--frames",
    type=click.IntRange(min=2),
    help="Sample both videos to N frames (default: the shorter's count).",
)
@_setting("score.variant")
@click.option(
    "--json",
    "json_path",
    help="Write the score and both motions' summary as JSON ('-' for stdout).",
)
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
def score(reference, generated, estimator, frames, variant, json_path, config_path):
    """CameraScore of GENERATED against REFERENCE: lower means closer camera motion."""
    from cammimic.api import score as score_api

    config = _config(config_path, _overrides({"estimator": estimator, "variant": variant}))
    host = _host(config)
    name, params = config.component("motion_estimator")
    result = score_api(
        reference,
        generated,
        estimator=name,
        frames=frames,
        variant=config["score"]["variant"],
        params=params,
        host=host,
        max_fallback_share=config["score"]["max_fallback_share"],
    )
    if json_path:
        data = result.to_json()
        data["cammimic_version"] = __version__
        data["config"] = {k: v for k, v in config.data.items() if v is not None}
        _write_json(json_path, data)
    if json_path != "-":
        click.echo(result.summary())


def _options(*decorators):
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _io_options_for(with_homography: bool):
    """Inputs and outputs; `run` also documents the homography method's defaults."""
    return _options(
        click.argument("reference", type=click.Path()),
        click.argument("image", type=click.Path()),
        click.option(
            "-o",
            "--output",
            "output_dir",
            required=True,
            type=click.Path(),
            help="Run directory to create.",
        ),
        _setting("run.prompt"),
        _setting("run.reference_prompt"),
        _setting("run.frames", also=with_homography),
        _setting("run.width", also=with_homography),
        _setting("run.height", also=with_homography),
        _setting("run.fps"),
        _setting("motion_estimator.name"),
        _setting("homography.fill"),
        _setting("motion.strength"),
        _setting("motion.speed"),
        _setting("motion.reverse"),
        _setting("motion.smooth"),
        _setting("run.seed"),
        _setting("backbone.name"),
        _setting("backbone.weights"),
        _setting("run.device"),
        _setting("run.dtype"),
        click.option(
            "--overwrite", is_flag=True, help="Replace an existing non-empty output directory."
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
        click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP),
    )


_io_options = _io_options_for(True)
_method_io_options = _io_options_for(False)
_finetune_options = _options(
    _setting("finetune.stage1_steps"),
    _setting("finetune.stage2_steps"),
    _setting("finetune.learning_rate"),
    _setting("lora.spatial_rank"),
    _setting("lora.temporal_rank"),
    _setting("finetune.stage2"),
    _setting("finetune.orthogonality"),
    _setting("finetune.gradient_checkpointing"),
    click.option(
        "--resume",
        is_flag=True,
        help="Continue an interrupted finetuning from OUTPUT.checkpoints/.",
    ),
)
_sample_options = _options(
    _setting("sampling.steps"),
    _setting("sampling.guidance_scale"),
    _setting("sampling.scheduler"),
    click.option(
        "--guidance-weight",
        type=click.FloatRange(min=0),
        help="λ_G of the homography guidance (default: 0.3).",
    ),
    click.option(
        "--no-guidance",
        is_flag=True,
        default=None,
        help="Ablation: sample without homography guidance.",
    ),
    _setting("noise.name"),
    _setting("run.candidates"),
    _setting("sampling.window_overlap"),
    _setting("output.gif"),
)


def _method_config(kw, method=None):
    overrides = _overrides(kw)
    weights = overrides.pop("backbone.weights")
    config = _config(kw["config_path"], {**overrides, "run.method": method or kw.get("method")})
    extra = {}
    if weights:  # after backbone.name, which drops the file's parameters of another backbone
        extra["backbone.weights"] = weights
    if kw.get("no_guidance"):
        extra["guidance"] = [{"name": "none"}]
    elif kw.get("guidance_weight") is not None:
        terms = [dict(t) for t in config["guidance"]]
        if not any(t["name"] == "homography" for t in terms):
            raise CammimicError(
                '--guidance-weight sets the homography guidance, but the config has no [[guidance]] "homography"'
            )
        extra["guidance"] = [
            t | {"weight": kw["guidance_weight"]} if t["name"] == "homography" else t for t in terms
        ]
    return config.with_overrides(extra) if extra else config


def _report(result) -> None:
    m = result.manifest
    score = ""
    if "camera_score" in m:
        fb = m.get("camera_score_fallbacks", {})
        fbs = f"; fallbacks: reference {fb.get('reference')}/{fb.get('pairs')}, output {fb.get('generated')}/{fb.get('pairs')}"
        score = (
            f": CameraScore {result.camera_score:.6g} ({m['camera_score_variant']}{fbs})"
            if m.get("camera_score_valid", True)
            else f": CameraScore invalid: {m['camera_score_reason']}{fbs}"
        )
    click.echo(
        f"wrote {result.output_dir}/ ({m['num_frames']} frames, {m['width']}x{m['height']}, {m['seconds']:.1f} s){score}"
    )
    for c in m.get("candidates", ()):  # best of N: one line per candidate
        figure = f"{c['camera_score']:.6g}" if c["camera_score_valid"] else "invalid"
        ssim = "—" if c.get("ssim_first") is None else f"{c['ssim_first']:.3f}"
        click.echo(
            f"candidate seed {c['seed']}: CameraScore {figure}, first-frame SSIM {ssim}, "
            f"{c['seconds']:.1f} s{' (kept)' if c['kept'] else ''}"
        )
    for f in m["fallbacks"]:
        click.echo(
            f"fallback: reference pair {f['pair']}: {f['reason']}; used {f['used']}", err=True
        )


@cli.command()
@_io_options
@_setting("run.method")
@_finetune_options
@_sample_options
def run(**kw):
    """Move IMAGE with the camera motion of REFERENCE and write the results to --output.

    \b
    cammimic run reference.mp4 scene.jpg --prompt "a mountain village" \\
        --reference-prompt "a rocket launch" --weights /models/zeroscope_v2_576w -o out/run1
    """
    from cammimic.api import transfer

    config = _method_config(kw)
    _check_method_options(config, kw)
    host = _host(config)
    result = transfer(
        kw["reference"],
        kw["image"],
        kw["output_dir"],
        config=config,
        overwrite=kw["overwrite"],
        resume=kw["resume"],
        progress=not kw["quiet"],
        host=host,
    )
    _report(result)


def _check_method_options(config, kw) -> None:
    if config["run"]["method"] != "homography":
        return
    given = [
        name
        for name in (
            "prompt",
            "reference_prompt",
            "weights",
            "backbone",
            "stage1_steps",
            "stage2_steps",
            "steps",
            "guidance_scale",
            "resume",
            "candidates",
            "window_overlap",
        )
        if kw.get(name)
    ]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise CammimicError(
            f"{flag} has no effect with --method homography (it warps the image, no diffusion); drop it or use --method cammimic"
        )


@cli.command()
@_method_io_options
@_finetune_options
def finetune(**kw):
    """Phase 1 alone: train the spatial and temporal LoRAs on REFERENCE and IMAGE.

    Writes lora/spatial.safetensors, lora/temporal.safetensors, lora/layers.json, losses.csv,
    weak.mp4, config.toml and run.json; `cammimic sample --lora DIR` samples with them.
    """
    from cammimic.api import finetune as finetune_api

    config = _method_config(kw, "cammimic")
    host = _host(config)
    result = finetune_api(
        kw["reference"],
        kw["image"],
        kw["output_dir"],
        config=config,
        overwrite=kw["overwrite"],
        resume=kw["resume"],
        progress=not kw["quiet"],
        host=host,
    )
    _report(result)


@cli.command()
@_method_io_options
@click.option(
    "--lora",
    "lora_dir",
    type=click.Path(),
    help="A run directory (or its lora/ folder) holding spatial.safetensors and temporal.safetensors; the backbone, weights, size and frames its run.json records are used unless given.",
)
@click.option("--spatial-lora", type=click.Path(), help="Spatial LoRA file (overrides --lora's).")
@click.option(
    "--temporal-lora",
    type=click.Path(),
    help="Temporal LoRA file (overrides --lora's); may come from another run.",
)
@click.option(
    "--allow-other-base",
    is_flag=True,
    help="Load LoRAs trained on other weights of the same architecture.",
)
@_setting("sampling.spatial_scale")
@_setting("sampling.temporal_scale")
@_sample_options
def sample(**kw):
    """Phase 2 alone: sample IMAGE with REFERENCE's camera motion from saved LoRAs."""
    from cammimic.api import sample as sample_api

    config = _method_config(kw, "cammimic")
    lora = {"spatial": kw["spatial_lora"], "temporal": kw["temporal_lora"]}
    if kw["lora_dir"]:
        base = Path(kw["lora_dir"])
        base = base / "lora" if (base / "lora").is_dir() else base
        for name in lora:
            lora[name] = lora[name] or str(base / f"{name}.safetensors")
        config = _recorded_settings(
            config, base.parent if base.name == "lora" else base, kw.get("backbone")
        )
    if not (lora["spatial"] and lora["temporal"]):
        raise CammimicError(
            "give --lora RUN_DIR, or both --spatial-lora FILE and --temporal-lora FILE"
        )
    host = _host(config)
    result = sample_api(
        kw["reference"],
        kw["image"],
        kw["output_dir"],
        spatial_lora=lora["spatial"],
        temporal_lora=lora["temporal"],
        allow_other_base=kw["allow_other_base"],
        config=config,
        overwrite=kw["overwrite"],
        progress=not kw["quiet"],
        host=host,
    )
    _report(result)


@cli.command("eval")
@click.argument("manifest", type=click.Path())
@click.option(
    "--output",
    "-o",
    "output_dir",
    required=True,
    type=click.Path(),
    help="The eval directory (results, runs, report); re-run with the same settings to resume.",
)
@click.option(
    "--methods",
    default=",".join(
        (
            "homography",
            "base",
            "motiondirector",
            "cammimic",
            "cammimic-no-usc",
            "cammimic-no-ortho",
            "cammimic-no-hg",
        )
    ),
    show_default=True,
    help="Comma-separated eval methods (see `cammimic plugins`).",
)
@click.option(
    "--metrics",
    "metric_names",
    default="",
    help="Metrics besides the weight-free first_frame and in_view, comma-separated: dinov2, clip, xclip.",
)
@click.option(
    "--metric-weights",
    multiple=True,
    metavar="METRIC=ID_OR_DIR",
    help="Weights of a metric by Hub id or local folder, e.g. dinov2=/models/dinov2-base (repeatable; implies the metric).",
)
@_setting("backbone.name", help="Backbone of the diffusion methods (default: the config's).")
@_setting("backbone.weights", help="Backbone weights: a Hub id or a local diffusers folder.")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: in this process; ray: one Ray task per (item, method).",
)
@click.option("--ray-address", help="Join this Ray cluster (default: start Ray locally).")
@click.option(
    "--ray-num-cpus",
    type=click.IntRange(min=1),
    help="CPUs of a locally started Ray (default: all).",
)
@click.option(
    "--ray-num-gpus",
    type=click.FloatRange(min=0),
    help="GPUs per Ray task (default: 1 when CUDA is present, else 0).",
)
@_setting("run.seed", help="Seed of every run (default: the config's).")
@_setting(
    "noise.name",
    help="Initial noise of every diffusion method's sampling (default: the config's, iid); "
    "a method that names its own (base-warped-noise) keeps it.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_command(
    manifest,
    output_dir,
    methods,
    metric_names,
    metric_weights,
    backbone,
    weights,
    config_path,
    executor,
    ray_address,
    ray_num_cpus,
    ray_num_gpus,
    seed,
    noise,
    quiet,
):
    """Evaluate methods on every (reference, image) pair of MANIFEST (CSV or JSONL with columns
    reference, image, prompt, reference_prompt and optional id): CameraScore, scene and text
    metrics, results.csv, summary.csv, tradeoff.png and report.html in --output.

    \b
    cammimic eval pairs.csv -o out/eval --methods homography,cammimic --weights /models/zeroscope \\
        --metric-weights dinov2=/models/dinov2-base --metric-weights clip=/models/clip-vit-base-patch32
    """
    from cammimic.eval import evaluate

    config = _config(config_path, _overrides({"backbone": backbone, "seed": seed, "noise": noise}))
    if weights:
        config = config.with_overrides({"backbone.weights": weights})
    metrics: dict = {m.strip(): {} for m in metric_names.split(",") if m.strip()}
    for spec in metric_weights:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise CammimicError(
                f"--metric-weights '{spec}' must be METRIC=ID_OR_DIR, e.g. dinov2=/models/dinov2-base"
            )
        metrics.setdefault(name.strip(), {})["weights"] = value.strip()
    host = _host(config)
    result = evaluate(
        manifest,
        output_dir,
        methods=methods,
        metrics=metrics,
        config=config,
        executor=executor,
        ray_address=ray_address,
        ray_num_cpus=ray_num_cpus,
        ray_num_gpus=ray_num_gpus,
        progress=not quiet,
        echo=lambda line: click.echo(line, err=True),
        host=host,
    )
    click.echo(
        f"wrote {output_dir}/ ({result['ran']} run, {result['skipped']} skipped as finished, "
        f"{result['failed']} failed): results.csv, summary.csv, tradeoff.png, report.html"
    )
    if result["failed"]:
        raise CammimicError(
            f"{result['failed']} (item, method) pair(s) failed; see results.csv, fix them and re-run to redo only those"
        )


def _recorded_settings(config, run_dir: Path, given_backbone: str | None = None):
    """What RUN_DIR/run.json records (backbone, weights, size, frames) for what the user left unset.

    ``given_backbone``: ``--backbone`` as typed (``None`` when absent); a backbone the user names
    is kept even if it is the default one, so LoRAs of another architecture are refused, not
    silently loaded onto the recorded backbone."""
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        backbone = run["components"]["backbone"]
        recorded = {
            "backbone.name": str(backbone["name"]),
            "backbone.weights": str(backbone["weights"]),
            "run.width": int(run["width"]),
            "run.height": int(run["height"]),
            "run.frames": int(run["num_frames"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return config  # not a run directory: nothing recorded to reuse
    name, params = config.component("backbone")
    # without --backbone the config's name may be the default (zeroscope): take the recorded one
    same_backbone = name == recorded["backbone.name"] or (
        name == "zeroscope" and not given_backbone
    )
    use = {}
    if same_backbone:
        use["backbone.name"] = recorded["backbone.name"]
        if "weights" not in params:
            use["backbone.weights"] = recorded["backbone.weights"]
    for key in ("run.width", "run.height", "run.frames"):
        section, field = key.split(".")
        if not config[section][field]:
            use[key] = recorded[key]
    if use:
        shown = ", ".join(f"{k.split('.')[1]} {v}" for k, v in use.items())
        click.echo(f"using {shown} recorded in {run_dir / 'run.json'}", err=True)
    return config.with_overrides(use)


@cli.command("import-camera")
@click.argument("cameras", type=click.Path())
@click.option(
    "-o",
    "--output",
    "output_path",
    required=True,
    help="The camera file to write (.json; '-' for stdout).",
)
@click.option(
    "--width",
    type=click.IntRange(min=8),
    default=576,
    show_default=True,
    help="Width of the video it is for.",
)
@click.option(
    "--height",
    type=click.IntRange(min=8),
    default=320,
    show_default=True,
    help="Height of the video it is for.",
)
@click.option(
    "--depth",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Distance of the scene plane ahead of frame 0's camera, in the file's translation units "
    "(inf: rotation only).",
)
@click.option("--frames", type=click.IntRange(min=2), help="Sample N frames evenly (default: all).")
def import_camera(cameras, output_path, width, height, depth, frames):
    """Turn a RealEstate10K camera file (CameraCtrl, CamI2V) into an editable camera file.

    CAMERAS is the clip's .txt: its URL, then per frame `timestamp fx fy cx cy k1 k2` and the 3x4
    world-to-camera matrix. Each frame becomes the homography of a scene plane --depth ahead.
    """
    from cammimic.camera_file import read_re10k

    data = read_re10k(cameras, width=width, height=height, depth=depth, frames=frames)
    _write_json(output_path, data)
    if output_path != "-":
        last = data["frames"][-1]
        click.echo(
            f"{len(data['frames'])} frames at {width}x{height}: pan {last['pan']:+.3f}, tilt {last['tilt']:+.3f}, "
            f"zoom {last['zoom']:.3f}x, roll {last['roll']:+.2f} deg (frame 0 to last); "
            f"cammimic run {output_path} IMAGE ... uses it"
        )


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on (0.0.0.0: every interface).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port (default: 7860, or the next free one)."
)
@click.option(
    "--runs-dir",
    default="cammimic-runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where each run gets its own run directory.",
)
@click.option(
    "--method",
    type=click.Choice(["homography", "cammimic"]),
    help="Method selected at start (default: cammimic with --weights, else homography).",
)
@click.option(
    "--backbone",
    help="Backbone selected at start (default: $CAMMIMIC_UI_BACKBONE, else mini where installed, else zeroscope).",
)
@click.option(
    "--weights",
    help="Backbone weights filled in at start: a local diffusers-layout folder or a Hub id.",
)
@click.option(
    "--weights-dir",
    "weights_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A folder whose sub-folders web clients may name as weights (repeatable; default: none, so "
    "clients may name only --weights or an --allow-hub-id).",
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=50,
    show_default=True,
    help="Largest upload a web client may send, in MB.",
)
@click.option(
    "--allow-hub-id",
    "hub_ids",
    multiple=True,
    metavar="OWNER/NAME",
    help="A Hub id web clients may name as weights (repeatable; default: none, so clients never make the "
    "server download a repository you did not list).",
)
def ui(host, port, runs_dir, method, backbone, weights, weights_dirs, max_upload_mb, hub_ids):
    """Start the web app (Gradio): upload a reference video or a camera file, or pick a camera preset; upload an
    image; run.

    Needs `pip install "cammimic[ui]"`. It also serves an API endpoint named `transfer`
    (docs/ui.md shows how to call it with gradio_client).
    """
    from cammimic.ui import UISettings, default_backbone, is_hub_id, launch, require_gradio

    require_gradio()
    for hub_id in hub_ids:
        if not is_hub_id(hub_id):
            raise CammimicError(
                f"--allow-hub-id '{hub_id}' is not a Hub id; give OWNER/NAME, e.g. "
                "cerspense/zeroscope_v2_576w"
            )
    if (
        weights and Path(weights).expanduser().is_dir()
    ):  # the child runs in an empty folder: an absolute path
        weights = str(Path(weights).expanduser().resolve())
    settings = UISettings(
        runs_dir=runs_dir,
        backbone=backbone or default_backbone(),
        weights=weights or "",
        method=method or ("cammimic" if weights else "homography"),
        weights_dirs=weights_dirs,
        max_upload_bytes=int(max_upload_mb * 2**20),
        hub_ids=hub_ids,
    )
    click.echo(f"runs go to {settings.runs_dir}/", err=True)
    launch(host=host, port=port, settings=settings)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Output JSON.")
def plugins(as_json):
    """List installed plugins, their versions, hooks and components."""
    from cammimic.plugins import get_host

    host = get_host()
    problems: list[str] = []
    items = host.plugins(problems)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for p in items:
        version = f" {p['version']}" if p.get("version") else ""
        dist = f" ({p['distribution']}{version})" if p.get("distribution") else ""
        click.echo(f"{p['name']}{dist}")
        if p.get("error"):
            click.echo(f"  error: {p['error']}")
            continue
        click.echo(f"  hooks: {', '.join(p['hooks'])}")
        for comp in p["components"]:
            state = "" if comp["available"] else f"  [not installed: {comp['install']}]"
            click.echo(
                f"  {comp['kind'].replace('_', ' ')} {comp['name']}: {comp['description']}{state}"
            )
            if comp.get("attention_layers_from"):
                click.echo(
                    f"    LoRA layers located by: {', then '.join(comp['attention_layers_from'])}"
                )


def _without_debug(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without the global ``--debug`` flag, and whether it was there. ``--debug`` counts
    also after the command (`cammimic run … --debug`, where click refuses it), but never as an
    option's value (`--prompt --debug`) nor after ``--``: those stay values."""
    out: list[str] = []
    found = False
    command = None
    takes_value: dict[str, int] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        if arg == "--debug":
            found = True
            i += 1
            continue
        out.append(arg)
        if command is None and not arg.startswith("-"):
            command = cli.commands.get(arg)
            if command is None:
                out += args[i + 1 :]  # an unknown command: click says so
                break
            takes_value = {
                opt: p.nargs
                for p in command.params
                if isinstance(p, click.Option) and not p.is_flag and not p.count
                for opt in (*p.opts, *p.secondary_opts)
            }
        elif arg in takes_value:  # its value(s) follow, whatever they look like
            out += args[i + 1 : i + 1 + takes_value[arg]]
            i += takes_value[arg]
        i += 1
    return out, found


def main(argv=None) -> int:
    """Entry point: one line per error, non-zero exit, traceback only with --debug."""
    args = sys.argv[1:] if argv is None else list(argv)
    args, flagged = _without_debug(args)
    debug = flagged or os.environ.get("CAMMIMIC_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="cammimic", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("Interrupted; nothing was written.", err=True)
        return 130
    except CammimicError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        return getattr(exc, "exit_code", 1)  # 130 for an interrupted finetuning
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}. Run again with --debug for the traceback "
            "and report it.",
            err=True,
        )
        return 1
