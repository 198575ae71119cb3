"""The UNet3D backbone adapters (zeroscope, ModelScope) on tiny random weights, offline."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import cammimic_unet3d  # noqa: E402
from cammimic_unet3d.backbone import UNet3DAdapter, UNet3DBackbone  # noqa: E402
from cammimic_unet3d.random_weights import PRESETS, build_components  # noqa: E402
from diffusers import UNet3DConditionModel  # noqa: E402
from diffusers.models.resnet import TemporalConvLayer  # noqa: E402
from diffusers.models.transformers.transformer_temporal import (  # noqa: E402
    TransformerTemporalModel,
    TransformerTemporalModelOutput,
)

from cammimic.components import AttentionLayers, Backbone, BackboneAdapter  # noqa: E402
from cammimic.errors import CammimicError  # noqa: E402

SPATIAL_Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
TEMPORAL_Q = "down_blocks.0.temp_attentions.0.transformer_blocks.0.attn1.to_q"


@pytest.fixture
def backbone(plugin_host, tiny_weights):
    """The tiny model, loaded the way a user's run loads zeroscope: host -> factory -> load."""
    adapter = plugin_host.create("backbone", "zeroscope")
    return adapter.load(tiny_weights, device="cpu")


def frames(t=8, size=64, seed=0):
    """A smooth colourful clip (gradients + a moving disc), uint8 (T, H, W, 3)."""
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(t):
        disc = ((x - 0.3 - 0.05 * i) ** 2 + (y - 0.5) ** 2 < 0.04).astype(float)
        out.append(np.stack([x, y, 0.5 + 0.5 * disc], -1))
    return (np.clip(np.stack(out), 0, 1) * 255).round().astype(np.uint8)


def inputs(backbone, t=8, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, backbone.latent_channels, t, h, h, generator=g)
    return z, torch.tensor(500), backbone.encode_prompt(["a camera pans over a city"])


# -- registration and loading -----------------------------------------------------------


def test_backbones_are_registered_through_entry_points(plugin_host):
    table = plugin_host.components("backbone")
    assert {"zeroscope", "modelscope"} <= set(table)
    z = table["zeroscope"]
    assert z.plugin == "zeroscope" and z.extra == "zeroscope"
    assert z.requires == ("torch", "diffusers", "transformers")
    assert z.parameters() == {
        "weights": "cerspense/zeroscope_v2_576w",
        "revision": "",
        "variant": "",
        "torch_dtype": "auto",
        "vae_batch_size": 8,
        "attention": "sdpa",
    }
    zs = plugin_host.create("backbone", "zeroscope")
    ms = plugin_host.create("backbone", "modelscope", {"vae_batch_size": 2, "revision": "main"})
    assert isinstance(zs, BackboneAdapter) and isinstance(ms, BackboneAdapter)
    assert (zs.default_size, zs.default_num_frames, zs.vae_scale_factor) == ((576, 320), 24, 8)
    assert (ms.default_weights, ms.default_size, ms.default_num_frames) == (
        "damo-vilab/text-to-video-ms-1.7b",
        (256, 256),
        16,
    )
    assert (
        ms.vae_batch_size == 2
        and ms.revision == "main"
        and zs.revision is None
        and zs.variant is None
    )
    plugins = {p["name"]: p for p in plugin_host.plugins()}
    assert plugins["unet3d"]["hooks"] == ["locate_attention_layers"]
    assert plugins["modelscope"]["backbones"] == ["modelscope"]


