"""Time of one denoiser forward pass (8 frames) of the tiny random-weight zeroscope-layout model.

Replaces the timed unit test ``test_8_frame_forward_is_fast`` (flaky on shared CPUs): the figure
is measured here and recorded in docs/benchmarks.md instead of asserted. Builds the tests' tiny
model (``cammimic_unet3d.random_weights``, preset ``tiny``), loads it the way a run does
(plugin host -> ``zeroscope`` adapter -> ``load``) and times ``predict_noise`` on seeded latents
``(1, C, frames, size, size)`` after one warm-up pass; prints the median and the fastest of
``--repeats`` passes.

    python benchmarks/forward.py [--frames 8 --size 8 --repeats 20 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=8, help="latent height and width")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from cammimic_unet3d.random_weights import save_components

    from cammimic.plugins import PluginHost

    with tempfile.TemporaryDirectory() as tmp:
        weights = save_components(Path(tmp) / "tiny", preset="tiny", seed=0)
        backbone = PluginHost().load().create("backbone", "zeroscope").load(weights, device="cpu")
        g = torch.Generator().manual_seed(0)
        z = torch.randn(1, backbone.latent_channels, args.frames, args.size, args.size, generator=g)
        t = torch.tensor(500)
        e = backbone.encode_prompt(["a camera pans over a city"])
        times = []
        with torch.no_grad():
            backbone.predict_noise(z, t, e)  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                backbone.predict_noise(z, t, e)
                times.append(time.perf_counter() - start)
    print(
        f"tiny zeroscope-layout denoiser, {args.frames} frames x {args.size}x{args.size} latents, "
        f"{args.threads} thread(s), {args.repeats} passes"
    )
    print(
        f"forward: median {statistics.median(times) * 1000:.1f} ms, fastest {min(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
