"""benchmarks/mini_method.py (issue 9 §4): the held-out pair manifest, its eval, the recorded table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_benchmark("mini_method")


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def pairs(bench, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mini-pairs")
    return bench.build_manifest(folder, 12)


def test_manifest_pairs_two_different_held_out_photographs(pairs):
    from cammimic_mini.lab import data

    from cammimic.eval import read_manifest
    from cammimic.io import read_image, read_video

    items = read_manifest(pairs)  # the eval's own validation: every row is valid
    assert len(items) == 12
    meta = json.loads((pairs.parent / "pairs.json").read_text())
    assert meta["frames"] == 8 and meta["width"] == meta["height"] == 64
    contents = {v: k for k, v in data.HELD_OUT.items()}
    seen_motions, off_caption = set(), 0
    for item in items:
        m = meta["items"][item.id]
        ref, img = m["reference_photo"], m["image_photo"]
        assert ref in data.HELD_OUT and img in data.HELD_OUT and ref != img
        assert ref not in data.TRAIN_PHOTOS and img not in data.TRAIN_PHOTOS
        assert contents[item.prompt] == img and contents[item.reference_prompt] == ref
        assert np.asarray(m["homographies"]).shape == (7, 3, 3)
        seen_motions.add(m["motion"])
        off_caption += not m["in_captions"]
        video = read_video(item.reference)
        assert video.frames.shape == (8, 64, 64, 3)
        assert read_image(item.image).shape == (64, 64, 3)
    assert (
        len(seen_motions) == 12 and off_caption >= 6
    )  # motions and speeds mini was never told about
    # every (reference photo, user photo) ordering of the three held-out photographs is used
    assert len({(m["reference_photo"], m["image_photo"]) for m in meta["items"].values()}) == 6


def test_references_read_back_as_their_true_motion(bench, pairs, tmp_path):
    """The benchmark's estimator (kornia, at 64 px) recovers the rendered homographies of the
    references after the mp4 round trip: otherwise no method could be scored against them."""
    from cammimic.api import score_motions
    from cammimic.config import load_config
    from cammimic.io import read_video
    from cammimic.motion import MotionEstimate
    from cammimic.plugins import get_host

    meta = json.loads((pairs.parent / "pairs.json").read_text())
    (tmp_path / "mini-method.toml").write_text(bench.CONFIG)
    estimator = get_host().create(
        "motion_estimator",
        *load_config(tmp_path / "mini-method.toml").component("motion_estimator"),
    )
    scores = []
    for pid, m in meta["items"].items():
        frames = read_video(pairs.parent / f"{pid}-ref.mp4").frames
        est = estimator.estimate(frames)
        truth = MotionEstimate(np.asarray(m["homographies"]), 64, 64, "rendered")
        s = score_motions(truth, est)
        assert s.valid and not est.fallbacks, (pid, m["motion"])
        # far closer to the truth than a still camera is (the slow moves score ~6e-4 as "still")
        still = score_motions(
            MotionEstimate(np.repeat(np.eye(3)[None], 7, 0), 64, 64, "still"), est
        ).score
        assert s.score < 0.1 * still, (pid, m["motion"], s.score, still)
        scores.append(s.score)
    # measured: max 2.3e-5, mean 8.9e-6 (opencv on 4x-upsampled frames: max 2.9e-4, mean 6e-5)
    assert max(scores) < 1e-4 and float(np.mean(scores)) < 3e-5, scores


def test_eval_homography_on_two_pairs_gives_valid_scores(bench, pairs, tmp_path, capsys):
    lines = pairs.read_text().splitlines()
    body = [ln.replace(",p", f",{pairs.parent}/p") for ln in lines[1:3]]
    sub = tmp_path / "pairs"
    sub.mkdir()
    (sub / "manifest.csv").write_text("\n".join([lines[0], *body]) + "\n")
    meta = json.loads((pairs.parent / "pairs.json").read_text())
    meta["pairs"] = 2
    (sub / "pairs.json").write_text(json.dumps(meta))  # the script reuses a manifest it wrote
    assert (
        bench.main(["--methods", "homography", "--pairs", "2", "--out", str(tmp_path), "-q"]) == 0
    )
    with open(tmp_path / "eval" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["status"], r["valid"]) for r in rows] == [
        ("homography", "ok", "True")
    ] * 2
    assert all(float(r["camera_score"]) < 1e-3 for r in rows)
    eval_json = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert eval_json["config"]["backbone"]["name"] == "mini"
    assert (
        eval_json["config"]["finetune"]["stage1_steps"] == 60
        and eval_json["config"]["sampling"]["steps"] == 25
    )
    # the table --record writes, into a copy of the doc
    doc = tmp_path / "mini.md"
    doc.write_text(f"before\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    bench.record(tmp_path / "eval", doc, command="cmd", weights="")
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| homography |"))
    assert "| 2 | 2 / 0 |" in row and "| 0.0% |" in row


def test_without_weights_it_fails_in_one_line(bench, tmp_path, capsys):
    code = bench.main(["--weights", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert (
        code == 2 and err.count("\n") == 1 and err.startswith("Error: mini's weights are not at ")
    )
    assert "--methods homography" in err
    assert not (tmp_path / "out").exists()  # nothing half-written
