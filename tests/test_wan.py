"""The Wan 2.1 backbone adapter (a video diffusion transformer) at tiny size, offline.

Tiny random-weight components are built in code, saved in diffusers layout and loaded through
the real path (``from_pretrained`` on a local folder), as a user's downloaded weights would be.
"""

from __future__ import annotations

import contextlib
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
        "UniPCMultistepScheduler",
        "flow_prediction",
        3.0,
    )


def test_adapter_native_setting_and_defaults():
    from cammimic_wan import wan as factory

    adapter = factory()
    assert adapter.default_weights == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert adapter.default_size == (832, 480) and adapter.default_num_frames == 81
    assert adapter.valid_num_frames(81) and not adapter.valid_num_frames(80)
    assert adapter.size_multiple == 16 and 832 % 16 == 0 and 480 % 16 == 0


def test_bfloat16_by_default_on_cuda(monkeypatch):
    from cammimic.kit import resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_loads_through_the_real_path(wan):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    assert isinstance(wan.denoiser, WanTransformer3DModel) and wan.denoiser is wan.denoiser
    assert isinstance(wan.vae, AutoencoderKLWan) and isinstance(wan.text_encoder, UMT5EncoderModel)
    assert (wan.vae_scale_factor, wan.temporal_factor, wan.latent_channels) == (8, 4, 16)
    assert wan.dtype == torch.float32 and wan.training_shift == 3.0
    assert wan.samplers == ("unipc", "euler")
    assert not any(p.requires_grad for p in wan.denoiser.parameters())


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
    mu = wan.vae.encode(
        torch.from_numpy(pan_clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    ).latent_dist.mean
    mean = torch.tensor(wan.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(wan.vae.config.latents_std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(z, (mu - mean) / std)


@pytest.mark.parametrize(
    "frames,size,fix", [(8, 64, "use 4k+1 frames (e.g. 5)"), (9, 72, "multiple of 16")]
)
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

    spatial, temporal = wan_lora_targets(wan.denoiser)
    assert spatial == [
        f"blocks.{b}.attn1.{p}" for b in (0, 1) for p in ("to_q", "to_k", "to_v", "to_out.0")
    ]
    assert temporal == [f"blocks.{b}.attn1.{p}" for b in (0, 1) for p in ("to_q", "to_k")]
    spatial_ff, temporal_ff = wan_lora_targets(wan.denoiser, include_ff=True)
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
    with pytest.raises(
        CammimicError, match="has no transformer/, text_encoder/, tokenizer/, scheduler/ subfolders"
    ):
        factory().load(str(tmp_path / "partial"), device="cpu")


# --- the whole method on Wan (the seam) --------------------------------------------------------

FAST = [
    "--width",
    "64",
    "--height",
    "64",
    "--stage1-steps",
    "4",
    "--stage2-steps",
    "3",
    "--steps",
    "4",
    "--spatial-rank",
    "4",
    "--temporal-rank",
    "4",
    "-q",
]


@pytest.fixture(scope="module")
def wan_inputs(tmp_path_factory):
    """A 12-frame reference video of a photograph under a known pan, and a user image."""
    import cv2
    from conftest import clip, photo

    from cammimic.io import write_image, write_video

    d = tmp_path_factory.mktemp("wan-inputs")
    frames, _ = clip("pan", 128, 128, frames=12, name="astronaut", magnitude=2.0)
    write_video(d / "ref.mp4", frames, 8.0, crf=18)
    write_image(
        d / "user.png", cv2.resize(photo("coffee"), (128, 128), interpolation=cv2.INTER_AREA)
    )
    return d / "ref.mp4", d / "user.png"


def cli(capsys, *args):
    from cammimic.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def wan_run_args(wan_inputs, weights, out, *extra):
    ref, user = wan_inputs
    return [
        "run",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--reference-prompt",
        "an astronaut",
        "--backbone",
        "wan",
        "--weights",
        weights,
        "-o",
        out,
        *FAST,
        *extra,
    ]


@pytest.fixture(scope="module")
def wan_run(wan_inputs, wan_weights, tmp_path_factory):
    from cammimic.cli import main

    out = tmp_path_factory.mktemp("wan-runs") / "first"
    assert main([str(a) for a in wan_run_args(wan_inputs, wan_weights, out)]) == 0
    return out


def test_sampling_defaults_belong_to_the_backbone(plugin_host):
    """issue 22 §3: [sampling] steps 0, guidance_scale 0 and negative_prompt "auto" are the backbone's."""
    from cammimic_wan.backbone import NEGATIVE_PROMPT

    from cammimic.backbones import resolve_sampling
    from cammimic.config import DEFAULTS

    wan = plugin_host.create("backbone", "wan", {})
    zeroscope = plugin_host.create("backbone", "zeroscope", {})
    assert resolve_sampling(wan, DEFAULTS["sampling"]) == {
        "sampling.steps": 50,
        "sampling.guidance_scale": 5.0,
        "sampling.negative_prompt": NEGATIVE_PROMPT,
    }
    assert resolve_sampling(zeroscope, DEFAULTS["sampling"]) == {
        "sampling.steps": 50,
        "sampling.guidance_scale": 9.0,
        "sampling.negative_prompt": "",
    }
    # what the user set stays, an empty negative prompt included
    assert resolve_sampling(wan, {"steps": 30, "guidance_scale": 1.0, "negative_prompt": ""}) == {}


def test_cammimic_run_on_wan_through_the_cli(wan_run):
    from cammimic.config import tomllib
    from cammimic.io import read_video
    from cammimic.lora import read_lora

    out = wan_run
    # no --frames: the paper's 16 moves to a count Wan takes (4k+1) within the 12-frame reference
    assert read_video(out / "output.mp4").frames.shape == (9, 64, 64, 3)
    assert read_video(out / "weak.mp4").frames.shape == (9, 64, 64, 3)
    config = tomllib.loads((out / "config.toml").read_text())
    assert (config["run"]["frames"], config["sampling"]["scheduler"]) == (
        9,
        "unipc",
    )  # "auto", resolved
    # issue 22 §3: the CFG scale and negative prompt nobody set are Wan's (WanPipeline's), recorded as used
    from cammimic_wan.backbone import NEGATIVE_PROMPT

    assert (
        config["sampling"]["guidance_scale"] == 5.0
        and config["sampling"]["negative_prompt"] == NEGATIVE_PROMPT
    )
    assert NEGATIVE_PROMPT.startswith("Bright tones, overexposed, static")
    assert json.loads((out / "run.json").read_text())["sampling"] == {
        "scheduler": "unipc",
        "steps": 4,
        "guidance_scale": 5.0,
        "negative_prompt": NEGATIVE_PROMPT,
    }
    run = json.loads((out / "run.json").read_text())
    assert run["components"]["backbone"]["name"] == "wan" and run["layers"]["located_by"] == "wan"
    assert (run["layers"]["spatial"], run["layers"]["temporal"], run["layers"]["pairs"]) == (
        8,
        4,
        4,
    )
    assert run["finetune"]["temporal_lora_unchanged_in_stage2"] is True
    layers = json.loads((out / "lora" / "layers.json").read_text())
    assert layers["shared"] is True and layers["pairs"] == [[n, n] for n in layers["temporal"]]
    rows = [r.split(",") for r in (out / "losses.csv").read_text().splitlines()[1:]]
    assert len(rows) == 7 and all(
        0.0 <= float(r[-1]) <= 1000.0 for r in rows
    )  # flow-matching timesteps
    assert {int(r[-2]) for r in rows if r[0] == "1"} <= set(
        range(9)
    )  # the spatial frame: a video frame
    _, meta = read_lora(out / "lora" / "temporal.safetensors")
    assert meta["backbone"] == "wan" and json.loads(meta["target_layers"]) == layers["temporal"]


def test_plugins_lists_wan(capsys):
    code, out, _ = cli(capsys, "plugins")
    assert code == 0 and "backbone wan: Wan 2.1 T2V 1.3B" in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--frames", "8"],
            'backbone "wan" takes 4k+1 frames (its VAE compresses time 4x after the first frame) '
            "(e.g. --frames 9)",
        ),
        (
            ["--scheduler", "ddim"],
            "'ddim' is not a sampler of backbone \"wan\"; try one of ['unipc', 'euler']",
        ),
        (["--width", "72"], 'must be multiples of 16 for backbone "wan"'),
    ],
)
def test_wan_rules_refuse_bad_settings_in_one_line(
    wan_inputs, wan_weights, tmp_path, capsys, extra, message
):
    code, _, err = cli(capsys, *wan_run_args(wan_inputs, wan_weights, tmp_path / "out", *extra))
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def _prepared(wan_weights, plugin_host, rank=4, dropout=0.0):
    from conftest import clip, photo

    from cammimic.lora import LoraSpec, inject_loras

    backbone = plugin_host.create("backbone", "wan", {"weights": str(wan_weights)}).load(
        device="cpu"
    )
    frames, _ = clip("pan", 64, 64, frames=9, magnitude=3.0)
    image = photo("coffee")[100:164, 100:164]
    layers = plugin_host.locate_attention_layers("wan", backbone.denoiser, False)
    inject_loras(
        backbone.denoiser,
        layers,
        LoraSpec(rank=rank, dropout=dropout),
        LoraSpec(rank=rank, dropout=dropout),
        init_seed=0,
    )
    embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
    kw = dict(
        reference_latents=backbone.encode_video(frames),
        reference_embeds=embeds[:1],
        image_latents=backbone.encode_video(image[None]),
        image_embeds=embeds[1:],
        reference_frame_latents=backbone.encode_frames(frames),
    )
    return backbone, layers, kw


