"""The spatial and temporal LoRAs: injection, scales, files and the orthogonality loss."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("safetensors")
diffusers = pytest.importorskip("diffusers")

from cammimic import lora  # noqa: E402
from cammimic.components import AttentionLayers  # noqa: E402
from cammimic.errors import CammimicError  # noqa: E402
from cammimic.training import ORTHOGONALITY_DEFINITIONS, orthogonality_loss  # noqa: E402

BLK = r"(?:(?:down_blocks|up_blocks)\.\d+\.|mid_block\.)"
PROJ = r"(?:to_q|to_k|to_v|to_out\.0)"
SPATIAL = re.compile(rf"{BLK}attentions\.\d+\.transformer_blocks\.\d+\.attn1\.{PROJ}")
TEMPORAL = re.compile(
    rf"(?:transformer_in|{BLK}temp_attentions\.\d+)\.transformer_blocks\.\d+\.attn[12]\.{PROJ}"
)
SPATIAL_RANK, TEMPORAL_RANK = 4, 3
BACKBONE, BASE = "tiny", "tests/tiny-unet3d"


def make_unet(seed: int = 0, **overrides):
    config = dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    config.update(overrides)
    torch.manual_seed(seed)
    return diffusers.UNet3DConditionModel(**config).eval()


def locate(unet) -> AttentionLayers:
    """The layer lists of METHOD.md §5 (kept local so this test stands on its own)."""
    names = [n for n, _ in unet.named_modules()]
    spatial = [n for n in names if SPATIAL.fullmatch(n)]
    temporal = [n for n in names if TEMPORAL.fullmatch(n)]
    pairs = [(s, s.replace("attentions.", "temp_attentions.")) for s in spatial]
    return AttentionLayers(spatial=spatial, temporal=temporal, pairs=pairs)


def inject(
    unet, seed: int = 0, spatial_rank: int = SPATIAL_RANK, temporal_rank: int = TEMPORAL_RANK
):
    layers = locate(unet)
    lora.inject_loras(
        unet,
        layers,
        lora.LoraSpec(rank=spatial_rank),
        lora.LoraSpec(rank=temporal_rank, alpha=6.0),
        init_seed=seed,
    )
    return layers


def randomize(unet, adapter: str, seed: int, std: float = 0.2):
    """Give every A and B of a group random values (B starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.lora_parameters(unet, adapter):
            p.copy_(torch.randn(p.shape, generator=g) * std)


def run(unet):
    """The UNet's output on fixed inputs.

    Every parameter is frozen during the call: on the CPU, torch picks another matmul path for
    a weight that requires grad (even under no_grad), which changes the last bits.
    """
    g = torch.Generator().manual_seed(123)
    sample = torch.randn(1, 4, 2, 8, 8, generator=g)
    text = torch.randn(1, 5, 32, generator=g)
    flags = [(p, p.requires_grad) for p in unet.parameters()]
    try:
        unet.requires_grad_(False)
        with torch.no_grad():
            return unet(sample, torch.tensor([10]), encoder_hidden_states=text).sample
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def lora_layers(unet, adapter):
    from peft.tuners.lora import LoraLayer

    return {
        n: m for n, m in unet.named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A
    }


def save(path, unet, adapter, **kwargs):
    kw = dict(backbone=BACKBONE, base_model=BASE, fingerprint=lora.unet_fingerprint(unet))
    kw.update(kwargs)
    return lora.save_lora(path, unet, adapter, **kw)


def load(path, unet, adapter, **kwargs):
    kw = dict(backbone=BACKBONE, base_model=BASE, fingerprint=lora.unet_fingerprint(unet))
    kw.update(kwargs)
    return lora.load_lora(path, unet, adapter, **kw)


@pytest.fixture
def trained(tmp_path):
    """A UNet with both groups injected and given random (non-zero) weights."""
    unet = make_unet()
    layers = inject(unet)
    randomize(unet, "spatial", 1)
    randomize(unet, "temporal", 2)
    return unet, layers


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------


def test_inject_targets_exactly_the_named_layers():
    unet = make_unet()
    layers = inject(unet)
    assert (len(layers.spatial), len(layers.temporal), len(layers.pairs)) == (16, 40, 16)
    spatial, temporal = lora_layers(unet, "spatial"), lora_layers(unet, "temporal")
    assert list(spatial) == list(layers.spatial)
    assert list(temporal) == list(layers.temporal)
    assert not set(spatial) & set(temporal)
    # spatial cross-attention (text) is untouched
    assert not any(".attentions." in n and ".attn2." in n for n in {*spatial, *temporal})
    assert all(
        m.r["spatial"] == SPATIAL_RANK and m.scaling["spatial"] == 1.0 for m in spatial.values()
    )
    assert all(
        m.r["temporal"] == TEMPORAL_RANK and m.scaling["temporal"] == 2.0 for m in temporal.values()
    )
    # every LoRA layer has both adapters active (peft leaves only the newest one after inject)
    from peft.tuners.lora import LoraLayer

    active = {tuple(m.active_adapters) for m in unet.modules() if isinstance(m, LoraLayer)}
    assert active == {("spatial", "temporal")}


def test_both_adapters_change_the_output_and_b_starts_at_zero():
    base = run(make_unet())
    unet = make_unet()
    inject(unet)
    assert torch.equal(run(unet), base)  # B = 0: nothing changes yet
    for adapter in lora.ADAPTERS:
        with torch.no_grad():
            b = lora_layers(unet, adapter)[next(iter(lora_layers(unet, adapter)))].lora_B[adapter]
            b.weight.fill_(0.5)
        out = run(unet)
        assert (out - base).abs().max() > 1e-3, adapter
        with torch.no_grad():
            b.weight.zero_()
        assert torch.equal(run(unet), base)


def test_trainable_flags():
    unet = make_unet()
    inject(unet)
    lora_ids = {id(p) for a in lora.ADAPTERS for p in lora.lora_parameters(unet, a)}
    assert len(lora.lora_parameters(unet, "spatial")) == 2 * 16
    assert len(lora.lora_parameters(unet, "temporal")) == 2 * 40
    base = [p for p in unet.parameters() if id(p) not in lora_ids]
    assert len(base) > 100 and not any(p.requires_grad for p in base)
    assert all(p.requires_grad for a in lora.ADAPTERS for p in lora.lora_parameters(unet, a))
    lora.set_trainable(unet, spatial=True, temporal=False)
    assert all(p.requires_grad for p in lora.lora_parameters(unet, "spatial"))
    assert not any(p.requires_grad for p in lora.lora_parameters(unet, "temporal"))
    lora.set_trainable(unet, spatial=False, temporal=True)
    assert not any(p.requires_grad for p in lora.lora_parameters(unet, "spatial"))
    assert all(p.requires_grad for p in lora.lora_parameters(unet, "temporal"))
    assert not any(p.requires_grad for p in base)
    # stable order: A then B, module by module
    shapes = [tuple(p.shape) for p in lora.lora_parameters(unet, "spatial")[:2]]
    assert shapes == [(SPATIAL_RANK, 32), (32, SPATIAL_RANK)]


def test_init_seed_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    a, b, c = make_unet(), make_unet(), make_unet()
    torch.manual_seed(7)
    inject(a, seed=5)
    inject(b, seed=5)
    inject(c, seed=6)
    assert torch.equal(torch.rand(3), expected)
    pa, pb, pc = (lora.lora_parameters(u, "spatial")[0] for u in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert pa.abs().sum() > 0


def test_inject_refuses_bad_layer_lists():
    unet = make_unet()
    layers = locate(unet)
    spec = lora.LoraSpec(rank=2)
    bad = AttentionLayers(spatial=[*layers.spatial, "down_blocks.0.nope"], temporal=layers.temporal)
    with pytest.raises(CammimicError, match="down_blocks.0.nope"):
        lora.inject_loras(unet, bad, spec, spec)
    conv = AttentionLayers(spatial=["conv_in"], temporal=layers.temporal)
    with pytest.raises(CammimicError, match="not a Linear"):
        lora.inject_loras(unet, conv, spec, spec)
    empty = AttentionLayers(spatial=[], temporal=layers.temporal)
    with pytest.raises(CammimicError, match="no layers"):
        lora.inject_loras(unet, empty, spec, spec)
    assert not hasattr(unet, "peft_config")  # nothing was touched
    lora.inject_loras(unet, layers, spec, spec)
    with pytest.raises(CammimicError, match="already has"):
        lora.inject_loras(unet, layers, spec, spec)


def test_lora_spec_validation():
    assert lora.LoraSpec().rank == 32 and lora.LoraSpec().lora_alpha == 32.0
    assert lora.LoraSpec(rank=8, alpha=4).lora_alpha == 4.0
    for kwargs in ({"rank": 0}, {"rank": 2.5}, {"alpha": -1.0}, {"dropout": 1.0}):
        with pytest.raises(CammimicError):
            lora.LoraSpec(**kwargs)


def test_loras_stay_float32_on_a_bfloat16_unet(trained, tmp_path):
    source, _ = trained
    path = save(tmp_path / "spatial.safetensors", source, "spatial")
    g = torch.Generator().manual_seed(123)
    sample = torch.randn(1, 4, 2, 8, 8, generator=g).bfloat16()
    text = torch.randn(1, 5, 32, generator=g).bfloat16()
    outputs = []
    for with_lora in (False, True):
        unet = make_unet().to(torch.bfloat16)
        if with_lora:
            inject(unet)
            assert {p.dtype for a in lora.ADAPTERS for p in lora.lora_parameters(unet, a)} == {
                torch.float32
            }
            randomize(unet, "temporal", 3)
            load(path, unet, "spatial")
            want = lora.lora_state_dict(source, "spatial")
            got = lora.lora_state_dict(unet, "spatial")
            assert all(torch.equal(want[k], got[k]) for k in want)
        unet.requires_grad_(False)
        with torch.no_grad():
            out = unet(sample, torch.tensor([10]), encoder_hidden_states=text).sample
            assert out.dtype == torch.bfloat16
            outputs.append(out)
            if with_lora:
                with lora.lora_scales(unet, spatial=0, temporal=0):
                    assert torch.equal(
                        unet(sample, torch.tensor([10]), encoder_hidden_states=text).sample,
                        outputs[0],
                    )
    assert (outputs[1].float() - outputs[0].float()).abs().max() > 1e-2


# --------------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------------


def test_scale_zero_is_the_base_model_and_lora_scales_restores(trained):
    unet, _ = trained
    base = run(make_unet())
    full = run(unet)
    assert (full - base).abs().max() > 1e-3
    with lora.lora_scales(unet, spatial=0, temporal=0):
        assert torch.equal(run(unet), base)
    assert torch.equal(run(unet), full)
    with pytest.raises(RuntimeError), lora.lora_scales(unet, spatial=0.0):
        raise RuntimeError("boom")
    assert torch.equal(run(unet), full)
    with lora.lora_scales(unet, temporal=0):
        only_spatial = run(unet)
    assert not torch.equal(only_spatial, full) and not torch.equal(only_spatial, base)


def test_scale_is_a_pure_multiplier(trained):
    unet, layers = trained
    name = layers.spatial[0]
    layer = lora_layers(unet, "spatial")[name]
    x = torch.randn(3, 32)
    with torch.no_grad():
        base = layer.get_base_layer()(x)
        delta1 = layer(x) - base
        lora.set_lora_scale(unet, "spatial", 2.5)
        assert layer.scaling["spatial"] == 2.5 * 1.0
        assert lora_layers(unet, "temporal")[layers.temporal[0]].scaling["temporal"] == 2.0
        delta25 = layer(x) - base
        lora.set_lora_scale(unet, "spatial", 0)
        assert torch.equal(layer(x), base)
    torch.testing.assert_close(delta25, 2.5 * delta1, rtol=1e-5, atol=1e-6)
    with pytest.raises(CammimicError, match="unknown"):
        lora.set_lora_scale(unet, "appearance", 1.0)
    with pytest.raises(CammimicError, match="finite"):
        lora.set_lora_scale(unet, "spatial", float("nan"))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(trained, tmp_path):
    unet, layers = trained
    fp = lora.unet_fingerprint(unet)
    sp = save(tmp_path / "lora" / "spatial.safetensors", unet, "spatial", extra={"prompt": "a pan"})
    tp = save(tmp_path / "lora" / "temporal.safetensors", unet, "temporal")
    tensors, meta = lora.read_lora(sp)
    assert meta["format"] == lora.FORMAT and meta["adapter"] == "spatial"
    assert (meta["backbone"], meta["base_model"], meta["fingerprint"]) == (BACKBONE, BASE, fp)
    assert (meta["rank"], float(meta["alpha"]), float(meta["dropout"])) == ("4", 4.0, 0.0)
    assert json.loads(meta["target_layers"]) == list(layers.spatial)
    assert meta["prompt"] == "a pan"
    from cammimic._version import __version__

    assert meta["cammimic_version"] == __version__ and meta["peft_version"]
    assert len(tensors) == 2 * 16 and all(t.is_contiguous() for t in tensors.values())

    fresh = make_unet()
    assert load(sp, fresh, "spatial")["adapter"] == "spatial"
    assert load(tp, fresh, "temporal")["adapter"] == "temporal"
    for adapter in lora.ADAPTERS:
        want, got = lora.lora_state_dict(unet, adapter), lora.lora_state_dict(fresh, adapter)
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want)
        assert not any(p.requires_grad for p in lora.lora_parameters(fresh, adapter))
    assert torch.equal(run(fresh), run(unet))
    assert tensors.keys() == lora.lora_state_dict(unet, "spatial").keys()
    # loading into a UNet that already has the adapter just replaces the weights
    randomize(fresh, "spatial", 99)
    load(sp, fresh, "spatial")
    assert torch.equal(run(fresh), run(unet))


def test_spatial_and_temporal_from_different_runs(tmp_path):
    runs = []
    for seed in (1, 2):
        unet = make_unet()
        inject(unet, seed=seed)
        randomize(unet, "spatial", 10 * seed)
        randomize(unet, "temporal", 10 * seed + 1)
        runs.append(unet)
    sp = save(tmp_path / "a-spatial.safetensors", runs[0], "spatial")
    tp = save(tmp_path / "b-temporal.safetensors", runs[1], "temporal")
    fresh = make_unet()
    load(tp, fresh, "temporal")  # order does not matter
    load(sp, fresh, "spatial")
    for adapter, source in (("spatial", runs[0]), ("temporal", runs[1])):
        want, got = lora.lora_state_dict(source, adapter), lora.lora_state_dict(fresh, adapter)
        assert all(torch.equal(want[k], got[k]) for k in want)
    with lora.lora_scales(fresh, temporal=0), lora.lora_scales(runs[0], temporal=0):
        assert torch.equal(run(fresh), run(runs[0]))


def test_load_replaces_a_group_of_another_rank(trained, tmp_path):
    unet, _ = trained
    temporal_before = lora.lora_state_dict(unet, "temporal")
    other = make_unet()
    inject(other, seed=3, spatial_rank=2)
    randomize(other, "spatial", 5)
    path = save(tmp_path / "r2.safetensors", other, "spatial")
    lora.set_trainable(unet, spatial=True, temporal=True)
    load(path, unet, "spatial")
    assert {m.r["spatial"] for m in lora_layers(unet, "spatial").values()} == {2}
    got, want = lora.lora_state_dict(unet, "spatial"), lora.lora_state_dict(other, "spatial")
    assert all(torch.equal(want[k], got[k]) for k in want)
    after = lora.lora_state_dict(unet, "temporal")
    assert all(torch.equal(temporal_before[k], after[k]) for k in after)
    assert all(p.requires_grad for p in lora.lora_parameters(unet, "temporal"))  # untouched
    with lora.lora_scales(unet, temporal=0), lora.lora_scales(other, temporal=0):
        assert torch.equal(run(unet), run(other))


def _one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_load_refuses_another_architecture(trained, tmp_path):
    unet, _ = trained
    path = save(tmp_path / "spatial.safetensors", unet, "spatial")
    wide = make_unet(block_out_channels=(64, 64))
    fp = lora.unet_fingerprint(wide)
    assert fp != lora.unet_fingerprint(unet)
    with pytest.raises(CammimicError) as info:
        lora.load_lora(path, wide, "spatial", backbone=BACKBONE, base_model=BASE, fingerprint=fp)
    message = _one_line_naming(info, path)
    assert "architecture" in message
    assert "'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q' maps 32->32" in message
    assert not hasattr(wide, "peft_config")  # checked before touching the model


def test_load_refuses_another_base_unless_allowed(trained, tmp_path):
    unet, _ = trained
    path = save(
        tmp_path / "spatial.safetensors",
        unet,
        "spatial",
        backbone="modelscope",
        base_model="damo-vilab/text-to-video-ms-1.7b",
    )
    fresh = make_unet()
    with pytest.raises(CammimicError) as info:
        load(path, fresh, "spatial", backbone="zeroscope", base_model="cerspense/zeroscope_v2_576w")
    message = _one_line_naming(info, path)
    assert 'backbone "modelscope" (base damo-vilab/text-to-video-ms-1.7b)' in message
    assert '"zeroscope" (base cerspense/zeroscope_v2_576w)' in message
    assert "allow_other_base=True (--allow-other-base)" in message
    assert not hasattr(fresh, "peft_config")
    meta = load(path, fresh, "spatial", backbone="zeroscope", base_model="x", allow_other_base=True)
    assert meta["backbone"] == "modelscope"
    with lora.lora_scales(unet, temporal=0):
        assert torch.equal(run(fresh), run(unet))
    # only the spatial group came with the file
    assert not lora_layers(fresh, "temporal")


def test_load_refuses_a_temporal_file_as_spatial(trained, tmp_path):
    unet, _ = trained
    path = save(tmp_path / "temporal.safetensors", unet, "temporal")
    with pytest.raises(CammimicError) as info:
        load(path, make_unet(), "spatial")
    assert "holds a temporal LoRA" in _one_line_naming(info, path)


def test_read_refuses_files_that_are_not_cammimic_loras(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(2)}, str(newer), metadata={"format": "cammimic-lora/9"})
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 this is not a safetensors file\n at all")
    missing = tmp_path / "missing.safetensors"
    cases = {
        plain: "no cammimic metadata",
        other: "format is 'pt'",
        newer: "upgrade cammimic",
        garbage: "not a readable safetensors file",
        missing: "does not exist",
    }
    for path, why in cases.items():
        with pytest.raises(CammimicError) as info:
            load(path, make_unet(), "spatial")
        assert why in _one_line_naming(info, path)


