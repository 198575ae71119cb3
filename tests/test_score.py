"""CameraScore and the trajectory summary, against rendered videos of known motion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clip

from cammimic.errors import CammimicError
from cammimic.homography import rescale
from cammimic.metrics import camera_score
from cammimic.motion import MotionEstimate
from cammimic.synthetic import camera_path
from cammimic.trajectory import summarize


def motion(h, w, hh):
    return MotionEstimate(homographies=h, width=w, height=hh, estimator="truth")


def test_paper_definition():
    a = camera_path("pan", 5, 100, 100)
    b = a.copy()
    b[:, 0, 2] += 2.0  # two more pixels of pan per frame
    assert camera_score(motion(a, 100, 100), motion(b, 100, 100), variant="paper") == pytest.approx(4.0)


def test_same_motion_scores_zero_at_any_resolution():
    h576 = camera_path("orbit", 16, 576, 320)
    h256 = rescale(h576, (576, 320), (288, 160))
    m_a, m_b = motion(h576, 576, 320), motion(h256, 288, 160)
    assert camera_score(m_a, m_b) == pytest.approx(0.0, abs=1e-20)
    # the paper's pixel variant does not see them as equal
    assert camera_score(m_a, m_b, variant="paper") > 1.0


def test_same_motion_scores_lower_than_different_motion(plugin_host):
    """Estimated on real photographs: same camera move, different scenes < different moves."""
    est = plugin_host.create("motion_estimator", "opencv")
    ref = est.estimate(clip("pan_zoom", name="astronaut")[0])
    same = est.estimate(clip("pan_zoom", name="coffee")[0])
    different = {k: est.estimate(clip(k, name="coffee")[0]) for k in ("tilt", "roll", "zoom", "pan")}
    s_same = camera_score(ref, same)
    for kind, m in different.items():
        assert s_same * 20 < camera_score(ref, m), kind
    assert s_same < 1e-5


def test_mismatched_lengths_and_variants_are_errors():
    a = motion(camera_path("pan", 5, 64, 64), 64, 64)
    b = motion(camera_path("pan", 7, 64, 64), 64, 64)
    with pytest.raises(CammimicError, match="same number of frames"):
        camera_score(a, b)
    with pytest.raises(CammimicError, match="Try one of"):
        camera_score(a, a, variant="pixels")


@pytest.mark.parametrize(
    "kind, field, sign",
    [("pan", "pan", +1), ("tilt", "tilt", +1), ("zoom", "zoom", +1), ("roll", "roll", +1)],
)
def test_trajectory_reads_the_camera_move(kind, field, sign):
    """camera_path pan shifts content left (camera turns right), tilt shifts it down (camera turns up)."""
    h = camera_path(kind, 9, 320, 240)
    cum = summarize(motion(h, 320, 240))["cumulative"]
    others = [f for f in ("pan", "tilt", "roll") if f != field]
    total = cum[field][-1] - (1 if field == "zoom" else 0)
    assert np.sign(total) == sign and abs(total) > 0.05
    for f in others:
        assert abs(cum[f][-1]) < 1e-9
    if field == "roll":
        assert cum["roll"][-1] == pytest.approx(sum(0.8 * (0.75 + 0.5 * np.sin(np.pi * (t + 0.5) / 8)) for t in range(8)))


def test_trajectory_plot(tmp_path):
    from cammimic.trajectory import plot_trajectories

    m = motion(camera_path("orbit", 8, 256, 256), 256, 256)
    out = plot_trajectories(tmp_path / "t.png", {"reference": m, "output": m})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_api_functions_stay_callable_after_their_modules_load():
    """``cammimic.score`` is the API function even after every submodule has been imported."""
    import importlib
    import pkgutil

    import cammimic

    for mod in pkgutil.iter_modules(cammimic.__path__):
        importlib.import_module(f"cammimic.{mod.name}") if mod.name != "__main__" else None
    for name in ("estimate_motion", "score", "transfer", "list_plugins", "camera_score"):
        assert callable(getattr(cammimic, name)), name
