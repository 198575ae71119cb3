"""The training data of ``mini``: clips of scikit-image's photographs under known camera motion.

Every clip is a random crop of one photograph, at a random scale, seen by a virtual camera that
moves with a known frame-to-frame homography (:func:`cammimic.synthetic.camera_step`), and a
caption that names the content and the motion: ``"a brick wall, the camera pans left"``.

Three photographs never enter training (:data:`HELD_OUT`): they are the scenes on which the
method is measured (``benchmarks/mini_method.py``) and the demo's user image.

Motion conventions (the same as :mod:`cammimic.trajectory`): the camera *pans left* when the
scene moves right on screen; *tilts up* when the scene moves down; *rolls clockwise* when the
scene turns counter-clockwise on screen; *zooms in* when the content grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TRAIN_PHOTOS",
    "HELD_OUT",
    "MOTIONS",
    "SPEEDS",
    "WIDTH",
    "HEIGHT",
    "FRAMES",
    "load_photo",
    "motion_step",
    "motion_path",
    "caption",
    "sample_clip",
    "make_dataset",
]

WIDTH = HEIGHT = 64
FRAMES = 8

#: scikit-image photograph -> what the caption calls it. Grey photographs are used as grey RGB.
TRAIN_PHOTOS: dict[str, str] = {
    "rocket": "a rocket on a launch pad",
    "hubble_deep_field": "galaxies in deep space",
    "immunohistochemistry": "a stained tissue sample",
    "retina": "the retina of an eye",
    "stereo_motorcycle": "a motorcycle in a garage",
    "camera": "a man with a camera",
    "coins": "old coins",
    "moon": "the surface of the moon",
    "brick": "a brick wall",
    "grass": "a lawn of grass",
    "gravel": "gravel on the ground",
    "clock": "a wall clock",
}
#: Never seen in training: the method's user images and references come from these.
HELD_OUT: dict[str, str] = {
    "astronaut": "an astronaut",
    "coffee": "a coffee on a saucer",  # not "a cup": its "up" would be a motion-word token
    "chelsea": "a cat",
}

#: Motion phrase -> per-frame move at normal speed, as keyword arguments of ``camera_step`` in
#: units of the frame's short side (dx, dy), a zoom factor, and degrees of roll (on screen).
MOTIONS: dict[str, dict[str, float]] = {
    "pans left": {"dx": 0.04},
    "pans right": {"dx": -0.04},
    "tilts up": {"dy": 0.04},
    "tilts down": {"dy": -0.04},
    "zooms in": {"zoom": 1.04},
    "zooms out": {"zoom": 1 / 1.04},
    "rolls clockwise": {"roll": -3.0},
    "rolls counterclockwise": {"roll": 3.0},
    "is static": {},
}
#: Two-part moves seen in training, named "pans left and zooms in" and so on.
COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("pans left", "zooms in"),
    ("pans right", "zooms in"),
    ("pans left", "zooms out"),
    ("pans right", "zooms out"),
    ("tilts up", "pans left"),
    ("tilts down", "pans right"),
)
#: Speed word in the caption -> factor on the per-frame move.
SPEEDS: dict[str, float] = {"slowly": 0.5, "": 1.0, "quickly": 1.6}


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photograph as ``(H, W, 3)`` uint8 RGB."""
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def motion_step(
    phrase: str, speed: float = 1.0, width: int = WIDTH, height: int = HEIGHT
) -> np.ndarray:
    """The frame-to-frame homography of a motion phrase (single or "A and B") at a speed."""
    from cammimic.synthetic import camera_step

    kw: dict[str, float] = {}
    for part in phrase.split(" and "):
        for key, value in MOTIONS[part.strip()].items():
            kw[key] = value
    s = min(width, height)
    args = {}
    for key, value in kw.items():
        if key == "zoom":
            args["zoom"] = math.exp(math.log(value) * speed)
        elif key == "roll":
            args["roll"] = value * speed
        else:
            args[key] = value * speed * s
    return camera_step(width, height, **args)


