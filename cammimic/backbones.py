"""The backbone seam: what core asks a backbone beyond :class:`~cammimic.components.Backbone`'s
required members, with the answer a diffusers UNet3D gave before the seam existed.

A backbone (or its adapter, before loading) may state its own rules; core asks through these
functions, so a backbone written against the first protocol keeps working unchanged:

=========================================  ====================================================
optional member of the backbone (adapter)  default: the first protocol's UNet3D behaviour
=========================================  ====================================================
``denoiser``                               ``unet``
``size_multiple`` (also on the adapter)    from ``unet.config`` (VAE factor x 2^(down blocks-1))
``valid_num_frames(n)``, ``frame_rule``    any number of frames
``samplers`` (also on the adapter)         ``("ddim", "dpm")``; the first is the default
``frame_groups(n)``                        ``[[0], [1], …]``: one latent frame per video frame
``latent_shape(n, width, height)``         ``(1, latent_channels, n, height/f, width/f)``
``encode_frames(frames)``                  slices of ``encode_video(frames)`` (not called)
``sample_training_timesteps(k, gen)``      integers in ``[0, num_train_timesteps)``
``noise_and_target(x0, noise, t)``         ``training_scheduler().add_noise``; ε or v target
``noise_to(x0, noise, t)``                 the sampling scheduler's ``add_noise``
``sampling_defaults`` (on the adapter)     zeroscope's: CFG 9.0, empty negative prompt, 50 steps
``max_frames`` (on the adapter)            no limit: any ``--frames`` is sampled at once
=========================================  ====================================================
"""

from __future__ import annotations

from typing import Any

from cammimic.config import did_you_mean
from cammimic.errors import CammimicError

__all__ = [
    "DEFAULT_SAMPLING", "sampling_defaults", "resolve_sampling", "resolve_recipe",
    "DEFAULT_SAMPLERS", "denoiser", "samplers", "resolve_sampler", "check_num_frames", "fit_num_frames",
    "frame_groups", "latent_shape", "training_timesteps", "noise_and_target", "noise_to", "max_frames",
    "weights_max_frames", "MAX_FRAMES_KEY",
]

DEFAULT_SAMPLERS = ("ddim", "dpm")


def denoiser(backbone) -> Any:
    """The module the LoRAs go on: ``backbone.denoiser``, else the first protocol's ``backbone.unet``."""
    model = getattr(backbone, "denoiser", None)
    return model if model is not None else backbone.unet


#: What a backbone samples with when it states nothing (zeroscope's and ModelScope's pipeline values).
DEFAULT_SAMPLING: dict[str, Any] = {"guidance_scale": 9.0, "negative_prompt": "", "steps": 50}


def sampling_defaults(backbone_or_adapter) -> dict[str, Any]:
    """The backbone's own CFG scale, negative prompt and steps (``sampling_defaults``), over
    :data:`DEFAULT_SAMPLING`."""
    own = getattr(backbone_or_adapter, "sampling_defaults", None) or {}
    return DEFAULT_SAMPLING | {k: v for k, v in dict(own).items() if k in DEFAULT_SAMPLING}


def resolve_recipe(backbone_or_adapter, config) -> dict[str, Any]:
    """``{"section.key": value}`` of the backbone's own run settings (``recipe_defaults``, e.g.
    mini's finetuning steps, LoRA ranks and motion estimator, measured for its size) that the user
    did not set (:meth:`cammimic.config.Config.is_explicit`). Backbones without any: ``{}``."""
    own = getattr(backbone_or_adapter, "recipe_defaults", None) or {}
    return {k: v for k, v in dict(own).items() if not config.is_explicit(k)}


def resolve_sampling(backbone_or_adapter, sampling: dict[str, Any]) -> dict[str, Any]:
    """``{"sampling.key": value}`` for each of ``[sampling]``'s steps, guidance_scale and
    negative_prompt the user left unset (``0``, ``0``, ``"auto"``): the backbone's default."""
    unset = {"steps": 0, "guidance_scale": 0.0, "negative_prompt": "auto"}
    defaults = sampling_defaults(backbone_or_adapter)
    return {f"sampling.{k}": defaults[k] for k, v in unset.items() if sampling.get(k, v) == v}


def samplers(backbone_or_adapter) -> tuple[str, ...]:
    """The sampler names a backbone offers; the first is its default (``"auto"``)."""
    names = getattr(backbone_or_adapter, "samplers", None)
    return tuple(names) if names else DEFAULT_SAMPLERS


def resolve_sampler(backbone_or_adapter, name: str) -> str:
    """``name`` if the backbone offers it (``"auto"``: its default sampler), else one clear line."""
    offered = samplers(backbone_or_adapter)
    if name in ("", "auto"):
        return offered[0]
    if name not in offered:
        label = getattr(backbone_or_adapter, "name", "")
        raise CammimicError(
            f"[sampling] scheduler = '{name}' is not a sampler of backbone \"{label}\"{did_you_mean(name, offered)}; "
            f"try one of {list(offered)}, or 'auto' ({offered[0]})"
        )
    return name


