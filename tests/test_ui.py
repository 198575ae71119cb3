"""`cammimic ui`: the `transfer` API endpoint through gradio_client, queueing, cancelling, errors."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports

from cammimic.errors import CammimicError
from cammimic.ui import NO_PRESET, TransferRequest, UISettings, transfer_call

gr = pytest.importorskip("gradio", reason='the app needs gradio: pip install "cammimic[ui]"')
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "examples" / "reference.mp4")
SCENE = str(ROOT / "examples" / "scene.jpg")
#: The cammimic method at the smallest settings that exercise both phases.
TINY = {
    "frames": 8,
    "width": 64,
    "height": 64,
    "stage1_steps": 2,
    "stage2_steps": 2,
    "sampling_steps": 2,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(**kw):
    """The endpoint's positional inputs, in docs/ui.md's order."""
    values = dict(
        reference_video=None,
        camera_preset=NO_PRESET,
        image=None,
        prompt="",
        reference_prompt="",
        method="homography",
        backbone="zeroscope",
        weights="",
        frames=0,
        width=0,
        height=0,
        seed=0,
        stage1_steps=150,
        stage2_steps=150,
        sampling_steps=50,
        speed=1.0,
        ease="in-out",
    )
    values.update(kw)
    return list(values.values())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from cammimic.ui import launch

    runs = tmp_path_factory.mktemp("runs")
    # a client may name weights folders under the test's temporary folders (tiny_weights is there)
    # a long run to cancel needs more stage-1 steps than a server allows by default
    settings = UISettings(
        runs_dir=runs,
        weights_dirs=[tmp_path_factory.getbasetemp()],
        limits={"stage1_steps": (1, 100_000)},
    )
    app = launch(host="127.0.0.1", port=free_port(), settings=settings, block=False)
    yield app, runs
    app.close()


@pytest.fixture(scope="module")
def client(app):
    client = gradio_client.Client(app[0].local_url, verbose=False)
    client.app_runs = app[1]  # the server's runs folder: the app names run folders relative to it
    return client


def test_the_transfer_endpoint_is_documented():
    text = (ROOT / "docs" / "ui.md").read_text()
    from cammimic.ui import INPUT_NAMES

    assert 'api_name="/transfer"' in text
    for name in INPUT_NAMES:
        assert f"`{name}`" in text, name


def test_transfer_endpoint_runs_the_homography_method(client, app):
    out = client.predict(
        *args(
            reference_video=gradio_client.handle_file(REFERENCE),
            image=gradio_client.handle_file(SCENE),
            frames=8,
            width=192,
            height=128,
        ),
        api_name="/transfer",
    )
    status, video, side, weak, trajectory, score, downloads, run_dir = out
    assert (
        status == f"done: {run_dir}" and "/" not in run_dir
    )  # its own run directory, named without a server path
    run_dir = app[1] / run_dir
    assert Path(video).read_bytes() == (run_dir / "output.mp4").read_bytes()
    assert (
        Path(side).name == "side_by_side.mp4"
        and weak is None
        and Path(trajectory).name == "trajectory.png"
    )
    scored = json.loads((run_dir / "score.json").read_text())
    assert scored["valid"] and score.startswith(f"**CameraScore {scored['camera_score']:.4g}**")
    assert (
        f"fallbacks: reference {scored['reference_fallbacks']}/{scored['num_pairs']}, "
        f"output {scored['generated_fallbacks']}/{scored['num_pairs']}"
    ) in score
    assert {Path(d).name for d in downloads} == {"report.html", "run.json", f"{run_dir.name}.zip"}


def test_transfer_endpoint_takes_a_camera_preset(client):
    # keywords, as docs/ui.md shows: everything but reference_video and image has the form's default
    out = client.predict(
        reference_video=None,
        camera_preset="zoom-in",
        image=gradio_client.handle_file(SCENE),
        frames=8,
        width=128,
        height=128,
        speed=2.0,
        ease="linear",
        api_name="/transfer",
    )
    run = json.loads((client.app_runs / out[-1] / "run.json").read_text())
    assert run["reference"]["path"] == "camera:zoom-in:speed=2,ease=linear"
    motion = json.loads((client.app_runs / out[-1] / "motion.json").read_text())
    assert motion["trajectory"]["output"]["cumulative"]["zoom"][-1] == pytest.approx(
        math.exp(0.024 * 7), abs=5e-3
    )


def test_errors_come_back_as_one_line(client, app):
    before = set(app[1].iterdir())
    with pytest.raises(
        gradio_client.exceptions.AppError,
        match="^upload a reference video or a camera file, or pick a camera preset$",
    ):
        client.predict(*args(image=gradio_client.handle_file(SCENE)), api_name="/transfer")
    with pytest.raises(
        gradio_client.exceptions.AppError,
        match=r"zoom-inn is not in the list of choices: .*'pan-left', 'pan-right'",
    ):
        client.predict(
            *args(camera_preset="zoom-inn", image=gradio_client.handle_file(SCENE)),
            api_name="/transfer",
        )
    # an error of the run itself: the child's one line, with no server path, and no directory left behind
    bad = app[1].parent / "bad-weights"
    bad.mkdir(exist_ok=True)
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        client.predict(
            *args(
                camera_preset="zoom-in",
                image=gradio_client.handle_file(SCENE),
                method="cammimic",
                prompt="a scene",
                weights=str(bad),
                **TINY,
            ),
            api_name="/transfer",
        )
    assert str(info.value).startswith("weights directory <server path> has no ") and str(
        bad
    ) not in str(info.value)
    assert set(app[1].iterdir()) == before


def test_runs_queue_one_at_a_time_and_cancel_leaves_nothing(client, app, tiny_weights):
    """A long cammimic run, a short one queued behind it; Cancel (gradio_client's job.cancel, as the
    button) stops the long one mid-training, then the short one runs to the end."""
    from gradio_client.utils import Status

    from cammimic import ui

    before = set(app[1].iterdir())
    inputs = dict(
        reference_video=gradio_client.handle_file(REFERENCE),
        image=gradio_client.handle_file(SCENE),
        method="cammimic",
        prompt="an astronaut",
        reference_prompt="a rocket",
        weights=str(tiny_weights),
        **TINY,
        api_name="/transfer",
    )
    long = client.submit(**{**inputs, "stage1_steps": 100000})
    started = time.monotonic()
    while not (long.outputs() and long.outputs()[-1][0].startswith("stage 1: step")):
        assert time.monotonic() - started < 120 and not long.done()
        time.sleep(0.2)
    assert "/100000" in long.outputs()[-1][0]  # the training loop's own progress
    short = client.submit(**inputs)
    deadline = time.monotonic() + 30  # on a loaded machine the client takes a while to hear back
    while short.status().code == Status.STARTING and time.monotonic() < deadline:
        time.sleep(0.2)
    assert short.status().code == Status.IN_QUEUE  # one at a time
    children = list(ui.RUNNING)
    assert len(children) == 1 and children[0].proc.poll() is None
    long.cancel()

    status, video, side, weak, trajectory, score, downloads, run_dir = short.result(timeout=300)
    run_dir = str(app[1] / run_dir)
    # the long run was interrupted as by Ctrl-C: training stops at a step boundary and says so
    assert (
        children[0].proc.returncode == 130
    )  # as docs/cli.md promises for an interrupted finetuning
    assert children[0].error().startswith("interrupted after stage 1 step"), children[0].events
    assert set(app[1].iterdir()) - before == {
        Path(run_dir),
        Path(run_dir + ".zip"),
    }  # nothing left of the long one
    assert (
        Path(weak).name == "weak.mp4"
        and Path(video).name == "output.mp4"
        and "CameraScore" in score
    )
    assert {Path(d).name for d in downloads} == {
        "report.html",
        "run.json",
        "spatial.safetensors",
        "temporal.safetensors",
        f"{Path(run_dir).name}.zip",
    }
    run = json.loads((Path(run_dir) / "run.json").read_text())
    assert run["finetune"]["steps"] == {"stage1": 2, "stage2": 2} and run["num_frames"] == 8
    assert run["components"]["backbone"]["weights"] == str(Path(tiny_weights).resolve())


def test_transfer_call_checks_the_request(tmp_path):
    settings = UISettings(runs_dir=tmp_path, weights="/models/z")
    call = transfer_call(
        TransferRequest(
            camera_preset="pan-left",
            image="a.png",
            method="cammimic",
            prompt=" a cat ",
            frames=8,
            backbone="modelscope",
        ),
        tmp_path / "r",
        settings,
    )
    assert call == {
        "reference": "camera:pan-left:speed=1,ease=in-out",
        "image": "a.png",
        "output_dir": str(tmp_path / "r"),
        "overrides": {
            "method": "cammimic",
            "prompt": "a cat",
            "backbone__name": "modelscope",
            "backbone__weights": "/models/z",
            "frames": 8,
        },
    }  # step counts: the backbone's
    for req, message in [
        (TransferRequest(reference_video="r.mp4"), "upload an image"),
        (
            TransferRequest(reference_video="r.mp4", image="a.png", method="cammimic"),
            "needs a prompt",
        ),
        (TransferRequest(reference_video="r.mp4", image="a.png", frames=1), "^frames must be 0"),
        (
            TransferRequest(reference_video="r.mp4", image="a.png", method="x"),
            "method 'x' is unknown",
        ),
        (
            TransferRequest(reference_video="r.mp4", camera_file="c.json", image="a.png"),
            "^give a reference video or a camera file, not both",
        ),
    ]:
        with pytest.raises(CammimicError, match=message):
            transfer_call(req, tmp_path / "r", settings)
    # the operator's settings for every run win over a client's
    own = UISettings(runs_dir=tmp_path, overrides={"device": "cpu", "seed": 7})
    assert transfer_call(
        TransferRequest(camera_preset="pan-left", image="a.png", seed=3), tmp_path / "r", own
    )["overrides"] == {"method": "homography", "seed": 7, "device": "cpu"}


def test_the_form_starts_at_the_config_schemas_defaults(tmp_path):
    """Every input of the endpoint is a field of the form, starting at the config's default (the
    finetuning steps at 0, the backbone's own), so a default form leaves every setting out."""
    from cammimic.config import DEFAULTS
    from cammimic.ui import FORM_DEFAULTS, INPUT_NAMES, build_app

    assert (
        FORM_DEFAULTS["seed"] == DEFAULTS["run"]["seed"]
        and FORM_DEFAULTS["candidates"] == DEFAULTS["run"]["candidates"]
    )
    assert FORM_DEFAULTS["sampling_steps"] == DEFAULTS["sampling"]["steps"] == 0
    assert FORM_DEFAULTS["window_overlap"] == DEFAULTS["sampling"]["window_overlap"]
    assert {k: FORM_DEFAULTS[f"motion_{k}"] for k in DEFAULTS["motion"]} == DEFAULTS["motion"]
    assert FORM_DEFAULTS["stage1_steps"] == FORM_DEFAULTS["stage2_steps"] == 0
    app = build_app(UISettings(runs_dir=tmp_path))
    fns = app.fns.values() if isinstance(app.fns, dict) else app.fns
    [transfer] = [f for f in fns if getattr(f, "api_name", None) == "transfer"]
    ids = {"image": "user-image"}  # every other input's field is named after it
    assert [c.elem_id for c in transfer.inputs] == [
        ids.get(n, n.replace("_", "-")) for n in INPUT_NAMES
    ]
    for name, field in zip(INPUT_NAMES, transfer.inputs):
        if name in FORM_DEFAULTS:
            assert field.value == FORM_DEFAULTS[name], name
    call = transfer_call(
        TransferRequest(
            camera_preset="pan-left",
            image="a.png",
            method="cammimic",
            prompt="a cat",
            backbone="zeroscope",
        ),
        tmp_path / "r",
        UISettings(runs_dir=tmp_path),
        backbones=["zeroscope"],
    )
    assert call["overrides"] == {
        "method": "cammimic",
        "prompt": "a cat",
        "backbone__name": "zeroscope",
    }


