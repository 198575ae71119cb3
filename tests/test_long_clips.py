"""Longer than the backbone's clip (issue 25 §4): Phase 2 in overlapping windows along the one camera
path, blended into one output, on tiny weights that state an 8-frame clip."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import clip, photo, write_pair

from cammimic.cli import main
from cammimic.errors import CammimicError
from cammimic.guidance import homography_guidance
from cammimic.homography import warp_along_chain
from cammimic.io import read_video
from cammimic.lora import LoraSpec, inject_loras
from cammimic.methods.homography import Transfer
from cammimic.sampling import phase2, plan_windows, sample_windows, window_weights

SETTINGS = {
    "spatial_scale": 1.0,
    "temporal_scale": 1.0,
    "steps": 3,
    "guidance_scale": 1.0,
    "negative_prompt": "",
    "scheduler": "ddim",
    "eta": 0.0,
    "window_overlap": 2,
}
PROMPT = "a cup of coffee, camera motion of sks"
WINDOW, OVERLAP = 8, 2
LONG = 2 * WINDOW - OVERLAP  # 14 frames: two windows sharing 2


@pytest.fixture(scope="module")
def short_weights(tmp_path_factory):
    """Tiny weights whose folder states an 8-frame clip (the adapter's ``max_frames``)."""
    from cammimic_unet3d.random_weights import save_components

    return save_components(
        tmp_path_factory.mktemp("tiny-8"), preset="tiny", seed=0, max_frames=WINDOW
    )


@pytest.fixture(scope="module")
def backbone(short_weights):
    from cammimic.plugins import PluginHost

    host = PluginHost()
    host.entry_points = lambda: [
        ep for ep in PluginHost.entry_points(host) if ep.value.startswith("cammimic")
    ]
    host = host.load()
    adapter = host.create("backbone", "zeroscope", {"weights": str(short_weights)})
    assert adapter.max_frames == WINDOW
    loaded = adapter.load(device="cpu")
    layers = host.locate_attention_layers(loaded.name, loaded.denoiser, False)
    inject_loras(
        loaded.denoiser, layers, LoraSpec(rank=4), LoraSpec(rank=4), init_seed=0
    )  # phase2 sets their scales
    return loaded


def _weak(frames: int):
    import cv2

    _, h = clip("pan", 64, 64, frames=frames, name="astronaut")
    image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)
    out, masks = warp_along_chain(image, h)
    return Transfer(frames=out, masks=masks, reference_motion=SimpleNamespace(homographies=h))


def test_windows_cover_the_clip_evenly_and_share_at_least_the_overlap():
    assert plan_windows(8, 8) == [(0, 8)] and plan_windows(5, 8, 3) == [(0, 5)]
    assert plan_windows(LONG, WINDOW, OVERLAP) == [(0, 8), (6, 14)]
    assert plan_windows(32, 8) == [(0, 8), (6, 14), (12, 20), (18, 26), (24, 32)]  # 0: a quarter, 2
    assert plan_windows(15, 8, 2) == [(0, 8), (4, 12), (7, 15)]  # spread evenly: overlaps 4 and 5
    for windows, total in (
        ([(0, 8), (6, 14)], 14),
        (plan_windows(15, 8, 2), 15),
        (plan_windows(81, 24), 81),
    ):
        w = window_weights(windows, total)
        assert np.allclose(w.sum(axis=0), 1.0) and (w >= 0).all()
    w = window_weights([(0, 8), (6, 14)], 14)
    assert np.allclose(
        w[0], [1, 1, 1, 1, 1, 1, 2 / 3, 1 / 3, 0, 0, 0, 0, 0, 0]
    )  # a linear crossfade
    assert np.allclose(w[1], 1 - w[0])
    with pytest.raises(CammimicError) as e:
        plan_windows(20, 8, 5)
    assert str(e.value) == (
        "[sampling] window_overlap = 5 frames does not fit the backbone's 8-frame window "
        "(--frames 20 is sampled in windows); use 1 to 4, or 0 for a quarter (2)"
    )


