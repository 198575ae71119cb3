"""Phase 1 (finetuning, resuming) and Phase 2 (guided sampling) on a tiny zeroscope-layout model."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from conftest import clip, photo

from cammimic.errors import CammimicError
from cammimic.lora import LoraSpec, inject_loras, lora_state_dict
from cammimic.training import FinetuneSettings, TrainingInterrupted, finetune


@pytest.fixture
def load(tiny_weights, plugin_host):
    """Load a fresh tiny backbone through the zeroscope plugin (each call: new, un-finetuned models)."""

    def _load():
        adapter = plugin_host.create("backbone", "zeroscope", {"weights": str(tiny_weights)})
        return adapter.load(device="cpu")

    return _load


@pytest.fixture(scope="module")
def data():
    frames, h = clip("pan", 64, 64, frames=8, name="astronaut")
    import cv2

    image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)
    return frames, image, h


def prepared(
    load, plugin_host, data, rank=8, include_ff=False, alpha=None, dropout=0.0, image_embeds=None
):
    frames, image, _ = data
    backbone = load()
    layers = plugin_host.locate_attention_layers(backbone.name, backbone.unet, include_ff)
    spec = LoraSpec(rank=rank, alpha=alpha, dropout=dropout)
    inject_loras(backbone.unet, layers, spec, spec, init_seed=0)
    embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
    kw = dict(
        reference_latents=backbone.encode_video(frames),
        reference_embeds=embeds[:1],
        image_latents=backbone.encode_video(image[None]),
        image_embeds=embeds[1:],
    )
    return backbone, layers, kw


def probe(backbone, latents, embeds, *, spatial=False):
    """Noise-prediction MSE at fixed timesteps and noise: a loss that does not jitter with sampling."""
    sched = backbone.training_scheduler()
    g = torch.Generator().manual_seed(1234)
    losses = []
    with torch.no_grad():
        for t in (50, 250, 450, 650, 850):
            noise = torch.randn(latents.shape, generator=g)
            tt = torch.tensor([t])
            x = sched.add_noise(latents, noise, tt)
            if spatial:
                with backbone.temporal_bypass():
                    pred = backbone.predict_noise(x, tt, embeds)
            else:
                pred = backbone.predict_noise(x, tt, embeds)
            losses.append(torch.nn.functional.mse_loss(pred, noise).item())
    return float(np.mean(losses))


def test_stage1_and_stage2_losses_fall_on_a_fixed_clip(load, plugin_host, data):
    backbone, layers, kw = prepared(load, plugin_host, data)
    ref, img = kw["reference_latents"], kw["image_latents"]
    before = (
        probe(backbone, ref, kw["reference_embeds"]),
        probe(backbone, ref[:, :, :1], kw["reference_embeds"], spatial=True),
        probe(backbone, img, kw["image_embeds"], spatial=True),
    )
    settings = FinetuneSettings(
        stage1_steps=40, stage2_steps=40, learning_rate=5e-3, checkpoint_every=0
    )
    result = finetune(backbone, layers, settings=settings, progress=False, **kw)
    after = (
        probe(backbone, ref, kw["reference_embeds"]),
        probe(backbone, ref[:, :, :1], kw["reference_embeds"], spatial=True),
        probe(backbone, img, kw["image_embeds"], spatial=True),
    )
    assert len(result.losses) == 80
    assert after[0] < 0.8 * before[0], (before, after)  # stage 1, all frames
    assert after[2] < 0.8 * before[2], (before, after)  # stage 2, the user image
    assert result.temporal_unchanged_in_stage2 is True


def test_stage2_lowers_the_orthogonality_loss_and_leaves_the_temporal_lora_alone(
    load, plugin_host, data
):
    backbone, layers, kw = prepared(load, plugin_host, data)
    snapshots = {}

    def on_step(record):
        if record["stage"] == 1 and record["step"] == 20:
            snapshots["temporal"] = lora_state_dict(backbone.unet, "temporal")

    # the default definition and λ (subspace, 0.4), as a user runs them
    settings = FinetuneSettings(
        stage1_steps=20, stage2_steps=30, learning_rate=2e-3, checkpoint_every=0
    )
    result = finetune(backbone, layers, settings=settings, progress=False, on_step=on_step, **kw)
    stage2 = [r["ortho"] for r in result.losses if r["stage"] == 2]
    stage1_end = [r["ortho"] for r in result.losses if r["stage"] == 1][-1]
    assert stage1_end > 0
    assert stage2[-1] < 0.5 * stage1_end, (stage1_end, stage2)
    ratios = [r["ortho_ratio"] for r in result.losses if r["stage"] == 2]
    assert all(r is None for r in (r["ortho_ratio"] for r in result.losses if r["stage"] == 1))
    assert all(np.isfinite(ratios)) and min(ratios) > 0.05, ratios  # the term steers the update
    after = lora_state_dict(backbone.unet, "temporal")
    assert all(torch.equal(snapshots["temporal"][k], after[k]) for k in after)

    # the "no ORTHO" ablation logs the value but does not minimise it
    backbone, layers, kw = prepared(load, plugin_host, data)
    settings = FinetuneSettings(
        stage1_steps=20,
        stage2_steps=30,
        learning_rate=2e-3,
        orthogonality=False,
        checkpoint_every=0,
    )
    plain = finetune(backbone, layers, settings=settings, progress=False, **kw)
    assert [r["ortho"] for r in plain.losses if r["stage"] == 2][-1] > 2 * stage2[-1]


def _one_step_gradients(load, plugin_host, monkeypatch, dtype, precision=None):
    """LoRA gradients of one stage-1 step (unscaled, before clipping) with the denoiser in ``dtype``."""
    from cammimic import training

    backbone = load()
    if dtype != torch.float32:  # float16 is refused on the CPU at load time; build it directly
        backbone.unet.to(dtype)
        backbone.dtype = dtype
    layers = plugin_host.locate_attention_layers(backbone.name, backbone.unet, False)
    inject_loras(backbone.unet, layers, LoraSpec(rank=4), LoraSpec(rank=4), init_seed=0)
    g = torch.Generator().manual_seed(5)
    latents, embeds = torch.randn(1, 4, 8, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    got, clip_grad = [], training._clip

    def record(params, max_norm):
        got.append(torch.cat([p.grad.flatten().clone() for p in params]))
        return clip_grad(params, max_norm)

    monkeypatch.setattr(training, "_clip", record)
    if precision is not None:
        monkeypatch.setattr(training, "mixed_precision", lambda d: precision)
    # δ = 1/256: the spatial pass (4x1x8x8 latents) then sends the UNet per-element gradients
    # 2δ/256 = 2/65536, the size of a ModelScope-sized (4x16x32x32) all-frame pass, at a fraction of the cost
    settings = FinetuneSettings(
        stage1_steps=1,
        stage2=False,
        spatial_mask_probability=0.0,
        spatial_weight=1 / 256,
        checkpoint_every=0,
    )
    result = finetune(
        backbone,
        layers,
        reference_latents=latents,
        reference_embeds=embeds,
        settings=settings,
        progress=False,
    )
    monkeypatch.undo()
    return dict(zip(("spatial", "temporal"), got, strict=True)), result.precision


def test_half_precision_gradients_agree_with_float32(load, plugin_host, monkeypatch):
    """float16 (autocast + GradScaler) and bfloat16 (autocast) give float32's LoRA gradients."""
    reference, label = _one_step_gradients(load, plugin_host, monkeypatch, torch.float32)
    assert label == "float32"

    def error(grads, group):
        return float((grads[group] - reference[group]).norm() / reference[group].norm())

    fp16, label = _one_step_gradients(load, plugin_host, monkeypatch, torch.float16)
    assert label == "float16 autocast + GradScaler"
    bf16, label = _one_step_gradients(load, plugin_host, monkeypatch, torch.bfloat16)
    assert label == "bfloat16 autocast"
    from cammimic.training import _Precision

    plain, _ = _one_step_gradients(
        load,
        plugin_host,
        monkeypatch,
        torch.float16,
        _Precision(torch.float16, autocast=False, scaler=False),
    )
    # measured: fp16 scaled 0.3 % (both groups), bf16 2.3-2.5 %, fp16 without scaling 14 % (spatial)
    for group in ("spatial", "temporal"):
        assert error(fp16, group) < 0.01, (group, error(fp16, group))
        assert error(bf16, group) < 0.05, (group, error(bf16, group))
    assert error(plain, "spatial") > 0.05  # the old path: a plain backward through the float16 UNet


