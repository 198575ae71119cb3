"""The Wan 2.1 backbone adapter (a video diffusion transformer) at tiny size, offline.

Tiny random-weight components are built in code, saved in diffusers layout and loaded through
the real path (``from_pretrained`` on a local folder), as a user's downloaded weights would be.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from cammimic.errors import CammimicError  # noqa: E402


@pytest.fixture(scope="session")
def wan_weights(tmp_path_factory):
    """The ``tiny`` preset written by the module's command line, as a user would run it."""
    from cammimic_wan.random_weights import main

    folder = tmp_path_factory.mktemp("tiny-wan") / "weights"
    assert main(["--preset", "tiny", str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def wan(wan_weights):
    from cammimic_wan import wan as factory

    return factory().load(str(wan_weights), device="cpu")


@pytest.fixture(scope="session")
def pan_clip():
    """9 frames (4k+1) of a photograph under a known pan, 64x64."""
    from conftest import clip

    frames, _ = clip("pan", 64, 64, frames=9, magnitude=3.0)
    return frames


def test_random_weights_are_a_diffusers_wan_folder(wan_weights):
    index = json.loads((wan_weights / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"]
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    assert index["_cammimic_random_weights"]["preset"] == "tiny"
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (wan_weights / sub).is_dir()
    sched = json.loads((wan_weights / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["_class_name"], sched["prediction_type"], sched["flow_shift"]) == (
        "UniPCMultistepScheduler", "flow_prediction", 3.0)


def test_adapter_native_setting_and_defaults():
    from cammimic_wan import wan as factory

    adapter = factory()
    assert adapter.default_weights == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert adapter.default_size == (832, 480) and adapter.default_num_frames == 81
    assert adapter.valid_num_frames(81) and not adapter.valid_num_frames(80)
    assert adapter.size_multiple == 16 and 832 % 16 == 0 and 480 % 16 == 0


def test_bfloat16_by_default_on_cuda(monkeypatch):
    from cammimic_unet3d.backbone import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_loads_through_the_real_path(wan):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    assert isinstance(wan.unet, WanTransformer3DModel) and wan.denoiser is wan.unet
    assert isinstance(wan.vae, AutoencoderKLWan) and isinstance(wan.text_encoder, UMT5EncoderModel)
    assert (wan.vae_scale_factor, wan.temporal_factor, wan.latent_channels) == (8, 4, 16)
    assert wan.dtype == torch.float32 and wan.training_shift == 3.0
    assert wan.samplers == ("unipc", "euler")
    assert not any(p.requires_grad for p in wan.unet.parameters())


def test_prompt_embeddings_stop_at_the_prompt_end(wan):
    embeds = wan.encode_prompt(["", "an astronaut"])
    assert embeds.shape == (2, 32, 32)
    used = embeds.abs().sum(-1) > 0
    # "" is </s> alone; "an astronaut" is 12 bytes + </s>; zero beyond, as WanPipeline pads
    assert used.sum(1).tolist() == [1, 13]


def test_video_latents_compress_time_4x_and_space_8x(wan, pan_clip):
    z = wan.encode_video(pan_clip)
    assert z.shape == (1, 16, 3, 8, 8) == wan.latent_shape(9, 64, 64)
    assert wan.frame_groups(9) == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    frames = wan.decode_latents(z)
    assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
    # one frame is an image: one latent frame, identical to the clip's first latent frame (causal VAE)
    first = wan.encode_frames(pan_clip[:2])
    assert first.shape == (2, 16, 1, 8, 8)
    assert torch.equal(first[0], z[0, :, :1])
    # latents are normalised with the VAE's per-channel mean and std
    mu = wan.vae.encode(torch.from_numpy(pan_clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1).latent_dist.mean
    mean = torch.tensor(wan.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(wan.vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, (mu - mean) / std)


@pytest.mark.parametrize("frames,size,fix", [(8, 64, "use 4k+1 frames (e.g. 5)"), (9, 72, "multiple of 16")])
def test_bad_clip_shapes_fail_in_one_line(wan, frames, size, fix):
    video = np.zeros((frames, size, size, 3), np.uint8)
    with pytest.raises(CammimicError) as err:
        wan.encode_video(video)
    assert fix in str(err.value) and "\n" not in str(err.value)


def test_flow_matching_noise_target_and_sampler_agree(wan):
    from diffusers import FlowMatchEulerDiscreteScheduler

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((1, 16, 3, 8, 8), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([750.0])
    noisy, target = wan.noise_and_target(x0, eps, t)
    torch.testing.assert_close(noisy, 0.25 * x0 + 0.75 * eps)
    torch.testing.assert_close(target, eps - x0)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    torch.testing.assert_close(noisy, sched.scale_noise(x0, t, eps), atol=1e-5, rtol=1e-5)
    # an Euler step with the exact velocity lands on x0: target sign and sampler agree
    euler = wan.sampling_scheduler("euler")
    euler.set_timesteps(1)
    start, _ = wan.noise_and_target(x0, eps, euler.timesteps[:1])
    out = euler.step(target, euler.timesteps[0], start).prev_sample
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    with pytest.raises(CammimicError, match=r"Try one of \['unipc', 'euler'\]"):
        wan.sampling_scheduler("ddim")


def test_training_timesteps_follow_wans_shift(wan):
    a = wan.sample_training_timesteps(4000, torch.Generator().manual_seed(1))
    b = wan.sample_training_timesteps(4000, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1000.0
    # σ = 3u / (1 + 2u): the median u = 1/2 maps to σ = 0.75
    assert abs(float(a.median()) - 750.0) < 15.0


def test_locator_puts_temporal_lora_on_query_key_of_self_attention(wan):
    from cammimic_wan.locator import wan_lora_targets

    spatial, temporal = wan_lora_targets(wan.unet)
    assert spatial == [f"blocks.{b}.attn1.{p}" for b in (0, 1) for p in ("to_q", "to_k", "to_v", "to_out.0")]
    assert temporal == [f"blocks.{b}.attn1.{p}" for b in (0, 1) for p in ("to_q", "to_k")]
    spatial_ff, temporal_ff = wan_lora_targets(wan.unet, include_ff=True)
    assert len(spatial_ff) == 12 and temporal_ff == temporal
    assert not any(".attn2." in n for n in spatial_ff + temporal_ff)


def test_missing_weights_fail_fast_in_one_line(tmp_path, monkeypatch):
    from cammimic_wan import wan as factory

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CammimicError) as err:
        factory().load(device="cpu")
    msg = str(err.value)
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg and "--weights" in msg and "\n" not in msg
    (tmp_path / "partial" / "vae").mkdir(parents=True)
    with pytest.raises(CammimicError, match="has no transformer/, text_encoder/, tokenizer/, scheduler/ subfolders"):
        factory().load(str(tmp_path / "partial"), device="cpu")
