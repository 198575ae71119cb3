"""Make the README's pictures from real runs on the examples.

docs/images/demo.gif (reference | output of the homography method):

    cammimic run examples/reference.mp4 examples/scene.jpg -o out/demo --overwrite
    python examples/make_readme_gif.py out/demo

docs/images/demo-mini.gif (reference | weak video | CamMimic output on mini, the run of ``nox -s demo``):

    nox -s demo
    python examples/make_readme_gif.py out/demo-mini docs/images/demo-mini.gif

The run's ``side_by_side.mp4`` is resized to about 180 px high: halved for the homography run,
enlarged (bicubic) for mini's 64 px frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from cammimic.io import read_video, write_video

run = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo")
out = (
    Path(sys.argv[2])
    if len(sys.argv) > 2
    else Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.gif"
)
video = read_video(run / "side_by_side.mp4")
h, w = video.frames[0].shape[:2]
scale = 0.5 if h >= 360 else round(180 / h)
size = (int(round(w * scale)), int(round(h * scale)))
interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
frames = np.stack([cv2.resize(f, size, interpolation=interpolation) for f in video.frames])
written = write_video(out, frames, video.fps)
print(
    f"wrote {written} ({written.stat().st_size // 1024} KiB, {size[0]}x{size[1]}, {len(frames)} frames)"
)
