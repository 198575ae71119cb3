"""The ``cammimic`` command line. Every command is a thin layer over :mod:`cammimic.api`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from cammimic._version import __version__
from cammimic.errors import CammimicError

CONFIG_HELP = "TOML config file (see docs/config.md); command-line options override it."


def _config(path, overrides):
    from cammimic.config import load_config

    return load_config(path).with_overrides(overrides)


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
    cammimic run REF IMAGE -o DIR    move IMAGE with REF's camera motion
    cammimic plugins                 installed plugins and the components they provide
    """


@cli.command()
@click.argument("video", type=click.Path())
@click.option("--estimator", help="Motion estimator (default: opencv; see `cammimic plugins`).")
@click.option("--frames", type=click.IntRange(min=2), help="Sample N frames evenly (default: all).")
@click.option("--width", type=click.IntRange(min=8), help="Resize and centre-crop to this width first.")
@click.option("--height", type=click.IntRange(min=8), help="Resize and centre-crop to this height first.")
@click.option("--json", "json_path", help="Write the motion as JSON here ('-' for stdout).")
@click.option("--plot", "plot_path", type=click.Path(), help="Write the pan/tilt/zoom/roll plot here (PNG).")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
def motion(video, estimator, frames, width, height, json_path, plot_path, config_path):
    """Estimate the camera motion of VIDEO as frame-to-frame homographies."""
    from cammimic.api import estimate_motion
    from cammimic.trajectory import plot_trajectories, summarize

    if (width is None) != (height is None):
        raise CammimicError("give both --width and --height, or neither")
    config = _config(config_path, {"motion_estimator.name": estimator})
    host = _host(config)
    name, params = config.component("motion_estimator")
    size = (width, height) if width else None
    result = estimate_motion(video, estimator=name, frames=frames, size=size, params=params, host=host)
    if json_path:
        data = result.to_json()
        data["trajectory"] = summarize(result)
        data["cammimic_version"] = __version__
        data["config"] = {k: v for k, v in config.data.items() if v is not None}
        _write_json(json_path, data)
    if plot_path:
        plot_trajectories(plot_path, {Path(video).name: result})
        click.echo(f"wrote {plot_path}", err=True)
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
@click.option("--estimator", help="Motion estimator (default: opencv).")
@click.option("--frames", type=click.IntRange(min=2), help="Sample both videos to N frames (default: the shorter's count).")
@click.option("--variant", type=click.Choice(["resolution_free", "paper"]), help="CameraScore variant (default: resolution_free).")
@click.option("--json", "json_path", help="Write the score and both motions' summary as JSON ('-' for stdout).")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
def score(reference, generated, estimator, frames, variant, json_path, config_path):
    """CameraScore of GENERATED against REFERENCE: lower means closer camera motion."""
    from cammimic.api import score as score_api

    config = _config(config_path, {"motion_estimator.name": estimator, "score.variant": variant})
    host = _host(config)
    name, params = config.component("motion_estimator")
    result = score_api(reference, generated, estimator=name, frames=frames, variant=config["score"]["variant"],
                       params=params, host=host)
    if json_path:
        data = result.to_json()
        data["cammimic_version"] = __version__
        data["config"] = {k: v for k, v in config.data.items() if v is not None}
        _write_json(json_path, data)
    if json_path != "-":
        click.echo(
            f"CameraScore {result.score:.6g} ({result.variant}; paper variant {result.paper_score:.6g}) "
            f"over {result.reference.num_frames} frames, estimator {result.reference.estimator}"
        )


@cli.command()
@click.argument("reference", type=click.Path())
@click.argument("image", type=click.Path())
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(), help="Run directory to create.")
@click.option("--method", type=click.Choice(["homography"]), help="Transfer method (default: homography).")
@click.option("--frames", type=click.IntRange(min=2), help="Output frames, sampled evenly from the reference (default: all).")
@click.option("--width", type=click.IntRange(min=16), help="Output width (default: the reference's).")
@click.option("--height", type=click.IntRange(min=16), help="Output height (default: the reference's).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), help="Output frame rate (default: the reference's).")
@click.option("--estimator", help="Motion estimator (default: opencv).")
@click.option("--fill", type=click.Choice(["black", "reflect", "replicate"]), help="What fills out-of-view areas.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default: 0).")
@click.option("--gif", is_flag=True, default=None, help="Also write output.gif.")
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty output directory.")
@click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
def run(reference, image, output_dir, method, frames, width, height, fps, estimator, fill, seed, gif, overwrite,
        config_path):
    """Move IMAGE with the camera motion of REFERENCE and write the results to --output."""
    from cammimic.api import transfer

    config = _config(
        config_path,
        {
            "run.method": method, "run.frames": frames, "run.width": width, "run.height": height, "run.fps": fps,
            "run.seed": seed, "motion_estimator.name": estimator, "homography.fill": fill, "output.gif": gif,
        },
    )
    host = _host(config)
    result = transfer(reference, image, output_dir, config=config, overwrite=overwrite, host=host)
    m = result.manifest
    click.echo(
        f"wrote {result.output_dir}/ ({m['num_frames']} frames, {m['width']}x{m['height']}, {m['seconds']:.1f} s): "
        f"CameraScore {result.camera_score:.6g} ({m['camera_score_variant']})"
    )
    for f in m["fallbacks"]:
        click.echo(f"fallback: reference pair {f['pair']}: {f['reason']}; used {f['used']}", err=True)


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
            click.echo(f"  {comp['kind'].replace('_', ' ')} {comp['name']}: {comp['description']}{state}")


def main(argv=None) -> int:
    """Entry point: one line per error, non-zero exit, traceback only with --debug."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args or os.environ.get("CAMMIMIC_DEBUG") == "1"
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
        return 1
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}. Run again with --debug for the traceback "
            "and report it.",
            err=True,
        )
        return 1
