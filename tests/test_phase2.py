"""Phase 2 as one unit (cammimic.sampling.phase2): z_P of the weak video, its latent mask, the LoRA
scales of [sampling], guided sampling and decoding, on the tiny seeded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import clip, photo

from cammimic.guidance import homography_guidance
from cammimic.homography import warp_along_chain
from cammimic.lora import LoraSpec, inject_loras, lora_state_dict
from cammimic.methods.homography import Transfer
from cammimic.sampling import latent_mask, phase2, sample

SETTINGS = {"spatial_scale": 1.0, "temporal_scale": 1.0, "steps": 3, "guidance_scale": 5.0, "negative_prompt": "",
            "scheduler": "ddim", "eta": 0.0}
PROMPT = "a cup of coffee, camera motion of sks"


@pytest.fixture(scope="module")
def weak():
    import cv2

    _, h = clip("pan", 64, 64, frames=6, name="astronaut")
    image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)
    frames, masks = warp_along_chain(image, h)
    return Transfer(frames=frames, masks=masks, reference_motion=None)


@pytest.fixture
def backbones(tiny_weights, plugin_host):
    """The tiny backbone twice: bare, and with spatial and temporal LoRAs that do something (B != 0)."""

    def load():
        return plugin_host.create("backbone", "zeroscope", {"weights": str(tiny_weights)}).load(device="cpu")

    bare, tuned = load(), load()
    layers = plugin_host.locate_attention_layers(tuned.name, tuned.unet, False)
    inject_loras(tuned.unet, layers, LoraSpec(rank=4), LoraSpec(rank=4), init_seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in tuned.unet.named_parameters():
            if "lora_B" in n:  # B starts at zero: make both LoRAs change the output
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    assert all(any(float(v.abs().sum()) > 0 for k, v in lora_state_dict(tuned.unet, a).items() if "lora_B" in k)
               for a in ("spatial", "temporal"))
    return bare, tuned


def test_phase2_is_z_p_mask_scales_sampling_and_decoding(backbones, weak):
    bare, tuned = backbones
    out = phase2(tuned, weak, PROMPT, settings=SETTINGS, seed=7, guidance_terms=[homography_guidance(weight=0.1)],
                 progress=False)
    assert out.shape == weak.frames.shape and out.dtype == np.uint8
    # the same as the steps written out by hand, with the weak video as the guidance target
    target = tuned.encode_video(weak.frames)
    mask = latent_mask(weak.masks, tuned.vae_scale_factor)
    assert 0.3 < float(mask.mean()) < 1.0  # the pan moves part of the image out of view
    by_hand = tuned.decode_latents(sample(tuned, PROMPT, num_frames=6, width=64, height=64, steps=3,
                                          guidance_scale=5.0, seed=7, guidance_terms=[homography_guidance(weight=0.1)],
                                          target=target, mask=mask, progress=False))
    assert np.array_equal(out, by_hand)
    # z_P and its mask matter: without guidance, or with guidance ignoring the mask, the video differs
    unguided = phase2(tuned, weak, PROMPT, settings=SETTINGS, seed=7, progress=False)
    unmasked = tuned.decode_latents(sample(tuned, PROMPT, num_frames=6, width=64, height=64, steps=3,
                                           guidance_scale=5.0, seed=7, guidance_terms=[homography_guidance(weight=0.1)],
                                           target=target, mask=None, progress=False))
    diff = lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())  # noqa: E731
    assert diff(out, unguided) > 1.0 and diff(out, unmasked) > 1.0, (diff(out, unguided), diff(out, unmasked))


def test_phase2_applies_the_lora_scales_of_the_settings(backbones, weak):
    bare, tuned = backbones
    base = bare.decode_latents(sample(bare, PROMPT, num_frames=6, width=64, height=64, steps=3, guidance_scale=5.0,
                                      seed=7, progress=False))
    off = phase2(tuned, weak, PROMPT, settings={**SETTINGS, "spatial_scale": 0.0, "temporal_scale": 0.0}, seed=7,
                 progress=False)
    on = phase2(tuned, weak, PROMPT, settings=SETTINGS, seed=7, progress=False)
    spatial_only = phase2(tuned, weak, PROMPT, settings={**SETTINGS, "temporal_scale": 0.0}, seed=7, progress=False)
    # both LoRAs at scale 0: exactly the model without LoRAs
    assert np.array_equal(off, base)
    # each LoRA changes the video (mean absolute difference in 8-bit levels)
    diff = lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())  # noqa: E731
    assert diff(on, off) > 1.0 and diff(spatial_only, off) > 1.0 and diff(on, spatial_only) > 1.0, \
        (diff(on, off), diff(spatial_only, off), diff(on, spatial_only))