def _flow_probe(backbone, latents, embeds, image_mode=False):
    """Flow-matching MSE at fixed noise levels and noise: a loss that does not jitter."""
    g = torch.Generator().manual_seed(1234)
    losses = []
    with torch.no_grad():
        for t in (150.0, 350.0, 550.0, 750.0, 950.0):
            x, target = backbone.noise_and_target(
                latents, torch.randn(latents.shape, generator=g), torch.tensor([t])
            )
            with backbone.temporal_bypass() if image_mode else contextlib.nullcontext():
                losses.append(
                    torch.nn.functional.mse_loss(
                        backbone.predict_noise(x, t, embeds), target
                    ).item()
                )
    return float(np.mean(losses))


def test_losses_of_both_stages_fall_on_wan(wan_weights, plugin_host):
    from cammimic.training import FinetuneSettings, finetune

    backbone, layers, kw = _prepared(wan_weights, plugin_host)
    ref, img = kw["reference_latents"], kw["image_latents"]
    before = (
        _flow_probe(backbone, ref, kw["reference_embeds"]),
        _flow_probe(backbone, img, kw["image_embeds"], image_mode=True),
    )
    settings = FinetuneSettings(
        stage1_steps=30, stage2_steps=30, learning_rate=5e-3, checkpoint_every=0
    )
    result = finetune(backbone, layers, settings=settings, progress=False, **kw)
    after = (
        _flow_probe(backbone, ref, kw["reference_embeds"]),
        _flow_probe(backbone, img, kw["image_embeds"], image_mode=True),
    )
    assert len(result.losses) == 60 and result.temporal_unchanged_in_stage2 is True
    assert after[0] < 0.85 * before[0], (before, after)  # stage 1: the whole clip
    assert after[1] < 0.85 * before[1], (before, after)  # stage 2: the user image