def test_tiny_weights_load_through_the_real_path(plugin_host, tiny_weights):
    assert sorted(p.name for p in tiny_weights.iterdir()) == [
        "model_index.json",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "unet",
        "vae",
    ]
    adapter = plugin_host.create("backbone", "zeroscope")
    bb = adapter.load(str(tiny_weights), device="cpu")
    assert isinstance(bb, Backbone) and isinstance(bb, UNet3DBackbone)
    assert (bb.name, bb.weights) == ("zeroscope", str(tiny_weights.resolve()))
    assert bb.device == torch.device("cpu") and bb.dtype == torch.float32
    assert (bb.vae_scale_factor, bb.latent_channels, bb.vae_batch_size) == (8, 4, 8)
    assert bb.tokenizer.model_max_length == 77
    assert 1.7e6 < sum(p.numel() for p in bb.denoiser.parameters()) < 1.9e6
    for model in (bb.denoiser, bb.vae, bb.text_encoder):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    processors = {type(p).__name__ for p in bb.denoiser.attn_processors.values()}
    assert processors == {"AttnProcessor2_0"}
    assert (
        bb.scheduler_config["beta_schedule"] == "scaled_linear"
        and bb.scheduler_config["steps_offset"] == 1
    )


def test_fingerprint_is_the_architecture(backbone):
    fp = backbone.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    # loaded (lists in the JSON config) and built in code (tuples) agree
    built = build_components("tiny")["unet"]
    assert (
        UNet3DBackbone("x", "", "cpu", torch.float32, built, None, None, None, {}).fingerprint()
        == fp
    )
    with torch.device("meta"):
        big = UNet3DConditionModel(**PRESETS["zeroscope"]["unet"])
    assert (
        UNet3DBackbone("x", "", "cpu", torch.float32, big, None, None, None, {}).fingerprint() != fp
    )


def test_bfloat16_on_cpu(tiny_weights):
    bb = UNet3DAdapter("zeroscope", "x", (64, 64), 8).load(
        tiny_weights, torch_dtype="bf16", device="cpu"
    )
    assert bb.denoiser.dtype == torch.bfloat16 and bb.text_encoder.dtype == torch.bfloat16
    assert bb.vae.dtype == torch.float32  # the VAE stays float32 under any half-precision UNet
    z, t, e = inputs(bb)
    assert e.dtype == torch.bfloat16 and bb.predict_noise(z, t, e).dtype == torch.bfloat16
    assert (
        bb.encode_video(frames(2)).dtype == torch.float32
    )  # cached latents are not rounded to bfloat16


# -- errors -----------------------------------------------------------------------------


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def test_missing_weights_directory(tmp_path):
    adapter = UNet3DAdapter("zeroscope", "cerspense/zeroscope_v2_576w", (576, 320), 24)
    for missing in (tmp_path / "nope", "./weights/zeroscope", "~/no/such/weights"):
        with pytest.raises(CammimicError) as e:
            adapter.load(missing)
        msg = one_line(e)
        assert "does not exist" in msg and str(missing).rsplit("/", 1)[-1] in msg
    with pytest.raises(CammimicError) as e:
        adapter.load(tmp_path / "nope")
    assert one_line(e).startswith(f"weights directory {tmp_path / 'nope'} does not exist")