def test_the_worker_takes_a_json_call_and_answers_in_json_lines(tmp_path):
    import subprocess
    import sys

    def worker(data: bytes):
        proc = subprocess.run(
            [sys.executable, "-m", "cammimic.worker"], input=data, capture_output=True, timeout=120
        )
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    assert worker(b"[1, 2]") == (
        1,
        [
            {
                "event": "error",
                "message": "the worker needs one JSON object with reference, "
                "image, output_dir and overrides",
            }
        ],
    )
    call = {
        "reference": "camera:zoom-in",
        "image": SCENE,
        "output_dir": str(tmp_path / "run"),
        "overrides": {"method": "homography", "frames": 4, "width": 64, "height": 64},
    }
    code, events = worker(
        json.dumps({**call, "overrides": {**call["overrides"], "bogus": 1}}).encode()
    )
    assert code == 1 and [e["event"] for e in events] == ["error"]
    assert (
        events[0]["message"].startswith("unknown setting 'run.bogus'")
        and not (tmp_path / "run").exists()
    )
    code, events = worker(json.dumps(call).encode())
    score = json.loads((tmp_path / "run" / "score.json").read_text())["camera_score"]
    assert (code, events) == (
        0,
        [{"event": "done", "output_dir": str(tmp_path / "run"), "camera_score": score}],
    )