def test_gradient_checkpointing_leaves_the_loras_unchanged(load, plugin_host, data):
    """Masked steps (spatial LoRA off for the all-frame pass) recompute with the same scales."""
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
        backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
        result = finetune(
            backbone,
            layers,
            settings=attrs.evolve(settings, gradient_checkpointing=checkpointing),
            progress=False,
            **kw,
        )
        runs.append(
            (_loras(backbone), [r["spatial_masked"] for r in result.losses if r["stage"] == 1])
        )
    (plain, masked), (ckpt, masked_ckpt) = runs
    assert masked == masked_ckpt and True in masked and False in masked
    for adapter in ("spatial", "temporal"):
        for k in plain[adapter]:
            torch.testing.assert_close(ckpt[adapter][k], plain[adapter][k], rtol=1e-5, atol=1e-7)


def test_checkpointed_blocks_recompute_with_the_lora_scales_of_their_forward(
    load, plugin_host, data
):
    """The wrapper itself: forward with the spatial LoRA off, backward after the scales are restored."""
    from cammimic.lora import lora_parameters, lora_scales

    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with torch.no_grad():
        for p in lora_parameters(backbone.unet, "spatial") + lora_parameters(
            backbone.unet, "temporal"
        ):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    x = kw["reference_latents"]
    grads = []
    for checkpointing in (False, True):
        backbone.set_gradient_checkpointing(checkpointing)
        with lora_scales(backbone.unet, spatial=0.0):
            loss = (
                backbone.predict_noise(x, torch.tensor([500]), kw["reference_embeds"])
                .square()
                .mean()
            )
        loss.backward()  # outside the block: the spatial LoRA is back on
        params = lora_parameters(backbone.unet, "temporal")
        grads.append(torch.cat([p.grad.flatten() for p in params]))
        for p in params + lora_parameters(backbone.unet, "spatial"):
            p.grad = None
    backbone.set_gradient_checkpointing(False)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)


