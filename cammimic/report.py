"""The run report: ``report.html`` in every run directory, and the pieces other reports reuse.

The page opens from disk (``file://``) with no server and no network: videos and the trajectory
plot are linked by relative path (they sit next to it), the loss curves are drawn here and
embedded as a PNG data URI, and everything else is plain HTML tables.

Building blocks (each returns an HTML fragment, escaped): :func:`page`, :func:`section`,
:func:`videos`, :func:`figure`, :func:`table`, :func:`key_values`, :func:`loss_curves`,
:func:`score_rows`, :func:`provenance_rows`; and readers :func:`read_losses` and
:func:`read_json`. :func:`write_run_report` assembles them for one run directory.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "page",
    "section",
    "videos",
    "candidates",
    "figure",
    "table",
    "key_values",
    "loss_curves",
    "loss_curves_png",
    "score_rows",
    "provenance_rows",
    "read_losses",
    "read_json",
    "write_run_report",
    "REPORT_NAME",
]

REPORT_NAME = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top} th{background:#f5f5f5}
td.k{font-family:ui-monospace,monospace;color:#555;white-space:nowrap} .row{display:flex;gap:1em;flex-wrap:wrap}
figure{margin:0} figcaption{font-size:.85em;color:#555} video,img{max-width:100%;border:1px solid #ccc}
video{min-width:min(100%,720px);image-rendering:pixelated}
.bad{color:#b00020;font-weight:600} .good{color:#11772d;font-weight:600} .note{font-size:.85em;color:#666}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str], *, subtitle: str = "") -> str:
    """A whole HTML document: ``title``, an optional subtitle, then the ``body`` fragments."""
    sub = f'<p class="sub">{_e(subtitle)}</p>' if subtitle else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f"<body><h1>{_e(title)}</h1>{sub}\n" + "\n".join(body) + "\n</body></html>\n"
    )


def section(title: str, *fragments: str, anchor: str | None = None) -> str:
    """A titled section (``<h2>``) holding the fragments."""
    aid = f' id="{_e(anchor)}"' if anchor else ""
    return f"<section{aid}><h2>{_e(title)}</h2>" + "".join(fragments) + "</section>"


def videos(items: Sequence[tuple[str, str]], *, width: int | None = None) -> str:
    """Videos side by side: ``(caption, src)`` pairs, ``src`` relative to the report."""
    style = f' style="width:{int(width)}px;min-width:0"' if width else ""  # several fit on a row
    cells = [
        f'<figure><video src="{_e(src)}" controls loop muted autoplay playsinline{style}></video>'
        f'<figcaption>{_e(cap)} · <a href="{_e(src)}">{_e(src)}</a></figcaption></figure>'
        for cap, src in items
    ]
    return '<div class="row">' + "".join(cells) + "</div>"


def figure(src: str, caption: str = "", *, alt: str = "") -> str:
    """An image (a relative path or a ``data:`` URI) with a caption."""
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{_e(src)}" alt="{_e(alt or caption)}">{cap}</figure>'


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        return _e(text if len(text) <= 300 else text[:297] + "…")
    return _e(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table; floats as 6 significant digits, dicts and lists as (shortened) JSON."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(rows: Iterable[tuple[str, Any]], *, marks: dict[str, str] | None = None) -> str:
    """A two-column table of ``(key, value)``; ``marks`` maps a key to a CSS class (``good``/``bad``)."""
    marks = marks or {}
    body = "".join(
        f'<tr><td class="k">{_e(k)}</td><td class="{_e(marks.get(k, ""))}">{_cell(v)}</td></tr>'
        for k, v in rows
    )
    return f"<table><tbody>{body}</tbody></table>"


def read_json(path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_losses(path) -> list[dict[str, float | None]]:
    """The rows of a ``losses.csv`` as dicts of floats (None for empty cells); [] when missing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, float | None] = {}
        for k, v in raw.items():
            try:
                row[k] = float(v) if v not in ("", None) else None
            except ValueError:
                row[k] = None
        rows.append(row)
    return rows


#: Which terms each stage's plot shows (losses.csv columns).
LOSS_TERMS = {1: ("loss", "temporal", "spatial"), 2: ("loss", "spatial", "ortho")}