def test_image_mode_gives_the_temporal_lora_no_gradient(wan_weights, plugin_host):
    from cammimic.lora import lora_parameters

    backbone, _, kw = _prepared(wan_weights, plugin_host)
    model = backbone.denoiser
    with torch.no_grad():  # B starts at zero: move it so both LoRAs act
        for p in lora_parameters(model, "spatial") + lora_parameters(model, "temporal"):
            p.add_(0.01)
    x, target = backbone.noise_and_target(
        kw["reference_frame_latents"][:1],
        torch.ones_like(kw["reference_frame_latents"][:1]),
        torch.tensor([500.0]),
    )
    with backbone.temporal_bypass():
        scales = {
            m.scaling["temporal"]
            for m in model.modules()
            if "temporal" in getattr(m, "scaling", {})
        }
        loss = torch.nn.functional.mse_loss(
            backbone.predict_noise(x, 500.0, kw["reference_embeds"]), target
        )
        loss.backward()
    assert scales == {0.0}
    assert all(p.grad is None or not p.grad.any() for p in lora_parameters(model, "temporal"))
    assert all(p.grad is not None and p.grad.any() for p in lora_parameters(model, "spatial"))
    restored = {
        m.scaling["temporal"] for m in model.modules() if "temporal" in getattr(m, "scaling", {})
    }
    assert restored == {1.0}


