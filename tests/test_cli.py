"""The command line end to end on the examples, and every bad input it handles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import clip

from cammimic.cli import main
from cammimic.config import load_config
from cammimic.errors import CammimicError
from cammimic.io import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "examples" / "reference.mp4")
SCENE = str(ROOT / "examples" / "scene.jpg")


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_a_complete_run_directory(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "--output",
        out_dir,
        "--method",
        "homography",
        "--frames",
        12,
        "--width",
        192,
        "--height",
        128,
        "--seed",
        3,
    )
    assert code == 0, err
    assert "CameraScore" in out
    names = {p.name for p in out_dir.iterdir()}
    assert names == {
        "output.mp4",
        "side_by_side.mp4",
        "trajectory.png",
        "score.json",
        "motion.json",
        "config.toml",
        "run.json",
        "report.html",
    }
    video = read_video(out_dir / "output.mp4")
    assert video.frames.shape == (12, 128, 192, 3)
    assert read_video(out_dir / "side_by_side.mp4").frames.shape == (12, 128, 384, 3)
    score = json.loads((out_dir / "score.json").read_text())
    assert score["variant"] == "resolution_free" and score["camera_score"] < 1e-4
    config = load_config(out_dir / "config.toml")
    assert (
        config["run"]["frames"],
        config["run"]["width"],
        config["run"]["height"],
        config["run"]["seed"],
    ) == (12, 192, 128, 3)
    run = json.loads((out_dir / "run.json").read_text())
    assert run["components"]["motion_estimator"]["name"] == "opencv"
    assert run["components"]["motion_estimator"]["version"]
    assert run["reference"]["indices"] == [round(i) for i in np.linspace(0, 23, 12)]
    assert (run["width"], run["height"], run["num_frames"], run["seed"]) == (192, 128, 12, 3)
    assert len(run["image"]["sha256"]) == 64
    motion = json.loads((out_dir / "motion.json").read_text())
    assert len(motion["reference"]["homographies"]) == 11


def test_default_run_keeps_the_reference_length_and_size(tmp_path, capsys):
    code, _, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "-o",
        tmp_path / "r",
        "--method",
        "homography",
        "--gif",
        "--fill",
        "reflect",
    )
    assert code == 0, err
    assert read_video(tmp_path / "r" / "output.mp4").frames.shape == (24, 256, 384, 3)
    assert (tmp_path / "r" / "output.gif").read_bytes()[:6] == b"GIF89a"


def test_homography_method_reproduces_the_truth_rendered_video(tmp_path, capsys):
    """Reference: photo A under a camera move. Truth: photo B under the same move. The method,
    given frame 0 of the truth, must re-create the truth wherever the image is in view."""
    ref_frames, h = clip("orbit", 256, 256, frames=10, name="astronaut")
    truth, _ = clip("orbit", 256, 256, frames=10, name="coffee")
    write_video(tmp_path / "ref.mp4", ref_frames, 12.0, crf=18)
    from cammimic.io import write_image

    write_image(tmp_path / "user.png", truth[0])
    from cammimic.api import transfer
    from cammimic.homography import warp_along_chain

    result = transfer(
        tmp_path / "ref.mp4", tmp_path / "user.png", tmp_path / "out", method="homography"
    )
    out = read_video(result.files["output"]).frames
    _, masks = warp_along_chain(truth[0], h)
    for k in range(10):
        inner = masks[k].copy()
        inner[:4], inner[-4:], inner[:, :4], inner[:, -4:] = False, False, False, False
        err = np.abs(out[k].astype(float) - truth[k].astype(float))[inner].mean()
        assert err < 5.0, (k, err)
    assert result.camera_score < 1e-4


def test_existing_results_are_never_clobbered(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "precious.txt").write_text("earlier result")
    code, _, err = cli(
        capsys, "run", REFERENCE, SCENE, "-o", out_dir, "--method", "homography", "--frames", 4
    )
    assert code == 1 and "already exists and is not empty" in err and "--overwrite" in err
    # a run that fails half-way with --overwrite leaves the old directory as it was
    import cammimic.methods.homography

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cammimic.methods.homography, "write_outputs", boom)
    code, _, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "-o",
        out_dir,
        "--method",
        "homography",
        "--frames",
        4,
        "--overwrite",
    )
    assert code == 1 and "disk full" in err
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert [p.name for p in out_dir.iterdir()] == ["precious.txt"]
    monkeypatch.undo()
    code, _, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "-o",
        out_dir,
        "--method",
        "homography",
        "--frames",
        4,
        "--overwrite",
    )
    assert code == 0, err
    assert not (out_dir / "precious.txt").exists() and (out_dir / "output.mp4").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_motion_json_and_plot(tmp_path, capsys):
    code, out, err = cli(
        capsys,
        "motion",
        REFERENCE,
        "--frames",
        8,
        "--json",
        tmp_path / "m.json",
        "--plot",
        tmp_path / "m.png",
    )
    assert code == 0, err
    assert "8 frames at 384x256" in out
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["estimator"] == "opencv" and (data["width"], data["height"]) == (384, 256)
    assert data["config"]["motion_estimator"] == {"name": "opencv"} and data["cammimic_version"]
    h = np.array(data["homographies"])
    assert h.shape == (7, 3, 3) and np.allclose(h[:, 2, 2], 1)
    truth = json.loads((ROOT / "examples" / "reference_motion.json").read_text())
    # 8 of 24 frames: compose the truth over each sampled interval
    from cammimic.homography import chain, corner_error

    idx = data["diagnostics"]["source"]["indices"]
    c = chain(np.array(truth["homographies"]))
    t = np.stack([c[b] @ np.linalg.inv(c[a]) for a, b in zip(idx, idx[1:])])
    assert corner_error(h, t, 384, 256).mean() < 0.5
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_motion_json_to_stdout(capsys):
    code, out, _ = cli(capsys, "motion", REFERENCE, "--frames", 3, "--json", "-")
    assert code == 0 and len(json.loads(out)["homographies"]) == 2


def test_score_orders_same_and_different_motion(tmp_path, capsys):
    same, _ = clip("pan_zoom", 256, 256, frames=8, name="coffee")
    ref, _ = clip("pan_zoom", 256, 256, frames=8, name="astronaut")
    other, _ = clip("roll", 256, 256, frames=8, name="coffee")
    for name, frames in {"ref": ref, "same": same, "other": other}.items():
        write_video(tmp_path / f"{name}.mp4", frames, 8.0)
    code, out, err = cli(
        capsys, "score", tmp_path / "ref.mp4", tmp_path / "same.mp4", "--json", tmp_path / "s.json"
    )
    assert code == 0, err
    assert out.startswith("CameraScore ")
    s_same = json.loads((tmp_path / "s.json").read_text())["camera_score"]
    code, _, _ = cli(
        capsys, "score", tmp_path / "ref.mp4", tmp_path / "other.mp4", "--json", tmp_path / "o.json"
    )
    s_other = json.loads((tmp_path / "o.json").read_text())["camera_score"]
    assert s_same * 20 < s_other


@pytest.mark.parametrize(
    "args, message",
    [
        (["motion", "missing.mp4"], "missing.mp4"),
        (["motion", "{bad}"], "bad.mp4"),
        (["motion", REFERENCE, "--estimator", "sfit"], 'motion estimator "sfit"'),
        (["motion", REFERENCE, "--frames", "100"], "--frames must be between 2 and 24"),
        (["motion", REFERENCE, "--width", "64"], "give both --width and --height"),
        (["motion", REFERENCE, "--frames", "1"], "Invalid value for '--frames'"),
        (
            ["run", REFERENCE, "missing.jpg", "-o", "{tmp}/o", "--method", "homography"],
            "missing.jpg",
        ),
        (
            [
                "run",
                REFERENCE,
                SCENE,
                "-o",
                "{tmp}/o",
                "--width",
                "101",
                "--height",
                "64",
                "--method",
                "homography",
            ],
            "must be even",
        ),
        (
            ["run", REFERENCE, SCENE, "-o", "{tmp}/o", "--method", "magic"],
            "Invalid value for '--method'",
        ),
        (
            [
                "run",
                REFERENCE,
                SCENE,
                "-o",
                "{tmp}/o",
                "--config",
                "{tmp}/c.toml",
                "--method",
                "homography",
            ],
            "unknown key 'frame' in [run]",
        ),
        (["run", REFERENCE, SCENE, "-o", "{tmp}/file.txt", "--method", "homography"], "file.txt"),
        (["run", REFERENCE, SCENE], "Missing option '-o' / '--output'"),
        (["run", REFERENCE, SCENE, "-o", "{tmp}/o"], "needs --prompt"),
        (
            ["run", REFERENCE, SCENE, "-o", "{tmp}/o", "--method", "homography", "--prompt", "x"],
            "--prompt has no effect",
        ),
        (
            ["run", REFERENCE, SCENE, "-o", "{tmp}/o", "--prompt", "x", "--backbone", "zeroscop"],
            'did you mean "zeroscope"',
        ),
        (["sample", REFERENCE, SCENE, "-o", "{tmp}/o", "--prompt", "x"], "give --lora RUN_DIR"),
        (
            ["sample", REFERENCE, SCENE, "-o", "{tmp}/o", "--prompt", "x", "--lora", "{tmp}"],
            "does not exist",
        ),
        (["score", REFERENCE, "{bad}"], "bad.mp4"),
        (["score", REFERENCE, REFERENCE, "--variant", "pixels"], "Invalid value for '--variant'"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(tmp_path, capsys, args, message):
    (tmp_path / "bad.mp4").write_text("this is not a video")
    (tmp_path / "c.toml").write_text("[run]\nframe = 3\n")
    (tmp_path / "file.txt").write_text("x")
    args = [a.format(tmp=tmp_path, bad=tmp_path / "bad.mp4") for a in args]
    code, out, err = cli(capsys, *args)
    assert code in (1, 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_errors_in_a_real_process_have_no_traceback_unless_debug(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "cammimic",
        "run",
        REFERENCE,
        str(tmp_path / "nope.jpg"),
        "-o",
        str(tmp_path / "o"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    debug = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_version():
    out = subprocess.run(
        [sys.executable, "-m", "cammimic", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "cammimic" in out.stdout


# --------------------------------------------------------------------------------------------
# Untrusted files: each one short line, nothing executed (issue 8 §1, issue 7 §5)
# --------------------------------------------------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    assert len(lines[0]) < 600, lines[0][:300]
    return lines[0]


def _copy_weights(tiny_weights, tmp_path, name):
    import shutil

    return Path(shutil.copytree(tiny_weights, tmp_path / name))


class _Payload:
    """A pickle that would create a file when loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_pickle_bin_weights_are_refused_in_one_line_and_never_run(tiny_weights, tmp_path, capsys):
    import torch

    weights = _copy_weights(tiny_weights, tmp_path, "w")
    (weights / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save(
        {"conv_in.weight": _Payload(marker)}, weights / "unet" / "diffusion_pytorch_model.bin"
    )
    code, _, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "-o",
        tmp_path / "o",
        "--prompt",
        "x",
        "--weights",
        weights,
        "--frames",
        2,
        "--width",
        64,
        "--height",
        64,
        "--device",
        "cpu",
    )
    line = _one_error_line(err)
    assert code == 1 and "a .bin (pickle) weights file holds more than tensors" in line
    assert not marker.exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "change, why",
    [
        ({"num_train_timesteps": -5}, "num_train_timesteps '-5' is not an integer in 2..100000"),
        ({"beta_schedule": "bogus"}, "bogus is not implemented"),
        ({"beta_end": "x" * 1_000_000}, "beta_end 'xxxxxxxx"),
        ({"prediction_type": "nonsense"}, "nonsense"),
    ],
)
def test_bogus_scheduler_config_is_one_line_at_load(tiny_weights, tmp_path, capsys, change, why):
    weights = _copy_weights(tiny_weights, tmp_path, "w")
    path = weights / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    code, _, err = cli(
        capsys,
        "run",
        REFERENCE,
        SCENE,
        "-o",
        tmp_path / "o",
        "--prompt",
        "x",
        "--weights",
        weights,
        "--frames",
        2,
        "--width",
        64,
        "--height",
        64,
        "--device",
        "cpu",
        "--stage1-steps",
        0,
        "--stage2-steps",
        0,
        "--steps",
        1,
        "-q",
    )
    line = _one_error_line(err)
    assert code == 1 and "scheduler config of" in line and why in line, line