def loss_curves_png(rows: Sequence[dict[str, float | None]]) -> bytes | None:
    """PNG of the finetuning losses: stage 1 (L1, L_temporal, L_spatial), stage 2 (L2, L_spatial)
    and the orthogonality term L_ortho of both stages on its own axis (log where positive).
    None without rows."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.0), constrained_layout=True)
    titles = ("stage 1: reference video", "stage 2: user image", "orthogonality term |L_ortho|")
    for ax, t in zip(axes, titles):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for stage, ax in ((1, axes[0]), (2, axes[1])):
        sel = [r for r in rows if r.get("stage") == stage]
        for term in LOSS_TERMS[stage]:
            if term == "ortho":
                continue
            pts = [
                (r["step"], r[term])
                for r in sel
                if r.get(term) is not None and r.get("step") is not None
            ]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=term)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5, 0.5, "no steps", ha="center", va="center", transform=ax.transAxes, color="#888"
            )
    for stage in (1, 2):  # logged in both stages; part of the loss in stage 2
        ortho = [
            (r["step"], abs(r["ortho"]))
            for r in rows
            if r.get("stage") == stage and r.get("ortho") is not None and r.get("step") is not None
        ]
        if ortho:
            axes[2].plot(*zip(*ortho), marker=".", color=f"C{stage + 1}", label=f"stage {stage}")
    if axes[2].lines:
        if all(v > 0 for line in axes[2].lines for v in line.get_ydata()):
            axes[2].set_yscale("log")
        axes[2].legend(fontsize=8)
    else:
        axes[2].text(
            0.5,
            0.5,
            "not logged",
            ha="center",
            va="center",
            transform=axes[2].transAxes,
            color="#888",
        )
    buf = io.BytesIO()
    fig.savefig(buf, dpi=90, format="png")
    plt.close(fig)
    return buf.getvalue()


def loss_curves(rows: Sequence[dict[str, float | None]]) -> str:
    """The loss curves (see :func:`loss_curves_png`) as an embedded image, plus the last step of each stage."""
    png = loss_curves_png(rows)
    if png is None:
        return '<p class="note">No finetuning in this run.</p>'
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    last = []
    for stage in (1, 2):
        sel = [r for r in rows if r.get("stage") == stage]
        if sel:
            last.append(
                [
                    stage,
                    int(sel[-1].get("step") or 0),
                    *(sel[-1].get(t) for t in ("loss", "temporal", "spatial", "ortho")),
                ]
            )
    return figure(uri, "finetuning losses from losses.csv", alt="loss curves") + table(
        ["stage", "last step", "loss", "temporal", "spatial", "ortho"], last
    )


def score_rows(
    score: dict[str, Any], manifest: dict[str, Any] | None = None
) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """CameraScore, its variants and every validity/fallback figure present (read with ``.get``).

    Returns ``(rows, marks)`` for :func:`key_values`; a ``valid`` field marks good/bad.
    """
    manifest = manifest or {}
    rows: list[tuple[str, Any]] = []
    skip = {"per_pair", "reference", "generated"}
    for k, v in score.items():
        if k not in skip:
            rows.append((k, v))
    per_pair = score.get("per_pair")
    if isinstance(per_pair, list) and per_pair:
        finite = [float(x) for x in per_pair if isinstance(x, (int, float))]
        if finite:
            rows.append(
                (
                    "per_pair (min / median / max)",
                    f"{min(finite):.3g} / {sorted(finite)[len(finite) // 2]:.3g} / {max(finite):.3g}",
                )
            )
    for side in ("reference", "generated"):
        sub = score.get(side)
        if isinstance(sub, dict):
            for k, v in sub.items():
                if k != "source":
                    rows.append((f"{side}.{k}", v))
    fallbacks = manifest.get("fallbacks")
    if fallbacks is not None and not any(k == "fallbacks" for k, _ in rows):
        rows.append(
            (
                "reference fallbacks (run.json)",
                len(fallbacks) if isinstance(fallbacks, list) else fallbacks,
            )
        )
    marks = {}
    for k, v in rows:
        if isinstance(v, bool) and ("valid" in k):
            marks[k] = "good" if v else "bad"
    return rows, marks


def candidates(entries: Sequence[dict[str, Any]]) -> str:
    """A best-of-N run's candidates side by side (``video`` relative to the report) and a table of
    their seed, CameraScore, validity, scene figures and seconds; the kept one is marked."""
    clips, rows = [], []
    for c in entries:
        valid = bool(c.get("camera_score_valid"))
        score = c.get("camera_score")
        figure = (
            f"CameraScore {score:.4g}"
            if valid and isinstance(score, (int, float))
            else "CameraScore invalid"
        )
        kept = " · kept" if c.get("kept") else ""
        if c.get("video"):
            clips.append((f"seed {c.get('seed')} · {figure}{kept}", str(c["video"])))
        rows.append(
            [
                c.get("seed"),
                score,
                valid,
                c.get("camera_score_reason") or "",
                c.get("psnr_first"),
                c.get("ssim_first"),
                c.get("psnr_in_view"),
                c.get("seconds"),
                "kept" if c.get("kept") else "",
            ]
        )
    head = [
        "seed",
        "CameraScore",
        "valid",
        "why invalid",
        "PSNR first (dB)",
        "SSIM first",
        "PSNR in view (dB)",
        "seconds",
        "",
    ]
    return videos(clips, width=256) + table(head, rows)


def _flatten(data: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        for k, v in data.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, data


def provenance_rows(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """run.json flattened to ``(dotted.key, value)`` rows; long lists shortened."""
    return list(_flatten(manifest))


def write_run_report(run_dir, *, title: str | None = None) -> Path:
    """Write ``report.html`` into a run directory from the files there (run.json, score.json,
    losses.csv, side_by_side.mp4, output.mp4, weak.mp4, trajectory.png). Returns its path."""
    d = Path(run_dir)
    manifest = read_json(d / "run.json") or {}
    score = read_json(d / "score.json")
    method = manifest.get("method", "?")
    ref = manifest.get("reference") or {}
    ref_name = (ref.get("camera") or {}).get("spec") or ref.get("path", "?")
    image = (manifest.get("image") or {}).get("path", "?")
    body = []
    clips = []
    if (d / "side_by_side.mp4").exists():
        caption = (
            "reference | weak video | output" if (d / "weak.mp4").exists() else "reference | output"
        )
        clips.append((caption, "side_by_side.mp4"))
    elif (d / "weak.mp4").exists():
        clips.append(("weak video (the user image along the reference's homographies)", "weak.mp4"))
    if clips:
        body.append(section("Videos", videos(clips), anchor="videos"))
    if manifest.get("candidates"):
        body.append(
            section(
                "Candidates (best of N; lowest valid CameraScore kept)",
                candidates(manifest["candidates"]),
                anchor="candidates",
            )
        )
    if (d / "trajectory.png").exists():
        body.append(
            section(
                "Camera trajectory",
                figure("trajectory.png", "cumulative pan, tilt, zoom and roll"),
                anchor="trajectory",
            )
        )
    if score is not None:
        rows, marks = score_rows(score, manifest)
        body.append(
            section("CameraScore (lower is better)", key_values(rows, marks=marks), anchor="score")
        )
    if (d / "losses.csv").exists():
        body.append(
            section(
                "Finetuning losses", loss_curves(read_losses(d / "losses.csv")), anchor="losses"
            )
        )
    files = sorted(
        p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.name != REPORT_NAME
    )
    body.append(
        section(
            "Files",
            "<p>" + " · ".join(f'<a href="{_e(f)}">{_e(f)}</a>' for f in files) + "</p>",
            anchor="files",
        )
    )
    body.append(
        section("Provenance (run.json)", key_values(provenance_rows(manifest)), anchor="provenance")
    )
    sub = (
        f"method {method} · reference {ref_name} · image {image} · {manifest.get('num_frames', '?')} frames at "
        f"{manifest.get('width', '?')}x{manifest.get('height', '?')} · seed {manifest.get('seed', '?')} · "
        f"cammimic {manifest.get('cammimic_version', '?')}"
    )
    out = d / REPORT_NAME
    out.write_text(page(title or f"cammimic run: {d.name}", body, subtitle=sub), encoding="utf-8")
    return out
