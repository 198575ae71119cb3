"""Issue 23 §3: the ``camerascore`` guidance term descends on the resolution-free CameraScore."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import clip

from cammimic.components import GuidanceContext, GuidanceState
from cammimic.errors import CammimicError
from cammimic.plugins import PluginHost


class UpsamplingVAE(torch.nn.Module):
    """A stand-in decoder whose latents are images: 3 channels at 1/4 size, bilinearly enlarged."""

    config = SimpleNamespace(scaling_factor=1.0)
    dtype = torch.float32

    def decode(self, z):
        return SimpleNamespace(
            sample=torch.nn.functional.interpolate(
                z[:, :3], scale_factor=4, mode="bilinear", align_corners=False
            )
        )


def _term(**params):
    return PluginHost().load().create("guidance", "camerascore", params)


def test_descending_on_camerascore_moves_a_still_video_the_reference_s_way():
    frames, h_true = clip("pan", 64, 64, frames=4, magnitude=3.0)  # the reference: a pan, 64 px
    still = torch.from_numpy(frames[:1]).float().permute(0, 3, 1, 2) / 127.5 - 1  # 1, 3, 64, 64
    small = torch.nn.functional.interpolate(still, size=(16, 16), mode="area")
    latents = small[:, :, None].repeat(
        1, 1, 4, 1, 1
    )  # 1, 3, T=4, 16, 16: a camera that does not move
    term = _term(weight=0.02, start=0.0, end=1.0)
    term.prepare(
        GuidanceContext(
            backbone=SimpleNamespace(vae=UpsamplingVAE(), device=torch.device("cpu"), name="t"),
            prompt="",
            homographies=h_true,
            width=64,
            height=64,
        )
    )
    state = GuidanceState(step=1, num_steps=10, timestep=500)
    with torch.no_grad():  # as in the sampler
        before = float(term.score(latents))
        x = latents
        started = time.perf_counter()
        for _ in range(25):
            x = term.apply(x, state)
        per_step = (time.perf_counter() - started) / 25
        after = float(term.score(x))
    assert before > 1e-3
    assert after < 0.4 * before, (
        before,
        after,
    )  # measured: 0.0062 -> 0.0017, 74 ms a step (4 frames, 64 px)
    assert float((x - latents).abs().mean()) < 0.2  # a nudge, not a new video
    assert [h["step"] for h in term.history] == [1] * 25 and per_step < 2.0


def test_the_window_and_the_last_step_are_left_alone_and_bad_parameters_are_named():
    term = _term(start=0.5, end=0.6)
    term.context = object()  # prepared
    z = torch.zeros(1, 3, 2, 4, 4)
    assert (
        term.apply(z, GuidanceState(step=1, num_steps=10, timestep=900)) is z
    )  # before the window
    assert term.apply(z, GuidanceState(step=9, num_steps=10, timestep=10)) is z  # the last step
    with pytest.raises(CammimicError, match="start <= end"):
        _term(start=0.8, end=0.2)
    with pytest.raises(CammimicError, match="has none"):
        _term().prepare(
            GuidanceContext(
                backbone=SimpleNamespace(name="wan", device="cpu"),
                prompt="",
                homographies=np.eye(3)[None],
                width=8,
                height=8,
            )
        )