def test_stage1_spatial_update_comes_from_the_spatial_loss_alone(load, plugin_host, data):
    """Changing L_temporal (masking the spatial LoRA out of every all-frame pass, or adding the
    debiased term) changes the temporal LoRA but leaves the spatial update bit-identical."""
    results = {}
    for name, changes in (
        ("plain", {}),
        ("masked", {"spatial_mask_probability": 1.0}),
        ("debiased", {"temporal_debias": True}),
    ):
        backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
        settings = FinetuneSettings(
            stage1_steps=2, stage2=False, spatial_mask_probability=0.0, checkpoint_every=0
        )
        result = finetune(
            backbone, layers, settings=attrs.evolve(settings, **changes), progress=False, **kw
        )
        results[name] = (_loras(backbone), result.losses)
    plain = results["plain"][0]
    for name in ("masked", "debiased"):
        assert _same_bits(plain["spatial"], results[name][0]["spatial"]), name
        assert not _same_bits(plain["temporal"], results[name][0]["temporal"]), name
    # the debiased term adds to L_temporal (same draws, same first-step prediction)
    assert results["debiased"][1][0]["temporal"] > results["plain"][1][0]["temporal"]


def test_lora_dropout_acts_while_finetuning_and_never_while_sampling(load, plugin_host, data):
    from cammimic.sampling import sample

    modes = []
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4, dropout=0.5)
    result = finetune(
        backbone,
        layers,
        settings=FinetuneSettings(stage1_steps=2, stage2_steps=1, checkpoint_every=0),
        progress=False,
        on_step=lambda r: modes.append(backbone.unet.training),
        **kw,
    )
    assert modes == [True, True, True] and backbone.unet.training is False
    backbone.unet.train()  # a caller left it in train mode: sampling still runs deterministic eval

    def run():
        return sample(
            backbone,
            "a cup of coffee",
            num_frames=2,
            width=64,
            height=64,
            steps=2,
            seed=0,
            progress=False,
        )

    first = run()
    assert backbone.unet.training is False
    torch.manual_seed(123)  # dropout would draw from here
    assert torch.equal(first, run())
    assert result.losses[-1]["ortho_ratio"] is not None