def test_save_is_atomic(trained, tmp_path, monkeypatch):
    unet, _ = trained
    path = tmp_path / "spatial.safetensors"
    path.write_bytes(b"the previous LoRA")

    def broken(self, data):
        with open(self, "wb") as f:
            f.write(data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(CammimicError, match="disk full"):
        save(path, unet, "spatial")
    assert path.read_bytes() == b"the previous LoRA"
    assert [p.name for p in tmp_path.iterdir()] == ["spatial.safetensors"]
    monkeypatch.undo()
    save(path, unet, "spatial")
    assert [p.name for p in tmp_path.iterdir()] == ["spatial.safetensors"]
    assert lora.read_lora(path)[1]["adapter"] == "spatial"
    with pytest.raises(CammimicError, match="reserved"):
        save(path, unet, "spatial", extra={"rank": "8"})


def test_fingerprint(tmp_path):
    a, b = make_unet(seed=0), make_unet(seed=1)
    fp = lora.unet_fingerprint(a)
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert lora.unet_fingerprint(b) == fp  # weights do not matter
    assert lora.unet_fingerprint(make_unet(cross_attention_dim=16)) != fp
    a.save_pretrained(tmp_path / "unet")
    loaded = diffusers.UNet3DConditionModel.from_pretrained(tmp_path / "unet")
    assert lora.unet_fingerprint(loaded) == fp  # private keys (_name_or_path, versions) ignored
    inject(a)
    assert lora.unet_fingerprint(a) == fp


# --------------------------------------------------------------------------------------------
# Orthogonality
# --------------------------------------------------------------------------------------------


def brute_force(unet, pairs, definition):
    """The loss with every ΔW formed explicitly, in float64."""
    spatial, temporal = lora_layers(unet, "spatial"), lora_layers(unet, "temporal")
    terms = []
    for s, t in pairs:
        ls, lt = spatial[s], temporal[t]
        a_s, b_s = ls.lora_A["spatial"].weight.double(), ls.lora_B["spatial"].weight.double()
        a_t, b_t = lt.lora_A["temporal"].weight.double(), lt.lora_B["temporal"].weight.double()
        dw_s = ls.scaling["spatial"] * b_s @ a_s
        dw_t = lt.scaling["temporal"] * b_t @ a_t
        inner = (dw_s * dw_t).sum()
        if definition == "inner":
            terms.append(inner**2)
        elif definition == "cosine":
            terms.append(inner**2 / ((dw_s**2).sum() * (dw_t**2).sum()))
        else:
            terms.append(((a_s @ a_t.T) ** 2).sum() + ((b_s.T @ b_t) ** 2).sum())
    return torch.stack(terms).mean().item()


@pytest.mark.parametrize("definition", ORTHOGONALITY_DEFINITIONS)
def test_orthogonality_matches_brute_force(trained, definition):
    unet, layers = trained
    lora.set_lora_scale(unet, "spatial", 0.7)
    # correlate the pairs a little so the inner products are far from zero
    with torch.no_grad():
        for s, t in layers.pairs:
            ls, lt = lora_layers(unet, "spatial")[s], lora_layers(unet, "temporal")[t]
            lt.lora_A["temporal"].weight += ls.lora_A["spatial"].weight[:TEMPORAL_RANK]
            lt.lora_B["temporal"].weight += ls.lora_B["spatial"].weight[:, :TEMPORAL_RANK]
    value = orthogonality_loss(unet, layers.pairs, definition=definition)
    assert value.dtype == torch.float32 and value.ndim == 0
    expected = brute_force(unet, layers.pairs, definition)
    assert expected > 1e-3
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("definition", ORTHOGONALITY_DEFINITIONS)
def test_orthogonality_gradient_reaches_only_the_spatial_lora(trained, definition):
    unet, layers = trained
    orthogonality_loss(unet, layers.pairs, definition=definition).backward()
    assert all(p.grad is None for p in lora.lora_parameters(unet, "temporal"))
    paired = [
        p
        for n in {s for s, _ in layers.pairs}
        for p in (
            lora_layers(unet, "spatial")[n].lora_A["spatial"].weight,
            lora_layers(unet, "spatial")[n].lora_B["spatial"].weight,
        )
    ]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in paired)
    unet.zero_grad(set_to_none=True)
    orthogonality_loss(unet, layers.pairs, definition=definition, detach_temporal=False).backward()
    temporal = lora_layers(unet, "temporal")
    for _, t in layers.pairs:
        for p in (temporal[t].lora_A["temporal"].weight, temporal[t].lora_B["temporal"].weight):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_cosine_is_zero_for_orthogonal_and_one_for_identical_updates():
    unet = make_unet()
    layers = inject(unet, spatial_rank=4, temporal_rank=4)
    spatial, temporal = lora_layers(unet, "spatial"), lora_layers(unet, "temporal")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for s, t in layers.pairs:
            c = spatial[s].lora_A["spatial"].weight.shape[1]
            q = torch.linalg.qr(torch.randn(c, c, generator=g))[0]  # orthonormal columns
            spatial[s].lora_A["spatial"].weight.copy_(q[:, :4].T)
            temporal[t].lora_A["temporal"].weight.copy_(q[:, 4:8].T)
            spatial[s].lora_B["spatial"].weight.normal_(generator=g)
            temporal[t].lora_B["temporal"].weight.normal_(generator=g)
    assert orthogonality_loss(unet, layers.pairs).item() < 1e-10
    assert orthogonality_loss(unet, layers.pairs, definition="inner").item() < 1e-8
    assert orthogonality_loss(unet, layers.pairs, definition="subspace").item() > 1.0
    with torch.no_grad():
        for s, t in layers.pairs:
            temporal[t].lora_A["temporal"].weight.copy_(spatial[s].lora_A["spatial"].weight * 3)
            temporal[t].lora_B["temporal"].weight.copy_(spatial[s].lora_B["spatial"].weight)
    assert orthogonality_loss(unet, layers.pairs).item() == pytest.approx(1.0, abs=1e-5)
    # B = 0 (fresh LoRA): zero, and no NaN
    with torch.no_grad():
        for p in lora.lora_parameters(unet, "spatial")[1::2]:
            p.zero_()
    value = orthogonality_loss(unet, layers.pairs)
    value.backward()
    assert value.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in lora.lora_parameters(unet, "spatial"))


