"""A backbone whose denoiser is exact for Gaussian data, for measuring samplers without a network.

Data are x₀ ~ N(0, I) per element. At noise level (a, s) (DDPM: ``x_t = a·x₀ + s·ε``, a² + s² = 1;
flow matching: a = 1 − σ, s = σ) the posterior means are E[x₀ | x_t] = a·x_t / (a² + s²) and
E[ε | x_t] = s·x_t / (a² + s²), so the "model" predicts ε, v or the flow velocity ε − x₀ exactly.
It carries the real noise schedules of the UNet3D backbones (zeroscope) and of Wan, and their real
diffusers samplers; :func:`cammimic.sampling.sample` runs on it as on a loaded backbone. Used by
tests/test_phase2.py and benchmarks/guidance_samplers.py.
"""

from __future__ import annotations

import torch

from cammimic.components import Backbone

#: sampler name -> the schedule family it belongs to
FAMILY = {"ddim": "ddpm", "dpm": "ddpm", "unipc": "flow", "euler": "flow"}


class GaussianToy(Backbone):
    """A :class:`~cammimic.components.Backbone` with a closed-form denoiser."""

    name = "gaussian-toy"
    vae_scale_factor = 8
    latent_channels = 4

    def __init__(self, family: str = "ddpm", prediction_type: str = "epsilon"):
        self.family = family
        self.prediction_type = "flow_prediction" if family == "flow" else prediction_type
        self.samplers = ("ddim", "dpm") if family == "ddpm" else ("unipc", "euler")
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.denoiser = object()  # no LoRAs, nothing to switch to eval()
        if family == "ddpm":
            from cammimic_unet3d.random_weights import SCHEDULER_CONFIG

            self.scheduler_config = {**SCHEDULER_CONFIG, "prediction_type": prediction_type}
            from diffusers import DDPMScheduler

            self._alphas_cumprod = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        else:
            from cammimic_wan.random_weights import SCHEDULER_CONFIG

            self.scheduler_config = dict(SCHEDULER_CONFIG)

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 1, 1)

    def sampling_scheduler(self, kind: str):
        from diffusers import (
            DDIMScheduler,
            DPMSolverMultistepScheduler,
            FlowMatchEulerDiscreteScheduler,
            UniPCMultistepScheduler,
        )

        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler_config)
        if kind == "dpm":
            return DPMSolverMultistepScheduler.from_config(
                self.scheduler_config, algorithm_type="dpmsolver++"
            )
        if kind == "unipc":
            return UniPCMultistepScheduler.from_config(self.scheduler_config)
        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=self.scheduler_config["flow_shift"]
        )

    def _levels(self, timestep):
        t = float(torch.as_tensor(timestep).float().reshape(-1)[0])
        if self.family == "flow":
            sigma = t / 1000.0
            return 1.0 - sigma, sigma
        ab = float(self._alphas_cumprod[int(round(t))])
        return ab**0.5, (1.0 - ab) ** 0.5

    def predict_noise(self, latents, timestep, prompt_embeds):
        a, s = self._levels(timestep)
        x0 = a * latents / (a * a + s * s)
        eps = s * latents / (a * a + s * s)
        if self.prediction_type == "flow_prediction":
            return eps - x0
        if self.prediction_type == "v_prediction":
            return a * eps - s * x0
        if self.prediction_type == "sample":
            return x0
        return eps


class FlowToy(GaussianToy):
    """The flow-matching toy: noises like Wan's backbone (its own ``noise_to``; DDPM samplers use
    their scheduler's ``add_noise``)."""

    def __init__(self, prediction_type: str = "flow_prediction"):
        super().__init__("flow", prediction_type)

    def noise_to(self, latents, noise, timestep, scheduler):
        a, s = self._levels(timestep)
        return a * latents + s * noise


def distance_ratio(
    sampler: str,
    terms,
    *,
    steps: int = 50,
    seed: int = 0,
    prediction_type: str = "epsilon",
    shape=(1, 4, 4, 16, 16),
):
    """``(unguided, guided)`` distance of the final latents to z_P, relative to ‖z_P‖.

    z_P is one draw of the data distribution (seed 1234), so both are ≈ √2 without guidance.
    """
    from cammimic.sampling import sample

    toy = FlowToy() if FAMILY[sampler] == "flow" else GaussianToy("ddpm", prediction_type)
    target = torch.randn(shape, generator=torch.Generator().manual_seed(1234))
    frames, h, w = shape[2], shape[3] * 8, shape[4] * 8

    def run(guidance):
        return sample(
            toy,
            "",
            num_frames=frames,
            width=w,
            height=h,
            steps=steps,
            guidance_scale=1.0,
            scheduler=sampler,
            seed=seed,
            guidance_terms=guidance,
            target=target,
            progress=False,
        )

    norm = float(target.norm())
    return float((run([]) - target).norm()) / norm, float((run(terms) - target).norm()) / norm
