"""Issue 23: the training-free camera-term eval methods run end to end on tiny weights."""

from __future__ import annotations

import json

import pytest
from test_eval import FAST, _config, _rows, _subset, photo_pairs

from cammimic.eval import evaluate


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return photo_pairs(tmp_path_factory.mktemp("tf-pairs"), 1)


def _run(tmp_path, manifest, tiny_weights, methods, **settings):
    from cammimic import eval as eval_module

    eval_module._BACKBONES.clear()
    m = _subset(manifest, tmp_path, 1)
    config = _config(**{**FAST, "backbone.weights": str(tiny_weights), **settings})
    res = evaluate(
        m, tmp_path / "ev", methods=methods, config=config, progress=False, echo=lambda s: None
    )
    rows = {r["method"]: r for r in _rows(tmp_path / "ev")}
    assert res["failed"] == 0, {k: r["error"] for k, r in rows.items()}
    runs = {
        k: json.loads((tmp_path / "ev" / "runs" / "p0" / k / "run.json").read_text())
        for k in methods
    }
    for r in (
        rows.values()
    ):  # a tiny random model's frames may be unreadable: the score is then invalid, not absent
        assert r["status"] == "ok" and int(r["num_pairs"]) == 7
    return rows, runs


def test_warped_noise_methods_run_on_tiny_weights(tmp_path, manifest, tiny_weights):
    rows, runs = _run(
        tmp_path, manifest, tiny_weights, ["base-warped-noise", "cammimic-warped-noise"]
    )
    base, cam = runs["base-warped-noise"], runs["cammimic-warped-noise"]
    assert (
        base["components"]["noise"]["name"] == cam["components"]["noise"]["name"] == "warped-noise"
    )
    assert base["finetune"]["steps"] == {"stage1": 0, "stage2": 0}
    assert cam["finetune"]["steps"] == {"stage1": 2, "stage2": 2}
    assert [g["name"] for g in base["components"]["guidance"]] == ["none"]
    assert [g["name"] for g in cam["components"]["guidance"]] == ["homography"]
    # a pan of 8 frames at 64 px keeps most of frame 0's noise in view (latents 8x8)
    coverage = base["components"]["noise"]["coverage"]
    assert len(coverage) == 8 and min(coverage) == 1.0


def test_camerascore_method_runs_on_tiny_weights(tmp_path, manifest, tiny_weights):
    # 4 sampling steps: the default window (0.3-0.8 of the schedule) holds step 1
    rows, runs = _run(
        tmp_path, manifest, tiny_weights, ["cammimic-camerascore"], **{"sampling.steps": 4}
    )
    run = runs["cammimic-camerascore"]
    assert [g["name"] for g in run["components"]["guidance"]] == ["homography", "camerascore"]
    assert run["components"]["guidance"][1]["plugin"] == "camerascore"
    assert run["finetune"]["steps"] == {"stage1": 2, "stage2": 2}
    [guided] = run["components"]["guidance"][1]["history"]  # the cost of a guided step is recorded
    assert guided["step"] == 1 and guided["camera_score"] >= 0 and 0 < guided["seconds"] < 30
    print(
        f"camerascore guidance on tiny weights, 8 frames at 64x64: {guided['seconds']:.2f} s per guided step"
    )
