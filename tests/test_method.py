"""The CamMimic method end to end on a tiny zeroscope-layout model loaded through ``--weights DIR``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_pair

from cammimic.cli import main
from cammimic.config import tomllib
from cammimic.io import read_video

FAST = [
    "--frames",
    "8",
    "--width",
    "64",
    "--height",
    "64",
    "--stage1-steps",
    "4",
    "--stage2-steps",
    "3",
    "--steps",
    "4",
    "--spatial-rank",
    "4",
    "--temporal-rank",
    "4",
    "-q",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A reference video of a real photograph under a known pan, and a user image (another photo)."""
    return write_pair(tmp_path_factory.mktemp("inputs"))


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_args(inputs, weights, out, *extra):
    ref, user = inputs
    return [
        "run",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--reference-prompt",
        "an astronaut",
        "--weights",
        weights,
        "-o",
        out,
        *FAST,
        *extra,
    ]


@pytest.fixture(scope="module")
def first_run(inputs, tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "first"
    code = main([str(a) for a in run_args(inputs, tiny_weights, out)])
    assert code == 0
    return out


def test_a_whole_run_writes_every_artifact(first_run):
    out = first_run
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {
        "output.mp4",
        "weak.mp4",
        "side_by_side.mp4",
        "trajectory.png",
        "score.json",
        "motion.json",
        "config.toml",
        "run.json",
        "report.html",
        "losses.csv",
        "lora/spatial.safetensors",
        "lora/temporal.safetensors",
        "lora/layers.json",
    }
    assert read_video(out / "output.mp4").frames.shape == (8, 64, 64, 3)
    assert read_video(out / "weak.mp4").frames.shape == (8, 64, 64, 3)
    assert read_video(out / "side_by_side.mp4").frames.shape == (
        8,
        64,
        192,
        3,
    )  # reference | weak | output
    assert (out / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    score = json.loads((out / "score.json").read_text())
    assert score["num_frames"] == 8 and score["num_pairs"] == 7
    # Random weights sample noise: no motion can be read from it, so the score is invalid (not 0).
    assert (
        score["valid"] is False
        and score["generated_fallbacks"] == 7
        and score["camera_score"] is None
    )

    losses = (out / "losses.csv").read_text().splitlines()
    assert losses[0].startswith("stage,step,loss,temporal,spatial,ortho")
    rows = [r.split(",") for r in losses[1:]]
    assert [(r[0], r[1]) for r in rows] == [("1", str(i)) for i in range(1, 5)] + [
        ("2", str(i)) for i in range(1, 4)
    ]
    assert all(np.isfinite(float(r[2])) for r in rows)

    config = tomllib.loads((out / "config.toml").read_text())
    assert config["run"]["method"] == "cammimic"
    assert (config["run"]["frames"], config["run"]["width"], config["run"]["height"]) == (8, 64, 64)
    assert config["finetune"]["stage1_steps"] == 4 and config["sampling"]["steps"] == 4
    assert config["guidance"] == [{"name": "homography"}]

    run = json.loads((out / "run.json").read_text())
    assert run["components"]["backbone"]["name"] == "zeroscope"
    assert (
        run["components"]["backbone"]["plugin"] == "zeroscope"
        and run["components"]["backbone"]["version"]
    )
    assert run["components"]["guidance"][0]["name"] == "homography"
    assert run["prompts"]["reference"] == "an astronaut, camera motion of sks"
    assert run["prompts"]["sampling"] == "a cup of coffee, camera motion of sks"
    assert run["finetune"]["temporal_lora_unchanged_in_stage2"] is True
    assert (run["seed"], run["num_frames"], run["width"], run["height"]) == (0, 8, 64, 64)
    assert (
        len(run["reference"]["indices"]) == 8
        and run["device"] == "cpu"
        and run["dtype"] == "float32"
    )

    layers = json.loads((out / "lora" / "layers.json").read_text())
    assert run["layers"]["spatial"] == len(layers["spatial"]) > 0
    assert run["layers"]["pairs"] == len(layers["pairs"]) == len(layers["spatial"])

    from cammimic.lora import read_lora

    tensors, meta = read_lora(out / "lora" / "temporal.safetensors")
    assert meta["adapter"] == "temporal" and meta["backbone"] == "zeroscope" and meta["rank"] == "4"
    assert json.loads(meta["target_layers"]) == layers["temporal"]
    assert not (out.parent / "first.checkpoints").exists()  # removed once the run succeeded


def test_a_run_is_reproducible_with_a_seed(first_run, inputs, tiny_weights, tmp_path, capsys):
    code, _, err = cli(capsys, *run_args(inputs, tiny_weights, tmp_path / "again"))
    assert code == 0, err
    a = read_video(first_run / "output.mp4").frames
    b = read_video(tmp_path / "again" / "output.mp4").frames
    assert np.array_equal(a, b)
    for name in ("output.mp4", "weak.mp4", "side_by_side.mp4"):  # the files, not only their frames
        assert (first_run / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    from cammimic.lora import read_lora

    for name in ("spatial", "temporal"):
        ta, _ = read_lora(first_run / "lora" / f"{name}.safetensors")
        tb, _ = read_lora(tmp_path / "again" / "lora" / f"{name}.safetensors")
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
        # the files themselves: safetensors once wrote the metadata in a per-process order
        assert (first_run / "lora" / f"{name}.safetensors").read_bytes() == (
            tmp_path / "again" / "lora" / f"{name}.safetensors"
        ).read_bytes()
    assert (first_run / "losses.csv").read_text().split("\n")[1].split(",")[:6] == (
        tmp_path / "again" / "losses.csv"
    ).read_text().split("\n")[1].split(",")[:6]

    code, _, err = cli(capsys, *run_args(inputs, tiny_weights, tmp_path / "seed1", "--seed", "1"))
    assert code == 0, err
    c = read_video(tmp_path / "seed1" / "output.mp4").frames
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_sample_swaps_loras_between_runs(first_run, inputs, tiny_weights, tmp_path, capsys):
    """A spatial LoRA of one run with the temporal LoRA of another (the MotionDirector swap)."""
    args = run_args(inputs, tiny_weights, tmp_path / "other", "--seed", "7")[1:]
    i = args.index("--steps")
    del args[i : i + 2]  # a sampling option
    code, _, err = cli(capsys, "finetune", *args)
    assert code == 0, err
    assert (
        not (tmp_path / "other" / "output.mp4").exists()
        and (tmp_path / "other" / "losses.csv").exists()
    )
    ref, user = inputs
    code, _, err = cli(
        capsys,
        "sample",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--weights",
        tiny_weights,
        "-o",
        tmp_path / "swap",
        "--spatial-lora",
        first_run / "lora" / "spatial.safetensors",
        "--temporal-lora",
        tmp_path / "other" / "lora" / "temporal.safetensors",
        "--frames",
        "8",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "4",
        "-q",
    )
    assert code == 0, err
    run = json.loads((tmp_path / "swap" / "run.json").read_text())
    assert run["phases"] == ["sample"]
    assert run["lora_sources"]["temporal"]["metadata"]["seed"] == "7"
    assert run["lora_sources"]["spatial"]["metadata"]["seed"] == "0"
    assert (tmp_path / "swap" / "lora" / "temporal.safetensors").read_bytes() == (
        tmp_path / "other" / "lora" / "temporal.safetensors"
    ).read_bytes()
    assert read_video(tmp_path / "swap" / "output.mp4").frames.shape == (8, 64, 64, 3)

    # the run's own LoRAs through --lora give the run's output again
    code, _, err = cli(
        capsys,
        "sample",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--weights",
        tiny_weights,
        "-o",
        tmp_path / "same",
        "--lora",
        first_run,
        "--frames",
        "8",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "4",
        "-q",
    )
    assert code == 0, err
    assert np.array_equal(
        read_video(tmp_path / "same" / "output.mp4").frames,
        read_video(first_run / "output.mp4").frames,
    )


def test_a_lora_that_would_blow_up_sampling_writes_nothing(
    first_run, inputs, tiny_weights, tmp_path, capsys
):
    """issue 21 §2: a LoRA with alpha=1e30 (or negative alpha) gave an all-black video with exit 0."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = first_run / "lora" / "spatial.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    ref, user = inputs
    for name, alpha, weights, message in [
        ("huge-alpha", "1e30", None, "has alpha 1e+30; a LoRA's alpha must be in (0, 1e+06]"),
        ("negative-alpha", "-4.0", None, "has alpha -4; a LoRA's alpha must be in (0, 1e+06]"),
        # finite weights pass the file's checks, but overflow the activations: caught after sampling
        ("huge-weights", meta["alpha"], 1e30, "sampling produced NaN or inf in "),
    ]:
        bad = tmp_path / f"{name}.safetensors"
        save_file(
            {k: torch.full_like(v, weights) if weights else v for k, v in tensors.items()},
            str(bad),
            metadata={**meta, "alpha": alpha},
        )
        code, _, err = cli(
            capsys,
            "sample",
            ref,
            user,
            "--prompt",
            "a cup of coffee",
            "--weights",
            tiny_weights,
            "-o",
            tmp_path / name,
            "--spatial-lora",
            bad,
            "--temporal-lora",
            first_run / "lora" / "temporal.safetensors",
            "--frames",
            "8",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "2",
            "-q",
        )
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
        assert name == "huge-weights" or str(bad) in lines[0]  # the file is named
        assert not [
            p for p in tmp_path.iterdir() if name in p.name and p.suffix != ".safetensors"
        ]  # nothing written


def _assert_refused_in_one_line(inputs, tiny_weights, tmp_path, capsys, extra, message):
    """`cammimic run` with ``extra`` fails with exit 1, one line holding ``message``, and no output."""
    args = run_args(inputs, tiny_weights, tmp_path / "o") + [a.format(tmp=tmp_path) for a in extra]
    code, _, err = cli(capsys, *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--weights", "{tmp}/nowhere"], "nowhere"),
        (["--width", "72"], "multiples of 16"),
        (["--backbone", "modelscop"], 'did you mean "modelscope"'),
    ],
)
def test_bad_method_input_is_one_line(inputs, tiny_weights, tmp_path, capsys, extra, message):
    _assert_refused_in_one_line(inputs, tiny_weights, tmp_path, capsys, extra, message)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--width", "16", "--height", "16"], 'too small for backbone "zeroscope"'),
        (
            ["--steps", "1000"],
            "= 1000 is out of range [0, 999]",
        ),  # 0: the backbone's default (1685cdf)
        (["--guidance-weight", "nan"], "weight nan is not a finite number"),
        (["-o", "{tmp}/a-file/o"], "is not a writable folder"),
    ],
)
def test_values_that_cannot_work_are_refused_before_any_model_loads(
    inputs, tiny_weights, tmp_path, capsys, monkeypatch, extra, message
):
    from cammimic_unet3d.backbone import UNet3DAdapter

    def load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(UNet3DAdapter, "load", load)
    (tmp_path / "a-file").write_text("not a folder")
    _assert_refused_in_one_line(inputs, tiny_weights, tmp_path, capsys, extra, message)


def test_ctrl_c_exits_130_and_resume_gives_the_uninterrupted_run(
    first_run, inputs, tiny_weights, tmp_path, capsys, monkeypatch
):
    from cammimic import training
    from cammimic.lora import read_lora

    out = tmp_path / "run"
    mine = tmp_path / "run.checkpoints"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's folder")  # not made by cammimic: must survive
    clip_grad, calls = training._clip, {"n": 0}

    def clip_then_ctrl_c(params, max_norm):
        calls["n"] += 1
        if calls["n"] == 3:  # stage 1 step 2, mid-step (two LoRA groups per step)
            raise KeyboardInterrupt
        return clip_grad(params, max_norm)

    monkeypatch.setattr(training, "_clip", clip_then_ctrl_c)
    code, _, err = cli(capsys, *run_args(inputs, tiny_weights, out))
    assert code == 130, err
    assert (
        len(err.strip().splitlines()) == 1 and "after stage 1 step 1" in err and "--resume" in err
    ), err
    assert not out.exists() and (mine / training.CHECKPOINT_NAME).is_file()
    monkeypatch.undo()

    code, _, err = cli(capsys, *run_args(inputs, tiny_weights, out, "--resume"))
    assert code == 0, err
    assert "resuming from stage 1 step 1" in err and f"left {mine} in place" in err
    assert (mine / "notes.txt").is_file() and not (mine / training.CHECKPOINT_NAME).exists()
    for name in ("spatial", "temporal"):
        a, _ = read_lora(first_run / "lora" / f"{name}.safetensors")
        b, _ = read_lora(out / "lora" / f"{name}.safetensors")
        assert all(torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)) for k in a)
    assert (out / "losses.csv").read_bytes() == (first_run / "losses.csv").read_bytes()
    run = json.loads((out / "run.json").read_text())
    assert run["finetune"]["resumed_from"] == {"stage": 1, "step": 1}
    assert run["finetune"]["precision"] == "float32"


def test_sample_with_lora_run_uses_the_runs_weights_size_and_frames(
    first_run, inputs, tmp_path, capsys
):
    """`cammimic sample --lora RUN` used the default zeroscope weights and 576x320x16 whatever RUN was."""
    ref, user = inputs
    code, _, err = cli(
        capsys,
        "sample",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--lora",
        first_run,
        "-o",
        tmp_path / "again",
        "--steps",
        "4",
        "-q",
    )
    assert code == 0, err
    assert "recorded in" in err and "weights" in err
    recorded = json.loads((first_run / "run.json").read_text())
    run = json.loads((tmp_path / "again" / "run.json").read_text())
    assert run["components"]["backbone"]["weights"] == recorded["components"]["backbone"]["weights"]
    assert (run["width"], run["height"], run["num_frames"]) == (
        recorded["width"],
        recorded["height"],
        recorded["num_frames"],
    )
    assert np.array_equal(
        read_video(tmp_path / "again" / "output.mp4").frames,
        read_video(first_run / "output.mp4").frames,
    )
    # a flag still overrides what was recorded
    code, _, err = cli(
        capsys,
        "sample",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--lora",
        first_run,
        "-o",
        tmp_path / "fewer",
        "--steps",
        "4",
        "--frames",
        "4",
        "-q",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "fewer" / "run.json").read_text())["num_frames"] == 4


def test_the_paper_s_ablations_are_what_their_names_say(plugin_host):
    """issue 22 §4: USC only = stage 2 kept, no ORTHO, no HG; no USC in both readings."""
    from cammimic_eval import METHODS

    from cammimic.config import load_config

    def resolved(name):
        return load_config().with_overrides(METHODS[name][0])

    usc_only = resolved("cammimic-usc-only")
    assert usc_only["finetune"]["stage2"] is True and usc_only["finetune"]["orthogonality"] is False
    assert usc_only["guidance"] == [{"name": "none"}]
    no_usc, no_spatial = resolved("cammimic-no-usc"), resolved("cammimic-no-usc-no-spatial")
    assert no_usc["finetune"]["stage2"] is False and no_usc["sampling"]["spatial_scale"] == 1.0
    assert (
        no_spatial["finetune"]["stage2"] is False and no_spatial["sampling"]["spatial_scale"] == 0.0
    )
    assert (
        no_usc["guidance"] == no_spatial["guidance"] == [{"name": "homography"}]
    )  # HG kept in both
    assert {"cammimic-usc-only", "cammimic-no-usc-no-spatial"} <= set(
        plugin_host.components("eval_method")
    )
