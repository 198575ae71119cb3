"""How far into the valid region the weak video's black fill reaches through the VAE encoder.

Homography guidance pulls only latent cells the latent mask calls valid
(:func:`cammimic.sampling.latent_mask`). A min-pool over f x f pixel cells calls a cell valid when
every pixel under it is, but the encoder's convolutions see past the cell's own pixels: a cell
beside the fill encodes some of the fill. This encodes a real photograph (scikit-image's
astronaut) with part of it filled black, as a weak video's uncovered area is, and the same
photograph without the fill, and reports for the min-pool's valid cells, by their distance in
latent cells to the nearest invalid one (Chebyshev, the distance an erosion by a (2k+1) window
removes), the largest change relative to the latents' std (over channels, and over the cells at
that distance) and the share of cells changed by more than 1 %, 5 % and 10 % of the std.
Figures in docs/method.md#the-latent-mask-and-the-vaes-receptive-field.

    python benchmarks/mask_erode.py                     # the tiny test VAE, and mini's shipped VAE if any
    python benchmarks/mask_erode.py --mini-weights DIR  # a mini bundle from `python -m cammimic_mini.lab.train --export DIR`

The figures in docs/method.md were measured on mini's step-3,000 bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

THRESHOLDS = (0.01, 0.05, 0.10)
MAX_DISTANCE = 4


def fills(size: int, factor: int) -> dict[str, np.ndarray]:
    """Pixel validity masks (True = image) of the shapes a weak video leaves: a pan's strip, a
    corner, a zoom-out's frame; boundaries on and off the latent grid."""
    h = w = size
    half, quarter = w // 2, w // 4
    off = half + factor // 2  # a boundary inside a latent cell
    masks = {}
    m = np.ones((h, w), bool)
    m[:, half:] = False
    masks["right half"] = m
    m = np.ones((h, w), bool)
    m[:, w - quarter :] = False
    masks["right quarter"] = m
    m = np.ones((h, w), bool)
    m[:, off:] = False
    masks["right, off-grid"] = m
    m = np.ones((h, w), bool)
    m[h - quarter :, :] = False
    m[:, w - quarter :] = False
    masks["bottom + right"] = m
    m = np.zeros((h, w), bool)
    m[quarter : h - quarter, quarter : w - quarter] = True
    masks["zoom-out frame"] = m
    return masks


@torch.no_grad()
def encode(vae, image: np.ndarray) -> torch.Tensor:
    """Posterior mean x scaling factor of a uint8 image, ``(C, h, w)`` (as ``encode_video``)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return vae.encode(x).latent_dist.mean[0] * vae.config.scaling_factor


class FrozenGlobalPaths:
    """The encoder with its two global paths held at a clean image's values: every GroupNorm
    normalises with the statistics it saw on the clean image, and every attention adds the
    update it made there. What is left (convolutions, pointwise maps) is local, so the change it
    shows is the fill's reach through the convolutions' receptive field alone."""

    def __init__(self, vae, paths=("norm", "attention")):
        self.vae, self.paths, self.recording, self.saved, self.patched = vae, paths, True, {}, []

    def __enter__(self):
        from diffusers.models.attention_processor import Attention

        for name, module in self.vae.encoder.named_modules():
            if isinstance(module, Attention) and "attention" in self.paths:
                self._patch(name, module, self._attention)
            elif (
                isinstance(module, torch.nn.GroupNorm)
                and "norm" in self.paths
                and ".attentions." not in name
            ):
                self._patch(
                    name, module, self._group_norm
                )  # (an attention's own norm goes with it)
        return self

    def __exit__(self, *exc):
        for module, forward in self.patched:
            module.forward = forward

    def _patch(self, name, module, wrapper):
        original = module.forward
        self.patched.append((module, original))
        module.forward = lambda x, *a, **k: wrapper(name, module, original, x, *a, **k)

    def _group_norm(self, name, module, original, x):
        n, c = x.shape[:2]
        g = x.reshape(n, module.num_groups, -1)
        if self.recording:
            self.saved[name] = (g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True))
        mean, var = self.saved[name]
        y = ((g - mean) / torch.sqrt(var + module.eps)).reshape_as(x)
        shape = (1, c) + (1,) * (x.ndim - 2)
        return y * module.weight.reshape(shape) + module.bias.reshape(shape)

    def _attention(self, name, module, original, x, *args, **kwargs):
        if self.recording:
            self.saved[name] = original(x, *args, **kwargs) - x
        return x + self.saved[name]


def changes(
    vae, image: np.ndarray, filled: np.ndarray, std: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per latent cell, the largest change over channels relative to ``std``: as the VAE is, and
    with its global paths frozen at the unfilled image's values."""
    clean = encode(vae, image)
    whole = ((encode(vae, filled) - clean).abs().amax(dim=0) / std).numpy()
    with FrozenGlobalPaths(vae) as frozen:
        reference = encode(vae, image)
        frozen.recording = False
        local = ((encode(vae, filled) - reference).abs().amax(dim=0) / std).numpy()
    return whole, local


