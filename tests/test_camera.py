"""Camera presets and camera-path files as the reference (cammimic.camera) and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import photo

from cammimic.camera import PRESETS, parse, plane_homography
from cammimic.cli import main
from cammimic.errors import CammimicError
from cammimic.homography import corner_error, transform_points
from cammimic.reference import resolve_reference
from cammimic.trajectory import summarize

ROOT = Path(__file__).resolve().parents[1]
SCENE = str(ROOT / "examples" / "scene.jpg")


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def total(spec, size=(256, 160)):
    cum = summarize(resolve_reference(spec, size=size).motion)["cumulative"]
    return {k: v[-1] for k, v in cum.items()}


# The camera turns left: the scene moves right (trajectory pan < 0); see cammimic.trajectory's signs.
EXPECTED = {
    "pan-left": ("pan", -0.36),
    "pan-right": ("pan", 0.36),
    "tilt-up": ("tilt", 0.30),
    "tilt-down": ("tilt", -0.30),
    "zoom-in": ("zoom", math.exp(0.012 * 15)),
    "zoom-out": ("zoom", math.exp(-0.012 * 15)),
    "roll-cw": ("roll", -12.0),
    "roll-ccw": ("roll", 12.0),
    "orbit-left": ("pan", 0.454),
    "orbit-right": ("pan", -0.454),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_moves_the_way_its_name_says(name):
    field, value = EXPECTED[name]
    got = total(f"camera:{name}")
    assert got[field] == pytest.approx(value, abs=2e-3)
    rest = {k: v for k, v in got.items() if k != field}
    if not name.startswith("orbit"):  # an orbit also foreshortens: zoom 1.008
        assert all(abs(v - (1.0 if k == "zoom" else 0.0)) < 1e-9 for k, v in rest.items())


def test_speed_frames_and_ease():
    assert total("camera:pan-right:speed=2")["pan"] == pytest.approx(0.72, abs=1e-9)
    assert total("camera:pan-right:frames=31")["pan"] == pytest.approx(
        0.72, abs=1e-9
    )  # 30 steps instead of 15
    steps = summarize(resolve_reference("camera:pan-right:frames=9,ease=in", size=(64, 64)).motion)[
        "step"
    ]["pan"]
    assert len(steps) == 8 and steps[0] < steps[-1] / 10  # eases in
    for ease in ("linear", "in", "out", "in-out"):  # the ease shapes the move, not its extent
        assert total(f"camera:zoom-in:ease={ease}")["zoom"] == pytest.approx(
            math.exp(0.18), rel=1e-9
        )
    both = total("camera:pan-left+zoom-in")
    assert both["pan"] < -0.3 and both["zoom"] > 1.19


def test_the_rendered_reference_moves_exactly_along_the_path(plugin_host):
    """A real photograph rendered along each preset; the opencv estimator recovers the path."""
    est = plugin_host.create("motion_estimator", "opencv", {})
    for name in ("pan-left", "zoom-out", "roll-cw", "orbit-right"):
        ref = resolve_reference(
            f"camera:{name}:frames=6", size=(192, 128), image=photo("astronaut", 1.0)
        )
        assert ref.frames.shape == (6, 128, 192, 3) and ref.video.render["covered"]
        truth = ref.motion.homographies
        err = corner_error(est.estimate(ref.frames).homographies, truth, 192, 128)
        assert err.max() < 0.5, (name, err)


def test_sampling_and_resizing_keep_the_exact_motion():
    ref = resolve_reference("camera:zoom-in:frames=9", size=(128, 96))
    sub = resolve_reference(ref, frames=5, size=(64, 48))
    assert summarize(sub.motion)["cumulative"]["zoom"][-1] == pytest.approx(
        math.exp(0.096), rel=1e-9
    )
    assert sub.motion.homographies.shape == (4, 3, 3) and (sub.motion.width, sub.motion.height) == (
        64,
        48,
    )
    assert sub.video.indices == (0, 2, 4, 6, 8) and ref.resized((64, 48)).motion.width == 64


def test_plane_homography_pins_rotation_and_translation():
    k = np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
    a = math.radians(2)
    r = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    assert np.allclose(
        plane_homography(k, k, r, [0, 0, 0], [0, 0, -1], 1.0),
        k @ r @ np.linalg.inv(k) / (k @ r @ np.linalg.inv(k))[2, 2],
    )
    # A wall 5 units ahead, the camera 0.5 units left (X_b = X_a + t, t = +0.5 x): the wall moves f*0.5/5 = 10 px right.
    h = plane_homography(k, k, np.eye(3), [0.5, 0, 0], [0, 0, -1], 5.0)
    assert np.allclose(h, [[1, 0, 10], [0, 1, 0], [0, 0, 1]])


def test_path_files(tmp_path, capsys):
    # cameras: a yaw of 1 degree per frame (pure rotation: no plane needed) ...
    k = [[200.0, 0, 63.5], [0, 200, 47.5], [0, 0, 1]]
    cams = []
    for i in range(5):
        a = math.radians(i)
        cams.append(
            {"R": [[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]]}
        )
    (tmp_path / "yaw.json").write_text(
        json.dumps({"width": 128, "height": 96, "K": k, "cameras": cams})
    )
    path = parse(tmp_path / "yaw.json")
    assert path.num_frames == 5 and len(path.sha256) == 64
    hs = path.homographies(128, 96)
    centre = transform_points(hs, np.array([[[63.5, 47.5]]] * 4))[:, 0]
    assert centre[:, 0] - 63.5 == pytest.approx(
        [-200 * math.tan(math.radians(1))] * 4, rel=1e-9
    )  # the scene slides left
    assert centre[:, 1] == pytest.approx([47.5] * 4)
    # ... with a translation and a plane
    cams = [{"t": [0.1 * i, 0, 0]} for i in range(4)]
    (tmp_path / "dolly.json").write_text(
        json.dumps(
            {
                "width": 128,
                "height": 96,
                "K": k,
                "cameras": cams,
                "plane": {"depth": 4.0, "normal": [0, 0, -1]},
            }
        )
    )
    assert parse(tmp_path / "dolly.json").homographies(128, 96)[:, 0, 2] == pytest.approx([5.0] * 3)
    # homographies, e.g. what `cammimic motion --json` writes, at another size: same motion resolution-free
    (tmp_path / "h.json").write_text(
        json.dumps({"width": 128, "height": 96, "homographies": hs.tolist()})
    )
    big = parse(tmp_path / "h.json").homographies(256, 192)
    assert np.allclose(
        transform_points(big, np.array([[[127.5, 95.5]]] * 4))[:, 0, 0] - 127.5,
        2 * (centre[:, 0] - 63.5),
    )
    code, out, err = cli(capsys, "motion", tmp_path / "h.json", "--width", 128, "--height", 96)
    assert code == 0, err
    assert "5 frames at 128x96, estimator camera path" in out


BAD = [
    ("camera:zoom-inn", "preset 'zoom-inn' is unknown"),
    ("camera:", "no preset name"),
    ("camera:zoom-in:sped=2", "key 'sped' is unknown"),
    ("camera:zoom-in:speed=-1", "speed=-1 is not a number in (0, 100]"),
    ("camera:zoom-in:speed=fast", "speed=fast is not a number in (0, 100]"),
    ("camera:zoom-in:frames=1", "frames=1 is not an integer >= 2"),
    ("camera:zoom-in:ease=bounce", "ease=bounce is unknown"),
]


@pytest.mark.parametrize("spec,message", BAD)
def test_bad_presets_are_one_line_listing_what_is_valid(spec, message, tmp_path, capsys):
    code, out, err = cli(capsys, "run", spec, SCENE, "--method", "homography", "-o", tmp_path / "r")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert message in err
    assert (
        "pan-left, pan-right, tilt-up, tilt-down, zoom-in, zoom-out, roll-cw, roll-ccw, orbit-left, orbit-right"
        in err
    )
    assert (
        "speed=NUMBER in (0, 100], frames=INTEGER in [2, 10000], ease=in-out|linear|in|out" in err
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ('{"width": 64, "height": 64}', 'has neither "homographies" nor "cameras"'),
        ('{"homographies": [[[1,0,0],[0,1,0],[0,0,1]]]}', 'needs integer "width" and "height"'),
        (
            '{"width": 64, "height": 64, "homographies": [[[1,0],[0,1]]]}',
            "homographies[0] must be a 3x3 list",
        ),
        (
            '{"width": 64, "height": 64, "K": [[50,0,32],[0,50,32],[0,0,1]], "cameras": [{}, {"R": [[2,0,0],[0,1,0],[0,0,1]]}]}',
            "cameras[1].R is not a rotation matrix",
        ),
        (
            '{"width": 64, "height": 64, "K": [[50,0,32],[0,50,32],[0,0,1]], "cameras": [{}, {"t": [1,0,0]}]}',
            'need "plane"',
        ),
    ],
)
def test_bad_path_files_are_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "path.json"
    if content is not None:
        path.write_text(content)
    code, out, err = cli(capsys, "motion", path)
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_run_with_a_preset_and_the_homography_method(tmp_path, capsys):
    """The README's offline command: the output's motion is the preset's zoom."""
    code, out, err = cli(
        capsys,
        "run",
        "camera:zoom-in",
        SCENE,
        "--method",
        "homography",
        "-o",
        tmp_path / "r",
        "--width",
        192,
        "--height",
        192,
    )
    assert code == 0, err
    motion = json.loads((tmp_path / "r" / "motion.json").read_text())
    assert motion["reference"]["estimator"] == "camera path"
    assert motion["trajectory"]["reference"]["cumulative"]["zoom"][-1] == pytest.approx(
        math.exp(0.18)
    )
    assert motion["trajectory"]["output"]["cumulative"]["zoom"][-1] == pytest.approx(
        math.exp(0.18), abs=5e-3
    )
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["reference"]["camera"]["moves"] == ["zoom-in"] and run["num_frames"] == 16
    assert run["reference"]["render"]["source"] == SCENE
    # score the output against the preset (estimated vs exact) and against the opposite move
    code, out, _ = cli(capsys, "score", "camera:zoom-in", tmp_path / "r" / "output.mp4")
    same = float(out.split()[1])
    assert out.rstrip().endswith(
        "estimator opencv"
    )  # the generated side is estimated; the preset is exact
    code, out, _ = cli(capsys, "score", "camera:zoom-out", tmp_path / "r" / "output.mp4")
    assert same < 1e-5 < float(out.split()[1])


