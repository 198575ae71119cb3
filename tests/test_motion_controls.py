"""Controls on a reference's motion (issue 25 §2), checked against rendered truth.

The homography method runs offline on CPU in about a second, so each control is checked end to end:
a photograph rendered under a known camera move is the reference, and the *output's* estimated
motion must show the control's effect.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import photo

from cammimic.cli import main
from cammimic.errors import CammimicError
from cammimic.homography import chain, normalize, to_resolution_free
from cammimic.motion import Fallback, MotionEstimate
from cammimic.motion_controls import (
    MotionControls,
    apply_controls,
    expm,
    logm,
    power,
    reference_frames,
)
from cammimic.synthetic import camera_step, render_camera_motion
from cammimic.trajectory import summarize

SIZE = 160


def _pan(n: int, step: float = -3.0, jitter: float = 0.0) -> np.ndarray:
    """Steps of a steady pan (``step`` px per frame on screen), plus an alternating jitter."""
    return np.stack(
        [camera_step(SIZE, SIZE, dx=step + (jitter if i % 2 else -jitter)) for i in range(n - 1)]
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import cv2

    from cammimic.io import write_video

    d = tmp_path_factory.mktemp("controls")
    write_video(d / "pan.mp4", render_camera_motion(photo(), _pan(13), SIZE, SIZE), 8.0, crf=10)
    write_video(
        d / "shaky.mp4",
        render_camera_motion(photo(), _pan(17, jitter=2.5), SIZE, SIZE),
        8.0,
        crf=10,
    )
    user = photo("coffee", 1.0)[: SIZE * 2, : SIZE * 2]
    cv2.imwrite(str(d / "user.png"), cv2.cvtColor(user, cv2.COLOR_RGB2BGR))
    return d


def _run(inputs, out, ref="pan.mp4", *flags) -> dict:
    reference = ref if ref.startswith("camera:") else str(inputs / ref)
    code = main(
        [
            "run",
            reference,
            str(inputs / "user.png"),
            "--method",
            "homography",
            "-o",
            str(out),
            *flags,
        ]
    )
    assert code == 0
    motion = json.loads((out / "motion.json").read_text())
    return {
        "run": json.loads((out / "run.json").read_text()),
        "motion": motion,
        "pan": motion["trajectory"]["output"]["cumulative"]["pan"],
        "reference_pan": motion["trajectory"]["reference"]["cumulative"]["pan"],
    }


@pytest.fixture(scope="module")
def plain(inputs, tmp_path_factory):
    return _run(inputs, tmp_path_factory.mktemp("plain") / "out")


# -- the Lie-algebra tools ----------------------------------------------------------------------


def test_expm_and_logm_agree_with_scipy_and_invert_each_other():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.normal(size=(3, 3)) * 0.7
        assert np.allclose(expm(a), scipy_linalg.expm(a), atol=1e-12)
    h = camera_step(64, 48, dx=5, dy=-3, zoom=1.1, roll=20, px=0.1)
    h = h / np.cbrt(np.linalg.det(h))
    assert np.allclose(logm(h), scipy_linalg.logm(h).real, atol=1e-10)
    assert np.allclose(expm(logm(h)), h, atol=1e-12)
    # H^0.5 twice is H; a pan's half is half the shift
    assert np.allclose(normalize(power(h, 0.5) @ power(h, 0.5)), normalize(h), atol=1e-10)
    assert np.allclose(power(camera_step(64, 48, dx=6), 0.5), camera_step(64, 48, dx=3), atol=1e-12)


def test_a_mirroring_homography_is_refused_in_one_line():
    mirror = np.diag([-1.0, 1.0, 1.0])
    motion = MotionEstimate(
        homographies=np.stack([mirror, np.eye(3)]), width=32, height=32, estimator="t"
    )
    with pytest.raises(CammimicError, match="mirrors the image"):
        apply_controls(motion, MotionControls(strength=0.5))


def test_controls_check_their_values():
    for kwargs, message in [
        ({"speed": 0}, "motion speed must be > 0"),
        ({"smooth": -1}, "motion smooth must be >= 0"),
        ({"strength": float("nan")}, "motion strength must be a finite number"),
    ]:
        with pytest.raises(CammimicError, match=message):
            MotionControls(**kwargs)


def test_speed_follows_the_geodesic_and_carries_fallbacks_and_fits_the_backbone():
    steps = _pan(13)  # constant steps: retimed steps are fractions of one
    motion = MotionEstimate(
        homographies=steps,
        width=SIZE,
        height=SIZE,
        estimator="t",
        fallbacks=(Fallback(pair=3, reason="few matches", used="identity"),),
    )
    fast = MotionControls(speed=2).apply(motion)
    assert fast.num_frames == 7 and np.allclose(
        fast.homographies, camera_step(SIZE, SIZE, dx=-6.0), atol=1e-9
    )
    assert [f.pair for f in fast.fallbacks] == [1] and "reference pair 3" in fast.fallbacks[
        0
    ].reason
    assert fast.diagnostics["controls"]["times"] == [0, 2, 4, 6, 8, 10, 12]
    slow = MotionControls(speed=0.5).apply(motion)
    assert slow.num_frames == 25 and np.allclose(
        slow.homographies, camera_step(SIZE, SIZE, dx=-1.5), atol=1e-9
    )
    # the cammimic method moves the length to one the backbone takes (Wan: 4k+1): 7 -> 9
    fitted = MotionControls(speed=2).apply(motion, fit_frames=lambda n: 4 * round((n - 1) / 4) + 1)
    assert fitted.num_frames == 9
    assert np.allclose(chain(fitted.homographies)[-1], chain(steps)[-1], atol=1e-9)  # the same path
    frames = np.arange(13)[:, None, None, None] * np.ones((13, 2, 2, 3), np.uint8)
    assert reference_frames(frames, fast)[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert MotionControls().apply(motion) is motion


def test_smoothing_a_pure_trend_changes_nothing_and_reverse_inverts_the_path():
    steps = np.stack([camera_step(SIZE, SIZE, dx=-2.0, zoom=1.01, roll=0.5)] * 9)
    motion = MotionEstimate(homographies=steps, width=SIZE, height=SIZE, estimator="t")
    assert np.allclose(MotionControls(smooth=3).apply(motion).homographies, steps, atol=1e-9)
    back = MotionControls(reverse=True).apply(motion)
    assert np.allclose(
        chain(back.homographies)[-1],
        np.linalg.inv(chain(steps)[-1]) / np.linalg.inv(chain(steps)[-1])[2, 2],
        atol=1e-9,
    )
    assert back.diagnostics["controls"]["times"] == list(range(9, -1, -1))


# -- end to end, against the rendered truth ---------------------------------------------------


def test_reverse_flips_the_outputs_cumulative_pan(inputs, plain, tmp_path):
    got = _run(inputs, tmp_path / "out", "pan.mp4", "--motion-reverse")
    assert plain["pan"][-1] > 0.15  # the scene moves left: the camera pans right
    assert got["pan"][-1] == pytest.approx(-plain["pan"][-1], rel=0.05)
    assert got["run"]["camera_score_valid"] and got["run"]["camera_score"] < 0.05
    assert "reverse = true" in (tmp_path / "out" / "config.toml").read_text()


def test_strength_half_halves_the_outputs_cumulative_pan(inputs, plain, tmp_path):
    got = _run(inputs, tmp_path / "out", "pan.mp4", "--motion-strength", "0.5")
    assert got["pan"][-1] == pytest.approx(plain["pan"][-1] / 2, rel=0.05)
    assert len(got["pan"]) == len(plain["pan"]) == 13


def test_speed_two_covers_the_same_path_in_half_the_frames(inputs, plain, tmp_path):
    got = _run(inputs, tmp_path / "out", "pan.mp4", "--motion-speed", "2")
    assert got["run"]["num_frames"] == 7 and len(got["pan"]) == 7
    assert got["pan"][-1] == pytest.approx(plain["pan"][-1], rel=0.05)
    from cammimic.io import read_video

    side = read_video(tmp_path / "out" / "side_by_side.mp4")
    assert len(side.frames) == 7 and side.size == (2 * SIZE, SIZE)
    # the written config reproduces the run: the reference's 13 frames, then the speed
    assert "frames = 13" in (tmp_path / "out" / "config.toml").read_text()


def test_smoothing_removes_an_injected_jitter_and_keeps_the_trend(inputs, tmp_path):
    shaky = _run(inputs, tmp_path / "shaky", "shaky.mp4")
    smooth = _run(inputs, tmp_path / "smooth", "shaky.mp4", "--motion-smooth", "2")
    step_shaky = np.diff(shaky["pan"])
    step_smooth = np.diff(smooth["pan"])
    truth = 3.0 / (SIZE / 2)  # the trend: 3 px per frame in half-short-sides
    assert np.std(step_shaky) > 0.025  # the injected +-2.5 px jitter is in the plain output
    assert np.std(step_smooth) < 0.2 * np.std(step_shaky)
    assert smooth["pan"][-1] == pytest.approx(shaky["pan"][-1], rel=0.05)
    assert np.mean(step_smooth) == pytest.approx(truth, rel=0.05)


def test_controls_apply_to_presets_path_files_the_config_and_the_api(inputs, tmp_path):
    from cammimic.api import transfer

    preset = _run(inputs, tmp_path / "preset", "camera:pan-left:frames=9,ease=linear")
    back = _run(
        inputs, tmp_path / "back", "camera:pan-left:frames=9,ease=linear", "--motion-reverse"
    )
    assert preset["reference_pan"][-1] < -0.1 and back["reference_pan"][-1] == pytest.approx(
        -preset["reference_pan"][-1]
    )
    assert back["pan"][-1] == pytest.approx(-preset["pan"][-1], rel=0.05)
    # a camera-path file, with the controls from a config file
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"width": SIZE, "height": SIZE, "homographies": _pan(9).tolist()}))
    cfg = tmp_path / "c.toml"
    cfg.write_text("[motion]\nstrength = 0.5\nspeed = 2.0\n")
    got = _run(inputs, tmp_path / "file", str(path), "--config", str(cfg))
    truth = summarize(MotionEstimate(homographies=_pan(9), width=SIZE, height=SIZE, estimator="t"))
    assert len(got["pan"]) == 5
    assert got["reference_pan"][-1] == pytest.approx(truth["cumulative"]["pan"][-1] / 2, rel=1e-6)
    assert got["pan"][-1] == pytest.approx(truth["cumulative"]["pan"][-1] / 2, rel=0.05)
    # the Python API: section__key overrides
    result = transfer(
        str(path), inputs / "user.png", tmp_path / "api", method="homography", motion__reverse=True
    )
    ref = json.loads((tmp_path / "api" / "motion.json").read_text())["reference"]
    rf = to_resolution_free(np.asarray(ref["homographies"]), ref["width"], ref["height"])
    assert rf[0][0, 2] == pytest.approx(-to_resolution_free(_pan(9), SIZE, SIZE)[0][0, 2])
    assert result.manifest["num_frames"] == 9


def test_bad_control_values_end_in_one_line(inputs, tmp_path, capsys):
    args = [
        "run",
        str(inputs / "pan.mp4"),
        str(inputs / "user.png"),
        "--method",
        "homography",
        "-o",
    ]
    assert main([*args, str(tmp_path / "a"), "--motion-speed", "0"]) == 2
    assert "--motion-speed" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "b"), "--motion-speed", "50"]) == 1
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "[motion] speed (command line) = 50.0 is out of range [0.05, 20]" in err
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text("[motion]\nstrenght = 0.5\n")
    assert main([*args, str(tmp_path / "c"), "--config", str(cfg)]) == 1
    assert "unknown key 'strenght' in [motion]" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")


def test_a_retimed_path_is_bounded():
    motion = MotionEstimate(homographies=_pan(101), width=SIZE, height=SIZE, estimator="t")
    with pytest.raises(
        CammimicError, match="would make 101 reference frames 2001 output frames, above the limit"
    ):
        MotionControls(speed=0.05).apply(motion)


def test_the_web_app_passes_the_controls_as_values_and_bounds_them(tmp_path):
    from cammimic.ui import TransferRequest, UISettings, transfer_call

    settings = UISettings(runs_dir=str(tmp_path))
    req = TransferRequest(
        camera_preset="pan-left",
        image="a.png",
        motion_strength=0.5,
        motion_speed=2,
        motion_reverse=True,
        motion_smooth=1.5,
    )
    call = transfer_call(req, tmp_path / "r", settings)
    assert call["overrides"] == {
        "method": "homography",
        "motion__strength": 0.5,
        "motion__speed": 2.0,
        "motion__reverse": True,
        "motion__smooth": 1.5,
    }
    plain = transfer_call(
        TransferRequest(camera_preset="pan-left", image="a.png"), tmp_path / "r", settings
    )
    assert plain["overrides"] == {"method": "homography"}  # defaults add nothing
    for kwargs in (
        {"motion_speed": 0},
        {"motion_strength": float("nan")},
        {"motion_smooth": "x"},
        {"motion_strength": True},
    ):
        with pytest.raises(CammimicError, match=r"^motion (speed|strength|smooth) must be between"):
            transfer_call(
                TransferRequest(camera_preset="pan-left", image="a.png", **kwargs),
                tmp_path / "r",
                settings,
            )


def test_the_cammimic_method_builds_its_weak_video_from_the_controlled_motion(
    inputs, tiny_weights, tmp_path
):
    """Phase 1 learns from the reference as it is; the weak video and the output follow the controls."""
    pytest.importorskip("torch")
    from cammimic.io import read_video

    out = tmp_path / "run"
    args = [
        "run",
        str(inputs / "pan.mp4"),
        str(inputs / "user.png"),
        "--prompt",
        "a cup of coffee",
        "--weights",
        str(tiny_weights),
        "-o",
        str(out),
        "--frames",
        "9",
        "--width",
        "64",
        "--height",
        "64",
        "--stage1-steps",
        "1",
        "--stage2-steps",
        "1",
        "--steps",
        "2",
        "--spatial-rank",
        "2",
        "--temporal-rank",
        "2",
        "-q",
        "--motion-speed",
        "2",
        "--motion-reverse",
    ]
    assert main(args) == 0
    weak, output = read_video(out / "weak.mp4"), read_video(out / "output.mp4")
    assert len(weak.frames) == len(output.frames) == 5
    reference = json.loads((out / "motion.json").read_text())["reference"]
    assert reference["num_frames"] == 5 and reference["diagnostics"]["controls"]["times"] == [
        8,
        6,
        4,
        2,
        0,
    ]
    assert reference["diagnostics"]["controls"]["reverse"] is True
    assert len(read_video(out / "side_by_side.mp4").frames) == 5
