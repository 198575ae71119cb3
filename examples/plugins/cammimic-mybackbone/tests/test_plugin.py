"""The plugin's own tests: a fresh host with only this plugin, then an end-to-end run on a
tiny random-weight model in diffusers layout (offline)."""

from __future__ import annotations

import cammimic_mybackbone
import pytest

from cammimic.components import AttentionLayers
from cammimic.plugins import PluginHost


@pytest.fixture
def host():
    """A host with only this plugin: nothing is autoloaded from entry points."""
    host = PluginHost()
    host.register(cammimic_mybackbone, name="mybackbone")
    host.check_pending()  # as at load time: a misspelt hook unregisters the plugin...
    assert not host.failed, {
        name: info.error for name, info in host.failed.items()
    }  # ...so fail here
    return host


def test_registers_backbone(host):
    comp = host.get("backbone", "mybackbone")
    assert comp.plugin == "mybackbone"
    assert comp.parameters() == {
        "weights": "my-org/myvideo-v1",
        "num_frames": 16,
        "width": 512,
        "height": 320,
        "torch_dtype": "auto",
    }


def test_config_parameters(host):
    pytest.importorskip("diffusers")
    backbone = host.create("backbone", "mybackbone", {"num_frames": 24})
    assert backbone.default_num_frames == 24


class FakeUNet:
    def named_modules(self):
        prefix = "down_blocks.0"
        for role in ("to_q", "to_k", "to_v", "to_out.0"):
            yield f"{prefix}.attentions.0.transformer_blocks.0.attn1.{role}", None
            yield f"{prefix}.temp_attentions.0.transformer_blocks.0.attn1.{role}", None


def test_locates_layers(host):
    layers = host.locate_attention_layers("mybackbone", FakeUNet())
    assert isinstance(layers, AttentionLayers)
    assert len(layers.spatial) == len(layers.pairs) == 4


def test_ignores_other_backbones(host):
    assert (
        host.pm.hook.locate_attention_layers(backbone="other", model=None, include_ff=False) is None
    )


def test_runs_the_method_end_to_end(host, tmp_path):
    """The whole CamMimic method on this backbone, with cammimic's own plugins loaded too."""
    pytest.importorskip("diffusers")
    from cammimic_unet3d.random_weights import save_components
    from skimage import data

    import cammimic
    from cammimic.io import read_video, write_image, write_video
    from cammimic.synthetic import camera_path, render_camera_motion

    host.load()  # cammimic's own plugins (motion estimator, guidance) after ours
    weights = save_components(tmp_path / "weights", preset="tiny", seed=0)
    frames = render_camera_motion(data.astronaut(), camera_path("pan", 4, 64, 64), 64, 64)
    ref = tmp_path / "ref.mp4"
    write_video(ref, frames, 8.0)
    write_image(tmp_path / "scene.png", frames[0])
    run = cammimic.transfer(
        ref,
        tmp_path / "scene.png",
        tmp_path / "out",
        host=host,
        prompt="a scene",
        frames=4,
        width=64,
        height=64,
        device="cpu",
        progress=False,
        backbone__name="mybackbone",
        backbone__weights=str(weights),
        finetune__stage1_steps=1,
        finetune__stage2_steps=1,
        sampling__steps=2,
        lora__spatial_rank=2,
        lora__temporal_rank=2,
    )
    assert run.manifest["components"]["backbone"]["plugin"] == "mybackbone"
    assert run.manifest["layers"]["located_by"] == "mybackbone"
    assert read_video(run.files["output"]).frames.shape == (4, 64, 64, 3)