def test_a_path_without_an_image_renders_a_texture():
    ref = resolve_reference("camera:tilt-up:frames=4")
    assert ref.frames.shape == (4, 320, 576, 3) and ref.video.render["source"] == "texture"
    assert ref.frames.std() > 20  # something an estimator can lock onto
    with pytest.raises(CammimicError, match="image must be a path or an"):
        resolve_reference("camera:tilt-up", image=np.zeros((4, 4), np.uint8))


# --- issue 21 §2: presets and camera-path files are bounded like videos; degenerate motion is refused

K64 = "[[50,0,32],[0,50,32],[0,0,1]]"
PAN = [[1, 0, 0.5], [0, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("camera:zoom-in:frames=1000000000", "--width", 64, "--height", 64),
            "a path of 1000000000 frames is longer than the limit of 10000; give fewer frames",
        ),
        (
            ("camera:zoom-in:frames=100000", "--width", 64, "--height", 64),
            "a path of 100000 frames is longer than the limit of 10000",
        ),
        (
            ("camera:zoom-in:frames=400", "--width", 4096, "--height", 4096),
            "keeping 400 frames of 4096x4096 needs 6711 Mpx, above the limit of 268 Mpx; sample fewer frames (--frames N)",
        ),
    ],
)
def test_long_or_large_presets_are_refused_before_drawing(args, message, capsys):
    code, out, err = cli(capsys, "motion", *args)
    assert code == 1 and err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_a_path_file_of_200000_homographies_is_refused_and_frames_samples_before_drawing(
    tmp_path, capsys
):
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"width": 64, "height": 64, "homographies": [PAN] * 200_000}))
    code, out, err = cli(capsys, "motion", path, "--frames", 4)
    assert code == 1 and err.count("\n") == 1
    assert (
        f"camera-path file {path}: 200000 homographies make a path longer than the limit of 10000 frames"
        in err
    )
    # a long path within the limit: --frames 4 draws 4 frames (not 5000), the exact motion kept
    path.write_text(json.dumps({"width": 64, "height": 64, "homographies": [PAN] * 4999}))
    ref = resolve_reference(str(path), size=(64, 64), frames=4)
    assert ref.frames.shape == (4, 64, 64, 3) and ref.video.indices == (0, 1666, 3333, 4999)
    hs = ref.motion.homographies
    assert np.allclose(
        hs[:, 0, 2], [0.5 * 1666, 0.5 * 1667, 0.5 * 1666]
    )  # the pans between kept frames
    big = tmp_path / "big.json"
    big.write_text(" " * (9 * 2**20) + "{}")
    code, out, err = cli(capsys, "motion", big)
    assert code == 1 and "is 9.0 MB, above the limit of 8 MB" in err