def test_lora_files_round_trip_and_refuse_a_unet3d_base(
    wan_run, wan_weights, tiny_weights, plugin_host
):
    from cammimic.lora import load_lora, lora_state_dict, read_lora

    fresh = plugin_host.create("backbone", "wan", {"weights": str(wan_weights)}).load(device="cpu")
    ident = {"backbone": "wan", "base_model": fresh.weights, "fingerprint": fresh.fingerprint()}
    for adapter in ("spatial", "temporal"):
        path = wan_run / "lora" / f"{adapter}.safetensors"
        load_lora(path, fresh.denoiser, adapter, **ident)
        saved, _ = read_lora(path)
        now = lora_state_dict(fresh.denoiser, adapter)
        assert set(saved) == set(now) and all(torch.equal(saved[k], now[k]) for k in saved)
    # both adapters share the query/key layers, each with its own weights
    q = fresh.denoiser.get_submodule("blocks.0.attn1.to_q")
    assert set(q.lora_A) == {"spatial", "temporal"}
    unet3d = plugin_host.create("backbone", "zeroscope", {"weights": str(tiny_weights)}).load(
        device="cpu"
    )
    with pytest.raises(CammimicError) as err:
        load_lora(
            wan_run / "lora" / "temporal.safetensors",
            unet3d.denoiser,
            "temporal",
            backbone="zeroscope",
            base_model=unet3d.weights,
            fingerprint=unet3d.fingerprint(),
            allow_other_base=True,
        )
    assert "another architecture" in str(err.value) and "\n" not in str(err.value)
    assert not any("lora_" in n for n, _ in unet3d.denoiser.named_parameters())  # untouched


def test_homography_guidance_pulls_towards_zp_across_latent_frames(wan):
    from conftest import clip, photo

    from cammimic.guidance import homography_guidance
    from cammimic.homography import warp_along_chain
    from cammimic.sampling import erode_mask, latent_mask, sample

    _, h = clip("pan", 64, 64, frames=9, magnitude=3.0)
    image = photo("coffee")[100:164, 100:164]
    weak, masks = warp_along_chain(image, h)
    target = wan.encode_video(weak)  # z_P: 9 frames -> 3 latent frames
    mask = latent_mask(masks, wan.vae_scale_factor, wan.frame_groups(9))
    assert target.shape == (1, 16, 3, 8, 8) and mask.shape == (1, 1, 3, 8, 8)
    per_frame = latent_mask(masks, wan.vae_scale_factor)[0, 0]  # (9, 8, 8)
    assert torch.equal(mask[0, 0, 0], per_frame[0]) and torch.equal(
        mask[0, 0, 2], per_frame[5:9].amin(0)
    )
    assert 0.3 < float(mask.mean()) < 1.0  # the pan moves part of the image out of view

    def run(terms, scheduler="unipc"):
        return sample(
            wan,
            "a cup of coffee",
            num_frames=9,
            width=64,
            height=64,
            steps=6,
            guidance_scale=5.0,
            scheduler=scheduler,
            seed=0,
            guidance_terms=terms,
            target=target,
            mask=mask,
            progress=False,
        )

    def distance(latents, where):
        where = where.expand_as(latents).bool()
        return (latents - target)[where].pow(2).mean().item()

    # in view: the cells the term pulls, those its eroded mask keeps (mask_erode cells from the fill)
    inside, outside = erode_mask(mask, homography_guidance().mask_erode) > 0.5, mask < 0.5
    assert 0.1 < float(inside.float().mean()) < float(mask.mean())
    # measured ratios (guided / unguided squared distance in view, 6 steps on the random tiny Wan):
    # default (x̂₀, λ_G 0.3) unipc 0.314, euler 0.066 (0.315 / 0.066 in the eroded mask); z_t λ_G 0.2: 0.243 / 0.046; noised: 0.316 / 0.127.
    # With 20 steps the default gives 0.093 / 0.022. The samplers' agreement on a model that is
    # exact is tests/test_phase2.py::test_homography_guidance_is_kept_by_every_sampler.
    bounds = {"unipc": 0.35, "euler": 0.15}
    cases = (
        {},
        {"acts_on": "z_t", "weight": 0.2},
        {"acts_on": "z_t", "weight": 0.2, "compare": "noised"},
    )
    for scheduler in ("unipc", "euler"):
        none = run([], scheduler)
        assert none.shape == (1, 16, 3, 8, 8)
        for params in cases:  # "noised": z_P noised by the backbone's flow-matching rule
            guided = run([homography_guidance(**params)], scheduler)
            assert distance(guided, inside) < bounds[scheduler] * distance(none, inside), (
                scheduler,
                params,
            )
            # out of view (the weak video's black fill) is left to the model
            assert 0.98 < distance(guided, outside) / distance(none, outside) < 1.02, (
                scheduler,
                params,
            )
    assert torch.equal(
        run([homography_guidance(weight=0.2)]), run([homography_guidance(weight=0.2)])
    )