def test_overlap_frames_are_the_blend_of_the_two_windows(backbone):
    weak = _weak(LONG)
    got = sample_windows(
        backbone,
        weak,
        PROMPT,
        settings=SETTINGS,
        seed=7,
        window=WINDOW,
        overlap=OVERLAP,
        guidance_terms=[homography_guidance(weight=0.1)],
        progress=False,
    )
    assert got.windows == ((0, 8), (6, 14))
    first, second = got.latents
    assert first.shape[2] == second.shape[2] == WINDOW and got.blended.shape[2] == LONG
    # outside the overlap each window's latents as sampled; inside, 2/3 + 1/3 then 1/3 + 2/3
    assert torch.equal(got.blended[:, :, :6], first[:, :, :6]) and torch.equal(
        got.blended[:, :, 8:], second[:, :, 2:]
    )
    expected = torch.stack(
        [
            2 / 3 * first[:, :, 6] + 1 / 3 * second[:, :, 0],
            1 / 3 * first[:, :, 7] + 2 / 3 * second[:, :, 1],
        ],
        dim=2,
    )
    assert torch.allclose(got.blended[:, :, 6:8], expected, atol=1e-6, rtol=0)
    assert not torch.allclose(
        first[:, :, 6:8], second[:, :, :2], atol=1e-3
    )  # a real blend, not a copy
    assert np.array_equal(got.frames, backbone.decode_latents(got.blended))
    # each window is guided by its cut of the one weak video; the second, on the frames it shares with
    # the first, towards the first's latents, valid everywhere there
    seen = []

    class Record:
        acts_on = "x0"

        def apply(self, latents, state):
            if state.step == 0:
                seen.append((state.target.clone(), state.mask.clone()))
            return latents

    recorded = sample_windows(
        backbone,
        weak,
        PROMPT,
        settings=SETTINGS,
        seed=7,
        window=WINDOW,
        overlap=OVERLAP,
        guidance_terms=[Record()],
        progress=False,
    )
    (target0, mask0), (target1, mask1) = seen
    z_p = backbone.encode_video(weak.frames)
    assert torch.equal(target0, z_p[:, :, :8]) and torch.equal(target1[:, :, 2:], z_p[:, :, 8:])
    assert torch.equal(target1[:, :, :2], recorded.latents[0][:, :, 6:]) and bool(
        (mask1[:, :, :2] == 1).all()
    )
    assert (
        float(mask0[:, :, 6:].mean()) < 1.0
    )  # the weak video's own mask there: the pan leaves the image
    # phase2 dispatches to the windows when the weak video is longer than max_frames
    assert np.array_equal(
        phase2(
            backbone,
            weak,
            PROMPT,
            settings=SETTINGS,
            seed=7,
            progress=False,
            guidance_terms=[homography_guidance(weight=0.1)],
            max_frames=WINDOW,
        ),
        got.frames,
    )


def test_a_guidance_terms_history_covers_every_window(backbone):
    """A term restarts its history in each window's ``prepare``; the record a run keeps (run.json's
    guidance history) holds every window's steps, each tagged with its window, not the last window's."""

    class Counting:
        acts_on = "x0"

        def prepare(self, context):
            self.history = []

        def apply(self, latents, state):
            self.history.append({"step": state.step})
            return latents

    term = Counting()
    sample_windows(
        backbone,
        _weak(LONG),
        PROMPT,
        settings=SETTINGS,
        seed=7,
        window=WINDOW,
        overlap=OVERLAP,
        guidance_terms=[term],
        progress=False,
    )
    steps = SETTINGS["steps"]
    assert term.history == [{"step": s, "window": k} for k in range(2) for s in range(steps)]


def test_a_clip_within_max_frames_is_sampled_at_once_bit_for_bit(backbone):
    weak = _weak(WINDOW)
    terms = [homography_guidance(weight=0.1)]
    at_once = phase2(
        backbone, weak, PROMPT, settings=SETTINGS, seed=7, guidance_terms=terms, progress=False
    )
    assert np.array_equal(
        phase2(
            backbone,
            weak,
            PROMPT,
            settings=SETTINGS,
            seed=7,
            guidance_terms=terms,
            progress=False,
            max_frames=WINDOW,
        ),
        at_once,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("inputs"), size=96, frames=16)