def test_a_nan_loss_stops_the_run_with_one_line(load, plugin_host, data, tmp_path):
    from cammimic.training import TrainingDiverged

    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    settings = FinetuneSettings(stage1_steps=4, stage2_steps=1, checkpoint_every=2)
    calls = {"n": 0}

    def poison(record):  # a NaN reaches the base weights after step 2 (checkpointed)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                backbone.unet.conv_in.weight[0, 0, 0, 0] = float("nan")

    with pytest.raises(TrainingDiverged) as err:
        finetune(
            backbone,
            layers,
            settings=settings,
            progress=False,
            on_step=poison,
            checkpoint_dir=tmp_path,
            **kw,
        )
    msg = str(err.value)
    assert msg.startswith(
        "finetuning stopped at stage 1 step 3: the temporal loss is nan (not finite)"
    ), msg
    assert (
        "last checkpoint (stage 1 step 2) is kept" in msg
        and "learning rate" in msg
        and "\n" not in msg
    )

    # a non-finite gradient with finite losses names the LoRA group
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    from cammimic.lora import lora_parameters

    lora_parameters(backbone.unet, "temporal")[1].register_hook(lambda g: g * float("inf"))
    with pytest.raises(
        TrainingDiverged, match=r"stage 1 step 1: the temporal LoRA's gradient is (inf|nan)"
    ):
        finetune(backbone, layers, settings=settings, progress=False, **kw)


def _loras(backbone):
    return {a: lora_state_dict(backbone.unet, a) for a in ("spatial", "temporal")}


def _same_bits(a, b):
    return set(a) == set(b) and all(
        torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)) for k in a
    )


RESUME = FinetuneSettings(
    stage1_steps=3,
    stage2_steps=2,
    checkpoint_every=2,
    seed=3,
    temporal_debias=True,
    spatial_mask_probability=0.5,
)


@pytest.fixture(scope="module")
def uninterrupted(tiny_weights, data):
    """The reference run for the resume tests: LoRA dropout on, so torch's global RNG matters too."""
    from cammimic.plugins import PluginHost

    host = PluginHost()
    host.entry_points = lambda: [
        ep for ep in PluginHost.entry_points(host) if ep.value.startswith("cammimic")
    ]
    host = host.load()
    backbone, layers, kw = prepared(
        lambda: host.create("backbone", "zeroscope", {"weights": str(tiny_weights)}).load(
            device="cpu"
        ),
        host,
        data,
        rank=4,
        dropout=0.1,
    )
    result = finetune(backbone, layers, settings=RESUME, progress=False, **kw)
    return _loras(backbone), result.losses