def test_resume_on_wan_is_bit_identical(wan_weights, plugin_host, tmp_path):
    from cammimic.lora import lora_state_dict
    from cammimic.training import FinetuneSettings, TrainingInterrupted, finetune

    settings = FinetuneSettings(
        stage1_steps=3,
        stage2_steps=2,
        checkpoint_every=2,
        seed=3,
        temporal_debias=True,
        spatial_mask_probability=0.5,
    )

    def loras(backbone):
        return {a: lora_state_dict(backbone.denoiser, a) for a in ("spatial", "temporal")}

    backbone, layers, kw = _prepared(wan_weights, plugin_host, dropout=0.1)
    whole = finetune(backbone, layers, settings=settings, progress=False, **kw)
    expected = loras(backbone)

    def stop(record):
        if (record["stage"], record["step"]) == (1, 3):
            raise KeyboardInterrupt

    backbone, layers, kw = _prepared(wan_weights, plugin_host, dropout=0.1)
    with pytest.raises(TrainingInterrupted):
        finetune(
            backbone,
            layers,
            settings=settings,
            progress=False,
            on_step=stop,
            checkpoint_dir=tmp_path,
            **kw,
        )
    backbone, layers, kw = _prepared(wan_weights, plugin_host, dropout=0.1)
    resumed = finetune(
        backbone,
        layers,
        settings=settings,
        progress=False,
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    assert resumed.resumed_from == {"stage": 1, "step": 3}
    got = loras(backbone)
    for a in ("spatial", "temporal"):
        assert all(torch.equal(expected[a][k], got[a][k]) for k in expected[a]), a
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]


def test_bfloat16_as_on_a_gpu_trains_and_samples(wan_weights, plugin_host):
    """Wan's default dtype on CUDA, run here on the CPU: norms stay float32, LoRAs float32, losses finite."""
    from cammimic.lora import LoraSpec, inject_loras, lora_parameters, lora_state_dict
    from cammimic.sampling import sample
    from cammimic.training import FinetuneSettings, finetune

    backbone = plugin_host.create("backbone", "wan", {"weights": str(wan_weights)}).load(
        device="cpu", torch_dtype="bfloat16"
    )
    model = backbone.denoiser
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert model.blocks[0].scale_shift_table.dtype == torch.float32  # kept, as diffusers does
    layers = plugin_host.locate_attention_layers("wan", model, False)
    inject_loras(model, layers, LoraSpec(rank=4), LoraSpec(rank=4), init_seed=0)
    frames = np.asarray(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)), np.uint8)
    embeds = backbone.encode_prompt(["a, camera motion of sks", "b"])
    before = lora_state_dict(model, "temporal")
    result = finetune(
        backbone,
        layers,
        reference_latents=backbone.encode_video(frames),
        reference_embeds=embeds[:1],
        image_latents=backbone.encode_video(frames[:1]),
        image_embeds=embeds[1:],
        reference_frame_latents=backbone.encode_frames(frames),
        progress=False,
        settings=FinetuneSettings(stage1_steps=2, stage2_steps=2, checkpoint_every=0),
    )
    assert result.precision == "bfloat16 autocast"
    assert all(np.isfinite(r["loss"]) for r in result.losses)
    assert all(p.dtype == torch.float32 for p in lora_parameters(model, "spatial"))
    after = lora_state_dict(model, "temporal")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    latents = sample(
        backbone, "b", num_frames=5, width=32, height=32, steps=2, seed=0, progress=False
    )
    assert latents.shape == (1, 16, 2, 4, 4) and torch.isfinite(latents).all()


