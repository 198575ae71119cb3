"""Phase 1 (finetuning, resuming) and Phase 2 (guided sampling) on a tiny zeroscope-layout model."""

from __future__ import annotations

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


def prepared(load, plugin_host, data, rank=8, include_ff=False):
    frames, image, _ = data
    backbone = load()
    layers = plugin_host.locate_attention_layers(backbone.name, backbone.unet, include_ff)
    inject_loras(backbone.unet, layers, LoraSpec(rank=rank), LoraSpec(rank=rank), init_seed=0)
    embeds = backbone.encode_prompt(["an astronaut, camera motion of sks", "a cup of coffee"])
    kw = dict(reference_latents=backbone.encode_video(frames), reference_embeds=embeds[:1],
              image_latents=backbone.encode_video(image[None]), image_embeds=embeds[1:])
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
    before = (probe(backbone, ref, kw["reference_embeds"]),
              probe(backbone, ref[:, :, :1], kw["reference_embeds"], spatial=True),
              probe(backbone, img, kw["image_embeds"], spatial=True))
    settings = FinetuneSettings(stage1_steps=40, stage2_steps=40, learning_rate=5e-3, checkpoint_every=0)
    result = finetune(backbone, layers, settings=settings, progress=False, **kw)
    after = (probe(backbone, ref, kw["reference_embeds"]),
             probe(backbone, ref[:, :, :1], kw["reference_embeds"], spatial=True),
             probe(backbone, img, kw["image_embeds"], spatial=True))
    assert len(result.losses) == 80
    assert after[0] < 0.8 * before[0], (before, after)  # stage 1, all frames
    assert after[2] < 0.8 * before[2], (before, after)  # stage 2, the user image
    assert result.temporal_unchanged_in_stage2 is True


def test_stage2_lowers_the_orthogonality_loss_and_leaves_the_temporal_lora_alone(load, plugin_host, data):
    backbone, layers, kw = prepared(load, plugin_host, data)
    snapshots = {}

    def on_step(record):
        if record["stage"] == 1 and record["step"] == 20:
            snapshots["temporal"] = lora_state_dict(backbone.unet, "temporal")

    settings = FinetuneSettings(stage1_steps=20, stage2_steps=30, learning_rate=2e-3, orthogonality_weight=10.0,
                                checkpoint_every=0)
    result = finetune(backbone, layers, settings=settings, progress=False, on_step=on_step, **kw)
    stage2 = [r["ortho"] for r in result.losses if r["stage"] == 2]
    stage1_end = [r["ortho"] for r in result.losses if r["stage"] == 1][-1]
    assert stage1_end > 0
    assert stage2[-1] < 0.5 * stage1_end, (stage1_end, stage2)
    after = lora_state_dict(backbone.unet, "temporal")
    assert all(torch.equal(snapshots["temporal"][k], after[k]) for k in after)

    # the "no ORTHO" ablation logs the value but does not minimise it
    backbone, layers, kw = prepared(load, plugin_host, data)
    settings = FinetuneSettings(stage1_steps=20, stage2_steps=30, learning_rate=2e-3, orthogonality=False,
                                checkpoint_every=0)
    plain = finetune(backbone, layers, settings=settings, progress=False, **kw)
    assert [r["ortho"] for r in plain.losses if r["stage"] == 2][-1] > 2 * stage2[-1]


@pytest.mark.parametrize("stop_at", [(1, 3), (2, 2)])
def test_resume_after_an_interruption_gives_the_same_loras(load, plugin_host, data, tmp_path, stop_at):
    settings = FinetuneSettings(stage1_steps=5, stage2_steps=4, checkpoint_every=2, seed=3)
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    whole = finetune(backbone, layers, settings=settings, progress=False, **kw)
    expected = {a: lora_state_dict(backbone.unet, a) for a in ("spatial", "temporal")}

    def interrupt(record):
        if (record["stage"], record["step"]) == stop_at:
            raise KeyboardInterrupt

    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with pytest.raises(TrainingInterrupted, match=f"stage {stop_at[0]} step {stop_at[1]} .*--resume"):
        finetune(backbone, layers, settings=settings, progress=False, on_step=interrupt, checkpoint_dir=tmp_path, **kw)
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)  # a new process, in effect
    resumed = finetune(backbone, layers, settings=settings, progress=False, checkpoint_dir=tmp_path, resume=True, **kw)
    assert resumed.resumed_from == {"stage": stop_at[0], "step": stop_at[1]}
    for adapter in ("spatial", "temporal"):
        got = lora_state_dict(backbone.unet, adapter)
        assert all(torch.equal(expected[adapter][k], got[k]) for k in got), adapter
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]

    # other settings: the checkpoint is refused, not silently mixed in
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    other = FinetuneSettings(stage1_steps=5, stage2_steps=4, checkpoint_every=2, seed=4)
    with pytest.raises(CammimicError, match="other inputs or settings"):
        finetune(backbone, layers, settings=other, progress=False, checkpoint_dir=tmp_path, resume=True, **kw)


def test_resume_without_a_checkpoint_is_one_clear_error(load, plugin_host, data, tmp_path):
    backbone, layers, kw = prepared(load, plugin_host, data, rank=4)
    with pytest.raises(CammimicError, match="no checkpoint in .*start afresh"):
        finetune(backbone, layers, settings=FinetuneSettings(stage1_steps=1), progress=False,
                 checkpoint_dir=tmp_path, resume=True, **kw)


def test_homography_guidance_draws_the_samples_to_the_weak_video(load, plugin_host, data):
    from cammimic.guidance import homography_guidance
    from cammimic.homography import warp_along_chain
    from cammimic.methods.cammimic import latent_mask
    from cammimic.sampling import sample

    frames, image, h = data
    backbone = load()
    weak, masks = warp_along_chain(image, h)
    target = backbone.encode_video(weak)
    mask = latent_mask(masks, backbone.vae_scale_factor)
    assert 0.3 < mask.mean() < 1.0  # the pan moves part of the image out of view

    def run(terms):
        return sample(backbone, "a cup of coffee", num_frames=8, width=64, height=64, steps=6, guidance_scale=5.0,
                      seed=0, guidance_terms=terms, target=target, mask=mask, progress=False)

    def distance(latents, where):
        where = where.expand_as(latents).bool()
        return (latents - target)[where].pow(2).mean().item()

    none = run([plugin_host.create("guidance", "none")])
    masked = run([homography_guidance(weight=0.1)])
    unmasked = run([homography_guidance(weight=0.1, masked=False)])
    inside, outside = mask > 0.5, mask < 0.5
    # guidance brings the in-view latents much closer to z_P than no guidance
    assert distance(masked, inside) < 0.5 * distance(none, inside), (distance(masked, inside), distance(none, inside))
    # masked guidance leaves out-of-view regions (black fill in the weak video) to the model ...
    assert distance(masked, outside) > 0.8 * distance(none, outside)
    # ... which unmasked guidance pulls towards the black fill
    assert distance(unmasked, outside) < 0.5 * distance(none, outside)
    # the same seed gives the same samples
    assert torch.equal(masked, run([homography_guidance(weight=0.1)]))
