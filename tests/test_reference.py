"""cammimic.reference: every kind of reference resolves once into one Reference (issue 24 §4)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import write_pair

from cammimic.errors import CammimicError
from cammimic.io import read_video
from cammimic.io.video import even_indices
from cammimic.reference import UNLIMITED, Reference, resolve_reference


@pytest.fixture
def pair(tmp_path):
    return write_pair(tmp_path, size=64, frames=12)


def test_a_file_a_video_and_frames_give_the_same_reference(pair):
    path, _ = pair
    by_path = resolve_reference(path, size=(32, 32), frames=5)
    by_video = resolve_reference(read_video(path), size=(32, 32), frames=5)
    by_frames = resolve_reference(read_video(path).frames, size=(32, 32), frames=5)
    for ref in (by_path, by_video, by_frames):
        assert isinstance(ref, Reference) and ref.frames.shape == (5, 32, 32, 3)
        assert (
            ref.video.indices == (0, 3, 6, 8, 11) and ref.motion is None
        )  # a video's motion is estimated
    assert np.array_equal(by_path.frames, by_video.frames) and np.array_equal(
        by_path.frames, by_frames.frames
    )
    # only a file given has a path and a hash in the record
    assert (
        by_path.given == str(path)
        and by_path.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    assert by_path.record()["sha256"] == by_path.sha256 and by_path.record()["indices"] == [
        0,
        3,
        6,
        8,
        11,
    ]
    assert (
        by_video.given is None
        and by_frames.record()["sha256"] is None
        and by_frames.record()["path"] == "<reference array>"
    )


def test_a_frame_rule_sees_how_many_frames_there_are(pair):
    path, _ = pair
    seen = []

    def rule(total):
        seen.append(total)
        return total // 2

    assert resolve_reference(path, frames=rule).num_frames == 6 and seen == [12]
    # a camera path without a length of its own is as long as the rule wants from an unlimited reference
    ref = resolve_reference("camera:pan-left", size=(32, 32), frames=lambda total: min(total, 9))
    assert (
        ref.num_frames == 9
        and ref.video.camera.num_frames == 9
        and ref.motion.homographies.shape == (8, 3, 3)
    )
    seen.clear()
    ref = resolve_reference(
        "camera:pan-left", size=(32, 32), frames=lambda total: seen.append(total) or 4 + total % 2
    )
    assert seen == [UNLIMITED, 4] and ref.video.camera.num_frames == 4 and ref.num_frames == 4
    with pytest.raises(CammimicError, match="has 12 frames; --frames must be between 2 and 12"):
        resolve_reference(path, frames=13)


def test_camera_motion_is_exact_for_a_path_and_estimated_otherwise(pair, plugin_host):
    est = plugin_host.create("motion_estimator", "opencv", {})
    path, image = pair
    preset = resolve_reference("camera:pan-right:frames=6", size=(64, 64), image=image)
    motion = preset.camera_motion(est)
    assert motion.estimator == "camera path" and np.array_equal(
        motion.homographies, preset.motion.homographies
    )
    assert motion.diagnostics["source"]["render"]["source"] == str(image)
    video = resolve_reference(path)
    estimated = video.camera_motion(est)
    assert estimated.estimator == "opencv" and estimated.diagnostics["source"]["num_frames"] == 12


def test_even_sampling_is_one_rule():
    """read_video, subsample and a camera path's kept frames all take even_indices."""
    assert even_indices(12, 5).tolist() == [0, 3, 6, 8, 11]
    assert even_indices(9, 5).tolist() == [0, 2, 4, 6, 8]
    assert even_indices(4999 + 1, 4).tolist() == [0, 1666, 3333, 4999]


def test_a_preset_decodes_the_user_image_once(pair, tmp_path, monkeypatch):
    import cammimic
    import cammimic.io.images as images

    _, image = pair
    reads = []
    real = images.read_image

    def counting(path, **kw):
        reads.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(images, "read_image", counting)
    result = cammimic.transfer(
        "camera:zoom-in:frames=6", image, tmp_path / "out", method="homography"
    )
    assert reads == [str(image)]
    record = result.manifest["reference"]
    assert (
        record["render"]["source"] == str(image)
        and record["num_frames"] == 6
        and record["sha256"] is None
    )


def test_frames_in_memory_are_sampled_like_a_file(pair, tmp_path):
    """A reference given as frames keeps ``frames`` of them, evenly, as a file would (it used to keep all)."""
    import cammimic

    path, image = pair
    from_file = cammimic.transfer(path, image, tmp_path / "file", method="homography", frames=6)
    from_frames = cammimic.transfer(
        read_video(path).frames, image, tmp_path / "frames", method="homography", frames=6
    )
    for result in (from_file, from_frames):
        assert result.manifest["num_frames"] == 6 and result.manifest["reference"]["indices"] == [
            0,
            2,
            4,
            7,
            9,
            11,
        ]
    assert (
        from_file.manifest["reference"]["sha256"] is not None
        and from_frames.manifest["reference"]["sha256"] is None
    )
    assert from_frames.camera_score == pytest.approx(from_file.camera_score, abs=1e-3)