@pytest.mark.parametrize("depth", [9, 500, 100_000])
def test_deeply_nested_toml_is_one_short_line(tmp_path, capsys, depth):
    config = tmp_path / "c.toml"
    config.write_text("[run]\nseed = " + "[" * depth + "]" * depth + "\n")
    code, _, err = cli(capsys, "motion", REFERENCE, "--config", config)
    assert (
        code == 1
        and "nests arrays or tables too deeply; a config needs at most 8 levels"
        in _one_error_line(err)
    )


def test_non_finite_lora_is_refused_before_any_model_loads(tmp_path, capsys):
    """issue 7 §5: a NaN LoRA gave exit 0 and a black video; now one line, before the weights load
    (the --weights folder here does not even exist)."""
    import torch
    from safetensors.torch import save_file

    lora_dir = tmp_path / "run" / "lora"
    lora_dir.mkdir(parents=True)
    layer = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    for adapter, value in (("spatial", 0.5), ("temporal", float("nan"))):
        meta = {
            "format": "cammimic-lora/1",
            "adapter": adapter,
            "backbone": "zeroscope",
            "base_model": "x",
            "fingerprint": "0" * 16,
            "rank": "1",
            "alpha": "1.0",
            "dropout": "0.0",
            "target_layers": json.dumps([layer]),
        }
        tensors = {
            f"{layer}.lora_A.weight": torch.full((1, 4), value),
            f"{layer}.lora_B.weight": torch.zeros(4, 1),
        }
        save_file(tensors, str(lora_dir / f"{adapter}.safetensors"), metadata=meta)
    code, _, err = cli(
        capsys,
        "sample",
        REFERENCE,
        SCENE,
        "-o",
        tmp_path / "o",
        "--prompt",
        "x",
        "--lora",
        tmp_path / "run",
        "--weights",
        tmp_path / "no-such-weights",
    )
    line = _one_error_line(err)
    assert code == 1 and "temporal.safetensors" in line and "holds NaN or inf values" in line