def test_without_gradio_the_command_says_what_to_install(monkeypatch, tmp_path, capsys):
    import sys

    from cammimic.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    assert main(["ui", "--runs-dir", str(tmp_path / "runs")]) == 1
    assert capsys.readouterr().err == 'Error: the app needs gradio: pip install "cammimic[ui]"\n'
    assert not (tmp_path / "runs").exists()


def test_default_backbone_is_configurable(monkeypatch, tmp_path):
    import cammimic_mini

    from cammimic.ui import default_backbone

    class Host:
        def __init__(self, names):
            self.names = names

        def components(self, kind):
            return dict.fromkeys(self.names)

    monkeypatch.delenv("CAMMIMIC_UI_BACKBONE", raising=False)
    assert default_backbone(Host(["zeroscope", "modelscope"])) == "zeroscope"
    # mini, the offline proving-ground backbone, where its weights are installed in its package ...
    (tmp_path / "model_index.json").write_text("{}")
    monkeypatch.setattr(cammimic_mini, "WEIGHTS", tmp_path)
    assert default_backbone(Host(["zeroscope", "mini"])) == "mini"
    # ... and not where they are not: a plugin without weights is no default
    monkeypatch.setattr(cammimic_mini, "WEIGHTS", tmp_path / "no-weights-here")
    assert default_backbone(Host(["zeroscope", "mini"])) == "zeroscope"
    monkeypatch.setenv("CAMMIMIC_UI_BACKBONE", "modelscope")
    assert default_backbone(Host(["zeroscope", "mini"])) == "modelscope"


