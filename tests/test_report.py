"""report.html in every run directory (cammimic.report), openable from disk."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cammimic.cli import main
from cammimic.report import key_values, loss_curves, read_losses, score_rows, write_run_report

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "examples" / "scene.jpg"
REFERENCE = ROOT / "examples" / "reference.mp4"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href"):
                self.links.append((tag, v))


def links(html: str) -> list[tuple[str, str]]:
    p = _Links()
    p.feed(html)
    return p.links


def local_links_resolve(run_dir: Path) -> list[str]:
    html = (run_dir / "report.html").read_text()
    targets = [v for _, v in links(html) if not v.startswith("data:")]
    assert all(not re.match(r"^[a-z]+://", t) for t in targets), targets  # nothing from the network
    missing = [t for t in targets if not (run_dir / t).is_file()]
    assert not missing, missing
    return targets


def test_a_homography_run_writes_a_report(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(REFERENCE),
                str(SCENE),
                "--method",
                "homography",
                "-o",
                str(out),
                "--frames",
                "8",
                "--width",
                "128",
                "--height",
                "96",
            ]
        )
        == 0
    )
    html = (out / "report.html").read_text()
    targets = local_links_resolve(out)
    assert ("video", "side_by_side.mp4") in links(html) and ("img", "trajectory.png") in links(html)
    assert {"config.toml", "motion.json", "output.mp4", "run.json", "score.json"} <= set(targets)
    score = json.loads((out / "score.json").read_text())
    assert f"{score['camera_score']:.6g}" in html and "reference | output" in html
    run = json.loads((out / "run.json").read_text())
    assert run["image"]["sha256"] in html and "<title>cammimic run: run</title>" in html
    assert "Finetuning losses" not in html  # no finetuning in this method


def test_loss_curves_show_both_stages_and_the_orthogonality_term(tmp_path):
    csv = tmp_path / "losses.csv"
    csv.write_text(
        "stage,step,loss,temporal,spatial,ortho,spatial_masked,frame,timestep,seconds\n"
        "1,1,0.5,0.4,0.1,,0,3,500,0.1\n1,2,0.4,0.3,0.1,,1,2,400,0.1\n"
        "2,1,0.2,,0.19,0.001,,0,300,0.1\n2,2,0.1,,0.09,0.0005,,0,200,0.1\n"
    )
    rows = read_losses(csv)
    assert rows[0]["ortho"] is None and rows[3]["ortho"] == 0.0005
    html = loss_curves(rows)
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the last step of each stage: stage, step, loss, temporal, spatial, ortho
    cells = re.findall(r"<td>([^<]*)</td>", html)
    assert cells == ["1", "2", "0.4", "0.3", "0.1", "—", "2", "2", "0.1", "—", "0.09", "0.0005"]
    assert "No finetuning" in loss_curves([])


def test_score_validity_and_fallbacks_are_shown_when_present():
    score = {
        "camera_score": 0.0,
        "variant": "resolution_free",
        "valid": False,
        "fallbacks": 3,
        "per_pair": [0.0, 0.0, 1.0],
        "reference": {"width": 64, "source": {"x": 1}},
    }
    rows, marks = score_rows(score, {"fallbacks": []})
    assert ("valid", False) in rows and ("fallbacks", 3) in rows and ("reference.width", 64) in rows
    assert not any(
        k == "reference fallbacks (run.json)" for k, _ in rows
    )  # score.json's own count wins
    assert marks == {"valid": "bad"}
    assert '<td class="bad">False</td>' in key_values(rows, marks=marks)
    rows, marks = score_rows({"camera_score": 0.1}, {"fallbacks": [{"pair": 1}]})
    assert ("reference fallbacks (run.json)", 1) in rows and marks == {}


def test_a_partial_directory_still_gets_a_page(tmp_path):
    (tmp_path / "run.json").write_text(
        json.dumps({"method": "cammimic", "seed": 7, "prompts": {"image": "<b>x</b>"}})
    )
    page = write_run_report(tmp_path).read_text()
    assert "seed 7" in page and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page  # escaped


@pytest.mark.parametrize("reference", ["camera:pan-left:frames=8"])
def test_a_cammimic_run_on_a_camera_preset_reports_losses(reference, tiny_weights, tmp_path):
    """The stage-1 reference video is the user image moved along the preset; the report shows the losses."""
    out = tmp_path / "cm"
    assert (
        main(
            [
                "run",
                reference,
                str(SCENE),
                "--prompt",
                "an astronaut",
                "--weights",
                str(tiny_weights),
                "-o",
                str(out),
                "--width",
                "64",
                "--height",
                "64",
                "--stage1-steps",
                "2",
                "--stage2-steps",
                "2",
                "--steps",
                "2",
                "--spatial-rank",
                "4",
                "--temporal-rank",
                "4",
                "-q",
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert run["reference"]["camera"]["moves"] == ["pan-left"] and run["reference"]["render"][
        "source"
    ] == str(SCENE)
    assert run["num_frames"] == 8
    motion = json.loads((out / "motion.json").read_text())
    assert motion["reference"]["estimator"] == "camera path"
    html = (out / "report.html").read_text()
    local_links_resolve(out)
    assert "reference | weak video | output" in html and "Finetuning losses" in html
    assert "data:image/png;base64," in html and "stage" in html


# --- issue 21 §3: a 50 MB prompt or 90 MB of LoRA metadata is not copied whole into run.json and report.html


def test_run_json_and_report_record_long_texts_cut_with_their_hash(tmp_path):
    import hashlib
    import time

    from cammimic.io.files import MAX_RECORDED_CHARS, bounded
    from cammimic.rundir import write_run

    prompt = "a mountain village " * 2_700_000  # about 50 MB, as the attack
    notes = "n" * 90_000_000  # 90 MB of LoRA header metadata, as read_lora returns it
    manifest = {
        "method": "cammimic",
        "prompts": {"image": prompt, "reference": "a rocket"},
        "lora_sources": {
            "spatial": {"path": "s.safetensors", "metadata": {"notes": notes, "rank": "4"}}
        },
        "fallbacks": [prompt],
    }
    result = write_run(
        tmp_path / "run",
        lambda tmp: {},
        manifest,
        started=time.perf_counter(),
        overwrite=False,
        inputs=[],
        camera_score=float("nan"),
    )
    run_json = (tmp_path / "run" / "run.json").read_text(encoding="utf-8")
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert len(run_json) < 30_000 and len(report) < 60_000
    run = json.loads(run_json)
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    assert run["prompts"]["image"] == (
        prompt[:MAX_RECORDED_CHARS] + f"…(truncated; {len(prompt)} chars, sha256 {digest})"
    )
    assert run["prompts"]["reference"] == "a rocket" and run["fallbacks"] == [
        run["prompts"]["image"]
    ]
    meta = run["lora_sources"]["spatial"]["metadata"]
    assert meta["rank"] == "4" and meta["notes"].endswith(
        f"…(truncated; 90000000 chars, sha256 {hashlib.sha256(notes.encode()).hexdigest()})"
    )
    assert f"sha256 {digest}" in report
    assert result.manifest == run  # what the API returns is what was recorded
    assert bounded("x" * MAX_RECORDED_CHARS) == "x" * MAX_RECORDED_CHARS  # at the limit: whole