@pytest.mark.parametrize("how", ["on_step 1 2", "sigint 5", "sigint 8"])
def test_resume_after_ctrl_c_is_bit_identical(
    load, plugin_host, data, tmp_path, uninterrupted, how, capsys, monkeypatch
):
    """Ctrl-C anywhere (after a step, or mid-step as a real SIGINT inside the denoiser) in either stage."""
    import os
    import signal

    expected, expected_losses = uninterrupted
    kind, *at = how.split()
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4, dropout=0.1)
    calls = {"n": 0}
    on_step = None
    if kind == "on_step":

        def on_step(record):
            if (record["stage"], record["step"]) == tuple(map(int, at)):
                raise KeyboardInterrupt
    else:
        real = type(backbone).predict_noise

        def predict_noise(self, *a, **k):  # stage 1 runs two passes a step, stage 2 one
            calls["n"] += 1
            if calls["n"] == int(at[0]):
                os.kill(os.getpid(), signal.SIGINT)
            return real(self, *a, **k)

        monkeypatch.setattr(type(backbone), "predict_noise", predict_noise)
    with pytest.raises(TrainingInterrupted, match="--resume") as err:
        finetune(
            backbone,
            layers,
            settings=RESUME,
            progress=False,
            on_step=on_step,
            checkpoint_dir=tmp_path,
            **kw,
        )
    monkeypatch.undo()
    assert err.value.exit_code == 130
    assert not [
        p.name for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")
    ]  # no temp files
    backbone, layers, kw = prepared(
        load, plugin_host, data, rank=4, dropout=0.1
    )  # a new process, in effect
    capsys.readouterr()
    resumed = finetune(
        backbone,
        layers,
        settings=RESUME,
        progress=False,
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    stage, step = resumed.resumed_from["stage"], resumed.resumed_from["step"]
    assert f"resuming from stage {stage} step {step}" in capsys.readouterr().err
    assert _same_bits(expected["spatial"], _loras(backbone)["spatial"])
    assert _same_bits(expected["temporal"], _loras(backbone)["temporal"])
    from cammimic.methods.cammimic import losses_csv

    assert losses_csv(resumed.losses) == losses_csv(expected_losses)


def test_resume_key_names_what_differs(load, plugin_host, data, tmp_path):
    settings = FinetuneSettings(stage1_steps=2, stage2_steps=1, checkpoint_every=1, seed=3)

    def stop(record):
        raise KeyboardInterrupt

    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
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

    def refused(match, settings=settings, **changes):
        backbone, layers, kw = prepared(load, plugin_host, data, **{"rank": 4, **changes})
        if "image_embeds" in changes:
            kw["image_embeds"] = backbone.encode_prompt(["a different prompt"])
        with pytest.raises(CammimicError, match=match) as err:
            finetune(
                backbone,
                layers,
                settings=settings,
                progress=False,
                checkpoint_dir=tmp_path,
                resume=True,
                **kw,
            )
        assert "\n" not in str(err.value) and "start afresh" in str(err.value)

    refused(
        r"finetune\.learning_rate \(0\.0005 then, 0\.001 now\)",
        settings=attrs.evolve(settings, learning_rate=1e-3),
    )
    refused(r"spatial LoRA alpha \(4\.0 then, 8\.0 now\), temporal LoRA alpha", alpha=8.0)
    refused(r"spatial LoRA rank \(4 then, 8 now\)", rank=8)
    refused(r": image prompt embeddings;", image_embeds=True)


def test_a_pickled_checkpoint_never_runs(load, plugin_host, data, tmp_path):
    from cammimic.training import CHECKPOINT_NAME

    pwned = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(pwned), "w"))

    torch.save(
        {"format": "cammimic-checkpoint/2", "x": Payload()}, tmp_path / CHECKPOINT_NAME
    )  # runs on torch.load
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with pytest.raises(CammimicError, match="cannot be read as a cammimic checkpoint"):
        finetune(
            backbone,
            layers,
            settings=FinetuneSettings(stage1_steps=1, stage2=False),
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
            **kw,
        )
    assert not pwned.exists()


def test_a_full_disk_keeps_the_previous_checkpoint(load, plugin_host, data, tmp_path, monkeypatch):
    import errno
    import os

    from cammimic import training

    settings = FinetuneSettings(stage1_steps=2, stage2=False, checkpoint_every=1, seed=1)
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (step 2) hits a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(training.os, "fsync", fsync)
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with pytest.raises(
        CammimicError,
        match=r"No space left on device\); the previous checkpoint \(stage 1 step 1\) "
        r"is kept; free some disk space",
    ) as err:
        finetune(backbone, layers, settings=settings, progress=False, checkpoint_dir=tmp_path, **kw)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        training.CHECKPOINT_NAME
    ]  # no temp file left
    monkeypatch.setattr(training.os, "fsync", real_fsync)
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    resumed = finetune(
        backbone,
        layers,
        settings=settings,
        progress=False,
        checkpoint_dir=tmp_path,
        resume=True,
        **kw,
    )
    assert resumed.resumed_from == {"stage": 1, "step": 1}