# --- issue 21 §1: whatever a web client sends is a value, never an option, a server path or unbounded


def test_client_values_never_become_options(tmp_path):
    """The attack: prompt="--debug", reference_prompt="--debug", backbone="--output=DIR",
    weights="--overwrite" made the child replace DIR. The child now gets the call as JSON: every
    client value is the value of a setting, never one of transfer's own arguments."""
    import inspect

    import cammimic
    from cammimic.config import load_config

    settings = UISettings(runs_dir=tmp_path, hub_ids=["owner/model"])
    attack = dict(
        camera_preset="zoom-in",
        image="a.png",
        method="cammimic",
        prompt="--debug",
        reference_prompt="--debug",
        backbone=f"--output={tmp_path / 'victim'}",
        weights="--overwrite",
    )
    with pytest.raises(
        CammimicError, match=r"^backbone '--output=.*victim' is unknown; valid: .*zeroscope"
    ):
        transfer_call(TransferRequest(**attack), tmp_path / "r", settings, backbones=["zeroscope"])
    with pytest.raises(
        CammimicError, match=r"^weights '--overwrite' are not available on this server"
    ):
        transfer_call(
            TransferRequest(**{**attack, "backbone": "zeroscope"}),
            tmp_path / "r",
            settings,
            backbones=["zeroscope"],
        )
    call = transfer_call(
        TransferRequest(**{**attack, "backbone": "zeroscope", "weights": "owner/model"}),
        tmp_path / "r",
        settings,
        backbones=["zeroscope"],
    )
    assert call["output_dir"] == str(tmp_path / "r")
    own = set(inspect.signature(cammimic.transfer).parameters) - {
        "overrides"
    }  # overwrite, resume, config, ...
    assert not own & set(call["overrides"])
    # transfer's keywords as settings (docs/config.md): section__key, or key of [run]
    config = load_config(None).with_overrides(
        {k.replace("__", ".") if "__" in k else f"run.{k}": v for k, v in call["overrides"].items()}
    )
    assert config["run"]["prompt"] == "--debug" == config["run"]["reference_prompt"]
    assert config["backbone"] == {"name": "zeroscope", "weights": "owner/model"}


