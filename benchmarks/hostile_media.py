"""Peak memory of `cammimic motion` on hostile media: tiny files that decode to gigabytes.

Makes the files of issue 8 §4 in a temporary folder, then runs `cammimic motion` on each in a
fresh process and reports the peak resident memory (``VmHWM`` of the child):

- ``long_1080p.mp4``: 400 black frames at 1920x1080 (H.264, a few dozen KB; 2.5 GB as RGB),
- ``canvas.gif``: 100 frames of a 1x1 image on a 4000x4000 canvas (about 1.2 KB; 4.8 GB),
- ``bomb16.png``: a 16-bit 14000x14000 PNG (a few hundred KB; 4.4 GiB as cv2 decodes it).

Before cammimic bounded its reads these reached 4.95 GB, 4.76 GB and 4.4 GiB. Target: every
run at most 1 GB. Figures in docs/benchmarks.md#hostile-media.

    python benchmarks/hostile_media.py [--record]
"""

from __future__ import annotations

import argparse
import platform
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 1 << 30


def make_canvas_gif(path, *, side: int = 4000, frames: int = 100) -> Path:
    """A GIF whose logical screen is ``side`` x ``side`` but whose frames are 1x1 pixel."""
    out = bytearray(b"GIF89a")
    out += struct.pack("<HHBBB", side, side, 0x80, 0, 0)  # global colour table of 2 entries
    out += b"\x00\x00\x00\xff\xff\xff"
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for k in range(frames):
        out += b"\x21\xf9\x04\x04" + struct.pack("<H", 4) + b"\x00\x00"  # 4 cs delay, keep
        out += b"\x2c" + struct.pack("<HHHHB", k % 2, 0, 1, 1, 0)
        out += b"\x02\x02\x44\x01\x00"  # LZW min code 2; clear, pixel 0, end
    out += b"\x3b"
    Path(path).write_bytes(bytes(out))
    return Path(path)


def make_long_video(path, *, frames: int = 400, width: int = 1920, height: int = 1080) -> Path:
    """An H.264 video of ``frames`` black frames: tiny on disk, huge decoded."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(black):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Path(path)


def make_png16_bomb(path, *, side: int = 14000) -> Path:
    """A 16-bit grayscale PNG of ``side`` x ``side`` zeros (compresses to almost nothing)."""
    raw = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (2 * side)
    data = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return Path(path)


# VmHWM (the peak resident set of this process image), not ru_maxrss: Linux carries
# ru_maxrss over from the parent across fork and exec, so a child of a big process
# would report the parent's peak.
_CHILD = """
import re, sys
from cammimic.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print("MAXRSS_KB", re.search(r"VmHWM:\\s*(\\d+) kB", status).group(1), file=sys.stderr)
sys.exit(code)
"""


def peak_rss(args: list[str], env: dict | None = None) -> tuple[int, int, str]:
    """``(exit code, peak RSS in bytes, last stderr line)`` of ``cammimic ARGS`` in a new process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env
    )
    match = re.search(r"MAXRSS_KB (\d+)", out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("MAXRSS_KB")]
    said = lines[-1] if lines and (out.returncode or not out.stdout.strip()) else out.stdout.strip()
    return out.returncode, int(match.group(1)) * 1024 if match else -1, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--record", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    started = time.perf_counter()
    video = make_long_video(tmp / "long_1080p.mp4")
    gif = make_canvas_gif(tmp / "canvas.gif")
    png = make_png16_bomb(tmp / "bomb16.png")
    print(
        f"made files in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{p.name} {p.stat().st_size / 1024:.1f} KB" for p in (video, gif, png))
    )
    runs = [
        (video, ["motion", str(video)]),
        (video, ["motion", str(video), "--frames", "16"]),
        (gif, ["motion", str(gif)]),
        (gif, ["motion", str(gif), "--frames", "16", "--width", "512", "--height", "512"]),
        (
            png,
            [
                "run",
                str(video),
                str(png),
                "-o",
                str(tmp / "out"),
                "--method",
                "homography",
                "--frames",
                "4",
                "--width",
                "256",
                "--height",
                "144",
            ],
        ),
    ]
    rows = []
    for path, cmd in runs:
        t0 = time.perf_counter()
        code, rss, last = peak_rss(cmd)
        seconds = time.perf_counter() - t0
        shown = "cammimic " + " ".join(
            a if not a.startswith(str(tmp)) else Path(a).name for a in cmd
        )
        last = last.replace(f"{tmp}/", "")
        rows.append((shown, path.stat().st_size, code, rss, seconds, last))
        print(
            f"{shown}: exit {code}, peak RSS {rss / 2**20:.0f} MiB, {seconds:.1f} s; {last[:160]}"
        )
    worst = max(r[3] for r in rows)
    print(
        f"worst peak RSS {worst / 2**20:.0f} MiB (target <= {LIMIT_BYTES / 2**20:.0f} MiB): "
        + ("OK" if worst <= LIMIT_BYTES else "OVER")
    )
    if args.record:
        table = [
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, CPU only, peak RSS of the whole "
            "`cammimic` process (`VmHWM`).",
            "",
            "| command | file size | exit | peak RSS (MiB) | time (s) | what it said |",
            "|---|---|---|---|---|---|",
        ]
        for shown, size, code, rss, seconds, last in rows:
            said = last.replace("|", "/")[:150]
            table.append(
                f"| `{shown}` | {size / 1024:.1f} KB | {code} | {rss / 2**20:.0f} | {seconds:.1f} | {said} |"
            )
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text()
        block = "<!-- hostile-media:begin -->\n" + "\n".join(table) + "\n<!-- hostile-media:end -->"
        text = re.sub(
            r"<!-- hostile-media:begin -->.*<!-- hostile-media:end -->",
            lambda _: block,
            text,
            flags=re.S,
        )
        doc.write_text(text)
        print(f"recorded in {doc}")
    if worst > LIMIT_BYTES:
        sys.exit(1)


if __name__ == "__main__":
    main()
