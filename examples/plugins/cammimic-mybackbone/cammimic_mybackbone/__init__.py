"""cammimic-mybackbone: the MyVideo text-to-video model as a cammimic backbone."""

from __future__ import annotations

import cammimic

__version__ = "0.1.0"


def mybackbone(
    *,
    weights: str = "my-org/myvideo-v1",
    num_frames: int = 16,
    width: int = 512,
    height: int = 320,
    torch_dtype: str = "auto",
):
    """Build the adapter. Every keyword here may be set in the [backbone] config section;
    ``weights`` is also what ``--weights`` sets."""
    from cammimic_mybackbone.adapter import MyBackbone  # torch/diffusers are imported there

    return MyBackbone(
        default_weights=weights,
        default_size=(width, height),
        default_num_frames=num_frames,
        torch_dtype=torch_dtype,
    )


@cammimic.hookimpl
def register_backbones(register):
    register(
        "mybackbone",
        mybackbone,
        description="MyVideo 1.0 (512x320, 16 frames).",
        requires=("torch", "diffusers"),
        extra="zeroscope",
    )


@cammimic.hookimpl
def locate_attention_layers(backbone, model, include_ff):
    if backbone != "mybackbone":
        return None  # not ours: let another plugin answer
    from cammimic_mybackbone.adapter import attention_layers

    return attention_layers(model, include_ff)
