"""`cammimic ui`: the `transfer` API endpoint through gradio_client, queueing, cancelling, errors."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports

from cammimic.errors import CammimicError
from cammimic.ui import NO_PRESET, TransferRequest, UISettings, run_command

gr = pytest.importorskip("gradio", reason='the app needs gradio: pip install "cammimic[ui]"')
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "examples" / "reference.mp4")
SCENE = str(ROOT / "examples" / "scene.jpg")
#: The cammimic method at the smallest settings that exercise both phases.
TINY = {"frames": 8, "width": 64, "height": 64, "stage1_steps": 2, "stage2_steps": 2, "sampling_steps": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(**kw):
    """The endpoint's positional inputs, in docs/ui.md's order."""
    values = dict(reference_video=None, camera_preset=NO_PRESET, image=None, prompt="", reference_prompt="",
                  method="homography", backbone="zeroscope", weights="", frames=0, width=0, height=0, seed=0,
                  stage1_steps=150, stage2_steps=150, sampling_steps=50, speed=1.0, ease="in-out")
    values.update(kw)
    return list(values.values())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from cammimic.ui import launch

    runs = tmp_path_factory.mktemp("runs")
    app = launch(host="127.0.0.1", port=free_port(), settings=UISettings(runs_dir=runs), block=False)
    yield app, runs
    app.close()


@pytest.fixture(scope="module")
def client(app):
    return gradio_client.Client(app[0].local_url, verbose=False)


def test_the_transfer_endpoint_is_documented():
    text = (ROOT / "docs" / "ui.md").read_text()
    from cammimic.ui import INPUT_NAMES

    assert 'api_name="/transfer"' in text
    for name in INPUT_NAMES:
        assert f"`{name}`" in text, name


def test_transfer_endpoint_runs_the_homography_method(client, app):
    out = client.predict(*args(reference_video=gradio_client.handle_file(REFERENCE), image=gradio_client.handle_file(SCENE),
                               frames=8, width=192, height=128), api_name="/transfer")
    status, video, side, weak, trajectory, score, downloads, run_dir = out
    run_dir = Path(run_dir)
    assert status == f"done: {run_dir}" and run_dir.parent == app[1]  # its own run directory
    assert Path(video).read_bytes() == (run_dir / "output.mp4").read_bytes()
    assert Path(side).name == "side_by_side.mp4" and weak is None and Path(trajectory).name == "trajectory.png"
    scored = json.loads((run_dir / "score.json").read_text())
    assert scored["valid"] and score.startswith(f"**CameraScore {scored['camera_score']:.4g}**")
    assert (f"fallbacks: reference {scored['reference_fallbacks']}/{scored['num_pairs']}, "
            f"output {scored['generated_fallbacks']}/{scored['num_pairs']}") in score
    assert {Path(d).name for d in downloads} == {"report.html", "run.json", f"{run_dir.name}.zip"}


def test_transfer_endpoint_takes_a_camera_preset(client):
    # keywords, as docs/ui.md shows: everything but reference_video and image has the form's default
    out = client.predict(reference_video=None, camera_preset="zoom-in", image=gradio_client.handle_file(SCENE), frames=8,
                         width=128, height=128, speed=2.0, ease="linear", api_name="/transfer")
    run = json.loads((Path(out[-1]) / "run.json").read_text())
    assert run["reference"]["path"] == "camera:zoom-in:speed=2,ease=linear"
    motion = json.loads((Path(out[-1]) / "motion.json").read_text())
    assert motion["trajectory"]["output"]["cumulative"]["zoom"][-1] == pytest.approx(math.exp(0.024 * 7), abs=5e-3)


def test_errors_come_back_as_one_line(client, app):
    before = set(app[1].iterdir())
    with pytest.raises(gradio_client.exceptions.AppError, match="upload a reference video or pick a camera preset"):
        client.predict(*args(image=gradio_client.handle_file(SCENE)), api_name="/transfer")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"zoom-inn is not in the list of choices: .*'pan-left', 'pan-right'"):
        client.predict(*args(camera_preset="zoom-inn", image=gradio_client.handle_file(SCENE)), api_name="/transfer")
    # an error of the run itself: the child's one line, and no directory left behind
    with pytest.raises(gradio_client.exceptions.AppError, match=r"^weights directory .*no-such-weights does not exist; pass a diffusers-layout directory"):
        client.predict(*args(camera_preset="zoom-in", image=gradio_client.handle_file(SCENE), method="cammimic",
                             prompt="a scene", weights=str(app[1] / "no-such-weights"), **TINY), api_name="/transfer")
    assert set(app[1].iterdir()) == before


def test_runs_queue_one_at_a_time_and_cancel_leaves_nothing(client, app, tiny_weights):
    """A long cammimic run, a short one queued behind it; Cancel (gradio_client's job.cancel, as the
    button) stops the long one mid-training, then the short one runs to the end."""
    from gradio_client.utils import Status

    from cammimic import ui

    before = set(app[1].iterdir())
    inputs = dict(reference_video=gradio_client.handle_file(REFERENCE), image=gradio_client.handle_file(SCENE),
                  method="cammimic", prompt="an astronaut", reference_prompt="a rocket", weights=str(tiny_weights),
                  **TINY, api_name="/transfer")
    long = client.submit(**{**inputs, "stage1_steps": 100000})
    started = time.monotonic()
    while not (long.outputs() and long.outputs()[-1][0].startswith("stage 1: step")):
        assert time.monotonic() - started < 120 and not long.done()
        time.sleep(0.2)
    assert "/100000" in long.outputs()[-1][0]  # the training loop's own progress
    short = client.submit(**inputs)
    time.sleep(1.0)
    assert short.status().code == Status.IN_QUEUE  # one at a time
    children = list(ui.RUNNING)
    assert len(children) == 1 and children[0].proc.poll() is None
    long.cancel()

    status, video, side, weak, trajectory, score, downloads, run_dir = short.result(timeout=300)
    # the long run was interrupted as by Ctrl-C: training stops at a step boundary and says so
    assert children[0].proc.returncode == 130  # as docs/cli.md promises for an interrupted finetuning
    assert any(line.startswith("Error: interrupted after stage 1 step") for line in children[0].lines), children[0].lines
    assert set(app[1].iterdir()) - before == {Path(run_dir), Path(run_dir + ".zip")}  # nothing left of the long one
    assert Path(weak).name == "weak.mp4" and Path(video).name == "output.mp4" and "CameraScore" in score
    assert {Path(d).name for d in downloads} == {"report.html", "run.json", "spatial.safetensors",
                                                  "temporal.safetensors", f"{Path(run_dir).name}.zip"}
    run = json.loads((Path(run_dir) / "run.json").read_text())
    assert run["finetune"]["steps"] == {"stage1": 2, "stage2": 2} and run["num_frames"] == 8
    assert run["components"]["backbone"]["weights"] == str(Path(tiny_weights).resolve())


def test_run_command_checks_the_request(tmp_path):
    settings = UISettings(runs_dir=tmp_path, weights="/models/z")
    cmd = run_command(TransferRequest(camera_preset="pan-left", image="a.png", method="cammimic", prompt=" a cat ",
                                      frames=8, backbone="modelscope"), tmp_path / "r", settings)
    assert cmd[3:] == ["run", "camera:pan-left:speed=1,ease=in-out", "a.png", "-o", str(tmp_path / "r"), "--method",
                       "cammimic", "--seed", "0", "--frames", "8", "--prompt", "a cat", "--backbone", "modelscope",
                       "--weights", "/models/z", "--stage1-steps", "150", "--stage2-steps", "150", "--steps", "50"]
    for req, message in [(TransferRequest(reference_video="r.mp4"), "upload an image"),
                         (TransferRequest(reference_video="r.mp4", image="a.png", method="cammimic"), "needs a prompt"),
                         (TransferRequest(reference_video="r.mp4", image="a.png", frames=1), "--frames must be 0"),
                         (TransferRequest(reference_video="r.mp4", image="a.png", method="x"), "method 'x' is unknown")]:
        with pytest.raises(CammimicError, match=message):
            run_command(req, tmp_path / "r", settings)


def test_without_gradio_the_command_says_what_to_install(monkeypatch, tmp_path, capsys):
    import sys

    from cammimic.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    assert main(["ui", "--runs-dir", str(tmp_path / "runs")]) == 1
    assert capsys.readouterr().err == 'Error: the app needs gradio: pip install "cammimic[ui]"\n'
    assert not (tmp_path / "runs").exists()


def test_default_backbone_is_configurable(monkeypatch):
    from cammimic.ui import default_backbone

    class Host:
        def __init__(self, names):
            self.names = names

        def components(self, kind):
            return dict.fromkeys(self.names)

    monkeypatch.delenv("CAMMIMIC_UI_BACKBONE", raising=False)
    assert default_backbone(Host(["zeroscope", "modelscope"])) == "zeroscope"
    assert default_backbone(Host(["zeroscope", "mini"])) == "mini"  # the offline proving-ground backbone
    monkeypatch.setenv("CAMMIMIC_UI_BACKBONE", "modelscope")
    assert default_backbone(Host(["zeroscope", "mini"])) == "modelscope"