def test_the_argument_injection_attack_through_the_endpoint_deletes_nothing(client, app, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    before = set(app[1].iterdir())
    with pytest.raises(
        gradio_client.exceptions.AppError, match=r"^backbone '--output=.*' is unknown; valid: "
    ):
        client.predict(
            *args(
                camera_preset="zoom-in",
                image=gradio_client.handle_file(SCENE),
                method="cammimic",
                prompt="--debug",
                reference_prompt="--debug",
                backbone=f"--output={victim}",
                weights="--overwrite",
                **TINY,
            ),
            api_name="/transfer",
        )
    assert [p.name for p in victim.iterdir()] == ["precious.txt"] and set(
        app[1].iterdir()
    ) == before


def test_weights_give_one_line_whether_a_server_folder_exists_or_not(client):
    lines = {}
    # and a Hub id the operator did not list (issue 21: the server must not download it)
    for weights in (
        "/root/.ssh",
        "/root/no-such-folder",
        str(Path.home()),
        "/etc",
        "../..",
        "~/.ssh",
        "attacker/huge-repo",
    ):
        with pytest.raises(gradio_client.exceptions.AppError) as info:
            client.predict(
                *args(
                    camera_preset="zoom-in",
                    image=gradio_client.handle_file(SCENE),
                    method="cammimic",
                    prompt="a scene",
                    weights=weights,
                    **TINY,
                ),
                api_name="/transfer",
            )
        lines[weights] = str(info.value).replace(weights, "W")
    assert len(set(lines.values())) == 1, lines
    assert next(iter(lines.values())).startswith(
        "weights 'W' are not available on this server; give the app's"
    )


def _call(app, data):
    """A raw call of the endpoint (as a hand-written client would send it): the error event's text."""
    import httpx

    url = app[0].local_url.rstrip("/")
    event = httpx.post(f"{url}/gradio_api/call/transfer", json={"data": data}, timeout=30).json()[
        "event_id"
    ]
    return httpx.get(f"{url}/gradio_api/call/transfer/{event}", timeout=120).text


@pytest.mark.parametrize("field", ["reference_video", "image"])
def test_a_server_path_as_file_data_is_refused_and_never_served(app, field):
    import httpx

    secret = {"path": "/etc/passwd", "orig_name": "passwd", "meta": {"_type": "gradio.FileData"}}
    scene = {"path": "/etc/hostname", "orig_name": "hostname", "meta": {"_type": "gradio.FileData"}}
    data = args(
        camera_preset="zoom-in" if field == "image" else NO_PRESET,
        image=scene,
        frames=8,
        width=64,
        height=64,
    )
    data[0 if field == "reference_video" else 2] = secret
    text = _call(app, data)
    assert "event: error" in text and "root:" not in text
    assert "/tmp/gradio" not in text and str(app[1]) not in text  # no server path comes back
    # nothing was copied into Gradio's cache for a client to fetch
    from gradio.utils import get_upload_folder

    copies = [p for p in Path(get_upload_folder()).rglob("passwd")]
    assert copies == []
    url = app[0].local_url.rstrip("/")
    assert httpx.get(f"{url}/gradio_api/file=/etc/passwd").status_code in (403, 404)


def test_only_regular_uploaded_files_are_accepted(tmp_path):
    from cammimic.ui import check_upload

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "ok.jpg").write_bytes(b"x" * 10)
    assert check_upload(str(uploads / "ok.jpg"), "image", uploads) == str(
        (uploads / "ok.jpg").resolve()
    )
    os.mkfifo(uploads / "fifo.jpg")
    (uploads / "link.jpg").symlink_to("/etc/passwd")
    (uploads / "big.jpg").write_bytes(b"x" * 2048)
    for path in (
        "/etc/passwd",
        str(uploads / "fifo.jpg"),
        str(uploads / "link.jpg"),
        str(uploads / "../x.jpg"),
        str(uploads / "absent.jpg"),
        str(uploads),
    ):
        with pytest.raises(CammimicError) as info:
            check_upload(path, "image", uploads)
        assert str(info.value) == "the image must be a file uploaded to this app; upload it again"
    with pytest.raises(CammimicError, match=r"^the image is 0.0 MB; this app accepts at most 0 MB"):
        check_upload(str(uploads / "big.jpg"), "image", uploads, max_bytes=1024)


def test_uploads_are_bounded(app, tmp_path):
    """The attack: a 60 MB upload was accepted."""
    import httpx

    big = tmp_path / "big.mp4"
    with big.open("wb") as f:
        f.truncate(60 * 1024 * 1024)
    url = app[0].local_url.rstrip("/")
    with big.open("rb") as f:
        r = httpx.post(
            f"{url}/gradio_api/upload", files={"files": ("big.mp4", f, "video/mp4")}, timeout=60
        )
    assert r.status_code == 413, r.text


def test_text_and_speed_are_bounded(tmp_path):
    settings = UISettings(runs_dir=tmp_path)
    with pytest.raises(
        CammimicError, match=r"^the prompt is 50001 characters long; at most 2000 are accepted"
    ):
        transfer_call(
            TransferRequest(
                camera_preset="zoom-in",
                image="a.png",
                method="cammimic",
                prompt="x" * 50001,
                backbone="zeroscope",
            ),
            tmp_path / "r",
            settings,
            backbones=["zeroscope"],
        )
    with pytest.raises(CammimicError, match="contains a NUL character"):
        transfer_call(
            TransferRequest(
                camera_preset="zoom-in",
                image="a.png",
                method="cammimic",
                prompt="a\0b",
                backbone="zeroscope",
            ),
            tmp_path / "r",
            settings,
            backbones=["zeroscope"],
        )
    for speed in (10000, float("nan"), -1, "x"):
        with pytest.raises(CammimicError, match=r"^preset speed must be between 0.25 and 4"):
            transfer_call(
                TransferRequest(camera_preset="zoom-in", image="a.png", speed=speed),
                tmp_path / "r",
                settings,
            )


def test_child_errors_name_no_server_path():
    from cammimic.ui import redact

    line = "weights directory /srv/models/x has no unet/ subfolder; image /tmp/gradio/ab12/scene.jpg is bad"
    assert redact(line, {"/tmp/gradio/ab12/scene.jpg": "scene.jpg"}) == (
        "weights directory <server path> has no unet/ subfolder; image scene.jpg is bad"
    )


