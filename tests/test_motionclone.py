"""Issue 23 §2: the ``motionclone`` guidance term (MotionClone's sparse temporal-attention guidance)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import clip

from cammimic.components import GuidanceContext
from cammimic.errors import CammimicError

FRAMES, SIZE = 8, 64


@pytest.fixture(scope="module")
def host():
    from cammimic.plugins import PluginHost

    h = PluginHost()
    h.entry_points = lambda: [
        ep for ep in PluginHost.entry_points(h) if ep.value.startswith("cammimic")
    ]
    return h.load()


@pytest.fixture(scope="module")
def backbone(host, tiny_weights):
    return host.create("backbone", "zeroscope", {"weights": str(tiny_weights)}).load(device="cpu")


@pytest.fixture(scope="module")
def reference():
    return clip("pan", SIZE, SIZE, frames=FRAMES, magnitude=3.0)  # frames, homographies


def _prepared(host, backbone, reference, **params):
    frames, homographies = reference
    term = host.create("guidance", "motionclone", params)
    term.prepare(
        GuidanceContext(
            backbone=backbone,
            prompt="a photo",
            homographies=homographies,
            width=SIZE,
            height=SIZE,
            reference=frames,
            seed=0,
        )
    )
    return term


def test_the_mask_keeps_exactly_top_k_keys_per_query():
    from cammimic_motionclone.guide import primary_attention, topk_mask

    torch.manual_seed(0)
    probs = torch.randn(64, 4, 8, 8).softmax(dim=-1)  # (h·w, heads, queries, keys)
    for k in (1, 2, 3, 8):
        mask = topk_mask(probs, k)
        assert (mask.sum(dim=-1) == k).all()
        kept = probs.masked_fill(~mask, float("inf")).amin(dim=-1)
        dropped = probs.masked_fill(mask, float("-inf")).amax(dim=-1)
        assert (kept >= dropped).all()  # the k kept are the k largest
        values, indices = primary_attention(probs, k)  # the sparse form the energy uses: M ⊙ A_ref
        assert torch.equal(torch.zeros_like(mask).scatter_(-1, indices, True), mask)
        assert torch.equal(values, probs.gather(-1, indices))


def test_the_energy_is_zero_at_the_reference_and_descends_through_the_denoiser(
    host, backbone, reference
):
    term = _prepared(host, backbone, reference)
    # MotionClone's default blocks: the three temporal transformers of up_blocks.1 (tiny's attention up block)
    assert list(term.layers) == [
        f"up_blocks.1.temp_attentions.{i}.transformer_blocks.0.attn1" for i in range(3)
    ]
    for values, indices in term.reference.values():
        assert indices.shape[-1] == 1 and values.shape == indices.shape  # k = 1 per query
    noised, tau, empty = term.reference_input  # the sample equals the reference: no energy
    assert float(term.energy(term.record(noised, tau, empty))) == 0.0

    embeds = backbone.encode_prompt(["a photo"])
    z = torch.randn(noised.shape, generator=torch.Generator().manual_seed(1))
    energies = []
    for _ in range(8):  # plain descent on z_t along -∇E / rms, 0.02 a step
        energy, grad = term.gradient(z, torch.tensor(900), embeds)
        energies.append(energy)
        z = z - 0.02 * grad / grad.pow(2).mean().sqrt()
    # measured: 1.06e-3 -> 8.1e-4 -> 6.3e-4 -> 5.0e-4 -> 4.0e-4 -> 3.2e-4 -> 2.6e-4 -> 2.1e-4
    assert all(b < a for a, b in zip(energies, energies[1:])), energies
    assert energies[-1] < 0.3 * energies[0], energies


def test_sampling_restores_the_attention_processors_and_unguided_sampling_is_bit_identical(
    host, backbone, reference
):
    from cammimic_motionclone.guide import temporal_attention_layers

    from cammimic.sampling import sample

    layers = temporal_attention_layers(
        backbone, ("up_blocks", "down_blocks", "mid_block", "transformer_in")
    )
    before = {n: m.processor for n, m in layers.items()}
    kwargs = dict(
        num_frames=FRAMES,
        width=SIZE,
        height=SIZE,
        steps=4,
        guidance_scale=3.0,
        seed=3,
        progress=False,
    )
    plain = sample(backbone, "a photo", **kwargs)
    term = _prepared(host, backbone, reference, end=1.0, weight=0.5)  # every step but the last
    guided = sample(backbone, "a photo", guidance_terms=[term], **kwargs)
    assert all(
        m.processor is before[n] for n, m in layers.items()
    )  # the originals, the same objects
    assert torch.equal(sample(backbone, "a photo", **kwargs), plain)  # bit-identical afterwards
    assert not torch.equal(guided, plain)
    assert [h["step"] for h in term.history] == [0, 1, 2]
    per_step = np.mean([h["seconds"] for h in term.history])
    print(
        f"motionclone on tiny weights, {FRAMES} frames at {SIZE}x{SIZE}: {per_step:.3f} s per guided step"
    )
    assert per_step < 10
    # the energy along the guided run against a probe that only measures it (weight 1e-9)
    probe = _prepared(host, backbone, reference, end=1.0, weight=1e-9)
    sample(backbone, "a photo", guidance_terms=[probe], **kwargs)
    energies = [[h["energy"] for h in t.history] for t in (term, probe)]
    print("energy per step, guided (0.5) and unguided:", energies)
    # measured: guided 0.01696 -> 0.01667 -> 0.01618; unguided 0.01696 -> 0.01714 -> 0.01719
    assert energies[0][0] == energies[1][0]  # the same x_T
    assert energies[0][-1] < energies[1][-1] and energies[0][-1] < energies[0][0], energies


def test_a_dit_is_refused_in_one_line_and_bad_parameters_are_named(host):
    class WanTransformer3DModel(torch.nn.Module):
        pass

    term = host.create("guidance", "motionclone", {})
    dit = SimpleNamespace(name="wan", denoiser=WanTransformer3DModel())
    with pytest.raises(CammimicError, match="UNet3D") as error:
        term.prepare(
            GuidanceContext(
                backbone=dit,
                prompt="",
                homographies=np.eye(3)[None],
                width=8,
                height=8,
                reference=np.zeros((2, 8, 8, 3), np.uint8),
            )
        )
    assert "\n" not in str(error.value) and "docs/plugins.md" in str(error.value)
    with pytest.raises(CammimicError, match="start <= end"):
        host.create("guidance", "motionclone", {"start": 0.5, "end": 0.2})
    with pytest.raises(CammimicError, match="top_k"):
        host.create("guidance", "motionclone", {"top_k": 0})


def test_blocks_without_temporal_attention_are_named(host, backbone, reference):
    with pytest.raises(CammimicError, match="up_blocks.1"):
        _prepared(
            host, backbone, reference, blocks="up_blocks.0"
        )  # tiny's UpBlock3D: temporal convs only


def test_the_motionclone_eval_method_runs_on_tiny_weights(tmp_path, tiny_weights):
    from test_eval import FAST, _config, _rows, _subset, photo_pairs

    from cammimic import eval as eval_module
    from cammimic.eval import evaluate

    eval_module._BACKBONES.clear()
    m = _subset(photo_pairs(tmp_path / "pairs", 1), tmp_path, 1)
    # 4 sampling steps: the default window (the first 0.3 of the schedule) holds step 0
    config = _config(**{**FAST, "backbone.weights": str(tiny_weights), "sampling.steps": 4})
    res = evaluate(
        m,
        tmp_path / "ev",
        methods=["motionclone"],
        config=config,
        progress=False,
        echo=lambda s: None,
    )
    rows = {r["method"]: r for r in _rows(tmp_path / "ev")}
    assert res["failed"] == 0, {k: r["error"] for k, r in rows.items()}
    assert rows["motionclone"]["status"] == "ok"
    run = json.loads((tmp_path / "ev" / "runs" / "p0" / "motionclone" / "run.json").read_text())
    assert run["finetune"]["steps"] == {"stage1": 0, "stage2": 0}  # base: no LoRA
    [term] = run["components"]["guidance"]
    assert term["name"] == "motionclone" and term["plugin"] == "motionclone"
    [guided] = term["history"]
    assert guided["step"] == 0 and guided["energy"] >= 0 and 0 < guided["seconds"] < 30
