"""Make the example inputs: a reference video with a clear camera move and a scene image.

Both come from public-domain photographs shipped with scikit-image:
- reference.mp4: SpaceX's DSCOVR launch photo (released into the public domain), seen by a
  virtual camera that pans right, zooms in and rolls a little; 24 frames at 12 fps, 384x256.
- scene.jpg: NASA's astronaut portrait of Eileen Collins (public domain), 512x512.
- reference_motion.json: the true frame-to-frame homographies of reference.mp4.

Run: python examples/make_examples.py   (needs scikit-image: pip install scikit-image)
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from cammimic.io import write_image, write_video
from cammimic.synthetic import camera_step, render_camera_motion

HERE = Path(__file__).parent
WIDTH, HEIGHT, FRAMES, FPS = 384, 256, 24, 12.0


def main() -> None:
    photo = cv2.resize(data.rocket(), (960, 640), interpolation=cv2.INTER_CUBIC)
    t = np.arange(FRAMES - 1)
    ease = np.sin(np.pi * (t + 0.5) / (FRAMES - 1))  # start and end gently, like an operator
    homographies = np.stack(
        [
            camera_step(WIDTH, HEIGHT, dx=-4.0 * e, dy=0.8 * e, zoom=1 + 0.009 * e, roll=0.25 * e)
            for e in ease
        ]
    )
    frames = render_camera_motion(photo, homographies, WIDTH, HEIGHT)
    write_video(HERE / "reference.mp4", frames, FPS, crf=20)
    write_image(HERE / "scene.jpg", data.astronaut(), quality=90)
    truth = {
        "width": WIDTH,
        "height": HEIGHT,
        "convention": "H[i] maps pixel coordinates of frame i to frame i+1; H[2][2] = 1",
        "homographies": homographies.tolist(),
    }
    (HERE / "reference_motion.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {HERE / 'reference.mp4'}, {HERE / 'scene.jpg'}, {HERE / 'reference_motion.json'}")


if __name__ == "__main__":
    main()