def test_weights_directory_missing_a_subfolder(tiny_weights, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for sub in ("unet", "vae", "tokenizer", "scheduler"):
        (partial / sub).symlink_to(tiny_weights / sub)
    with pytest.raises(CammimicError) as e:
        UNet3DAdapter("zeroscope", "x", (64, 64), 8).load(partial)
    msg = one_line(e)
    assert f"weights directory {partial} has no text_encoder/ subfolder" in msg
    # all subfolders present but empty: the loader's error, on one line
    empty = tmp_path / "empty"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (empty / sub).mkdir(parents=True)
    with pytest.raises(CammimicError) as e:
        UNet3DAdapter("zeroscope", "x", (64, 64), 8).load(empty)
    assert one_line(e).startswith(f"could not load zeroscope weights from {empty}: OSError")


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
@pytest.mark.parametrize("how", ["env", "argument"])
def test_hub_id_unavailable_offline(monkeypatch, tmp_path, how):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        kwargs["local_files_only"] = True
    adapter = UNet3DAdapter("zeroscope", "cerspense/zeroscope_v2_576w", (576, 320), 24)
    start = time.perf_counter()
    with pytest.raises(CammimicError) as e:
        adapter.load(**kwargs)
    assert time.perf_counter() - start < 5  # no network wait
    msg = one_line(e)
    assert msg.startswith(
        'zeroscope weights "cerspense/zeroscope_v2_576w" are not in the Hugging Face cache'
    )
    assert str(tmp_path / "hf" / "hub") in msg
    assert (
        "--weights /path/to/zeroscope_v2_576w" in msg
        and "unet/ vae/ text_encoder/ tokenizer/ scheduler/" in msg
    )


def test_bad_settings_are_rejected_with_the_choices(tiny_weights):
    adapter = UNet3DAdapter("zeroscope", "x", (64, 64), 8)
    with pytest.raises(CammimicError, match=r"float16 is not supported on the CPU; use float32"):
        adapter.load(tiny_weights, torch_dtype="fp16", device="cpu")
    with pytest.raises(CammimicError, match=r"float16 is not supported on the CPU"):
        adapter.load(tiny_weights, torch_dtype=torch.float16, device="cpu")
    with pytest.raises(
        CammimicError, match=r"torch_dtype 'float64' is unknown. Try one of \['auto'"
    ):
        adapter.load(tiny_weights, torch_dtype="float64", device="cpu")
    with pytest.raises(
        CammimicError, match=r"attention 'flash' is unknown. Try one of \['sdpa', 'default'\]"
    ):
        adapter.load(tiny_weights, attention="flash", device="cpu")
    with pytest.raises(CammimicError, match=r"vae_batch_size must be at least 1"):
        adapter.load(tiny_weights, vae_batch_size=0, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CammimicError, match=r"CUDA is not available; use device 'cpu'"):
            adapter.load(tiny_weights, device="cuda")
    bb = adapter.load(tiny_weights, attention="default", device="cpu")
    with pytest.raises(
        CammimicError, match=r"sampler 'euler' is unknown. Try one of \['ddim', 'dpm'\]"
    ):
        bb.sampling_scheduler("euler")
    with pytest.raises(CammimicError, match=r"uint8 frames \(T, H, W, 3\), got float64"):
        bb.encode_video(np.zeros((2, 64, 64, 3)))
    with pytest.raises(CammimicError, match=r"60x64 must be a multiple of 8"):
        bb.encode_video(np.zeros((2, 64, 60, 3), np.uint8))
    with pytest.raises(CammimicError, match=r"latents \(1, C, T, h, w\)"):
        bb.decode_latents(torch.zeros(2, 4, 1, 8, 8))


# -- text, pixels, noise ----------------------------------------------------------------


def test_encode_prompt(backbone):
    e = backbone.encode_prompt(["a dog on a beach", ""])
    assert e.shape == (2, 77, 32) and e.dtype == torch.float32 and not e.requires_grad
    assert not torch.allclose(e[0], e[1])
    torch.testing.assert_close(backbone.encode_prompt([""])[0], e[1], rtol=0, atol=0)
    long = backbone.encode_prompt(["word " * 200])  # truncated, not an error
    assert long.shape == (1, 77, 32)


def test_encode_decode_shapes_ranges_and_slicing(backbone):
    clip = frames(8)
    z = backbone.encode_video(clip)
    assert z.shape == (1, 4, 8, 8, 8) and z.dtype == torch.float32 and torch.isfinite(z).all()
    # the posterior mean times the scaling factor, frame by frame
    x0 = torch.from_numpy(clip[3]).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        expected = backbone.vae.encode(x0).latent_dist.mean[0] * 0.18215
    torch.testing.assert_close(z[0, :, 3], expected, rtol=0, atol=1e-5)
    backbone.vae_batch_size = 1
    z1 = backbone.encode_video(clip)
    video1 = backbone.decode_latents(z)
    backbone.vae_batch_size = 8
    assert (z1 - z).abs().max().item() < 1e-5
    video = backbone.decode_latents(z)
    assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8
    assert np.abs(video.astype(int) - video1.astype(int)).max() <= 1
    assert video.min() >= 0 and video.max() <= 255 and video.std() > 0
    # odd frame counts and non-square frames
    z5 = backbone.encode_video(frames(5, 64)[:, :, :48])
    assert z5.shape == (1, 4, 5, 8, 6) and backbone.decode_latents(z5).shape == (5, 64, 48, 3)


def test_predict_noise_is_deterministic_and_broadcasts_the_prompt(backbone):
    z, t, e = inputs(backbone)
    with torch.no_grad():
        a = backbone.predict_noise(z, t, e)
        b = backbone.predict_noise(z, t, e)
        two = backbone.predict_noise(torch.cat([z, z]), t, e)
    assert a.shape == z.shape and torch.isfinite(a).all() and a.abs().mean() > 0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(two[1:], a, rtol=1e-5, atol=1e-6)


def test_schedulers(backbone):
    train = backbone.training_scheduler()
    assert type(train).__name__ == "DDPMScheduler" and train.config.num_train_timesteps == 1000
    assert (
        train.config.beta_schedule == "scaled_linear" and abs(train.config.beta_end - 0.012) < 1e-12
    )
    ddim = backbone.sampling_scheduler("ddim")
    dpm = backbone.sampling_scheduler("dpm")
    assert type(ddim).__name__ == "DDIMScheduler" and ddim.config.set_alpha_to_one is False
    assert (
        type(dpm).__name__ == "DPMSolverMultistepScheduler"
        and dpm.config.algorithm_type == "dpmsolver++"
    )
    ddim.set_timesteps(4)
    assert ddim.timesteps.tolist() == [751, 501, 251, 1]  # steps_offset 1, "leading" spacing
    assert backbone.sampling_scheduler("ddim") is not ddim


# -- where the LoRAs go -----------------------------------------------------------------


def test_locator_on_the_tiny_unet(plugin_host, backbone):
    layers = plugin_host.locate_attention_layers("zeroscope", backbone.denoiser)
    assert isinstance(layers, AttentionLayers)
    assert (len(layers.spatial), len(layers.temporal), len(layers.pairs)) == (24, 56, 24)
    assert SPATIAL_Q in layers.spatial and TEMPORAL_Q in layers.temporal
    assert (SPATIAL_Q, TEMPORAL_Q) in layers.pairs
    assert "transformer_in.transformer_blocks.0.attn2.to_out.0" in layers.temporal
    assert not any(".attn2." in n for n in layers.spatial)  # text cross-attention: never
    modules = dict(backbone.denoiser.named_modules())
    for name in layers.spatial + layers.temporal:
        assert isinstance(modules[name], torch.nn.Linear)
    for s, t in layers.pairs:
        assert s.replace(".attentions.", ".temp_attentions.") == t
        assert modules[s].weight.shape == modules[t].weight.shape
    with_ff = plugin_host.locate_attention_layers("modelscope", backbone.denoiser, include_ff=True)
    assert (len(with_ff.spatial), len(with_ff.temporal), len(with_ff.pairs)) == (36, 70, 24)
    added = set(with_ff.spatial) - set(layers.spatial)
    assert added == {
        n for n in modules if ".attentions." in n and n.endswith((".ff.net.0.proj", ".ff.net.2"))
    }
    assert set(with_ff.temporal) - set(layers.temporal) == {
        n
        for n in modules
        if ("temp_attentions" in n or "transformer_in" in n)
        and n.endswith((".ff.net.0.proj", ".ff.net.2"))
    }
    # any backbone whose denoiser is a UNet3D; other models are left to other plugins
    assert (
        cammimic_unet3d.locate_attention_layers("someone-else", backbone.denoiser, False) == layers
    )
    assert cammimic_unet3d.locate_attention_layers("zeroscope", backbone.vae, False) is None


def test_locator_on_the_real_zeroscope_architecture():
    with torch.device("meta"):  # no memory: shapes only
        unet = UNet3DConditionModel(**PRESETS["zeroscope"]["unet"])
    assert round(sum(p.numel() for p in unet.parameters()) / 1e9, 2) == 1.41
    layers = cammimic_unet3d.locate_attention_layers("zeroscope", unet, False)
    assert (len(layers.spatial), len(layers.temporal), len(layers.pairs)) == (64, 136, 64)
    with_ff = cammimic_unet3d.locate_attention_layers("zeroscope", unet, True)
    assert (len(with_ff.spatial), len(with_ff.temporal), len(with_ff.pairs)) == (96, 170, 64)
    modules = dict(unet.named_modules())
    assert all(modules[s].weight.shape == modules[t].weight.shape for s, t in layers.pairs)
    assert "mid_block.attentions.0.transformer_blocks.0.attn1.to_v" in layers.spatial
    assert (
        "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0",
        "up_blocks.3.temp_attentions.2.transformer_blocks.0.attn1.to_out.0",
    ) in layers.pairs


# -- temporal bypass --------------------------------------------------------------------


class _NoTemporalTransformer(torch.nn.Module):
    def forward(self, hidden_states, *args, return_dict=True, **kwargs):
        return (
            TransformerTemporalModelOutput(sample=hidden_states)
            if return_dict
            else (hidden_states,)
        )


class _NoTemporalConv(torch.nn.Module):
    def forward(self, hidden_states, num_frames=1):
        return hidden_states


@contextlib.contextmanager
def without_temporal_modules(unet):
    """The UNet with its temporal modules replaced by identity modules (the fork we avoid).

    Done in place and undone after: a deep copy of the UNet already differs by ~1e-6 (memory
    layout changes the float summation order), which would hide what we compare.
    """
    swapped = []
    for name, module in list(unet.named_modules()):
        if isinstance(module, (TransformerTemporalModel, TemporalConvLayer)):
            parent, _, child = name.rpartition(".")
            owner = unet.get_submodule(parent) if parent else unet
            identity = (
                _NoTemporalTransformer()
                if isinstance(module, TransformerTemporalModel)
                else _NoTemporalConv()
            )
            owner._modules[child] = identity
            swapped.append((owner, child, module))
    try:
        yield len(swapped)
    finally:
        for owner, child, module in swapped:
            owner._modules[child] = module


def test_temporal_bypass_equals_a_unet_without_temporal_modules(backbone):
    z, t, e = inputs(backbone, t=1)
    with torch.no_grad():
        before = backbone.predict_noise(z, t, e)
        with backbone.temporal_bypass():
            bypassed = backbone.predict_noise(z, t, e)
            with backbone.temporal_bypass():  # nesting is harmless
                torch.testing.assert_close(
                    backbone.predict_noise(z, t, e), bypassed, rtol=0, atol=0
                )
        after = backbone.predict_noise(z, t, e)
        with without_temporal_modules(backbone.denoiser) as replaced:
            expected = backbone.predict_noise(z, t, e)
        assert (
            replaced == 1 + 6 + 12
        )  # transformer_in, temp_attentions.*, temp_convs.* (one per resnet)
        torch.testing.assert_close(backbone.predict_noise(z, t, e), before, rtol=0, atol=0)
    torch.testing.assert_close(bypassed, expected, rtol=0, atol=0)
    assert (bypassed - before).abs().max() > 1e-3  # temporal modules do act on one frame
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # restored on exit
    assert not any("forward" in vars(m) for m in backbone.denoiser.modules())


def test_temporal_bypass_is_undone_after_an_exception(backbone):
    with pytest.raises(RuntimeError, match="boom"):
        with backbone.temporal_bypass():
            assert any("forward" in vars(m) for m in backbone.denoiser.modules())
            raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in backbone.denoiser.modules())


