"""How much is a caption's motion *direction* worth to the denoising loss?

mini learned its content words fast and its direction words not at all (docs/mini.md). This
computes, exactly where it can and by seeded Monte Carlo where it cannot, what a perfect model
gains from the direction words, on data for which the Bayes-optimal denoiser is known in closed
form: stationary Gaussian fields (white noise smoothed by a Gaussian of ``--sigma`` latent pixels)
panned left or right by ``--speed`` latent pixels per frame, at mini's latent size and frame
count, noised with zeroscope's schedule.

For each timestep it prints the noise-prediction (epsilon) error of

* the *caption-aware* model, which knows the direction: the Wiener filter of that direction's
  covariance, ``sqrt(1 - a) (a C + (1 - a) I)^-1 x_t``;
* the *caption-blind* model, which must read the direction from the noisy latents: the posterior
  mixture of the two Wiener filters, weighted by each direction's likelihood of ``x_t``;

their relative gap (what the direction words are worth at that noise level), and how sure the
blind model is of a direction from ``x_t`` alone (mean ``|w - 1/2|``; 0.5 means certain). Then
the gap's share of the whole epsilon loss a trainer sees (uniform timesteps, min-SNR-5
weights), the figure that says how strong a learning signal the direction words get.

    python benchmarks/mini_direction_signal.py                  # mini's sizes: 16x16 latents, 8 frames
    python benchmarks/mini_direction_signal.py --speed 2 --sigma 1.5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: Largest clip (frames x size x size) whose dense covariance the script inverts: 8 x 16 x 16 is mini's.
MAX_DIM = 4096
TIMESTEPS = (10, 50, 100, 200, 300, 500, 600, 700, 800, 850, 900, 950, 980, 999)


def clip_operator(size: int, frames: int, speed: float, sigma: float, direction: int) -> np.ndarray:
    """The linear map from a white field to a clip, ``(frames * size * size, big * big)``: the
    field smoothed by a Gaussian, each frame a bilinear crop moved ``direction * speed`` px per frame."""
    big = size + int(np.ceil(speed * (frames - 1))) + 2
    radius = int(np.ceil(3 * sigma))
    k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    k /= np.sqrt((k**2).sum())  # unit variance after the separable (2-D) blur
    blur = np.zeros((big, big))  # 1-D blur matrix on an open line (edge taps dropped)
    for i in range(big):
        for j, w in zip(range(i - radius, i + radius + 1), k):
            if 0 <= j < big:
                blur[i, j] = w
    rows = []
    start = (big - size - speed * (frames - 1)) / 2
    for f in range(frames):
        x0 = start + (speed * f if direction > 0 else speed * (frames - 1 - f))
        i0, frac = int(np.floor(x0)), x0 - np.floor(x0)
        shift = np.zeros((size, big))
        for x in range(size):
            shift[x, i0 + x] += 1 - frac
            if i0 + x + 1 < big:
                shift[x, i0 + x + 1] += frac
        y0 = (big - size) // 2
        rows.append(
            np.kron(blur[y0 : y0 + size], shift @ blur)
        )  # (size*size, big*big), rows then columns
    return np.concatenate(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=16, help="latent side (mini: 16)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument(
        "--speed", type=float, default=0.64, help="latent px per frame (mini's normal pan: 0.64)"
    )
    p.add_argument("--sigma", type=float, default=1.0, help="the fields' smoothness, latent px")
    p.add_argument("--samples", type=int, default=1000, help="Monte Carlo clips per timestep")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("size", "frames", "samples"):
        if getattr(args, name) < 2:
            p.error(f"--{name} must be at least 2, got {getattr(args, name)}")
    if not (args.speed > 0 and args.sigma > 0):
        p.error(f"--speed and --sigma must be positive, got {args.speed} and {args.sigma}")
    if args.frames * args.size**2 > MAX_DIM:
        p.error(
            f"--frames x --size^2 must be at most {MAX_DIM} (dense {MAX_DIM}x{MAX_DIM} covariances), "
            f"got {args.frames * args.size**2}: lower --size or --frames"
        )

    from cammimic_unet3d.random_weights import SCHEDULER_CONFIG
    from diffusers import DDPMScheduler

    t0 = time.perf_counter()
    alphas = DDPMScheduler.from_config(SCHEDULER_CONFIG).alphas_cumprod.double().numpy()
    ops = {d: clip_operator(args.size, args.frames, args.speed, args.sigma, d) for d in (1, -1)}
    covs = {d: a @ a.T for d, a in ops.items()}
    eye = np.eye(covs[1].shape[0])
    rng = np.random.default_rng(args.seed)
    print(
        f"Gaussian fields (sigma {args.sigma} latent px), {args.frames} frames of {args.size}x{args.size}, "
        f"panned +-{args.speed} latent px per frame; zeroscope's schedule; {args.samples} clips per timestep"
    )
    print(f"{'t':>4} {'a_t':>8} {'aware':>9} {'blind':>9} {'gap':>8} {'blind sure':>10}")
    gaps, aware_all = {}, {}
    for t in TIMESTEPS:
        a = float(alphas[t])
        inv, logdet = {}, {}
        for d, c in covs.items():
            s = a * c + (1 - a) * eye
            inv[d] = np.linalg.inv(s)
            logdet[d] = np.linalg.slogdet(s)[1]
        direction = rng.choice([1, -1], size=args.samples)
        z = rng.standard_normal((args.samples, ops[1].shape[1]))
        x0 = np.where(direction[:, None] > 0, z @ ops[1].T, z @ ops[-1].T)
        eps = rng.standard_normal(x0.shape)
        xt = np.sqrt(a) * x0 + np.sqrt(1 - a) * eps
        hat = {d: np.sqrt(1 - a) * xt @ inv[d] for d in covs}  # inv is symmetric
        ll = {d: -0.5 * ((xt @ inv[d]) * xt).sum(1) - 0.5 * logdet[d] for d in covs}
        w = 1 / (1 + np.exp(np.clip(ll[-1] - ll[1], -50, 50)))  # posterior of +1
        blind = w[:, None] * hat[1] + (1 - w[:, None]) * hat[-1]
        own = np.where(direction[:, None] > 0, hat[1], hat[-1])
        e_aware, e_blind = ((own - eps) ** 2).mean(), ((blind - eps) ** 2).mean()
        gaps[t], aware_all[t] = e_blind - e_aware, e_aware
        print(
            f"{t:>4} {a:>8.4f} {e_aware:>9.5f} {e_blind:>9.5f} {100 * (e_blind - e_aware) / e_aware:>7.2f}% "
            f"{np.abs(w - 0.5).mean():>10.3f}"
        )
    # The share of the epsilon loss over uniform timesteps, min-SNR-5 weights, interpolated between the rows.
    ts = np.arange(1000)
    snr = alphas / (1 - alphas)
    weight = np.minimum(snr, 5.0) / snr
    known = np.array(TIMESTEPS)
    gap = np.interp(ts, known, [gaps[t] for t in known], left=0.0)
    loss = np.interp(ts, known, [aware_all[t] for t in known])
    share = float((weight * gap).sum() / (weight * loss).sum())
    print(
        f"the direction words' share of the epsilon loss (uniform t, min-SNR-5, t >= {known[0]}): "
        f"{100 * share:.2f} %   ({time.perf_counter() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
