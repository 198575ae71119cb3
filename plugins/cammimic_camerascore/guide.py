"""CameraScore guidance: a gradient step on the resolution-free CameraScore of the prediction.

At a sampling step in the window, with x̂₀ the predicted clean latents (``acts_on = "x0"``: the
sampler hands the term x̂₀ before the scheduler's step and converts the result back)::

    frames  = VAE-decode(x̂₀)                          (T, 3, H, W) in [0, 1], differentiable
    H_G     = kornia estimator(frames)                 (T − 1, 3, 3), unrolled Gauss–Newton
    E       = (1/N) Σ_i ‖N H_R,i N⁻¹ − N H_G,i N⁻¹‖²_F  (resolution-free CameraScore)
    x̂₀     ← x̂₀ − w · ∇E / rms(∇E)

N takes pixel coordinates to resolution-free ones (``cammimic.homography.resolution_free_matrix``).
The step is normalised so ``weight`` is the RMS change of the latents, whatever E's scale.
"""

from __future__ import annotations

import time

import numpy as np

from cammimic.errors import CammimicError

__all__ = ["CameraScoreGuidance", "camera_score_tensor", "check_parameters"]


def check_parameters(weight, start, end, iterations, estimator_iterations) -> None:
    if not 0.0 <= float(weight) <= 10.0:
        raise CammimicError(
            f"camerascore guidance weight {weight} is outside [0, 10] (RMS latent change per step)"
        )
    if not 0.0 <= float(start) <= float(end) <= 1.0:
        raise CammimicError(
            f"camerascore guidance needs 0 <= start <= end <= 1, got start={start}, end={end}"
        )
    if not 1 <= int(iterations) <= 100:
        raise CammimicError(f"camerascore guidance iterations {iterations} is outside [1, 100]")
    if not 1 <= int(estimator_iterations) <= 50:
        raise CammimicError(
            f"camerascore guidance estimator_iterations {estimator_iterations} is outside [1, 50]"
        )


def camera_score_tensor(h_generated, h_reference, width: int, height: int):
    """Resolution-free CameraScore of pixel homographies ``(N, 3, 3)`` (torch, differentiable):
    the mean over pairs of ‖H_R − H_G‖²_F in normalised coordinates, each H with H[2, 2] = 1."""
    import torch

    from cammimic.homography import resolution_free_matrix

    n = torch.as_tensor(
        resolution_free_matrix(width, height), dtype=h_generated.dtype, device=h_generated.device
    )
    n_inv = torch.linalg.inv(n)

    def free(h):
        h = n @ h @ n_inv
        return h / h[..., 2:3, 2:3]

    ref = torch.as_tensor(
        np.asarray(h_reference), dtype=h_generated.dtype, device=h_generated.device
    )
    return ((free(ref) - free(h_generated)) ** 2).sum(dim=(-2, -1)).mean()


class CameraScoreGuidance:
    """The ``camerascore`` guidance term (see the module docstring)."""

    name = "camerascore"
    acts_on = "x0"  # the sampler hands it the predicted clean latents

    def __init__(self, *, weight=0.05, start=0.3, end=0.8, iterations=1, estimator_iterations=5):
        self.weight, self.start, self.end = weight, start, end
        self.iterations, self.estimator_iterations = iterations, estimator_iterations
        self.context = None
        #: per guided step: step, CameraScore before the step, seconds
        self.history: list[dict] = []

    def prepare(self, context) -> None:
        from cammimic_kornia import kornia_estimator

        vae = getattr(context.backbone, "vae", None)
        if vae is None or not hasattr(getattr(vae, "config", None), "scaling_factor"):
            raise CammimicError(
                f"camerascore guidance decodes with a per-frame VAE (the UNet3D backbones: zeroscope, modelscope, "
                f'mini, unet3d); backbone "{getattr(context.backbone, "name", "?")}" has none'
            )
        if context.homographies is None or len(context.homographies) < 1:
            raise CammimicError(
                "camerascore guidance needs the reference's homographies (two frames or more)"
            )
        self.context = context
        self.estimator = kornia_estimator(
            device=str(context.backbone.device), iterations=self.estimator_iterations
        )
        self.history = []

    def decode(self, latents):
        """``(1, C, T, h, w)`` latents to frames ``(T, 3, H, W)`` in [0, 1], differentiably."""
        vae = self.context.backbone.vae
        z = latents[0].transpose(0, 1) / vae.config.scaling_factor  # T, C, h, w
        x = vae.decode(z.to(vae.dtype)).sample.float()
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)

    def score(self, latents):
        """The resolution-free CameraScore of ``latents`` against the reference (differentiable)."""
        frames = self.decode(latents)
        h = self.estimator.estimate_tensor(frames)
        return camera_score_tensor(h, self.context.homographies, frames.shape[-1], frames.shape[-2])

    def apply(self, latents, state):
        import torch

        last = state.num_steps - 1
        if self.context is None or state.step >= last:
            return latents
        position = state.step / max(last - 1, 1)
        if not self.start <= position <= self.end or self.weight == 0:
            return latents
        started = time.perf_counter()
        x = latents.detach().clone()
        first = None
        for _ in range(self.iterations):
            with torch.enable_grad():
                x.requires_grad_(True)
                energy = self.score(x)
                (grad,) = torch.autograd.grad(energy, x)
            first = float(energy) if first is None else first
            rms = grad.pow(2).mean().sqrt()
            if not torch.isfinite(rms) or rms == 0:
                break  # the estimator could not read the frames: leave the step alone
            x = (x - self.weight * grad / rms).detach()
        self.history.append(
            {"step": state.step, "camera_score": first, "seconds": time.perf_counter() - started}
        )
        return x.to(latents.dtype)
