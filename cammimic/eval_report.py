"""The outputs of ``cammimic eval``: results.csv, summary.csv (bootstrap intervals), tradeoff.png, report.html."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cammimic.errors import CammimicError

#: Always in results.csv, whatever the metrics (``cammimic.eval.RESULT_COLUMNS`` too).
RESULT_COLUMNS = (
    "id",
    "method",
    "status",
    "error",
    "camera_score",
    "camera_score_paper",
    "valid",
    "reference_fallbacks",
    "output_fallbacks",
    "num_pairs",
    "seconds",
    "frames",
    "width",
    "height",
    "frame_indices",
)  # what the run used (issue 22 §5)
#: Lower is better for these columns; every other metric column is higher-is-better.
LOWER_IS_BETTER = ("camera_score", "camera_score_paper")
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    values, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (seeded: the same values give the same interval)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(samples, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _metric_columns(rows) -> list[str]:
    cols = []
    for r in rows:
        for k in r:
            if k not in RESULT_COLUMNS and k not in cols and k not in NOT_COLUMNS:
                cols.append(k)
    return cols


#: Keys of a pair file that are not results.csv columns (cammimic.eval records them for resuming).
NOT_COLUMNS = ("inputs",)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    text = str(v)
    # OWASP CSV injection: a text cell a spreadsheet would run as a formula starts with a quote
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(rows, columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r.get(c)) for c in columns})
    return buf.getvalue()


def summarize(rows, methods) -> list[dict[str, Any]]:
    """Per method: counts, and mean with a 95 % bootstrap interval of each metric.

    CameraScores are averaged over valid scores only; invalid ones are counted in ``n_invalid``.
    """
    metrics = ["camera_score", "camera_score_paper"] + _metric_columns(rows)
    out = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        ok = [r for r in mine if r["status"] == "ok"]
        valid = [r for r in ok if r.get("valid")]
        s: dict[str, Any] = {
            "method": m,
            "n": len(mine),
            "n_ok": len(ok),
            "n_failed": len(mine) - len(ok),
            "n_valid": len(valid),
            "n_invalid": len(ok) - len(valid),
        }
        for c in metrics:
            src = valid if c in LOWER_IS_BETTER else ok
            vals = [
                r.get(c) for r in src if r.get(c) is not None and math.isfinite(float(r.get(c)))
            ]
            lo, hi = bootstrap_interval(vals)
            s[c] = float(np.mean(vals)) if vals else float("nan")
            s[f"{c}_lo"], s[f"{c}_hi"] = lo, hi
        out.append(s)
    return out


def read_pair(path: Path, what: str = "pair file") -> dict[str, Any]:
    """A pair file's row (or another JSON object ``what``), or a one-line error naming the file."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CammimicError(
            f"{what} {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
            "delete it and run the eval again to redo it"
        ) from None
    if not isinstance(row, dict):
        raise CammimicError(
            f"{what} {path} does not hold a JSON object; delete it and run the eval again to redo it"
        )
    return row


def write_outputs(out: Path, items, methods, metrics, host) -> dict[str, Path]:
    from cammimic.io import write_text

    rows = []
    for item in items:
        for m in methods:
            f = out / "pairs" / item.id / f"{m}.json"
            if f.exists():
                rows.append(read_pair(f))
    columns = list(RESULT_COLUMNS) + _metric_columns(rows)
    files = {"results": write_text(out / "results.csv", _csv(rows, columns))}
    summary = summarize(rows, methods)
    scols = ["method", "n", "n_ok", "n_failed", "n_valid", "n_invalid"]
    for c in ["camera_score", "camera_score_paper"] + _metric_columns(rows):
        scols += [c, f"{c}_lo", f"{c}_hi"]
    files["summary"] = write_text(out / "summary.csv", _csv(summary, scols))
    files["tradeoff"] = plot_tradeoff(out / "tradeoff.png", summary)
    files["report"] = write_report(out, items, methods, rows, summary, scols)
    return files


def plot_tradeoff(path: Path, summary) -> Path:
    """CameraScore against scene preservation and against text alignment, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cammimic.io import atomic_path

    scene = next(
        (
            c
            for c in ("dinov2", "ssim_first")
            if any(math.isfinite(s.get(c, math.nan)) for s in summary)
        ),
        None,
    )
    text = next(
        (c for c in ("clip", "xclip") if any(math.isfinite(s.get(c, math.nan)) for s in summary)),
        None,
    )
    panels = [(scene, "scene preservation")] + ([(text, "text alignment")] if text else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for s in summary:
            x, y = s.get("camera_score", math.nan), s.get(col, math.nan) if col else math.nan
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            xerr = [[x - s["camera_score_lo"]], [s["camera_score_hi"] - x]]
            yerr = [[y - s[f"{col}_lo"]], [s[f"{col}_hi"] - y]]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=s["method"])
            ax.annotate(s["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("CameraScore (lower is better)")
        ax.set_ylabel(f"{label}: {col} (higher is better)" if col else label)
        ax.grid(alpha=0.3)
    fig.suptitle("cammimic eval: mean and 95% bootstrap interval per method")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_report(out: Path, items, methods, rows, summary, scols) -> Path:
    """report.html: the summary table, then per item the videos side by side (reference | each method)."""
    from cammimic.io import write_text

    by = {(r["id"], r["method"]): r for r in rows}
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>cammimic eval</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:12px}video{width:192px}.bad{color:#b00}figure{display:inline-block;margin:4px}"
        "figcaption{font-size:11px}</style>",
        "<h1>cammimic eval</h1><p>Summary: mean and 95 % bootstrap interval per method. CameraScore averages "
        "valid scores only; invalid ones are counted in n_invalid. <a href='eval.json'>eval.json</a>, "
        "<a href='results.csv'>results.csv</a>, <a href='summary.csv'>summary.csv</a>.</p>",
        "<img src='tradeoff.png' alt='trade-off plot'>",
        "<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in scols) + "</tr>",
    ]
    for s in summary:
        parts.append("<tr>" + "".join(f"<td>{e(_short(s.get(c)))}</td>" for c in scols) + "</tr>")
    parts.append("</table><h2>Items</h2>")
    for item in items:
        ref = os.path.relpath(item.reference, out)
        parts.append(f"<h3>{e(item.id)}: {e(item.prompt)}</h3><div>")
        parts.append(
            f"<figure><video src='{e(Path(ref).as_posix())}' controls loop muted autoplay></video>"
            f"<figcaption>reference: {e(item.reference_prompt)}</figcaption></figure>"
        )
        for m in methods:
            r = by.get((item.id, m))
            video = Path("runs") / item.id / m / "output.mp4"
            if r is None:
                cap = "not run"
            elif r["status"] != "ok":
                cap = f"<span class='bad'>failed: {e(r['error'])}</span>"
            else:
                score = (
                    f"CameraScore {_short(r.get('camera_score'))}"
                    if r.get("valid")
                    else f"<span class='bad'>CameraScore invalid ({r.get('output_fallbacks')} output / "
                    f"{r.get('reference_fallbacks')} reference fallbacks of {r.get('num_pairs')})</span>"
                )
                cap = score
            src = (
                f"<video src='{video.as_posix()}' controls loop muted autoplay></video>"
                if (out / video).exists()
                else ""
            )
            parts.append(f"<figure>{src}<figcaption><b>{e(m)}</b><br>{cap}</figcaption></figure>")
        parts.append("</div>")
    return write_text(out / "report.html", "\n".join(parts) + "\n")


def _short(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)