def test_gradient_checkpointing_on_wan_leaves_the_loras_unchanged(wan_weights, plugin_host):
    """Finetuning with checkpointed transformer blocks gives the LoRAs of finetuning without."""
    from cammimic.lora import lora_state_dict
    from cammimic.training import FinetuneSettings, finetune

    settings = FinetuneSettings(
        stage1_steps=3,
        stage2_steps=1,
        spatial_mask_probability=0.5,
        seed=2,
        learning_rate=1e-2,
        checkpoint_every=0,
    )
    runs = []
    for checkpointing in (False, True):
        backbone, layers, kw = _prepared(wan_weights, plugin_host)
        result = finetune(
            backbone,
            layers,
            progress=False,
            **kw,
            settings=FinetuneSettings(
                **{
                    **{
                        f: getattr(settings, f)
                        for f in (
                            "stage1_steps",
                            "stage2_steps",
                            "spatial_mask_probability",
                            "seed",
                            "learning_rate",
                            "checkpoint_every",
                        )
                    },
                    "gradient_checkpointing": checkpointing,
                }
            ),
        )
        runs.append(
            (
                {a: lora_state_dict(backbone.denoiser, a) for a in ("spatial", "temporal")},
                [r["spatial_masked"] for r in result.losses if r["stage"] == 1],
            )
        )
    (plain, masked), (ckpt, masked_ckpt) = runs
    assert masked == masked_ckpt and True in masked and False in masked
    for adapter in ("spatial", "temporal"):
        for k in plain[adapter]:
            torch.testing.assert_close(ckpt[adapter][k], plain[adapter][k], rtol=1e-5, atol=1e-7)


def test_checkpointed_blocks_recompute_in_image_mode_after_it_ended(wan_weights, plugin_host):
    """Forward in image mode (temporal LoRA at scale 0), backward after the block restored the scale."""
    from cammimic.lora import lora_parameters

    backbone, _, kw = _prepared(wan_weights, plugin_host)
    model = backbone.denoiser
    with torch.no_grad():
        for p in lora_parameters(model, "spatial") + lora_parameters(model, "temporal"):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = kw["reference_frame_latents"][:1]
    grads = []
    for checkpointing in (False, True):
        backbone.set_gradient_checkpointing(checkpointing)
        with backbone.temporal_bypass():
            loss = backbone.predict_noise(x, 500.0, kw["reference_embeds"]).square().mean()
        loss.backward()  # outside the block: the temporal LoRA is back at scale 1
        params = lora_parameters(model, "spatial")
        grads.append(torch.cat([p.grad.flatten() for p in params]))
        for p in params + lora_parameters(model, "temporal"):
            p.grad = None
    backbone.set_gradient_checkpointing(False)
    assert all(
        b.forward.__func__ is type(b).forward
        for b in model.blocks
        if hasattr(b.forward, "__func__")
    )
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)


def test_cammimic_sample_refuses_wan_loras_on_a_unet3d_named_on_the_command_line(
    wan_run, wan_inputs, tiny_weights, tmp_path, capsys
):
    """`--backbone zeroscope` named by the user was taken for the default and replaced by the run's
    recorded backbone (wan, from the Hub): the refusal must name the architectures instead."""
    ref, user = wan_inputs
    code, _, err = cli(
        capsys,
        "sample",
        ref,
        user,
        "--lora",
        wan_run,
        "--backbone",
        "zeroscope",
        "--weights",
        tiny_weights,
        "--prompt",
        "a cup",
        "--steps",
        "2",
        "-o",
        tmp_path / "out",
        "-q",
    )
    line = err.strip().splitlines()[-1]
    assert code == 1 and "was trained on a denoiser of another architecture" in line, err
    assert 'backbone "wan"' in line and 'backbone "zeroscope"' in line
    assert not (tmp_path / "out").exists()