def test_temporal_weights_get_no_gradient_inside_the_bypass(backbone):
    z, t, e = inputs(backbone, t=1)
    temporal = [
        p
        for m in backbone.denoiser.modules()
        if isinstance(m, (TransformerTemporalModel, TemporalConvLayer))
        for p in m.parameters()
    ]
    spatial = backbone.denoiser.get_submodule(SPATIAL_Q).weight
    for p in [*temporal, spatial]:
        p.requires_grad_(True)
    with backbone.temporal_bypass():
        loss = backbone.predict_noise(z, t, e).square().mean()
    loss.backward()  # after the with block, as a training step may do
    assert all(p.grad is None for p in temporal)
    assert spatial.grad is not None and spatial.grad.abs().sum() > 0
    # outside the bypass the temporal weights do learn
    backbone.predict_noise(z, t, e).square().mean().backward()
    assert all(p.grad is not None for p in temporal)


# -- gradient checkpointing -------------------------------------------------------------


def gradients(backbone, frames=4, bypass=False):
    z, t, e = inputs(backbone, t=frames)
    params = [
        backbone.denoiser.get_submodule(n).weight
        for n in (
            SPATIAL_Q,
            TEMPORAL_Q,
            "mid_block.resnets.1.conv1",
            "up_blocks.1.attentions.2.proj_out",
        )
    ]
    for p in params:
        p.grad = None
        p.requires_grad_(True)
    context = backbone.temporal_bypass() if bypass else torch.enable_grad()
    with context:
        loss = backbone.predict_noise(z, t, e).square().mean()
    loss.backward()
    return [None if p.grad is None else p.grad.clone() for p in params]