def motion_path(
    phrase: str, speed: float = 1.0, frames: int = FRAMES, width: int = WIDTH, height: int = HEIGHT
) -> np.ndarray:
    """``(frames - 1, 3, 3)``: the same step every frame (a steady move)."""
    return np.repeat(motion_step(phrase, speed, width, height)[None], frames - 1, axis=0)


def caption(content: str, phrase: str, speed_word: str = "") -> str:
    """``"a brick wall, the camera pans left quickly"``."""
    return f"{content}, the camera {phrase}" + (f" {speed_word}" if speed_word else "")


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  #: (FRAMES, HEIGHT, WIDTH, 3) uint8
    caption: str
    photo: str
    phrase: str
    speed: float
    homographies: np.ndarray  #: (FRAMES - 1, 3, 3), pixel coordinates of the clip


#: Mean absolute Sobel gradient (grey levels per pixel) below which a crop is too flat to show motion.
MIN_TEXTURE = 8.0


def texture(frame: np.ndarray) -> float:
    """Mean absolute Sobel gradient of a frame's grey image."""
    import cv2

    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return (
        float(
            np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)).mean()
            + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1)).mean()
        )
        / 2
    )


def _phrases() -> list[str]:
    return list(MOTIONS) + [f"{a} and {b}" for a, b in COMBINATIONS]


def sample_clip(
    rng: np.random.Generator, photos: dict[str, np.ndarray], names: dict[str, str]
) -> Clip:
    """One random clip: a photograph, a crop and scale, a motion phrase and a speed."""
    import cv2

    from cammimic.errors import CammimicError
    from cammimic.synthetic import render_camera_motion

    singles, combos = list(MOTIONS), [f"{a} and {b}" for a, b in COMBINATIONS]
    while True:
        name = str(rng.choice(sorted(photos)))
        photo = photos[name]
        u = rng.random()
        phrase = str(rng.choice(combos)) if u < 0.2 else str(rng.choice(singles))
        speed_word = (
            "" if phrase == "is static" else str(rng.choice(list(SPEEDS), p=[0.25, 0.5, 0.25]))
        )
        speed = SPEEDS[speed_word]
        # A square region of 35-100 % of the photograph's short side becomes the clip's 160 px
        # canvas; the frame (64 px) sees 40 % of it, so content scale varies about 3x.
        h, w = photo.shape[:2]
        side = int(rng.integers(max(128, int(0.35 * min(h, w))), min(h, w) + 1))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        region = cv2.resize(
            photo[y0 : y0 + side, x0 : x0 + side], (160, 160), interpolation=cv2.INTER_AREA
        )
        hs = motion_path(phrase, speed)
        try:
            frames = render_camera_motion(region, hs, WIDTH, HEIGHT)
        except CammimicError:
            continue  # this move would see past the region: draw again
        if texture(frames[0]) < MIN_TEXTURE:
            continue  # a flat crop (sky, a blank wall) shows no camera motion: draw again
        return Clip(frames, caption(names[name], phrase, speed_word), name, phrase, speed, hs)


def make_dataset(
    count: int, seed: int, names: dict[str, str] | None = None
) -> tuple[np.ndarray, list[str], list[dict]]:
    """``count`` clips as ``(count, FRAMES, HEIGHT, WIDTH, 3)`` uint8, captions and records."""
    names = TRAIN_PHOTOS if names is None else names
    photos = {n: load_photo(n) for n in names}
    rng = np.random.default_rng(seed)
    videos = np.empty((count, FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    captions, records = [], []
    for i in range(count):
        c = sample_clip(rng, photos, names)
        videos[i] = c.frames
        captions.append(c.caption)
        records.append({"photo": c.photo, "phrase": c.phrase, "speed": c.speed})
    return videos, captions, records