def test_numbers_from_a_client_are_bounded(tmp_path):
    """The attack: frames=1e9, 100000-pixel sides, 10**9 finetuning or sampling steps reached the child."""
    settings = UISettings(runs_dir=tmp_path)
    base = dict(
        camera_preset="zoom-in",
        image="a.png",
        method="cammimic",
        prompt="a scene",
        backbone="zeroscope",
    )
    for name, value, line in [
        (
            "frames",
            1_000_000_000,
            "frames must be 0 (default) or between 2 and 128 on this server, got 1000000000",
        ),
        (
            "width",
            100_000,
            "width must be 0 (default) or between 16 and 2048 on this server, got 100000",
        ),
        (
            "height",
            -64,
            "height must be 0 (default) or between 16 and 2048 on this server, got -64",
        ),
        (
            "stage1_steps",
            10**9,
            "stage1 steps must be 0 (default) or between 1 and 1000 on this server, got 1000000000",
        ),
        (
            "stage2_steps",
            -1,
            "stage2 steps must be 0 (default) or between 1 and 1000 on this server, got -1",
        ),
        (
            "sampling_steps",
            10**6,
            "sampling steps must be 0 (default) or between 1 and 200 on this server, got 1000000",
        ),
        (
            "sampling_steps",
            -1,
            "sampling steps must be 0 (default) or between 1 and 200 on this server, got -1",
        ),
        ("seed", -5, "seed must be between 0 and 9223372036854775807 on this server, got -5"),
        (
            "seed",
            10**400,
            "seed must be between 0 and 9223372036854775807 on this server, got a number of 1329 bits",
        ),
        ("frames", 8.5, "frames must be a whole number, got '8.5'"),
        ("frames", float("nan"), "frames must be a whole number, got 'nan'"),
        ("width", float("inf"), "width must be a whole number, got 'inf'"),
        ("stage1_steps", "1e400", "stage1 steps must be a whole number, got '1e400'"),
        ("stage2_steps", True, "stage2 steps must be a whole number, got 'True'"),
        ("sampling_steps", [50], "sampling steps must be a whole number, got '[50]'"),
        ("window_overlap", 65, "window overlap must be between 0 and 64 on this server, got 65"),
        ("window_overlap", -1, "window overlap must be between 0 and 64 on this server, got -1"),
    ]:
        with pytest.raises(CammimicError) as info:
            transfer_call(
                TransferRequest(**{**base, name: value}),
                tmp_path / "r",
                settings,
                backbones=["zeroscope"],
            )
        assert str(info.value) == line
    # the edges are accepted; 0 keeps the method's default where it has one; 8.0 (a JSON number) is 8
    call = transfer_call(
        TransferRequest(
            **{
                **base,
                "frames": 128.0,
                "width": 0,
                "height": 2048,
                "stage1_steps": 1000,
                "stage2_steps": 0,
                "sampling_steps": 200,
                "seed": 2**63 - 1,
                "window_overlap": 64,
            }
        ),
        tmp_path / "r",
        settings,
        backbones=["zeroscope"],
    )["overrides"]
    assert call == {
        "method": "cammimic",
        "prompt": "a scene",
        "backbone__name": "zeroscope",
        "frames": 128,
        "height": 2048,
        "seed": 2**63 - 1,
        "finetune__stage1_steps": 1000,
        "sampling__steps": 200,
        "sampling__window_overlap": 64,
    }
    assert type(call["frames"]) is int
    # 0 steps: the backbone's own (mini's recipe, zeroscope's the paper's), so the setting is left out
    default = transfer_call(
        TransferRequest(**{**base, "stage1_steps": 0, "stage2_steps": 0, "sampling_steps": 0}),
        tmp_path / "r",
        settings,
        backbones=["zeroscope"],
    )["overrides"]
    assert not {"finetune__stage1_steps", "finetune__stage2_steps", "sampling__steps"} & set(
        default
    )
    # the operator may widen or narrow a range
    narrow = UISettings(runs_dir=tmp_path, limits={"frames": (2, 16)})
    with pytest.raises(
        CammimicError, match=r"^frames must be 0 \(default\) or between 2 and 16 on this server"
    ):
        transfer_call(
            TransferRequest(**{**base, "frames": 17}),
            tmp_path / "r",
            narrow,
            backbones=["zeroscope"],
        )


def test_huge_numbers_through_the_endpoint_start_nothing(client, app):
    before = set(app[1].iterdir())
    with pytest.raises(
        gradio_client.exceptions.AppError,
        match=r"^frames must be 0 \(default\) or between 2 and 128 on this server, got 1000000000$",
    ):
        client.predict(
            *args(
                camera_preset="zoom-in",
                image=gradio_client.handle_file(SCENE),
                frames=1_000_000_000,
                width=64,
                height=64,
            ),
            api_name="/transfer",
        )
    assert set(app[1].iterdir()) == before


