"""The recovered camera as a file a person edits, and RealEstate10K import (issue 25 §3)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import photo

from cammimic.camera import load_path_file
from cammimic.camera_file import path_homographies, read_re10k, similarity, to_camera_file
from cammimic.cli import main
from cammimic.errors import CammimicError
from cammimic.homography import chain, to_resolution_free
from cammimic.motion import MotionEstimate
from cammimic.synthetic import camera_path
from cammimic.trajectory import summarize

W, H = 192, 128


@pytest.fixture(scope="module")
def user_png(tmp_path_factory):
    import cv2

    d = tmp_path_factory.mktemp("camfile")
    cv2.imwrite(
        str(d / "user.png"), cv2.cvtColor(photo("coffee", 1.0)[:256, :384], cv2.COLOR_RGB2BGR)
    )
    return d / "user.png"


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _run(reference, image, out) -> dict:
    assert (
        main(
            [
                "run",
                str(reference),
                str(image),
                "--method",
                "homography",
                "--width",
                str(W),
                "--height",
                str(H),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return json.loads((out / "motion.json").read_text())["trajectory"]


def test_unedited_file_gives_the_exact_homographies_back(tmp_path):
    steps = camera_path("orbit", 9, W, H)  # pan, zoom, roll and perspective
    motion = MotionEstimate(homographies=steps, width=W, height=H, estimator="truth")
    data = to_camera_file(motion)
    assert [f["frame"] for f in data["frames"]] == list(range(9)) and data[
        "format"
    ] == "cammimic-camera"
    cum = summarize(motion)["cumulative"]
    assert [f["pan"] for f in data["frames"]] == pytest.approx(cum["pan"], abs=1e-9)
    path = load_path_file(_write(tmp_path / "cam.json", data))
    assert np.allclose(path.homographies(W, H), steps, atol=1e-8)
    assert path_homographies(data, "x")[1] == []  # nothing counted as edited


def test_edited_numbers_win_and_keep_the_perspective(tmp_path):
    steps = camera_path("orbit", 9, W, H)
    data = to_camera_file(MotionEstimate(homographies=steps, width=W, height=H, estimator="truth"))
    data["frames"][-1]["pan"] += 0.2
    data["frames"][-1]["zoom"] = 1.25
    rf, edited = path_homographies(data, "x")
    assert edited == [8]
    last = chain(rf)[-1]
    from cammimic.camera_file import decompose

    got = decompose(last)
    assert got["pan"] == pytest.approx(data["frames"][-1]["pan"], abs=1e-9)
    assert got["zoom"] == pytest.approx(1.25, abs=1e-9)
    # the perspective row of the exact homography is kept
    exact = to_resolution_free(chain(steps)[-1], W, H)
    assert last[2, :2] / last[2, 2] == pytest.approx(exact[2, :2] / exact[2, 2], rel=0.3)
    # frames before the edit are untouched
    assert np.allclose(rf[:-1], to_resolution_free(steps[:-1], W, H), atol=1e-9)


def test_an_edited_pan_and_zoom_change_the_rendered_output(tmp_path, user_png):
    """Export a preset's camera, edit it, run: the output's measured motion is the edit."""
    cam = tmp_path / "cam.json"
    assert (
        main(
            [
                "motion",
                "camera:pan-left:frames=9,ease=linear",
                "--width",
                str(W),
                "--height",
                str(H),
                "--camera-file",
                str(cam),
            ]
        )
        == 0
    )
    data = json.loads(cam.read_text())
    plain = _run(cam, user_png, tmp_path / "plain")
    for f in data["frames"]:  # twice the pan, and a steady zoom-in to 1.2x
        f["pan"] *= 2
        f["zoom"] = 1.2 ** (f["frame"] / 8)
    edited = _run(_write(tmp_path / "edited.json", data), user_png, tmp_path / "edited")
    assert plain["output"]["cumulative"]["pan"][-1] < -0.1
    assert edited["reference"]["cumulative"]["pan"][-1] == pytest.approx(
        2 * plain["reference"]["cumulative"]["pan"][-1]
    )
    assert edited["output"]["cumulative"]["pan"][-1] == pytest.approx(
        2 * plain["output"]["cumulative"]["pan"][-1], rel=0.05
    )
    assert edited["output"]["cumulative"]["zoom"][-1] == pytest.approx(1.2, rel=0.01)
    assert plain["output"]["cumulative"]["zoom"][-1] == pytest.approx(1.0, abs=0.01)


def test_numbers_alone_and_bad_numbers(tmp_path, capsys, user_png):
    frames = [{"pan": 0.02 * k, "tilt": 0, "zoom": 1, "roll": 0} for k in range(5)]
    rf, _ = path_homographies({"width": W, "height": H, "frames": frames}, "x")
    assert np.allclose(rf, similarity(0.02, 0, 1, 0), atol=1e-12)
    bad = dict(
        format="cammimic-camera", width=W, height=H, frames=[*frames[:2], {**frames[2], "zoom": -1}]
    )
    path = _write(tmp_path / "bad.json", bad)
    assert (
        main(["run", str(path), str(user_png), "--method", "homography", "-o", str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and f"camera file {path}: frames[2].zoom must be a finite number > 0, got -1" in err
    )
    with pytest.raises(CammimicError, match=r"frames\[0\].homography must be a 3x3 list"):
        path_homographies(
            {"width": W, "height": H, "frames": [{**frames[0], "homography": [1, 2]}, frames[1]]},
            "x",
        )
    with pytest.raises(CammimicError, match="version 2 is unknown"):
        path_homographies({"width": W, "height": H, "version": 2, "frames": frames}, "x")


# -- RealEstate10K ------------------------------------------------------------------------------


def _re10k(path, poses, fx=0.5, fy=0.75):
    """A RealEstate10K camera .txt: URL line, then timestamp fx fy cx cy k1 k2 and [R | t] per frame."""
    lines = ["https://www.youtube.com/watch?v=example"]
    for i, (r, t) in enumerate(poses):
        m = np.concatenate([r, np.asarray(t, float)[:, None]], axis=1)
        lines.append(" ".join(str(v) for v in [33366 * i, fx, fy, 0.5, 0.5, 0, 0, *m.ravel()]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaw(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])


def test_re10k_rotation_is_the_exact_rotation_homography(tmp_path):
    # the camera turns right by 1 degree per frame (world-to-camera R_k = yaw(k)), no translation
    poses = [(_yaw(k), [0, 0, 0]) for k in range(6)]
    data = read_re10k(_re10k(tmp_path / "rot.txt", poses), width=W, height=H)
    k = np.array([[0.5 * W, 0, W / 2 - 0.5], [0, 0.75 * H, H / 2 - 0.5], [0, 0, 1]])
    want = k @ _yaw(5) @ np.linalg.inv(k)
    assert np.allclose(np.asarray(data["frames"][-1]["homography"]), want / want[2, 2], atol=1e-9)
    assert data["frames"][-1]["pan"] > 0.1  # the camera turns right: the scene moves left
    assert data["fps"] == pytest.approx(1e6 / 33366)
    assert data["source"]["url"].startswith("https://") and len(data["source"]["sha256"]) == 64


def test_re10k_translation_goes_through_the_plane_at_the_given_depth(tmp_path):
    # the camera moves right by 0.1 per frame: t = -R c = (-0.1 k, 0, 0)
    poses = [(np.eye(3), [-0.1 * k, 0, 0]) for k in range(5)]
    src = _re10k(tmp_path / "slide.txt", poses)
    near, far = (read_re10k(src, width=W, height=H, depth=d) for d in (2.0, 4.0))
    f = 0.5 * W
    shift = f * 0.4 / 2.0  # pixels the plane at depth 2 slides left after 4 frames
    assert near["frames"][-1]["pan"] == pytest.approx(shift / (H / 2), rel=1e-9)
    assert far["frames"][-1]["pan"] == pytest.approx(near["frames"][-1]["pan"] / 2, rel=1e-9)
    assert read_re10k(src, width=W, height=H, depth=math.inf)["frames"][-1]["pan"] == pytest.approx(
        0, abs=1e-12
    )
    assert len(read_re10k(src, width=W, height=H, frames=3)["frames"]) == 3


def test_import_camera_command_then_run(tmp_path, user_png, capsys):
    src = _re10k(tmp_path / "clip.txt", [(_yaw(-0.8 * k), [0, 0.02 * k, 0]) for k in range(9)])
    cam = tmp_path / "cam.json"
    assert (
        main(
            [
                "import-camera",
                str(src),
                "-o",
                str(cam),
                "--width",
                str(W),
                "--height",
                str(H),
                "--depth",
                "3",
            ]
        )
        == 0
    )
    assert "9 frames at 192x128" in capsys.readouterr().out
    data = json.loads(cam.read_text())
    assert data["source"]["plane"]["depth"] == 3.0
    traj = _run(cam, user_png, tmp_path / "out")
    assert traj["reference"]["cumulative"]["pan"][-1] < -0.05  # the camera turns left
    assert traj["output"]["cumulative"]["pan"][-1] == pytest.approx(
        traj["reference"]["cumulative"]["pan"][-1], rel=0.1
    )
    # bad files: one line each, naming the line
    bad = tmp_path / "bad.txt"
    bad.write_text("https://example\n0 0.5 0.5 0.5 0.5 0 0 1 0 0\n")
    assert main(["import-camera", str(bad), "-o", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.txt line 2: 10 numbers, a frame line has 19" in err
    assert (
        main(["import-camera", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "x.json")]) == 1
    )
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_camera_file_is_bounded():
    frame = {"pan": 0, "tilt": 0, "zoom": 1, "roll": 0}
    with pytest.raises(CammimicError, match=r"\"width\" and \"height\" in \[1, 65536\]"):
        path_homographies({"width": 10**6, "height": H, "frames": [frame] * 2}, "x")
    with pytest.raises(CammimicError, match="10001 frames, above the limit of 10000"):
        path_homographies({"width": W, "height": H, "frames": [frame] * 10_001}, "x")
