"""The homography toolkit: algebra, coordinate changes and the weak video, checked against truth."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo

from cammimic import homography as hg
from cammimic.errors import CammimicError
from cammimic.synthetic import camera_path, camera_step, render_camera_motion


def test_chain_composes_frame_to_frame_motion():
    hs = camera_path("orbit", 6, 256, 256)
    c = hg.chain(hs)
    assert c.shape == (6, 3, 3)
    assert np.allclose(c[0], np.eye(3))
    assert np.allclose(c[3], hg.compose(hs[0], hs[1], hs[2]))
    # a point followed pair by pair lands where the chain sends it
    p = np.array([[40.0, 200.0]])
    q = p
    for h in hs:
        q = hg.transform_points(h, q)
    assert np.allclose(q, hg.transform_points(c[-1], p))


def test_invert_and_normalize():
    h = camera_step(320, 240, dx=5, zoom=1.03, roll=2, px=0.01) * 7.0
    n = hg.normalize(h)
    assert n[2, 2] == pytest.approx(1.0)
    assert np.allclose(hg.invert(n) @ n / (hg.invert(n) @ n)[2, 2], np.eye(3), atol=1e-12)
    with pytest.raises(CammimicError, match="singular"):
        hg.invert(np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1.0]]))
    with pytest.raises(CammimicError, match=r"\(\.\.\., 3, 3\)"):
        hg.normalize(np.eye(2))


def test_resolution_free_is_invariant_to_resize():
    # the same camera move at two resolutions: one rendered at 512x512, one at 256x256
    h_big = camera_step(512, 512, dx=-10, dy=4, zoom=1.02, roll=1.5)
    h_small = hg.rescale(h_big, (512, 512), (256, 256))
    assert np.allclose(
        hg.to_resolution_free(h_big, 512, 512), hg.to_resolution_free(h_small, 256, 256), atol=1e-12
    )
    # round trip
    n = hg.to_resolution_free(h_big, 512, 512)
    assert np.allclose(hg.from_resolution_free(n, 512, 512), hg.normalize(h_big))
    # invariant to centre-cropping too: 576x320 and its central 320x320 crop share the motion
    h_wide = camera_step(576, 320, dx=-6, zoom=1.01, roll=1.0)
    shift = np.array([[1, 0, -128], [0, 1, 0], [0, 0, 1.0]])  # crop 128 px off the left
    h_crop = shift @ h_wide @ np.linalg.inv(shift)
    assert np.allclose(
        hg.to_resolution_free(h_wide, 576, 320), hg.to_resolution_free(h_crop, 320, 320), atol=1e-12
    )


def test_rescale_matches_resizing_the_frames():
    """A homography rescaled to half size predicts the motion of the half-size frames exactly."""
    import cv2

    h = camera_path("pan_zoom", 2, 512, 384)[0]
    frames = render_camera_motion(photo("coffee", 2.0), h[None], 512, 384)
    small = np.stack([cv2.resize(f, (256, 192), interpolation=cv2.INTER_AREA) for f in frames])
    h_small = hg.rescale(h, (512, 384), (256, 192))
    warped = cv2.warpPerspective(small[0], h_small, (256, 192), flags=cv2.INTER_LINEAR)
    inner = (slice(20, -20), slice(20, -20))
    err = np.abs(warped[inner].astype(float) - small[1][inner].astype(float)).mean()
    # the paper's S^-1 H S (no half-pixel terms) is measurably worse
    s = np.diag([0.5, 0.5, 1.0])
    naive = cv2.warpPerspective(
        small[0], s @ h @ np.linalg.inv(s), (256, 192), flags=cv2.INTER_LINEAR
    )
    err_naive = np.abs(naive[inner].astype(float) - small[1][inner].astype(float)).mean()
    assert err < 3.0
    assert err < err_naive


def test_corner_error():
    h = np.eye(3)
    shifted = camera_step(100, 100, dx=3, dy=4)
    assert hg.corner_error(h, shifted, 100, 100) == pytest.approx(5.0)


def test_weak_video_reproduces_the_truth_rendered_video():
    """Warping frame 0 along the true chain gives the truth-rendered frames where they are valid."""
    h = camera_path("orbit", 8, 256, 256)
    frames = render_camera_motion(photo(), h, 256, 256)
    weak, masks = hg.warp_along_chain(frames[0], h)
    assert weak.shape == frames.shape and masks.shape == frames.shape[:3]
    assert masks[0].all()
    assert 0.6 < masks[-1].mean() < 1.0  # the camera moved: part of the last frame is out of view
    for k in range(len(frames)):
        diff = np.abs(weak[k].astype(float) - frames[k].astype(float))[masks[k]]
        assert diff.mean() < 4.0, k  # bilinear vs bicubic resampling of the same scene


def test_weak_video_warps_the_original_once():
    """Composed warping keeps detail that frame-after-frame resampling blurs away."""
    import cv2

    img = photo("astronaut", 0.5)
    h = np.stack([camera_step(256, 256, dx=0.5, dy=0.5)] * 10)
    weak, _ = hg.warp_along_chain(img, h)
    sequential = img
    for step in h:
        sequential = cv2.warpPerspective(sequential, step, (256, 256), flags=cv2.INTER_LINEAR)

    def sharpness(a):
        return cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    assert sharpness(weak[-1]) > 1.5 * sharpness(sequential)


@pytest.mark.parametrize("fill", ["black", "reflect", "replicate"])
def test_fill_modes(fill):
    img = photo("chelsea", 0.5)[:128, :128]
    weak, masks = hg.warp_along_chain(img, np.stack([camera_step(128, 128, dx=20)]), fill=fill)
    out = weak[1][~masks[1]]
    if fill == "black":
        assert out.max() == 0
    else:
        assert out.mean() > 20
    with pytest.raises(CammimicError, match="Try one of"):
        hg.warp_along_chain(img, np.stack([np.eye(3)]), fill="mirror")