def test_a_client_may_name_only_the_hub_ids_the_operator_allowed(tmp_path):
    """The attack: weights="attacker/huge-repo" made the server download that repository."""
    settings = UISettings(runs_dir=tmp_path, hub_ids=["cerspense/zeroscope_v2_576w"])
    base = dict(
        camera_preset="zoom-in",
        image="a.png",
        method="cammimic",
        prompt="a scene",
        backbone="zeroscope",
    )
    call = transfer_call(
        TransferRequest(**base, weights="cerspense/zeroscope_v2_576w"),
        tmp_path / "r",
        settings,
        backbones=["zeroscope"],
    )
    assert call["overrides"]["backbone__weights"] == "cerspense/zeroscope_v2_576w"
    lines = set()
    for weights in (
        "attacker/huge-repo",
        "cerspense/zeroscope_v2_576w/../x",
        "/no/such/folder",
        "/etc",
    ):
        with pytest.raises(CammimicError) as info:
            transfer_call(
                TransferRequest(**base, weights=weights),
                tmp_path / "r",
                settings,
                backbones=["zeroscope"],
            )
        lines.add(str(info.value).replace(weights, "W"))
    assert lines == {
        "weights 'W' are not available on this server; give the app's weights (\"\"), a Hub id the "
        "server allows (cammimic ui --allow-hub-id) or a folder under a weights folder it allows "
        "(cammimic ui --weights-dir)"
    }
    # the app's own --weights may be a Hub id
    own = UISettings(runs_dir=tmp_path, weights="cerspense/zeroscope_v2_576w")
    assert (
        transfer_call(TransferRequest(**base), tmp_path / "r", own, backbones=["zeroscope"])[
            "overrides"
        ]["backbone__weights"]
        == "cerspense/zeroscope_v2_576w"
    )


def test_allow_hub_id_takes_only_hub_ids(tmp_path, capsys):
    from cammimic.cli import main

    assert main(["ui", "--runs-dir", str(tmp_path / "runs"), "--allow-hub-id", "../secrets"]) == 1
    assert capsys.readouterr().err == (
        "Error: --allow-hub-id '../secrets' is not a Hub id; give OWNER/NAME, e.g. "
        "cerspense/zeroscope_v2_576w\n"
    )
    assert not (tmp_path / "runs").exists()


# --- issue 25 in the web app: a camera file as the reference, long clips, best of N, motion controls