def test_offline_missing_weights_fail_fast_in_one_line(monkeypatch, tmp_path):
    """No network and nothing cached: one line within 2 s, not ~28 s of download retries."""
    import time

    pytest.importorskip("torch")
    from cammimic_unet3d.backbone import UNet3DAdapter

    from cammimic.errors import CammimicError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for key in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
    adapter = UNet3DAdapter("zeroscope", "cerspense/zeroscope_v2_576w", (576, 320), 24)
    start = time.perf_counter()
    with pytest.raises(CammimicError) as info:
        adapter.load(device="cpu")
    assert time.perf_counter() - start < 2
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(
        'zeroscope weights "cerspense/zeroscope_v2_576w" are not in the Hugging Face cache'
    )
    assert (
        "the Hub (http://127.0.0.1:1) cannot be reached" in text
        and "--weights /path/to/zeroscope_v2_576w" in text
    )


# --------------------------------------------------------------------------------------------
# The paths a newcomer copies (issue 8 §6)
# --------------------------------------------------------------------------------------------

_NO_TORCH = """
import sys
class NoTorch:  # a core install: torch (and what needs it) is not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "transformers", "peft", "kornia"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTorch())
from cammimic.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["run", "finetune"])
def test_method_on_a_core_install_gives_the_install_line_before_reading_inputs(tmp_path, command):
    args = [
        command,
        str(tmp_path / "missing.mp4"),
        str(tmp_path / "missing.jpg"),
        "-o",
        str(tmp_path / "o"),
        "--prompt",
        "x",
    ]
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, *args], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    line = out.stderr.strip()
    assert "\n" not in line, line
    assert line == (
        'Error: the cammimic method with backbone "zeroscope" needs torch, diffusers, transformers, '
        'which is not installed: pip install "cammimic[zeroscope]" (or use --method homography, '
        "which needs no torch)"
    )
    # the homography method still runs there
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            _NO_TORCH,
            "run",
            REFERENCE,
            SCENE,
            "-o",
            str(tmp_path / "h"),
            "--method",
            "homography",
            "--frames",
            "3",
            "--width",
            "64",
            "--height",
            "64",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr


def test_debug_as_an_options_value_stays_a_value(tmp_path, capsys, monkeypatch):
    """The attack (issue 21): the web app's old command line with prompt="--debug",
    reference_prompt="--debug", backbone="--output=VICTIM", weights="--overwrite". Removing every
    `--debug` turned the values into options: the run was asked to replace VICTIM."""
    import cammimic.api

    seen = {}

    def transfer(reference, image, output_dir, *, config, overwrite, **kw):
        seen.update(
            output_dir=output_dir,
            overwrite=overwrite,
            backbone=config["backbone"]["name"],
            prompt=config["run"]["prompt"],
            reference_prompt=config["run"]["reference_prompt"],
        )
        raise CammimicError("stopped by the test")

    monkeypatch.setattr(cammimic.api, "transfer", transfer)
    victim = tmp_path / "victim"
    code, _, err = cli(
        capsys,
        "run",
        "camera:zoom-in:frames=4",
        SCENE,
        "-o",
        tmp_path / "run",
        "--method",
        "cammimic",
        "--prompt",
        "--debug",
        "--backbone",
        f"--output={victim}",
        "--reference-prompt",
        "--debug",
        "--weights",
        "--overwrite",
    )
    assert code == 1 and err == "Error: stopped by the test\n"  # no traceback: --debug was a value
    assert seen == {
        "output_dir": str(tmp_path / "run"),
        "overwrite": False,
        "backbone": f"--output={victim}",
        "prompt": "--debug",
        "reference_prompt": "--debug",
    }


def test_debug_is_accepted_after_the_command(capsys):
    from cammimic.errors import CammimicError

    with pytest.raises(CammimicError, match="does not exist"):
        main(["motion", "missing.mp4", "--debug"])
    code = main(["motion", "missing.mp4"])
    assert code == 1 and "does not exist" in capsys.readouterr().err


def test_finetune_and_sample_help_do_not_describe_the_homography_method():
    from click.testing import CliRunner

    from cammimic.cli import cli as group

    for command in ("finetune", "sample"):
        text = " ".join(CliRunner().invoke(group, [command, "--help"]).output.split())
        assert "homography: all" not in text and "--method homography" not in text, command
    assert "--method homography: all" in " ".join(
        CliRunner().invoke(group, ["run", "--help"]).output.split()
    )


@pytest.mark.parametrize(
    "args, line, code",
    [  # captured from the CLI before its setting options were derived from the config schema (issue 11)
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--frames", "1"],
            "Error: Invalid value for '--frames': 1 is not in the range x>=2. (see `cammimic run --help`)",
            2,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--frames", "2000"],
            "Error: [run] frames (command line) = 2000 is out of range [0, 1000]",
            1,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--fill", "blak"],
            "Error: Invalid value for '--fill': 'blak' is not one of 'black', 'reflect', 'replicate'. (see `cammimic run --help`)",
            2,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--lr", "2"],
            "Error: [finetune] learning_rate (command line) = 2.0 is out of range [0, 1]",
            1,
        ),
        (
            ["finetune", "r.mp4", "i.png", "-o", "{tmp}/o", "--lr", "0"],
            "Error: Invalid value for '--lr': 0.0 is not in the range x>0. (see `cammimic finetune --help`)",
            2,
        ),
        (
            ["sample", "r.mp4", "i.png", "-o", "{tmp}/o", "--lora", "x", "--spatial-scale", "11"],
            "Error: [sampling] spatial_scale (command line) = 11.0 is out of range [-10, 10]",
            1,
        ),
        # [sampling] steps 0 means the backbone's default (1685cdf): the range is [0, 999]
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--steps", "1000"],
            "Error: [sampling] steps (command line) = 1000 is out of range [0, 999]",
            1,
        ),
        (
            ["score", "a", "b", "--variant", "x"],
            "Error: Invalid value for '--variant': 'x' is not one of 'resolution_free', 'paper'. (see `cammimic score --help`)",
            2,
        ),
        (
            ["eval", "m.csv", "-o", "{tmp}/o", "--seed", "-1"],
            "Error: Invalid value for '--seed': -1 is not in the range x>=0. (see `cammimic eval --help`)",
            2,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--dtype", "float64"],
            "Error: Invalid value for '--dtype': 'float64' is not one of 'auto', 'float32', 'float16', 'bfloat16'. (see `cammimic run --help`)",
            2,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--seed", str(2**63)],
            "Error: [run] seed (command line) = 9223372036854775808 is out of range [0, 9223372036854775807]",
            1,
        ),
        # each backbone lists its samplers: checked against the chosen one's, before anything loads
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--prompt", "x", "--scheduler", "euler"],
            "Error: [sampling] scheduler = 'euler' is not a sampler of backbone \"zeroscope\"; try one of ['ddim', 'dpm'], "
            "or 'auto' (ddim)",
            1,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--prompt", "x", "--scheduler", "dpn"],
            'Error: [sampling] scheduler = \'dpn\' is not a sampler of backbone "zeroscope" (did you mean "dpm"?); '
            "try one of ['ddim', 'dpm'], or 'auto' (ddim)",
            1,
        ),
        (
            ["run", "r.mp4", "i.png", "-o", "{tmp}/o", "--method", "homography", "--steps", "3"],
            "Error: --steps has no effect with --method homography (it warps the image, no diffusion); drop it or use --method cammimic",
            1,
        ),
    ],
)
def test_setting_options_refuse_bad_values_with_the_same_line_as_before(
    tmp_path, capsys, args, line, code
):
    got, out, err = cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert (got, err.strip()) == (code, line)
    assert not (tmp_path / "o").exists()


def test_finetune_and_sample_run_cammimic_whatever_the_file_says(tmp_path):
    from cammimic.cli import _method_config

    (tmp_path / "c.toml").write_text('[run]\nmethod = "homography"\n')
    kw = {"config_path": str(tmp_path / "c.toml")}
    assert _method_config(kw, "cammimic")["run"]["method"] == "cammimic"
    assert _method_config(kw)["run"]["method"] == "homography"
    assert _method_config(kw | {"method": "cammimic", "no_stage2": True, "lr": 1e-3})[
        "finetune"
    ] == (load_config().data["finetune"] | {"stage2": False, "learning_rate": 1e-3})