def test_diffusers_unet3d_refuses_its_own_gradient_checkpointing(backbone):
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        backbone.denoiser.enable_gradient_checkpointing()


def test_gradient_checkpointing_gives_the_same_gradients(backbone):
    calls = []
    backbone.denoiser.get_submodule("down_blocks.0.resnets.0").register_forward_hook(
        lambda *a: calls.append(1)
    )
    plain = gradients(backbone)
    assert len(calls) == 1 and all(g.abs().max() > 1e-5 for g in plain)
    backbone.set_gradient_checkpointing(True)
    calls.clear()
    checkpointed = gradients(backbone)
    assert len(calls) == 2  # recomputed in the backward pass
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    calls.clear()
    with torch.no_grad():  # inference: no checkpointing overhead
        backbone.predict_noise(*inputs(backbone, t=2))
    assert len(calls) == 1
    backbone.set_gradient_checkpointing(False)
    assert not any("forward" in vars(m) for m in backbone.denoiser.modules())
    calls.clear()
    gradients(backbone)
    assert len(calls) == 1


def test_gradient_checkpointing_recomputes_bypassed_blocks_bypassed(backbone):
    plain = gradients(backbone, frames=1, bypass=True)
    assert plain[1] is None and plain[0] is not None
    backbone.set_gradient_checkpointing(True)
    checkpointed = gradients(backbone, frames=1, bypass=True)  # backward runs outside the bypass
    assert checkpointed[1] is None
    for a, b in zip([plain[0], *plain[2:]], [checkpointed[0], *checkpointed[2:]]):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_a_vae_that_decodes_non_finite_values_is_refused_in_one_line(tiny_weights):
    """A float16 VAE that overflows would write a black video as if it were a result: the decode
    refuses it, naming the frames and the fix (issue 21 §2)."""
    import torch
    from cammimic_unet3d.backbone import UNet3DAdapter

    from cammimic.errors import CammimicError

    backbone = UNet3DAdapter(
        name="zeroscope",
        default_weights=str(tiny_weights),
        default_size=(64, 64),
        default_num_frames=8,
    ).load(device="cpu")
    z = torch.zeros(1, 4, 3, 8, 8)
    assert backbone.decode_latents(z).shape == (3, 64, 64, 3)
    z[0, :, 1] = float("inf")
    with pytest.raises(
        CammimicError,
        match=r"^the VAE decoded non-finite values in frames 0\.\.2 .*--dtype float32",
    ):
        backbone.decode_latents(z)
