"""MotionEstimate's JSON form: what a run writes to motion.json and `cammimic eval` reads back."""

from __future__ import annotations

import json

import numpy as np
from conftest import clip

from cammimic.motion import Fallback, MotionEstimate


def test_motion_json_round_trip_is_exact():
    _, h = clip("pan", 96, 64, frames=5, name="astronaut")
    h = np.array(h, dtype=np.float64)
    h[1, 0, 1] = 1.0 / 3.0  # a value with no short decimal form
    motion = MotionEstimate(
        homographies=h,
        width=96,
        height=64,
        estimator="opencv",
        fallbacks=(Fallback(pair=2, reason="7 matches, need 12", used="previous pair"),),
        diagnostics={"inliers": [40, 38, 0, 41]},
    )
    back = MotionEstimate.from_json(
        json.loads(json.dumps(motion.to_json()))
    )  # through the text, as eval reads it
    assert np.array_equal(
        back.homographies, motion.homographies
    )  # bit for bit: floats survive JSON
    assert (back.width, back.height, back.estimator, back.num_frames) == (96, 64, "opencv", 5)
    assert back.fallbacks == (Fallback(pair=2, reason="7 matches, need 12", used="previous pair"),)
    assert back.diagnostics == {"inliers": [40, 38, 0, 41]}
    assert back.to_json() == motion.to_json()