def distance_to_invalid(valid: np.ndarray) -> np.ndarray:
    """Chebyshev distance of each latent cell to the nearest invalid one (0 on invalid cells)."""
    import cv2

    big = np.where(valid, 1, 0).astype(np.uint8)
    # cv2's DIST_C is the chessboard (Chebyshev) distance; pad with valid so the edge is not a wall
    padded = cv2.copyMakeBorder(big, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    d = cv2.distanceTransform(padded, cv2.DIST_C, 3)[1:-1, 1:-1]
    return np.rint(d).astype(int)


def measure(vae, factor: int, size: int, name: str) -> None:
    import cv2
    from skimage import data

    from cammimic.sampling import latent_mask

    image = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    std = float(encode(vae, image).std())
    print(
        f"\n{name}: {size}x{size} pixels -> {size // factor}x{size // factor} latents, factor {factor}, "
        f"latent std {std:.3f}"
    )
    columns = " ".join(f"{'>' + format(t, '.0%'):>5}" for t in THRESHOLDS)
    print(f"{'':<16} {'':>3} {'':>5} {'as the VAE is':^30}   {'global paths frozen':^30}")
    print(
        f"{'fill':<16} {'d':>3} {'cells':>5} {'mean':>6} {'max':>6} {columns}   {'mean':>6} {'max':>6} {columns}"
    )
    for label, pixels in fills(size, factor).items():
        filled = image.copy()
        filled[~pixels] = 0
        whole, local = changes(vae, image, filled, std)
        valid = latent_mask(pixels[None], factor)[0, 0, 0].numpy() > 0.5
        dist = distance_to_invalid(valid)
        for d in range(1, MAX_DISTANCE + 1):
            at = dist == d if d < MAX_DISTANCE else dist >= d
            if not at.any():
                continue
            row = []
            for change in (whole, local):
                c = change[at]
                row.append(
                    f"{float(c.mean()):>6.3f} {float(c.max()):>6.3f} "
                    + " ".join(f"{float((c > t).mean()):>5.0%}" for t in THRESHOLDS)
                )
            print(
                f"{label:<16} {('>=' if d == MAX_DISTANCE else '') + str(d):>3} {int(at.sum()):>5} "
                + "   ".join(row)
            )


@torch.no_grad()
def global_paths(vae, factor: int, size: int, name: str) -> None:
    """Which global path moves the cells 3 or more latent cells from the fill, and how much of it
    is one offset per channel: mean |change| over channels and those cells, relative to the std."""
    import cv2
    from skimage import data

    from cammimic.sampling import latent_mask

    image = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    std = float(encode(vae, image).std())
    print(f"\n{name}, {size}x{size}: cells >= 3 from the fill, mean |dz| / std")
    print(
        f"{'fill':<16} {'as is':>7} {'offset removed':>15} {'norms frozen':>13} {'attention frozen':>17}"
    )
    for label, pixels in fills(size, factor).items():
        filled = image.copy()
        filled[~pixels] = 0
        far = torch.from_numpy(
            distance_to_invalid(latent_mask(pixels[None], factor)[0, 0, 0].numpy() > 0.5) >= 3
        )
        dz = (encode(vae, filled) - encode(vae, image))[:, far]  # (C, cells)
        row = [
            float(dz.abs().mean()) / std,
            float((dz - dz.mean(1, keepdim=True)).abs().mean()) / std,
        ]
        for paths in (("norm",), ("attention",)):
            with FrozenGlobalPaths(vae, paths) as frozen:
                reference = encode(vae, image)
                frozen.recording = False
                row.append(float((encode(vae, filled) - reference)[:, far].abs().mean()) / std)
        print(f"{label:<16} {row[0]:>7.3f} {row[1]:>15.3f} {row[2]:>13.3f} {row[3]:>17.3f}")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--mini-weights",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "adapters" / "cammimic_mini" / "weights",
        help="a mini bundle (diffusers layout); default: the one shipped in the package",
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from cammimic_unet3d.random_weights import build_components
    from diffusers import AutoencoderKL

    tiny = build_components("tiny", seed=0)["vae"]
    for size in (128, 256):
        measure(tiny, 8, size, "tiny test VAE (random weights)")
    mini_dir = args.mini_weights / "vae"
    if not (mini_dir / "config.json").is_file():
        print(
            f"mini's VAE is not at {mini_dir}: pass --mini-weights DIR with a bundle from "
            "`python -m cammimic_mini.lab.train --export DIR` to measure it too"
        )
        return 0
    mini = AutoencoderKL.from_pretrained(mini_dir).eval()
    for size in (64, 128):
        measure(mini, 4, size, "mini's VAE (trained)")
    global_paths(mini, 4, 64, "mini's VAE (trained)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