#: The key of a weights folder's ``model_index.json`` that states the frames its model samples at
#: once (random test weights write their preset's; diffusers ignores keys starting with ``_``).
MAX_FRAMES_KEY = "_cammimic_max_frames"


def max_frames(backbone_or_adapter) -> int | None:
    """The most frames the backbone samples at once (``max_frames``: mini 8, zeroscope 24,
    ModelScope 16, Wan 81); ``None`` when it states none. A longer ``--frames`` is sampled in
    overlapping windows (:func:`cammimic.sampling.plan_windows`)."""
    n = getattr(backbone_or_adapter, "max_frames", None)
    return int(n) if n else None


def weights_max_frames(weights) -> int | None:
    """The ``max_frames`` a local weights folder states in its ``model_index.json``
    (:data:`MAX_FRAMES_KEY`), else ``None`` (a Hub id, or a folder stating none)."""
    import json
    from pathlib import Path

    if not weights:
        return None
    index = Path(str(weights)).expanduser() / "model_index.json"
    try:
        value = json.loads(index.read_text(encoding="utf-8")).get(MAX_FRAMES_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def check_num_frames(backbone_or_adapter, num_frames: int) -> None:
    """One line when the backbone cannot take ``num_frames`` frames (Wan: ``4k+1``)."""
    valid = getattr(backbone_or_adapter, "valid_num_frames", None)
    if valid is None or valid(int(num_frames)):
        return
    label = getattr(backbone_or_adapter, "name", "")
    rule = getattr(backbone_or_adapter, "frame_rule", "another number of frames")
    near = [n for n in range(max(1, num_frames - 8), num_frames + 9) if valid(n)]
    hint = f" (e.g. --frames {min(near, key=lambda n: (abs(n - num_frames), -n))})" if near else ""
    raise CammimicError(f"--frames {num_frames}: backbone \"{label}\" takes {rule}{hint}")


def fit_num_frames(backbone_or_adapter, wanted: int, available: int) -> int:
    """The frame count to use when the user set none: ``min(wanted, available)``, moved to the
    nearest count the backbone takes (up if the reference has the frames, else down)."""
    valid = getattr(backbone_or_adapter, "valid_num_frames", None)
    n = max(1, min(wanted, available))
    if valid is None or valid(n):
        return n
    up = next((m for m in range(n + 1, available + 1) if valid(m) and m - n <= 8), None)
    return up if up is not None else next((m for m in range(n, 0, -1) if valid(m)), 1)


def frame_groups(backbone, num_frames: int) -> list[list[int]]:
    """The video frames each latent frame holds."""
    groups = getattr(backbone, "frame_groups", None)
    return groups(num_frames) if groups is not None else [[i] for i in range(num_frames)]


def latent_shape(backbone, num_frames: int, width: int, height: int) -> tuple[int, ...]:
    """``(1, C, T', h, w)`` of the latents of a ``num_frames`` clip."""
    shape = getattr(backbone, "latent_shape", None)
    if shape is not None:
        return tuple(int(v) for v in shape(num_frames, width, height))
    f = backbone.vae_scale_factor
    return (1, backbone.latent_channels, num_frames, height // f, width // f)


def training_timesteps(backbone, scheduler, count: int, generator):
    """``count`` training timesteps drawn from ``generator`` (the backbone's own sampling, or DDPM's)."""
    import torch

    draw = getattr(backbone, "sample_training_timesteps", None)
    if draw is not None:
        return draw(count, generator)
    return torch.randint(0, int(scheduler.config.num_train_timesteps), (count,), generator=generator)


def noise_and_target(backbone, scheduler, latents, noise, timesteps):
    """``(noisy latents, training target)``: the backbone's own rule, or DDPM's ``add_noise`` and
    its ε / v-prediction target."""
    own = getattr(backbone, "noise_and_target", None)
    if own is not None:
        return own(latents, noise, timesteps)
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise CammimicError(
            f"the backbone's scheduler predicts '{kind}'; cammimic trains epsilon or v_prediction models "
            "(or a backbone with its own noise_and_target)"
        )
    return scheduler.add_noise(latents, noise, timesteps), target


def noise_to(backbone, scheduler, latents, noise, timestep):
    """``latents`` noised to the level of sampling ``timestep``; ``None`` if nothing knows how."""
    own = getattr(backbone, "noise_to", None)
    if own is not None:
        return own(latents, noise, timestep)
    if hasattr(scheduler, "add_noise"):
        return scheduler.add_noise(latents, noise, timestep.reshape(1))
    return None