def _run(inputs, weights, out, frames):
    ref, user = inputs
    return main(
        [
            str(a)
            for a in [
                "run",
                ref,
                user,
                "--prompt",
                "a cup of coffee",
                "--weights",
                weights,
                "-o",
                out,
                "--frames",
                frames,
                "--width",
                64,
                "--height",
                64,
                "--stage1-steps",
                2,
                "--stage2-steps",
                2,
                "--steps",
                3,
                "--spatial-rank",
                4,
                "--temporal-rank",
                4,
                "-q",
            ]
        ]
    )


def test_a_run_longer_than_the_clip_writes_every_frame_and_records_its_windows(
    inputs, short_weights, tmp_path
):
    assert _run(inputs, short_weights, tmp_path / "long", LONG) == 0
    assert read_video(tmp_path / "long" / "output.mp4").frames.shape == (LONG, 64, 64, 3)
    assert read_video(tmp_path / "long" / "weak.mp4").frames.shape == (LONG, 64, 64, 3)
    record = json.loads((tmp_path / "long" / "run.json").read_text())
    assert record["num_frames"] == LONG
    assert record["windows"] == {
        "max_frames": WINDOW,
        "overlap": OVERLAP,
        "blend": "latents",
        "windows": [{"start": 0, "end": 8}, {"start": 6, "end": 14}],
        "finetuned_on_frames": [0, WINDOW],
    }
    # within max_frames: no windows
    assert _run(inputs, short_weights, tmp_path / "short", WINDOW) == 0
    assert "windows" not in json.loads((tmp_path / "short" / "run.json").read_text())


def test_a_vae_that_compresses_time_blends_decoded_frames(tmp_path):
    """Wan (4k+1 frames, 4x temporal compression): each window decoded, the shared frames crossfaded in pixels."""
    pytest.importorskip("cammimic_wan")
    from cammimic_wan import wan as factory
    from cammimic_wan.random_weights import main as write_weights

    assert write_weights(["--preset", "tiny", str(tmp_path / "wan")]) == 0
    backbone = factory().load(str(tmp_path / "wan"), device="cpu")
    weak = _weak(13)
    settings = SETTINGS | {"steps": 2, "scheduler": "auto"}
    got = sample_windows(
        backbone,
        weak,
        PROMPT,
        settings=settings,
        seed=3,
        window=9,
        overlap=4,
        guidance_terms=[homography_guidance(weight=0.1)],
        progress=False,
    )
    assert (
        got.windows == ((0, 9), (4, 13))
        and got.blended is None
        and got.frames.shape == (13, 64, 64, 3)
    )
    first, second = (f.astype(np.float64) for f in got.window_frames)
    w = got.weights
    blend = w[0, 4:9, None, None, None] * first[4:] + w[1, 4:9, None, None, None] * second[:5]
    assert np.array_equal(got.frames[4:9], np.clip(np.round(blend), 0, 255).astype(np.uint8))
    assert np.array_equal(got.frames[:4], got.window_frames[0][:4])
    assert np.array_equal(got.frames[9:], got.window_frames[1][5:])


def test_window_overlap_is_a_run_option(tmp_path, capsys):
    """`--window-overlap` sets [sampling] window_overlap (as the config, the API's
    sampling__window_overlap and the web app's field do); the homography method refuses it."""
    from cammimic.cli import _method_config, run

    ctx = run.make_context(
        "run", ["r.mp4", "i.png", "-o", str(tmp_path / "o"), "--window-overlap", "3"]
    )
    assert _method_config(ctx.params)["sampling"]["window_overlap"] == 3
    assert (
        main(
            [
                "run",
                "camera:zoom-in",
                "i.png",
                "-o",
                str(tmp_path / "o"),
                "--method",
                "homography",
                "--window-overlap",
                "3",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err == (
        "Error: --window-overlap has no effect with --method homography (it warps the "
        "image, no diffusion); drop it or use --method cammimic\n"
    )
    assert not (tmp_path / "o").exists()