def test_cosine_is_in_range_and_adam_lowers_it(trained):
    unet, layers = trained
    with torch.no_grad():  # start from strongly aligned pairs
        for s, t in layers.pairs:
            ls, lt = lora_layers(unet, "spatial")[s], lora_layers(unet, "temporal")[t]
            ls.lora_A["spatial"].weight[:TEMPORAL_RANK] = lt.lora_A["temporal"].weight
            ls.lora_B["spatial"].weight[:, :TEMPORAL_RANK] = lt.lora_B["temporal"].weight
    lora.set_trainable(unet, spatial=True, temporal=False)
    params = lora.lora_parameters(unet, "spatial")
    opt = torch.optim.Adam(params, lr=1e-2)
    start = orthogonality_loss(unet, layers.pairs).item()
    assert 0.0 < start <= 1.0
    for _ in range(30):
        opt.zero_grad()
        loss = orthogonality_loss(unet, layers.pairs)
        assert 0.0 <= loss.item() <= 1.0
        loss.backward()
        opt.step()
    end = orthogonality_loss(unet, layers.pairs).item()
    assert end < 0.5 * start, (start, end)


def test_orthogonality_refuses_bad_arguments(trained):
    unet, layers = trained
    with pytest.raises(CammimicError, match=r"'cos' is unknown. Try one of \['cosine'"):
        orthogonality_loss(unet, layers.pairs, definition="cos")
    with pytest.raises(CammimicError, match="no \\(spatial, temporal\\) layer pairs"):
        orthogonality_loss(unet, [])
    with pytest.raises(CammimicError, match="has no temporal LoRA"):
        orthogonality_loss(unet, [(layers.spatial[0], layers.spatial[1])])
    small = layers.spatial[0]  # 32 channels
    large = next(t for t in layers.temporal if t.startswith("mid_block"))  # 64 channels
    with pytest.raises(CammimicError, match="different sizes"):
        orthogonality_loss(unet, [(small, large)])