@pytest.mark.parametrize(
    "spec,message",
    [
        ("camera:zoom-in:speed=10000", "speed=10000 is not a number in (0, 100]"),
        ("camera:zoom-out:speed=2000", "speed=2000 is not a number in (0, 100]"),
        ("camera:zoom-in:speed=1e300", "speed=1e300 is not a number in (0, 100]"),
        (
            "camera:zoom-out:speed=100",
            "at frame 5 the image is scaled 0.0094x, beyond 100x either way; use a lower "
            "speed= (now 100) or fewer frames= (now 16)",
        ),
        ("camera:orbit-left:speed=60", "at frame 3 the scene plane is behind the camera"),
        ("camera:orbit-right:speed=60", "at frame 3 the scene plane is behind the camera"),
    ],
)
def test_degenerate_preset_motion_is_refused(spec, message, tmp_path, capsys):
    code, out, err = cli(
        capsys,
        "run",
        spec,
        SCENE,
        "--method",
        "homography",
        "-o",
        tmp_path / "r",
        "--width",
        64,
        "--height",
        64,
    )
    assert code == 1 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert f"camera reference '{spec}'" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (
            '{"width": 64, "height": 64, "cameras": [{"K": [[0,0,0],[0,0,0],[0,0,1]]}, {}], "K": '
            + K64
            + "}",
            "cameras[0].K is singular (determinant 0)",
        ),
        (
            '{"width": 64, "height": 64, "K": '
            + K64
            + ', "cameras": [{}, {"t": [1,0,0]}], "plane": [1, 2]}',
            '"plane" must be an object',
        ),
        ("[" * 100_000 + "]" * 100_000, "nests its JSON too deeply to read"),
        (
            '{"width": 1'
            + "0" * 400
            + ', "height": 64, "homographies": [[[1,0,0],[0,1,0],[0,0,1]]]}',
            'needs integer "width" and "height" in [1, 65536]',
        ),
        (
            '{"width": 64, "height": 64, "homographies": [[[1,0,0],[0,1,0],[0,0,0]]]}',
            "homographies[0] has H[2][2] = 0",
        ),
        (
            '{"width": 64, "height": 64, "homographies": [[[1,0,0],[0,1,0],[0,0,1]], [[1,0,0],[0,1,0],[0,-0.05,1]]]}',
            "at frame 2 the scene plane is behind the camera",
        ),
        (
            '{"width": 64, "height": 64, "homographies": [[[1e200,0,0],[0,1e200,0],[0,0,1]], [[1e200,0,0],[0,1e200,0],[0,0,1]]]}',
            "the image is scaled",
        ),
        (
            '{"width": 64, "height": 64, "K": '
            + K64
            + ', "cameras": [{}, {"t": [0,0,1]}], "plane": {"depth": 1'
            + "0" * 400
            + "}}",
            'need "plane"',
        ),
    ],
)
def test_bad_path_files_name_the_file_and_the_fix(content, message, tmp_path, capsys):
    path = tmp_path / "path.json"
    path.write_text(content)
    code, out, err = cli(capsys, "motion", path, "--width", 64, "--height", 64)
    assert code == 1 and err.count("\n") == 1 and message in err and "unexpected" not in err, err
    assert str(path) in err


def test_fifos_are_refused_not_waited_on(tmp_path, capsys):
    import os

    fifo = tmp_path / "path.json"
    os.mkfifo(fifo)
    code, out, err = cli(capsys, "motion", fifo)
    assert (
        code == 1
        and f"camera-path file {fifo} is not a regular file (a folder, FIFO or device)" in err
    )
    image = tmp_path / "scene.jpg"
    os.mkfifo(image)
    code, out, err = cli(
        capsys, "run", "camera:zoom-in", image, "--method", "homography", "-o", tmp_path / "r"
    )
    assert code == 1 and f"image {image} is not a regular file (a FIFO, device or socket)" in err, (
        err
    )
