"""The ``wan-i2v`` backbone (Wan 2.2 TI2V: the user image is the first latent frame) at tiny size, offline.

Random weights of the real classes (``python -m cammimic_wan.random_weights --preset i2v-tiny``)
are loaded through the real path; diffusers' own ``WanImageToVideoPipeline`` on the same folder
is the reference for the conditioning.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from cammimic.errors import CammimicError  # noqa: E402


@pytest.fixture(scope="module")
def i2v_weights(tmp_path_factory):
    """The ``i2v-tiny`` preset written by the module's command line, as a user would run it."""
    from cammimic_wan.random_weights import main

    folder = tmp_path_factory.mktemp("tiny-wan-i2v") / "weights"
    assert main(["--preset", "i2v-tiny", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def i2v(i2v_weights):
    from cammimic_wan_i2v import wan_i2v

    return wan_i2v(weights=str(i2v_weights)).load(device="cpu")


@pytest.fixture(scope="module")
def clip9():
    """9 frames (4k+1) of a photograph under a known pan, 64x64."""
    from conftest import clip

    frames, _ = clip("pan", 64, 64, frames=9, magnitude=3.0)
    return frames


def test_random_weights_are_a_ti2v_folder_and_load_as_one(i2v_weights, i2v):
    index = json.loads((i2v_weights / "model_index.json").read_text())
    assert (index["_class_name"], index["expand_timesteps"]) == ("WanPipeline", True)
    vae = json.loads((i2v_weights / "vae" / "config.json").read_text())
    assert (vae["z_dim"], vae["patch_size"], vae["scale_factor_spatial"], vae["is_residual"]) == (
        48,
        2,
        16,
        True,
    )
    sched = json.loads((i2v_weights / "scheduler" / "scheduler_config.json").read_text())
    assert sched["flow_shift"] == 5.0
    assert type(i2v).__name__ == "WanI2VBackbone" and i2v.name == "wan-i2v"
    # Wan 2.2's VAE: 16x space, 4x time, 48 channels; sizes are multiples of 16 x the 2x2 patches
    assert (i2v.vae_scale_factor, i2v.latent_channels, i2v.size_multiple) == (16, 48, 32)
    assert i2v.latent_shape(9, 96, 64) == (1, 48, 3, 4, 6)  # (n, width, height)
    assert i2v.training_shift == 5.0


def test_sampling_matches_diffusers_wan_image_to_video_pipeline(i2v_weights, i2v):
    """Same x_T, embeddings and 3 UniPC steps with CFG 5: diffusers' TI2V pipeline and ours agree."""
    import PIL.Image
    from diffusers import WanImageToVideoPipeline

    from cammimic.sampling import initial_noise, make_generator, sample

    pipe = WanImageToVideoPipeline.from_pretrained(
        str(i2v_weights), image_encoder=None, image_processor=None
    )
    assert pipe.config.expand_timesteps is True
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    embeds = i2v.encode_prompt(["blurry", "a cup of coffee"])
    x_T = initial_noise(i2v.latent_shape(9, 64, 64), make_generator(3), "cpu")
    theirs = pipe(
        image=PIL.Image.fromarray(image),
        prompt_embeds=embeds[1:],
        negative_prompt_embeds=embeds[:1],
        height=64,
        width=64,
        num_frames=9,
        num_inference_steps=3,
        guidance_scale=5.0,
        latents=x_T.clone(),
        output_type="latent",
    ).frames
    with i2v.conditioned_on(image):
        ours = sample(
            i2v,
            "",
            num_frames=9,
            width=64,
            height=64,
            steps=3,
            guidance_scale=5.0,
            prompt_embeds=embeds,
            initial_latents=x_T.clone(),
            progress=False,
        )
    assert float(theirs.abs().max()) > 1.0
    assert float((theirs - ours).abs().max()) < 1e-4


@pytest.mark.parametrize("sampler", ["unipc", "euler"])
def test_first_latent_frame_is_the_image_at_every_step_with_guidance(i2v, clip9, sampler):
    """Every denoiser pass sees the image's latents in latent frame 0 at timestep 0, the other
    tokens at the step's t; the output ends on them; homography guidance still pulls frames 1…."""
    from cammimic.guidance import homography_guidance
    from cammimic.sampling import sample

    target = i2v.encode_video(clip9)
    seen = []
    hook = i2v.denoiser.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append((kw["hidden_states"].clone(), kw["timestep"].clone())),
        with_kwargs=True,
    )
    runs = {}
    try:
        with i2v.conditioned_on(clip9[0]) as image:
            for weight in (0.0, 0.5):
                seen.clear()
                runs[weight] = sample(
                    i2v,
                    "a street",
                    num_frames=9,
                    width=64,
                    height=64,
                    steps=3,
                    guidance_scale=5.0,
                    scheduler=sampler,
                    seed=1,
                    progress=False,
                    target=target,
                    guidance_terms=[homography_guidance(weight=weight)] if weight else [],
                )
                assert len(seen) == 3
                for hidden, t in seen:
                    assert hidden.shape == (2, 48, 3, 4, 4) and t.shape == (
                        2,
                        12,
                    )  # 3 latent frames x 2x2 tokens
                    assert torch.equal(hidden[:, :, :1], image.expand(2, -1, -1, -1, -1))
                    assert (
                        torch.all(t[:, :4] == 0)
                        and torch.all(t[:, 4:] == t[0, -1])
                        and float(t[0, -1]) > 0
                    )
                assert torch.equal(runs[weight][:, :, :1], image)
    finally:
        hook.remove()
    free, guided = runs[0.0][:, :, 1:], runs[0.5][:, :, 1:]
    assert float((guided - target[:, :, 1:]).norm()) < 0.9 * float((free - target[:, :, 1:]).norm())
    # outside the block: text to video, unchanged latents and one timestep per sample
    x = torch.zeros(1, 48, 3, 4, 4)
    assert i2v.conditioned_frames == 0 and i2v.condition(x, 5.0) == (x, 5.0)


def _prepared(i2v_weights, plugin_host, clip9, dropout=0.0):
    from cammimic.lora import LoraSpec, inject_loras

    backbone = plugin_host.create("backbone", "wan-i2v", {"weights": str(i2v_weights)}).load(
        device="cpu"
    )
    layers = plugin_host.locate_attention_layers("wan-i2v", backbone.denoiser, False)
    inject_loras(
        backbone.denoiser,
        layers,
        LoraSpec(rank=4, dropout=dropout),
        LoraSpec(rank=4, dropout=dropout),
        init_seed=0,
    )
    embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
    kw = dict(
        reference_latents=backbone.encode_video(clip9),
        reference_embeds=embeds[:1],
        reference_frame_latents=backbone.encode_frames(clip9),
    )
    return backbone, layers, kw


def _recipe_settings(**extra):
    from cammimic_wan_i2v.backbone import RECIPE

    from cammimic.training import FinetuneSettings

    own = {k.split(".", 1)[1]: v for k, v in RECIPE.items()}
    return FinetuneSettings(stage1_steps=3, checkpoint_every=2, seed=3, **own, **extra)


def test_phase1_conditions_on_the_references_first_frame_and_leaves_it_out_of_the_loss(
    i2v_weights, plugin_host, clip9
):
    from cammimic.lora import lora_state_dict
    from cammimic.training import finetune

    layers_seen = []
    backbone, layers, kw = _prepared(i2v_weights, plugin_host, clip9)
    assert (len(layers.spatial), len(layers.temporal), len(layers.pairs)) == (
        8,
        4,
        4,
    )  # Wan's placement
    first = backbone.encode_video(clip9[:1])

    def record(_m, _a, kwargs):
        layers_seen.append(
            (
                kwargs["hidden_states"].shape[2],
                kwargs["hidden_states"][:, :, :1].clone(),
                kwargs["timestep"].clone(),
            )
        )

    def wreck_frame0(_m, _a, out):  # the prediction of the conditioning frame must not count
        out[0][:, :, :1] = 1e3
        return out

    losses = {}
    for wreck in (False, True):
        backbone, layers, kw = _prepared(i2v_weights, plugin_host, clip9)
        hooks = [backbone.denoiser.register_forward_pre_hook(record, with_kwargs=True)]
        if wreck:
            hooks.append(backbone.denoiser.register_forward_hook(wreck_frame0))
        with backbone.conditioned_on(clip9[0]):
            result = finetune(backbone, layers, settings=_recipe_settings(), progress=False, **kw)
        for h in hooks:
            h.remove()
        losses[wreck] = [r["temporal"] for r in result.losses]
        # the spatial LoRA is off by default: never trained, so its B factors are still 0
        spatial_b = [
            v for k, v in lora_state_dict(backbone.denoiser, "spatial").items() if "lora_B" in k
        ]
        assert len(spatial_b) == 8 and all(float(v.abs().max()) == 0.0 for v in spatial_b)
    assert len(losses[False]) == 3 and all(np.isfinite(losses[False]))
    assert losses[True] == losses[False]
    clip_passes = [(f0, t) for n, f0, t in layers_seen if n == 3]
    assert len(clip_passes) == 6  # the temporal passes only: the spatial LoRA is off by default
    for f0, t in clip_passes:
        assert (
            torch.equal(f0, first)
            and t.shape == (1, 12)
            and torch.all(t[:, :4] == 0)
            and float(t[0, -1]) > 0
        )


def test_resume_on_wan_i2v_is_bit_identical(i2v_weights, plugin_host, clip9, tmp_path):
    from cammimic.lora import lora_state_dict
    from cammimic.training import TrainingInterrupted, finetune

    settings = _recipe_settings(temporal_debias=True)

    def run(**options):
        backbone, layers, kw = _prepared(i2v_weights, plugin_host, clip9, dropout=0.1)
        with backbone.conditioned_on(clip9[0]):
            result = finetune(backbone, layers, settings=settings, progress=False, **kw, **options)
        return result, lora_state_dict(backbone.denoiser, "temporal")

    whole, expected = run()

    def stop(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run(on_step=stop, checkpoint_dir=tmp_path)
    resumed, got = run(checkpoint_dir=tmp_path, resume=True)
    assert resumed.resumed_from == {"stage": 1, "step": 2}
    assert expected and all(torch.equal(expected[k], got[k]) for k in expected)
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]


# --- the whole method through the command line -------------------------------------------------


@pytest.fixture(scope="module")
def i2v_inputs(tmp_path_factory):
    """A 12-frame reference video of a photograph under a known pan, and a user image."""
    import cv2
    from conftest import clip, photo

    from cammimic.io import write_image, write_video

    d = tmp_path_factory.mktemp("i2v-inputs")
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


def run_args(inputs, weights, out, *extra):
    ref, user = inputs
    return [
        "run",
        ref,
        user,
        "--prompt",
        "a cup of coffee",
        "--reference-prompt",
        "an astronaut",
        "--backbone",
        "wan-i2v",
        "--weights",
        weights,
        "-o",
        out,
        "--width",
        "64",
        "--height",
        "64",
        "--stage1-steps",
        "3",
        "--steps",
        "3",
        "--spatial-rank",
        "4",
        "--temporal-rank",
        "4",
        "-q",
        *extra,
    ]


def test_cammimic_run_on_wan_i2v_through_the_cli(i2v_inputs, i2v_weights, tmp_path, capsys):
    from cammimic.config import tomllib
    from cammimic.io import read_video

    out = tmp_path / "run"
    code, _, err = cli(capsys, *run_args(i2v_inputs, i2v_weights, out))
    assert code == 0, err
    assert read_video(out / "output.mp4").frames.shape == (9, 64, 64, 3)
    config = tomllib.loads((out / "config.toml").read_text())
    assert (
        config["run"]["frames"],
        config["sampling"]["scheduler"],
        config["sampling"]["guidance_scale"],
    ) == (9, "unipc", 5.0)
    # the backbone's Phase 1: the temporal LoRA alone (the image condition carries the scene)
    assert (
        config["finetune"]["stage2"] is False
        and config["finetune"]["spatial_mask_probability"] == 1.0
    )
    run = json.loads((out / "run.json").read_text())
    assert (
        run["components"]["backbone"]["name"] == "wan-i2v" and run["layers"]["located_by"] == "wan"
    )
    assert (run["layers"]["spatial"], run["layers"]["temporal"], run["layers"]["pairs"]) == (
        8,
        4,
        4,
    )
    rows = [r.split(",") for r in (out / "losses.csv").read_text().splitlines()[1:]]
    assert len(rows) == 3 and {r[0] for r in rows} == {"1"}


def test_plugins_lists_wan_i2v(capsys):
    code, out, _ = cli(capsys, "plugins")
    assert code == 0 and "backbone wan-i2v: Wan 2.2 TI2V 5B image-to-video" in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--frames", "8"],
            'backbone "wan-i2v" takes 4k+1 frames (its VAE compresses time 4x after the first frame) '
            "(e.g. --frames 9)",
        ),
        (["--width", "48"], 'must be multiples of 32 for backbone "wan-i2v"; try 64x64'),
        (["--scheduler", "ddim"], "'ddim' is not a sampler of backbone \"wan-i2v\""),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    i2v_inputs, i2v_weights, tmp_path, capsys, extra, message
):
    code, _, err = cli(capsys, *run_args(i2v_inputs, i2v_weights, tmp_path / "out", *extra))
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_text_to_video_weights_and_too_many_frames_are_refused_before_loading(
    i2v_weights, tmp_path
):
    import shutil

    from cammimic_wan_i2v import wan_i2v

    with pytest.raises(
        CammimicError, match=r"samples at most 121 frames, conditioned on your image"
    ) as err:
        wan_i2v(weights=str(i2v_weights)).preflight(64, 64, 125, "unipc", 3)
    assert "\n" not in str(err.value)
    t2v = tmp_path / "t2v"
    shutil.copytree(i2v_weights / "scheduler", t2v / "scheduler")
    index = json.loads((i2v_weights / "model_index.json").read_text())
    (t2v / "model_index.json").write_text(
        json.dumps({k: v for k, v in index.items() if k != "expand_timesteps"})
    )
    with pytest.raises(CammimicError, match=r"is not an image-to-video Wan .*--backbone wan"):
        wan_i2v(weights=str(t2v)).preflight(64, 64, 9, "unipc", 3)


def test_memory_options_tile_the_vae_and_keep_the_text_encoder_on_the_cpu(i2v_weights, i2v, clip9):
    from cammimic_wan_i2v import wan_i2v

    lean = wan_i2v(weights=str(i2v_weights), vae_tiling=True, offload_text_encoder=True).load(
        device="cpu"
    )
    assert lean.vae.use_tiling and not i2v.vae.use_tiling
    assert lean.text_encoder.device.type == "cpu"
    assert torch.equal(lean.encode_prompt(["a street"]), i2v.encode_prompt(["a street"]))
    # tiles smaller than the 64-pixel clip, so tiling really happens: the latents stay close, not equal
    lean.vae.enable_tiling(
        tile_sample_min_height=32,
        tile_sample_min_width=32,
        tile_sample_stride_height=16,
        tile_sample_stride_width=16,
    )
    whole, tiled = i2v.encode_video(clip9), lean.encode_video(clip9)
    assert tiled.shape == whole.shape == (1, 48, 3, 4, 4)
    assert (
        0 < float((tiled - whole).abs().max())
        and float((tiled - whole).norm() / whole.norm()) < 0.15
    )  # 0.07 here