# --------------------------------------------------------------------------------------------
# Untrusted LoRA files (issue 8 §1, issue 7 §5) and reproducible bytes (issue 8 §6)
# --------------------------------------------------------------------------------------------


def _rewrite(src, dst, *, meta=None, tensors=None):
    """A copy of the LoRA file ``src`` with metadata entries and tensors replaced."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        old_meta = dict(f.metadata())
        old = {k: f.get_tensor(k) for k in f.keys()}
    save_file(old | (tensors or {}), str(dst), metadata=old_meta | (meta or {}))
    return dst


def test_identical_saves_write_identical_bytes(trained, tmp_path):
    unet, _ = trained
    files = [
        save(
            tmp_path / f"s{k}.safetensors",
            unet,
            "spatial",
            extra={"seed": "0", "prompt": "x", "token": "sks"},
        )
        for k in range(4)
    ]
    assert len({f.read_bytes() for f in files}) == 1
    head = files[0].read_bytes()
    n = int.from_bytes(head[:8], "little")
    meta = json.loads(head[8 : 8 + n])["__metadata__"]
    assert list(meta) == sorted(meta) and n % 8 == 0
    assert lora.read_lora(files[0])[1] == meta


def test_absurd_metadata_gives_one_short_line(trained, tmp_path):
    unet, _ = trained
    good = save(tmp_path / "good.safetensors", unet, "spatial")
    cases = {
        "huge adapter": ({"adapter": "x" * 5_000_000}, "holds an adapter 'xxxx"),
        "huge format": ({"format": "cammimic-lora/" + "9" * 5_000_000}, "upgrade cammimic"),
        "deep target_layers": (
            {"target_layers": "[" * 100_000 + "]" * 100_000},
            "nests too deeply",
        ),
        "huge rank": ({"rank": "9" * 5000}, "damaged metadata"),
        "zero rank": ({"rank": "0"}, "rank 0 is not positive"),
        "inf alpha": ({"alpha": "inf"}, "alpha is inf"),
        "nan alpha": ({"alpha": "nan"}, "alpha is nan"),
        "bad dropout": ({"dropout": "7"}, "dropout 7.0 is outside"),
        "huge fingerprint": ({"fingerprint": "f" * 5_000_000}, "another architecture"),
    }
    for name, (meta, why) in cases.items():
        bad = _rewrite(good, tmp_path / "bad.safetensors", meta=meta)
        with pytest.raises(CammimicError) as info:
            load(bad, make_unet(), "spatial")
        text = str(info.value)
        assert why in text and "\n" not in text and len(text) < 600, (name, text[:300])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_lora_tensors_are_refused(trained, tmp_path, value):
    unet, _ = trained
    good = save(tmp_path / "good.safetensors", unet, "temporal")
    tensors, _ = lora.read_lora(good)
    key = sorted(tensors)[3]
    poisoned = tensors[key].clone()
    poisoned[0, 0] = value
    bad = _rewrite(good, tmp_path / "bad.safetensors", tensors={key: poisoned})
    with pytest.raises(
        CammimicError, match=r"holds NaN or inf values; the finetuning that wrote it diverged"
    ):
        lora.read_lora(bad)


# --------------------------------------------------------------------------------------------
# issue 21: LoRA alpha in range, bounded headers, bounded recorded metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", ["1e30", "-4.0", "0.0", "1e300"])
def test_an_alpha_out_of_range_is_refused_naming_the_file(trained, tmp_path, alpha):
    """The attack: a LoRA with alpha=1e30 (or a negative alpha) gave an all-black video with exit 0."""
    unet, _ = trained
    good = save(tmp_path / "good.safetensors", unet, "spatial")
    bad = _rewrite(good, tmp_path / "bad.safetensors", meta={"alpha": alpha})
    with pytest.raises(CammimicError) as info:
        load(bad, make_unet(), "spatial")
    message = _one_line_naming(info, bad)
    assert re.fullmatch(
        rf"LoRA file {re.escape(str(bad))} has alpha {re.escape(format(float(alpha), 'g'))}; a LoRA's alpha must be in "
        rf"\(0, 1e\+06\] \(its scale is alpha/rank, rank {SPATIAL_RANK}\): the file was edited or "
        r"damaged, retrain it or restore its alpha",
        message,
    ), message
    assert lora.read_lora(good)  # the file it came from still loads


def test_a_header_larger_than_the_limit_is_refused_before_it_is_parsed(trained, tmp_path):
    """The attack: 90 MB of header metadata was read and recorded whole."""
    unet, _ = trained
    good = save(tmp_path / "good.safetensors", unet, "spatial")
    bad = _rewrite(good, tmp_path / "bad.safetensors", meta={"notes": "n" * 90_000_000})
    with pytest.raises(CammimicError) as info:
        load(bad, make_unet(), "spatial")
    message = _one_line_naming(info, bad)
    assert re.fullmatch(
        rf"LoRA file {re.escape(str(bad))} has a 8[0-9]\.\d MB header; a cammimic LoRA's is under "
        r"8 MB, so this one is damaged or carries foreign metadata: pass a LoRA saved by cammimic",
        message,
    ), message
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(
        CammimicError, match=r"short\.safetensors is not a readable safetensors file \(shorter"
    ):
        lora.read_lora(short)


def test_long_extra_metadata_is_saved_cut_with_its_hash(trained, tmp_path):
    import hashlib

    unet, _ = trained
    prompt = "a mountain village " * 2_700_000  # about 50 MB
    path = save(
        tmp_path / "s.safetensors", unet, "spatial", extra={"image_prompt": prompt, "seed": "0"}
    )
    assert path.stat().st_size < 1_000_000
    _, meta = lora.read_lora(path)
    assert meta["seed"] == "0" and meta["image_prompt"] == (
        prompt[:4000]
        + f"…(truncated; {len(prompt)} chars, sha256 {hashlib.sha256(prompt.encode()).hexdigest()})"
    )