def test_resume_without_a_checkpoint_is_one_clear_error(load, plugin_host, data, tmp_path):
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with pytest.raises(CammimicError, match="no checkpoint in .*start afresh"):
        finetune(
            backbone,
            layers,
            settings=FinetuneSettings(stage1_steps=1),
            progress=False,
            checkpoint_dir=tmp_path,
            resume=True,
            **kw,
        )


def test_homography_guidance_draws_the_samples_to_the_weak_video(load, plugin_host, data):
    from cammimic.guidance import homography_guidance
    from cammimic.homography import warp_along_chain
    from cammimic.sampling import latent_mask, sample

    frames, image, h = data
    backbone = load()
    weak, masks = warp_along_chain(image, h)
    target = backbone.encode_video(weak)
    mask = latent_mask(masks, backbone.vae_scale_factor)
    assert 0.3 < mask.mean() < 1.0  # the pan moves part of the image out of view

    def run(terms):
        return sample(
            backbone,
            "a cup of coffee",
            num_frames=8,
            width=64,
            height=64,
            steps=6,
            guidance_scale=5.0,
            seed=0,
            guidance_terms=terms,
            target=target,
            mask=mask,
            progress=False,
        )

    def distance(latents, where):
        where = where.expand_as(latents).bool()
        return (latents - target)[where].pow(2).mean().item()

    none = run([plugin_host.create("guidance", "none")])
    masked = run([homography_guidance(weight=0.1)])
    unmasked = run([homography_guidance(weight=0.1, masked=False)])
    inside, outside = mask > 0.5, mask < 0.5
    # guidance brings the in-view latents much closer to z_P than no guidance
    assert distance(masked, inside) < 0.5 * distance(none, inside), (
        distance(masked, inside),
        distance(none, inside),
    )
    # masked guidance leaves out-of-view regions (black fill in the weak video) to the model ...
    assert distance(masked, outside) > 0.8 * distance(none, outside)
    # ... which unmasked guidance pulls towards the black fill
    assert distance(unmasked, outside) < 0.5 * distance(none, outside)
    # the same seed gives the same samples
    assert torch.equal(masked, run([homography_guidance(weight=0.1)]))


# -- MotionDirector's recipe (issue 22 §4) -------------------------------------------------------
def test_the_debiased_temporal_loss_is_motiondirector_s_by_hand(load, plugin_host, data):
    """Step 1's L_temporal with temporal_debias equals MotionDirector's formula recomputed by hand
    (MotionDirector_train.py, finetune_unet: beta 1, alpha √2, a random anchor frame)."""
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    settings = FinetuneSettings(
        stage1_steps=1,
        stage2=False,
        spatial_mask_probability=0.0,
        temporal_debias=True,
        checkpoint_every=0,
        seed=5,
    )
    # the draws finetune makes, in its order, from generators seeded as it seeds them
    g, anchors = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    ref = kw["reference_latents"]
    torch.rand((), generator=g)  # the mask draw
    t = backbone.sample_training_timesteps(1, g)
    x, target = backbone.noise_and_target(ref, torch.randn(ref.shape, generator=g), t)
    anchor = int(torch.randint(0, ref.shape[2], (1,), generator=anchors))
    with torch.no_grad():  # before any update, B = 0: the prediction of the base model
        pred = backbone.predict_noise(x, t, kw["reference_embeds"]).double().numpy()
    eps = target.double().numpy()
    plain = np.mean((pred - eps) ** 2)
    alpha, beta = 2**0.5, 1.0  # alpha = sqrt(beta**2 + 1)
    debiased = np.mean(
        (
            (alpha * pred - beta * pred[:, :, anchor : anchor + 1])
            - (alpha * eps - beta * eps[:, :, anchor : anchor + 1])
        )
        ** 2
    )
    record = finetune(backbone, layers, settings=settings, progress=False, **kw).losses[0]
    assert record["temporal"] == pytest.approx(plain + debiased, rel=1e-5)
    assert debiased > 0.1 * plain  # the term is not negligible


