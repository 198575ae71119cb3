"""Homography guidance under every sampler: does the sampler keep the pull towards z_P?

A denoiser exact for Gaussian data (tests/gaussian_toy.py) runs through cammimic's own
``sample()`` with each offered sampler (ddim and dpm on zeroscope's schedule, unipc and euler on
Wan's flow schedule). Printed: the distance of the final latents to z_P relative to ‖z_P‖,
unguided → guided, and their ratio, for the guidance acting on x̂₀ before the step (default) and
on z_t after the step (the paper's literal update). Figures in
docs/method.md#guidance-under-every-sampler.

    python benchmarks/guidance_samplers.py
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch
    from gaussian_toy import distance_ratio

    from cammimic.guidance import homography_guidance

    torch.set_num_threads(1)
    cases = [("x0", 0.1), ("x0", 0.3), ("z_t", 0.02), ("z_t", 0.1)]
    for steps in (25, 50):
        print(f"{steps} steps | " + " | ".join(("ddim", "dpm", "unipc", "euler")))
        for acts_on, weight in cases:
            cells = []
            for sampler in ("ddim", "dpm", "unipc", "euler"):
                u, g = distance_ratio(
                    sampler, [homography_guidance(weight, acts_on=acts_on)], steps=steps
                )
                cells.append(f"{u:.2f} → {g:.2f} ({g / u:.3f})")
            print(f"{acts_on} λ_G {weight} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
