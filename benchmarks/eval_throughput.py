"""Throughput of `cammimic eval` with the homography method: local executor vs Ray with 2 workers.

    python benchmarks/eval_throughput.py [--items 50]

Renders N (reference, image) pairs of scikit-image photographs at 64x64, 8 frames, with known
camera motion, then times `evaluate` locally and on a locally started Ray (num_cpus=2).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=50)
    args = ap.parse_args()
    from test_eval import photo_pairs

    from cammimic.config import load_config
    from cammimic.eval import evaluate

    with tempfile.TemporaryDirectory() as d:
        manifest = photo_pairs(Path(d) / "pairs", args.items)
        config = load_config()
        print(
            f"{args.items} items, 64x64x8, homography; {platform.machine()}, {os.cpu_count()} cores"
        )
        for executor in ("local", "ray"):
            t = time.perf_counter()
            res = evaluate(
                manifest,
                Path(d) / executor,
                methods="homography",
                config=config,
                executor=executor,
                ray_num_cpus=2,
                progress=False,
                echo=lambda s: None,
            )
            sec = time.perf_counter() - t
            print(
                f"| {executor} | {res['ran']} | {res['failed']} | {sec:.1f} | {res['ran'] / sec:.2f} |"
            )


if __name__ == "__main__":
    main()
