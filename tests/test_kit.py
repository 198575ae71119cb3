"""The backbone seam's base classes and the public kit (``cammimic.kit``): the base answers are a
UNet3D's, preflight refuses before loading, first-protocol plugins keep working with a warning."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from cammimic.backbones import as_adapter, as_backbone
from cammimic.components import Backbone, BackboneAdapter
from cammimic.errors import CammimicError


def test_the_kit_imports_light():
    code = (
        "import sys, cammimic.kit, cammimic.backbones, cammimic.components;"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft', 'huggingface_hub') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_base_answers_are_a_per_frame_unet3d_s():
    class Minimal(Backbone):
        name, vae_scale_factor, latent_channels = "minimal", 8, 4

    b = Minimal()
    assert b.frame_groups(3) == [[0], [1], [2]]
    assert b.latent_shape(16, 576, 320) == (1, 4, 16, 40, 72)
    assert b.size_multiple == 8 and b.valid_num_frames(7) and not b.valid_num_frames(0)
    assert (
        b.encode_frames(np.zeros((2, 8, 8, 3), np.uint8)) is None
    )  # Phase 1 slices the clip's latents
    assert b.samplers == ("ddim", "dpm")
    latents, t = object(), object()
    assert b.condition(latents, t) == (latents, t)
    with pytest.raises(NotImplementedError, match="Minimal must implement predict_noise"):
        b.predict_noise(None, 0, None)


def test_ddpm_noise_and_target_and_timesteps_are_the_scheduler_s():
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from cammimic_unet3d.random_weights import SCHEDULER_CONFIG
    from diffusers import DDIMScheduler, DDPMScheduler

    class Ddpm(Backbone):
        name, vae_scale_factor, latent_channels = "ddpm", 8, 4
        prediction = "epsilon"

        def training_scheduler(self):
            return DDPMScheduler.from_config(
                {**SCHEDULER_CONFIG, "prediction_type": self.prediction}
            )

    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 3, 2, 2, generator=g), torch.randn(1, 4, 3, 2, 2, generator=g)
    b = Ddpm()
    t = b.sample_training_timesteps(1, torch.Generator().manual_seed(5))
    assert torch.equal(t, torch.randint(0, 1000, (1,), generator=torch.Generator().manual_seed(5)))
    ref = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    noisy, target = b.noise_and_target(x0, noise, t)
    assert torch.equal(noisy, ref.add_noise(x0, noise, t)) and target is noise
    v = Ddpm()
    v.prediction = "v_prediction"
    assert torch.equal(v.noise_and_target(x0, noise, t)[1], ref.get_velocity(x0, noise, t))
    ddim = DDIMScheduler.from_config(SCHEDULER_CONFIG)
    assert torch.equal(
        b.noise_to(x0, noise, torch.tensor(500), ddim),
        ddim.add_noise(x0, noise, torch.tensor([500])),
    )
    s = Ddpm()
    s.prediction = "sample"
    with pytest.raises(
        CammimicError, match="predicts 'sample'; cammimic trains epsilon or v_prediction"
    ):
        s.noise_and_target(x0, noise, t)


class FirstProtocol:
    """A backbone written before the base classes: ``unet``, a three-argument ``noise_to``."""

    name, weights, device, dtype, vae_scale_factor, latent_channels = "old", "w", "cpu", None, 8, 4
    unet = "the unet"

    def frame_groups(self, n):
        return [list(range(n))]

    def noise_to(self, latents, noise, timestep):
        return ("own", latents)

    def fingerprint(self):
        return "f"


def test_a_first_protocol_backbone_is_wrapped_with_a_warning():
    with pytest.warns(
        DeprecationWarning, match="FirstProtocol does not subclass cammimic.components.Backbone"
    ):
        b = as_backbone(FirstProtocol())
    assert isinstance(b, Backbone) and as_backbone(b) is b
    assert b.denoiser == "the unet" and b.name == "old" and b.fingerprint() == "f"
    assert b.frame_groups(3) == [[0, 1, 2]]  # its own answer ...
    assert b.latent_shape(3, 64, 64) == (
        1,
        4,
        1,
        8,
        8,
    )  # ... which the base class's other answers use
    assert b.valid_num_frames(5) and b.noise_to(1, 2, 3, scheduler=None) == ("own", 1)
    b.latent_channels = 16  # writes reach the wrapped object
    assert b.latent_shape(3, 64, 64)[1] == 16
    with pytest.warns(
        DeprecationWarning, match="does not subclass cammimic.components.BackboneAdapter"
    ):
        a = as_adapter(
            type("Old", (), {"name": "old", "vae_scale_factor": 8, "samplers": ("euler",)})()
        )
    assert isinstance(a, BackboneAdapter) and a.samplers == ("euler",) and a.size_multiple == 8
    assert a.preflight(64, 64, 8, None, None) is True
    assert (
        a.preflight(64, 64, 8, "euler", 25) is False
    )  # steps: the loaded backbone's schedule tells
    with pytest.raises(
        CammimicError, match='--width/--height 60x64 must be multiples of 8 for backbone "old"'
    ):
        a.preflight(60, 64, 8, "euler", 25)


def test_unet_is_a_deprecated_name_of_denoiser():
    class New(Backbone):
        denoiser = "the denoiser"

    with pytest.warns(DeprecationWarning, match=r"New.unet is deprecated: use .denoiser"):
        assert New().unet == "the denoiser"


def test_first_party_backbones_are_kit_subclasses():
    pytest.importorskip("diffusers")
    from cammimic_mini.adapter import MiniAdapter
    from cammimic_unet3d.backbone import UNet3DAdapter, UNet3DBackbone
    from cammimic_wan.backbone import WanAdapter, WanBackbone

    from cammimic.kit import DiffusersAdapter, DiffusersBackbone

    for adapter in (UNet3DAdapter, WanAdapter, MiniAdapter):
        assert issubclass(adapter, DiffusersAdapter)
    for backbone in (UNet3DBackbone, WanBackbone):
        assert issubclass(backbone, DiffusersBackbone)


def test_preflight_reads_the_folder_s_configs_before_loading(tiny_weights, tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    from cammimic_unet3d.backbone import UNet3DAdapter

    def load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(UNet3DAdapter, "load", load)
    adapter = UNet3DAdapter("zeroscope", str(tiny_weights), (64, 64), 8)
    unet = json.loads((tiny_weights / "unet" / "config.json").read_text())
    multiple = 8 * 2 ** (len(unet["down_block_types"]) - 1)  # the tiny UNet's rule, not the VAE's 8
    assert adapter.preflight(4 * multiple, 2 * multiple, 8, "ddim", 25) is True
    assert adapter.preflight(4 * multiple, 2 * multiple, 8, None, None) is True
    with pytest.raises(
        CammimicError, match=rf"must be multiples of {multiple} for backbone \"zeroscope\""
    ):
        adapter.preflight(4 * multiple + 8, 2 * multiple, 8, "ddim", 25)
    with pytest.raises(
        CammimicError, match=r"--steps 5000 is outside what the ddim sampler can take"
    ):
        adapter.preflight(4 * multiple, 2 * multiple, 8, "ddim", 5000)
    # a Hub id not downloaded: the adapter checks what it can and leaves the rest to the loaded backbone
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub = UNet3DAdapter("zeroscope", "nobody/not-downloaded", (64, 64), 8)
    assert hub.preflight(72, 64, 8, "ddim", 25) is False
    with pytest.raises(CammimicError, match="must be multiples of 8"):
        hub.preflight(70, 64, 8, "ddim", 25)


def test_a_broken_scheduler_config_is_left_to_the_loader(tiny_weights, tmp_path):
    pytest.importorskip("diffusers")
    import shutil

    from cammimic_unet3d.backbone import UNet3DAdapter

    broken = tmp_path / "broken"
    shutil.copytree(tiny_weights, broken)
    config = broken / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "beta_schedule": "nonsense"}))
    adapter = UNet3DAdapter("zeroscope", str(broken), (64, 64), 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            adapter.preflight(64, 64, 8, "ddim", 25) is False
        )  # steps unchecked: the load says why
    with pytest.raises(CammimicError, match="scheduler config of .* is invalid"):
        adapter.load(device="cpu")