def test_a_masked_step_can_skip_the_spatial_loss_and_update(load, plugin_host, data):
    """skip_spatial_when_masked: every step masked -> no spatial loss, the spatial LoRA untouched even
    under AdamW's weight decay (its optimiser does not step); the temporal LoRA trains."""
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    before = _loras(backbone)
    settings = FinetuneSettings(
        stage1_steps=2,
        stage2=False,
        spatial_mask_probability=1.0,
        checkpoint_every=0,
        skip_spatial_when_masked=True,
        optimizer="adamw",
        weight_decay=0.5,
    )
    result = finetune(backbone, layers, settings=settings, progress=False, **kw)
    after = _loras(backbone)
    assert [r["spatial"] for r in result.losses] == [None, None]
    assert all(r["spatial_masked"] for r in result.losses)
    assert _same_bits(before["spatial"], after["spatial"])
    assert not _same_bits(before["temporal"], after["temporal"])


def test_adamw_and_its_weight_decay_reach_each_group(load, plugin_host, data, monkeypatch):
    made = []

    class Spy(torch.optim.AdamW):
        def __init__(self, params, **kw):
            made.append(kw)
            super().__init__(params, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", Spy)
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    settings = FinetuneSettings(
        stage1_steps=1, stage2_steps=1, checkpoint_every=0, optimizer="adamw", weight_decay=1e-2
    )
    finetune(backbone, layers, settings=settings, progress=False, **kw)
    assert (
        made == [{"lr": 5e-4, "weight_decay": 1e-2}] * 3
    )  # stage 1: spatial, temporal; stage 2: spatial
    with pytest.raises(CammimicError, match="optimizer 'sgd' is unknown. Try one of"):
        finetune(
            backbone, layers, settings=attrs.evolve(settings, optimizer="sgd"), progress=False, **kw
        )


def test_delta_is_inert_under_its_own_adam(load, plugin_host, data, monkeypatch):
    """issue 22 §6: δ scales only the spatial LoRA's own gradient, which Adam normalises away: with
    Adam's ε out of the way (1e-20) and no clipping, δ = 0.5 and δ = 0.05 train the same spatial LoRA."""
    from cammimic.config import load_config
    from cammimic.training import SPATIAL_WEIGHT_DEPRECATED

    class NoEps(torch.optim.Adam):
        def __init__(self, params, **kw):
            super().__init__(params, eps=1e-20, **kw)

    monkeypatch.setattr(torch.optim, "Adam", NoEps)
    loras = {}
    for delta in (0.5, 0.05):
        backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
        start = lora_state_dict(backbone.unet, "spatial")
        settings = FinetuneSettings(
            stage1_steps=3,
            stage2=False,
            spatial_weight=delta,
            max_grad_norm=0.0,
            checkpoint_every=0,
        )
        finetune(backbone, layers, settings=settings, progress=False, **kw)
        loras[delta] = lora_state_dict(backbone.unet, "spatial")
    a, b = loras[0.5], loras[0.05]
    change = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert change > 1e-3
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4 * change
    with pytest.warns(DeprecationWarning, match="spatial_weight .* has no effect"):
        FinetuneSettings.from_config(load_config().with_overrides({"finetune.spatial_weight": 0.3}))
    import warnings

    with warnings.catch_warnings():  # a resolved config.toml names δ at its default: no warning
        warnings.simplefilter("error")
        FinetuneSettings.from_config(load_config().with_overrides({"finetune.spatial_weight": 0.5}))
    assert "deprecated" in SPATIAL_WEIGHT_DEPRECATED
