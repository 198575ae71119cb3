"""Phase 2: the denoising loop, owned here instead of a diffusers pipeline.

``TextToVideoSDPipeline`` is deprecated and has no per-step callback; the loop below is the
same algorithm (classifier-free guidance over a DDIM or DPM-Solver++ schedule), written against
the :class:`cammimic.components.Backbone` interface so guidance terms can act after every
scheduler step and any backbone plugin can be sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cammimic.components import GuidanceState

__all__ = ["sample", "make_generator", "initial_noise", "check_steps", "max_steps"]


def make_generator(seed: int):
    """A CPU ``torch.Generator``: CPU draws give the same noise on every device."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed) % 2**63)


def initial_noise(shape, generator, device, dtype=None):
    """Standard normal latents drawn on the CPU (device-independent), then moved."""
    import torch

    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype or torch.float32)


def sample(
    backbone,
    prompt: str,
    *,
    num_frames: int,
    width: int,
    height: int,
    steps: int = 50,
    guidance_scale: float = 9.0,
    negative_prompt: str = "",
    scheduler: str = "ddim",
    eta: float = 0.0,
    seed: int = 0,
    guidance_terms: Sequence[Any] = (),
    target=None,
    mask=None,
    prompt_embeds=None,
    progress: bool = True,
    callback: Callable[[int, Any, Any], None] | None = None,
):
    """Sample video latents ``(1, C, T, h, w)`` from ``backbone`` for ``prompt``.

    Args:
        guidance_terms: :class:`~cammimic.components.GuidanceTerm` objects applied in order after
            every scheduler step (each decides itself whether to act, e.g. not after the last).
        target: latents the guidance draws towards (z_P), ``(1, C, T, h, w)``.
        mask: 1 where ``target`` is valid, broadcastable to the latents.
        prompt_embeds: precomputed ``(2, L, D)`` embeddings of ``[negative_prompt, prompt]``.
        callback: ``callback(step, timestep, latents)`` after each step (after guidance).

    Latents are kept in float32 between steps; the denoiser runs in the backbone's dtype.
    """
    import torch

    from cammimic.progress import progress_bar

    device = backbone.device
    f = backbone.vae_scale_factor
    denoiser = getattr(backbone, "unet", None)
    if denoiser is not None and hasattr(denoiser, "eval"):
        denoiser.eval()  # no LoRA dropout (or any dropout) while sampling
    sched = backbone.sampling_scheduler(scheduler)
    check_steps(sched, steps, scheduler)
    sched.set_timesteps(steps, device=device)
    use_cfg = guidance_scale > 1.0
    with torch.no_grad():
        if prompt_embeds is None:
            prompt_embeds = backbone.encode_prompt([negative_prompt, prompt])
        embeds = prompt_embeds if use_cfg else prompt_embeds[1:]

        generator = make_generator(seed)
        shape = (1, backbone.latent_channels, num_frames, height // f, width // f)
        latents = initial_noise(shape, generator, device) * sched.init_noise_sigma
        step_kwargs = {}
        if "eta" in _step_parameters(sched):
            step_kwargs = {"eta": eta, "generator": generator}
        noised_target = None
        target_noise = None
        if target is not None:
            target = target.to(device=device, dtype=torch.float32)
            target_noise = initial_noise(shape, generator, device)
        if mask is not None:
            mask = mask.to(device=device, dtype=torch.float32)
        timesteps = list(sched.timesteps)
        for i, t in enumerate(progress_bar(timesteps, desc="sampling", disable=not progress)):
            model_in = torch.cat([latents] * 2) if use_cfg else latents
            model_in = sched.scale_model_input(model_in, t)
            noise = backbone.predict_noise(model_in.to(backbone.dtype), t, embeds).float()
            if use_cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            out = sched.step(noise, t, latents, **step_kwargs)
            latents = out.prev_sample
            if guidance_terms:
                next_t = timesteps[i + 1] if i + 1 < len(timesteps) else None
                if target is not None and next_t is not None and hasattr(sched, "add_noise"):
                    noised_target = sched.add_noise(target, target_noise, next_t.reshape(1))
                state = GuidanceState(
                    step=i, num_steps=len(timesteps), timestep=t, target=target, mask=mask,
                    predicted_original=getattr(out, "pred_original_sample", None),
                    extras={"next_timestep": next_t, "noised_target": noised_target, "scheduler": sched},
                )
                for term in guidance_terms:
                    latents = term.apply(latents, state)
            if callback is not None:
                callback(i, t, latents)
    return latents


def max_steps(sched) -> int:
    """The most sampling steps ``sched`` can take without stepping past its training schedule.

    DDIM with ``"leading"`` spacing and ``steps_offset`` 1 (zeroscope, ModelScope) maps 1000
    steps to timesteps 1…1000, one past the last trained one (999).
    """
    cfg = sched.config
    n = int(cfg.get("num_train_timesteps", 1000))
    offset = int(cfg.get("steps_offset", 0) or 0)
    if cfg.get("timestep_spacing", "leading") == "leading" and type(sched).__name__.startswith("DDIM"):
        return n - offset
    return n


def check_steps(sched, steps: int, name: str = "") -> None:
    """One line when ``steps`` is more than the sampler can take with this schedule."""
    from cammimic.errors import CammimicError

    most = max_steps(sched)
    if not 1 <= int(steps) <= most:
        raise CammimicError(
            f"--steps {steps} is outside what the {name or type(sched).__name__} sampler can take with this "
            f"backbone's {sched.config.get('num_train_timesteps', 1000)}-step schedule; use 1 to {most}"
        )


def _step_parameters(sched) -> set[str]:
    import inspect

    return set(inspect.signature(sched.step).parameters)
