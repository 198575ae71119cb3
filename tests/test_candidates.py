"""Best of N (issue 25 §1): one Phase 1, N seeds sampled, each scored, the lowest valid CameraScore kept.

End to end on tiny random weights. Their samples are noise, so OpenCV reads no motion and every
score is invalid; a test estimator that reads a "pan" from each frame's brightness makes the
scores valid and different, so the choice itself is checked.
"""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
from conftest import load_benchmark, write_pair

import cammimic
from cammimic.cli import main
from cammimic.io import read_video

FAST = [
    "--frames",
    "8",
    "--width",
    "64",
    "--height",
    "64",
    "--stage1-steps",
    "2",
    "--stage2-steps",
    "1",
    "--steps",
    "3",
    "--spatial-rank",
    "4",
    "--temporal-rank",
    "4",
    "-q",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("inputs"))


def run_args(inputs, weights, out, *extra):
    ref, user = inputs
    return [
        str(a)
        for a in [
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
    ]


@pytest.fixture(scope="module")
def three(inputs, tiny_weights, tmp_path_factory):
    """A run with --candidates 3 (and what it printed)."""
    out = tmp_path_factory.mktemp("runs") / "three"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(run_args(inputs, tiny_weights, out, "--candidates", "3")) == 0
    return out, buf.getvalue()


def test_three_candidates_are_sampled_scored_and_recorded(three):
    out, printed = three
    run = json.loads((out / "run.json").read_text())
    cands = run["candidates"]
    assert [c["seed"] for c in cands] == [0, 1, 2] and [c["index"] for c in cands] == [0, 1, 2]
    for c in cands:
        assert set(c) >= {
            "seed",
            "camera_score",
            "camera_score_valid",
            "camera_score_reason",
            "psnr_first",
            "ssim_first",
            "psnr_in_view",
            "seconds",
            "video",
            "kept",
        }
        assert c["seconds"] > 0 and np.isfinite(c["psnr_first"]) and -1 <= c["ssim_first"] <= 1
        assert read_video(out / c["video"]).frames.shape == (8, 64, 64, 3)
    # noise from random weights: no candidate's motion can be read, so none is valid and the first is kept
    assert not any(c["camera_score_valid"] for c in cands)
    assert [c["kept"] for c in cands] == [True, False, False] and run["kept_seed"] == 0
    assert run["camera_score_valid"] is False
    # the candidates differ (distinct seeds), and output.mp4 is the kept candidate's video, byte for byte
    videos = [read_video(out / c["video"]).frames.astype(int) for c in cands]
    assert np.abs(videos[0] - videos[1]).mean() > 1.0 and np.abs(videos[1] - videos[2]).mean() > 1.0
    assert (out / "output.mp4").read_bytes() == (out / "candidates" / "seed-0.mp4").read_bytes()
    assert run["seed"] == 0 and json.loads((out / "score.json").read_text())["valid"] is False
    lines = [line for line in printed.splitlines() if line.startswith("candidate seed")]
    assert len(lines) == 3 and lines[0].endswith("(kept)") and "CameraScore invalid" in lines[1]
    report = (out / "report.html").read_text()
    assert 'id="candidates"' in report and all(
        f'src="candidates/seed-{s}.mp4"' in report for s in (0, 1, 2)
    )
    assert "seed 0 · CameraScore invalid · kept" in report


def test_one_candidate_is_the_run_without_candidates(three, inputs, tiny_weights, tmp_path):
    """--candidates 1 (the default) samples once: the same files as before, output.mp4 equal to the
    N=3 run's first candidate (same Phase 1, same seed), no candidates list."""
    three_out, _ = three
    for extra in ((), ("--candidates", "1")):
        out = tmp_path / f"one{len(extra)}"
        assert main(run_args(inputs, tiny_weights, out, *extra)) == 0
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
        run = json.loads((out / "run.json").read_text())
        assert "candidates" not in run and "kept_seed" not in run
        assert 'id="candidates"' not in (out / "report.html").read_text()
        for name in ("output.mp4", "side_by_side.mp4", "score.json", "lora/temporal.safetensors"):
            assert (out / name).read_bytes() == (three_out / name).read_bytes(), name
        assert (out / "output.mp4").read_bytes() == (
            three_out / "candidates" / "seed-0.mp4"
        ).read_bytes()


class BrightnessPan:
    """A test estimator: frame i -> i+1 pans by the change of mean brightness (never falls back)."""

    name = "brightness-pan"

    def estimate(self, frames):
        from cammimic.motion import MotionEstimate

        means = frames.reshape(len(frames), -1).mean(axis=1)
        hs = np.repeat(np.eye(3)[None], len(frames) - 1, axis=0)
        hs[:, 0, 2] = np.diff(means) * 0.5
        return MotionEstimate(
            homographies=hs, width=frames.shape[2], height=frames.shape[1], estimator=self.name
        )


class StepLog:
    """A test guidance term that changes nothing and reports, per step, the seed it samples with and
    the latents' mean (the camerascore term reports per step too)."""

    name = "step-log"
    acts_on = "x0"

    def __init__(self):
        self.history, self.seed = [], None

    def prepare(self, context):
        self.history, self.seed = [], context.seed

    def apply(self, latents, state):
        self.history.append({"step": state.step, "seed": self.seed, "mean": float(latents.mean())})
        return latents


@pytest.fixture
def host(plugin_host):
    class Plugin:
        @cammimic.hookimpl
        def register_motion_estimators(self, register):
            register("brightness-pan", BrightnessPan)

        @cammimic.hookimpl
        def register_guidance_terms(self, register):
            register("step-log", StepLog)

    plugin_host.register(Plugin(), name="brightness-pan-plugin")
    return plugin_host


def test_the_kept_candidate_has_the_lowest_valid_score(inputs, tiny_weights, tmp_path, host):
    """Python API, candidates=4: the kept candidate is the lowest CameraScore, the run's score is
    its score, and sampling its seed again from the run's LoRAs gives output.mp4's frames. The
    progress callback hears every step."""
    ref, user = inputs
    settings = dict(
        prompt="a cup of coffee",
        frames=8,
        width=64,
        height=64,
        seed=5,
        finetune__stage1_steps=2,
        finetune__stage2_steps=1,
        sampling__steps=3,
        lora__spatial_rank=4,
        lora__temporal_rank=4,
        backbone__weights=str(tiny_weights),
        motion_estimator__name="brightness-pan",
        guidance=[{"name": "homography"}, {"name": "step-log"}],
    )
    steps = []  # the progress callback: every training and sampling step, one Phase 1 and four samplings
    result = cammimic.transfer(
        ref,
        user,
        tmp_path / "four",
        candidates=4,
        progress=lambda *s: steps.append(s),
        host=host,
        **settings,
    )
    assert steps == (
        [("stage 1", i, 2) for i in range(3)]
        + [("stage 2", i, 1) for i in range(2)]
        + 4 * [("sampling", i, 3) for i in range(4)]
    )
    cands = result.manifest["candidates"]
    assert [c["seed"] for c in cands] == [5, 6, 7, 8]
    assert all(c["camera_score_valid"] for c in cands)
    scores = [c["camera_score"] for c in cands]
    assert len(set(scores)) == 4  # the seeds' videos differ, so do their scores
    best = int(np.argmin(scores))
    assert [c["kept"] for c in cands] == [i == best for i in range(4)] and result.manifest[
        "kept_seed"
    ] == 5 + best
    assert result.camera_score == scores[best] == result.manifest["camera_score"]
    score = json.loads((tmp_path / "four" / "score.json").read_text())
    assert score["camera_score"] == scores[best]
    out = tmp_path / "four"
    assert (out / "output.mp4").read_bytes() == (out / cands[best]["video"]).read_bytes()

    # the kept seed sampled alone from the same LoRAs is output.mp4, frame for frame
    again = cammimic.sample(
        ref,
        user,
        tmp_path / "again",
        spatial_lora=out / "lora" / "spatial.safetensors",
        temporal_lora=out / "lora" / "temporal.safetensors",
        progress=False,
        host=host,
        **(settings | {"seed": 5 + best}),
    )
    assert "candidates" not in again.manifest and again.camera_score == scores[best]
    assert np.array_equal(
        read_video(tmp_path / "again" / "output.mp4").frames, read_video(out / "output.mp4").frames
    )
    # the guidance record of run.json is the kept candidate's sampling, not the last one's
    logged = json.loads((out / "run.json").read_text())["components"]["guidance"][1]
    assert logged["name"] == "step-log" and [h["seed"] for h in logged["history"]] == [5 + best] * 3
    assert logged["history"] == again.manifest["components"]["guidance"][1]["history"]


def test_each_candidate_keeps_its_own_guidance_history():
    """A term forgets its history when the next sampling starts: each candidate holds a copy."""
    from cammimic.candidates import sample_candidates
    from cammimic.motion import MotionEstimate

    term, silent = StepLog(), BrightnessPan()  # BrightnessPan: a term without history

    def sample(seed):
        term.prepare(attrs.make_class("C", ["seed"])(seed))
        frames = np.full((3, 8, 8, 3), seed * 20, np.uint8)
        for step in range(2):
            term.apply(frames.astype(np.float64), attrs.make_class("S", ["step"])(step))
        return frames

    still = MotionEstimate(
        homographies=np.repeat(np.eye(3)[None], 2, axis=0), width=8, height=8, estimator="t"
    )
    cands = sample_candidates(
        sample,
        [3, 4, 5],
        estimator=BrightnessPan(),
        reference_motion=still,
        image=np.zeros((8, 8, 3), np.uint8),
        guidance_terms=[term, silent],
    )
    for c in cands:
        log, none = c.guidance_history
        assert none is None and [(h["step"], h["seed"], h["mean"]) for h in log] == [
            (0, c.seed, c.seed * 20.0),
            (1, c.seed, c.seed * 20.0),
        ]


def _candidate(i, score, valid=True, ssim=0.5):
    from cammimic.candidates import Candidate

    scored = attrs.make_class("S", {"score": attrs.field(), "valid": attrs.field()})(score, valid)
    return Candidate(
        index=i,
        seed=i,
        frames=None,
        motion=None,
        scored=scored,
        scene={"ssim_first": ssim},
        seconds=0.0,
    )


def test_choose_skips_invalid_scores_and_breaks_ties_by_scene():
    from cammimic.candidates import choose

    assert choose([_candidate(0, 0.3), _candidate(1, 0.01, valid=False), _candidate(2, 0.2)]) == 2
    assert (
        choose([_candidate(0, 0.1, valid=False), _candidate(1, 0.2, valid=False)]) == 0
    )  # none valid: the first
    assert choose([_candidate(0, float("nan")), _candidate(1, 0.4)]) == 1
    assert (
        choose(
            [
                _candidate(0, 0.2, ssim=0.1),
                _candidate(1, 0.2, ssim=0.6),
                _candidate(2, 0.2, ssim=0.6),
            ]
        )
        == 1
    )


def test_candidate_seeds_wrap_in_the_seed_range():
    from cammimic.candidates import candidate_seeds

    assert candidate_seeds(7, 3) == [7, 8, 9]
    assert candidate_seeds(2**63 - 1, 2) == [2**63 - 1, 0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--candidates", "0"], "0 is not in the range x>=1"),
        (["--candidates", "65"], "candidates (command line) = 65 is out of range [1, 64]"),
        (
            ["--candidates", "2", "--method", "homography"],
            "--candidates has no effect with --method homography",
        ),
    ],
)
def test_bad_candidates_are_refused_in_one_line(inputs, tmp_path, capsys, extra, message):
    code = main(["run", *map(str, inputs), "-o", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert (
        code != 0
        and len(err.strip().splitlines()) == 1
        and message in err
        and "Traceback" not in err
    ), err
    assert not (tmp_path / "o").exists()


def test_the_api_refuses_candidates_with_the_homography_method(inputs, tmp_path):
    with pytest.raises(cammimic.CammimicError, match="no effect with the homography method"):
        cammimic.transfer(*inputs, tmp_path / "h", method="homography", candidates=3)


def test_the_web_app_passes_candidates_bounded(tmp_path):
    from cammimic.ui import INPUT_NAMES, TransferRequest, UISettings, transfer_call

    assert INPUT_NAMES[21] == "candidates"
    settings = UISettings(runs_dir=tmp_path)
    base = dict(
        camera_preset="zoom-in",
        image="a.png",
        method="cammimic",
        prompt="a scene",
        backbone="zeroscope",
    )

    def overrides(**kw):
        return transfer_call(
            TransferRequest(**{**base, **kw}), tmp_path / "r", settings, backbones=["zeroscope"]
        )["overrides"]

    assert (
        overrides(candidates=3)["candidates"] == 3 and overrides(candidates=8.0)["candidates"] == 8
    )
    assert "candidates" not in overrides()  # 1: one sampling, the config's default
    assert "candidates" not in overrides(method="homography", candidates=3)
    for value, line in [
        (9, "candidates must be between 1 and 8 on this server, got 9"),
        (0, "candidates must be between 1 and 8 on this server, got 0"),
        (2.5, "candidates must be a whole number, got '2.5'"),
    ]:
        with pytest.raises(cammimic.CammimicError) as info:
            overrides(candidates=value)
        assert str(info.value) == line


def test_the_web_app_names_the_kept_candidate(three):
    from cammimic.ui import _score_markdown

    out, _ = three
    assert _score_markdown(out).endswith("best of 3 candidates: seed 0 kept")


def test_the_web_app_form_has_the_control_as_the_endpoints_input(tmp_path):
    pytest.importorskip("gradio")
    from cammimic.ui import INPUT_NAMES, UISettings, build_app

    app = build_app(UISettings(runs_dir=tmp_path))
    fns = app.fns.values() if isinstance(app.fns, dict) else app.fns
    [transfer] = [f for f in fns if getattr(f, "api_name", None) == "transfer"]
    ids = [c.elem_id for c in transfer.inputs]
    assert len(ids) == len(INPUT_NAMES) and ids[INPUT_NAMES.index("candidates")] == "candidates"
    [box] = [c for c in transfer.inputs if c.elem_id == "candidates"]
    assert box.value == 1 and box.precision == 0


def _bench():
    return load_benchmark("candidates")


def test_the_benchmarks_curve_is_the_mean_over_every_subset():
    import itertools
    import math

    bench = _bench()
    cands = [
        {"camera_score": s, "camera_score_valid": v}
        for s, v in [
            (0.5, True),
            (0.1, False),
            (0.3, True),
            (0.9, True),
            (0.2, True),
            (0.05, False),
        ]
    ]
    assert bench.kept_prefix(cands, 1) == 0.5 and bench.kept_prefix(cands, 3) == 0.3
    assert math.isnan(bench.kept_prefix(cands[1:2], 1))
    for n in range(1, 7):
        kept = []
        for subset in itertools.combinations(cands, n):
            valid = [c["camera_score"] for c in subset if c["camera_score_valid"]]
            kept.append(min(valid) if valid else None)
        mean, none = bench.expected_best(cands, n)
        found = [k for k in kept if k is not None]
        assert none == pytest.approx(kept.count(None) / len(kept))
        assert mean == pytest.approx(sum(found) / len(found))


def test_the_benchmark_runs_on_tiny_weights(inputs, tiny_weights, tmp_path, capsys):
    bench = _bench()
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[run]\nframes = 8\nwidth = 64\nheight = 64\n[lora]\nspatial_rank = 4\ntemporal_rank = 4\n"
        "[finetune]\nstage1_steps = 1\nstage2_steps = 1\n[sampling]\nsteps = 2\n"
    )
    ref, user = inputs
    code = bench.main(
        [
            str(ref),
            str(user),
            "--prompt",
            "a cup of coffee",
            "--weights",
            str(tiny_weights),
            "--config",
            str(config),
            "--candidates",
            "2",
            "--out",
            str(tmp_path / "b"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "N | kept (--candidates N) | expected over N-subsets | none valid" in out
    assert "\n2 | — | — | 100%" in out  # random weights: nothing valid
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [c["seed"] for c in results["runs"][0]["candidates"]] == [0, 1] and len(
        results["curve"]
    ) == 2
    assert (
        bench.main([str(ref), str(user), "--prompt", "x", "--weights", "w", "--candidates", "1"])
        == 2
    )
