"""Best of N (issue 25 §1): how CameraScore improves with the number of candidates.

One ``cammimic run --candidates M`` per base seed: one Phase 1, then M samplings with the seeds
``seed .. seed + M - 1``. ``--candidates N`` would have sampled the first N of them with the same
Phase 1 (candidate i's video does not depend on how many follow), so one run gives the whole curve:

* ``kept@N``: the score ``--candidates N`` keeps, the lowest valid score of the first N candidates;
* ``expected@N``: the mean kept score over every choice of N of the M candidates (exact, by
  counting subsets), less dependent on which seeds came first;
* ``none valid@N``: the share of those choices in which no candidate's score is valid.

With several ``--seeds`` (several Phase 1s) the figures are averaged over them. The cost is
printed too: Phase 1 seconds and seconds per candidate.

    python benchmarks/candidates.py REF.mp4 IMAGE.png --prompt "..." --reference-prompt "..." --weights DIR
    python benchmarks/candidates.py camera:pan-left IMAGE.png --prompt "..." --weights DIR --candidates 8 --seeds 0,1,2

Defaults are mini's own settings (``cammimic_mini.SAMPLING`` and ``RECIPE``, the ones
benchmarks/mini_method.py writes out: 8 frames at 64x64, ranks 8, 60 + 60 finetuning steps, 25
sampling steps without CFG, the kornia estimator); ``--config FILE`` and ``--backbone`` replace them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def kept_prefix(candidates: list[dict], n: int) -> float:
    """The score ``--candidates n`` keeps: the lowest valid score of the first n (nan if none valid)."""
    valid = [
        c["camera_score"]
        for c in candidates[:n]
        if c["camera_score_valid"] and c["camera_score"] is not None
    ]
    return min(valid) if valid else math.nan


def expected_best(candidates: list[dict], n: int) -> tuple[float, float]:
    """``(mean kept score, share with none valid)`` over every choice of n of the candidates.

    With the V valid scores sorted s_1 <= ... <= s_V and the I invalid ones last, the kept score
    of a random n-subset is s_k with probability C(M - k, n - 1) / C(M, n); none is valid with
    probability C(I, n) / C(M, n)."""
    m = len(candidates)
    scores = sorted(
        c["camera_score"]
        for c in candidates
        if c["camera_score_valid"] and c["camera_score"] is not None
    )
    invalid = m - len(scores)
    total = math.comb(m, n)
    none = math.comb(invalid, n) / total
    if none == 1.0:
        return math.nan, 1.0
    mean = sum(s * math.comb(m - k, n - 1) / total for k, s in enumerate(scores, start=1)) / (
        1.0 - none
    )
    return mean, none


def _mean(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def curve(runs: list[list[dict]], max_n: int) -> list[dict]:
    """One row per N: the figures above, averaged over the runs (one per base seed)."""
    rows = []
    for n in range(1, max_n + 1):
        expected = [expected_best(c, n) for c in runs]
        rows.append(
            {
                "n": n,
                "kept": _mean(kept_prefix(c, n) for c in runs),
                "expected": _mean(e[0] for e in expected),
                "none_valid": _mean(e[1] for e in expected),
            }
        )
    return rows


def _fmt(x: float, spec: str = ".4g") -> str:
    return "—" if not math.isfinite(x) else format(x, spec)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "reference", help="reference video, camera preset (camera:pan-left) or camera file"
    )
    p.add_argument("image", help="the user image")
    p.add_argument("--prompt", required=True, help="what the image shows (t_u)")
    p.add_argument("--reference-prompt", default="", help="what the reference shows (t_R)")
    p.add_argument("--weights", required=True, help="the backbone's weights folder (a mini bundle)")
    p.add_argument("--backbone", help="backbone name (default: the config's, mini)")
    p.add_argument("--config", help="a cammimic TOML config replacing mini's settings")
    p.add_argument(
        "--candidates", type=int, default=8, help="M, the most candidates, 2-64 (default: 8)"
    )
    p.add_argument(
        "--seeds", default="0", help="base seeds, comma-separated: one Phase 1 each (default: 0)"
    )
    p.add_argument(
        "--out", default="out/candidates", help="the run directories and results.json go here"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing run directories")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)

    from cammimic.errors import CammimicError

    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        print(
            f"Error: --seeds '{a.seeds}' must be whole numbers separated by commas, e.g. 0,1,2",
            file=sys.stderr,
        )
        return 2
    if not seeds or not 2 <= a.candidates <= 64:
        print("Error: give at least one seed and --candidates between 2 and 64", file=sys.stderr)
        return 2
    out = Path(a.out)
    try:
        import cammimic

        out.mkdir(parents=True, exist_ok=True)
        config = Path(a.config) if a.config else None
        # the name first: a new backbone drops the file's parameters of another one; without a config
        # file, mini and its own settings (applied by the backbone where nothing is set)
        backbone = a.backbone or (None if a.config else "mini")
        overrides = {
            **({"backbone__name": backbone} if backbone else {}),
            "backbone__weights": a.weights,
        }
        runs, records = [], []
        for seed in seeds:
            result = cammimic.transfer(
                a.reference,
                a.image,
                out / f"seed-{seed}",
                config=config,
                prompt=a.prompt,
                reference_prompt=a.reference_prompt,
                seed=seed,
                candidates=a.candidates,
                overwrite=a.overwrite,
                progress=not a.quiet,
                **overrides,
            )
            m = result.manifest
            cands = m["candidates"]
            runs.append(cands)
            records.append(
                {
                    "seed": seed,
                    "run": str(out / f"seed-{seed}"),
                    "phase1_seconds": (m.get("finetune") or {}).get("seconds"),
                    "candidates": [
                        {
                            k: c.get(k)
                            for k in (
                                "seed",
                                "camera_score",
                                "camera_score_valid",
                                "ssim_first",
                                "psnr_in_view",
                                "seconds",
                            )
                        }
                        for c in cands
                    ],
                }
            )
            print(
                f"base seed {seed}: Phase 1 {records[-1]['phase1_seconds'] or float('nan'):.1f} s; "
                + ", ".join(
                    f"seed {c['seed']} {_fmt(c['camera_score']) if c['camera_score_valid'] else 'invalid'}"
                    f" ({c.get('seconds') or float('nan'):.1f} s)"
                    for c in cands
                )
            )
    except CammimicError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    rows = curve(runs, a.candidates)
    print(
        f"\nCameraScore (resolution-free, lower is better) vs N: {len(seeds)} Phase 1(s) x {a.candidates} candidates"
    )
    print("N | kept (--candidates N) | expected over N-subsets | none valid")
    for r in rows:
        print(f"{r['n']} | {_fmt(r['kept'])} | {_fmt(r['expected'])} | {r['none_valid']:.0%}")
    sample_s = _mean(c.get("seconds") or math.nan for cands in runs for c in cands)
    phase1_s = _mean(r["phase1_seconds"] or math.nan for r in records)
    print(f"cost: Phase 1 {_fmt(phase1_s, '.1f')} s + N x {_fmt(sample_s, '.1f')} s per candidate")
    (out / "results.json").write_text(
        json.dumps(
            {
                "runs": records,
                "curve": rows,
                "phase1_seconds": phase1_s,
                "seconds_per_candidate": sample_s,
            },
            indent=2,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
