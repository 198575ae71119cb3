"""Homography guidance, masked or not: how close the sampled latents end up to the weak video's.

Runs Phase 2 sampling on the tiny random-weight zeroscope-layout model (the tests' model) for a
real photograph under a known pan, and prints the mean squared distance of the final latents to
z_P in view and out of view, for no guidance, masked and unmasked guidance. Figures in
docs/method.md#guidance-terms.

    python benchmarks/guidance.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from cammimic_unet3d.random_weights import save_components
    from conftest import clip, photo

    from cammimic.guidance import homography_guidance
    from cammimic.homography import warp_along_chain
    from cammimic.plugins import get_host
    from cammimic.sampling import latent_mask, sample

    torch.set_num_threads(1)
    weights = save_components(Path(tempfile.mkdtemp()))
    backbone = (
        get_host().create("backbone", "zeroscope", {"weights": str(weights)}).load(device="cpu")
    )
    _, h = clip("pan", 64, 64, frames=8)
    image = cv2.resize(photo("coffee"), (64, 64), interpolation=cv2.INTER_AREA)
    weak, masks = warp_along_chain(image, h)
    target = backbone.encode_video(weak)
    mask = latent_mask(masks, backbone.vae_scale_factor)

    def distance(latents, where):
        where = where.expand_as(latents).bool()
        return (latents - target)[where].pow(2).mean().item()

    print(f"valid latent fraction {mask.mean().item():.3f}")
    cases = {
        "none": [],
        # the paper's literal update on z_t, as the table in docs/method.md was measured
        "masked 0.02": [homography_guidance(0.02, acts_on="z_t")],
        "unmasked 0.02": [homography_guidance(0.02, masked=False, acts_on="z_t")],
        "masked 0.1": [homography_guidance(0.1, acts_on="z_t")],
        "unmasked 0.1": [homography_guidance(0.1, masked=False, acts_on="z_t")],
        "noised 0.1": [homography_guidance(0.1, compare="noised", acts_on="z_t")],
        "x0 default": [homography_guidance()],
    }
    for name, terms in cases.items():
        z = sample(
            backbone,
            "a cup of coffee",
            num_frames=8,
            width=64,
            height=64,
            steps=10,
            guidance_scale=5.0,
            seed=0,
            guidance_terms=terms,
            target=target,
            mask=mask,
            progress=False,
        )
        print(
            f"{name:15s} in view {distance(z, mask > 0.5):.3f}  out of view {distance(z, mask < 0.5):.3f}"
        )


if __name__ == "__main__":
    main()