def write_re10k(path, frames: int = 8, degrees: float = 1.0) -> Path:
    """A RealEstate10K camera .txt: the camera turns right by ``degrees`` a frame (rotation only)."""
    lines = ["https://www.youtube.com/watch?v=example"]
    for k in range(frames):
        a = math.radians(degrees * k)
        rot = [[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]]
        matrix = [v for row in rot for v in (*row, 0.0)]
        lines.append(" ".join(str(v) for v in [33366 * k, 0.5, 0.75, 0.5, 0.5, 0, 0, *matrix]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_camera_file_is_a_reference(client, tmp_path):
    """An editable camera file (.json) and a RealEstate10K camera file (.txt, converted as
    `cammimic import-camera` does, for the output's size) move the image along their path."""
    from cammimic.camera_file import read_re10k, to_camera_file
    from cammimic.io import sha256
    from cammimic.motion import MotionEstimate

    hs = np.repeat(
        np.array([[[1.0, 0, -3], [0, 1, 1], [0, 0, 1]]]), 5, axis=0
    )  # a pan, 3 px a frame
    camera = tmp_path / "camera.json"
    camera.write_text(
        json.dumps(
            to_camera_file(MotionEstimate(homographies=hs, width=128, height=96, estimator="t"))
        )
    )
    out = client.predict(
        reference_video=None,
        camera_file=gradio_client.handle_file(str(camera)),
        image=gradio_client.handle_file(SCENE),
        width=128,
        height=96,
        api_name="/transfer",
    )
    run = json.loads((client.app_runs / out[-1] / "run.json").read_text())
    assert run["reference"]["camera"]["kind"] == "file" and run["reference"]["camera"][
        "sha256"
    ] == sha256(camera)
    assert run["num_frames"] == 6
    motion = json.loads((client.app_runs / out[-1] / "motion.json").read_text())
    assert np.allclose(
        motion["reference"]["homographies"], hs, atol=1e-9
    )  # the file's path, exactly

    re10k = write_re10k(tmp_path / "clip.txt")
    out = client.predict(
        reference_video=None,
        camera_file=gradio_client.handle_file(str(re10k)),
        image=gradio_client.handle_file(SCENE),
        width=128,
        height=96,
        api_name="/transfer",
    )
    motion = json.loads((client.app_runs / out[-1] / "motion.json").read_text())
    want = read_re10k(re10k, width=128, height=96)["frames"][-1]
    got = {k: v[-1] for k, v in motion["trajectory"]["reference"]["cumulative"].items()}
    assert want["pan"] > 0.05 and got == pytest.approx({k: want[k] for k in got}, abs=1e-6)


def test_a_bad_camera_file_gets_one_line_naming_only_the_upload(client, app, tmp_path):
    before = set(app[1].iterdir())
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "cammimic-camera", "width": 64, "height": 64, "frames": []}')
    broken = write_re10k(tmp_path / "broken.txt")
    broken.write_text(broken.read_text() + "1 2 3\n")
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(9 * 2**20)  # under the upload limit, over a camera file's
    for upload, line in [
        (bad, r"^camera file bad\.json: .*needs \"width\", \"height\" and \"frames\""),
        (broken, r"^broken\.txt line 10: 3 numbers, a frame line has 19"),
        (big, r"^the camera file is 9\.0 MB; this app accepts at most 8 MB$"),
        (
            Path(SCENE),
            r"^Invalid file type\. Please upload a file that is one of these formats: \['\.json', '\.txt'\]$",
        ),
    ]:
        with pytest.raises(gradio_client.exceptions.AppError, match=line) as info:
            client.predict(
                reference_video=None,
                camera_file=gradio_client.handle_file(str(upload)),
                image=gradio_client.handle_file(SCENE),
                api_name="/transfer",
            )
        text = str(info.value)
        assert "\n" not in text and "/tmp" not in text and str(tmp_path) not in text, text
    with pytest.raises(
        gradio_client.exceptions.AppError,
        match="^give a reference video or a camera file, not both",
    ):
        client.predict(
            reference_video=gradio_client.handle_file(REFERENCE),
            camera_file=gradio_client.handle_file(str(bad)),
            image=gradio_client.handle_file(SCENE),
            api_name="/transfer",
        )
    assert set(app[1].iterdir()) == before


def test_a_camera_file_must_be_json_or_realestate10k_txt(tmp_path):
    """Gradio refuses other types at upload (the field's file_types); a direct call is refused too."""
    from cammimic.ui import camera_reference

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    with pytest.raises(
        CammimicError,
        match=r"^the camera file must be a \.json camera file .* 'clip\.mp4' is neither$",
    ):
        camera_reference(video)
    converted = camera_reference(
        write_re10k(tmp_path / "cams.TXT"), width=64, height=48, workdir=tmp_path
    )
    assert Path(converted) == tmp_path / "cams.json"
    assert (
        json.loads(Path(converted).read_text())["source"]["realestate10k"] == "cams.TXT"
    )  # no server path


@pytest.fixture(scope="module")
def short_weights(tmp_path_factory):
    """Tiny weights that sample 8 frames at once (their ``max_frames``): more are a long clip."""
    from cammimic_unet3d.random_weights import save_components

    return save_components(tmp_path_factory.mktemp("tiny-8"), preset="tiny", seed=0, max_frames=8)


def test_every_issue_25_feature_runs_through_the_endpoint(client, short_weights, tmp_path):
    """The cammimic method from the web app with a RealEstate10K camera file as the reference, a
    clip longer than the backbone's (windows sharing window_overlap frames), best of 2 and a
    motion control: run.json records each."""
    re10k = write_re10k(tmp_path / "clip.txt", frames=12, degrees=0.5)
    job = client.submit(
        reference_video=None,
        camera_file=gradio_client.handle_file(str(re10k)),
        image=gradio_client.handle_file(SCENE),
        method="cammimic",
        prompt="an astronaut",
        weights=str(short_weights),
        **{**TINY, "frames": 12},
        window_overlap=3,
        candidates=2,
        motion_strength=0.5,
        api_name="/transfer",
    )
    status, video, side, weak, trajectory, score, downloads, run_dir = job.result(timeout=600)
    out = client.app_runs / run_dir
    run = json.loads((out / "run.json").read_text())
    assert run["reference"]["camera"]["kind"] == "file" and run["num_frames"] == 12
    assert run["windows"]["overlap"] == 3 and [
        (w["start"], w["end"]) for w in run["windows"]["windows"]
    ] == [(0, 8), (4, 12)]
    assert [c["seed"] for c in run["candidates"]] == [0, 1] and score.endswith(
        f"seed {run['kept_seed']} kept"
    )
    assert "strength = 0.5" in (out / "config.toml").read_text()
    statuses = [o[0] for o in job.outputs()]
    assert any(s.startswith("stage 2: step") for s in statuses), (
        statuses
    )  # the API's progress, not tqdm's
