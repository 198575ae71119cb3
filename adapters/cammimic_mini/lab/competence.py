"""Is a camera-motion video moving the way its phrase says? (mini's competence check)

The motion of a clip is read from its frame-to-frame homographies as the cumulative pan, tilt,
zoom and roll of :func:`cammimic.trajectory.summarize` over the clip, and compared with the
signs a motion phrase implies (:data:`cammimic_mini.lab.data.MOTIONS`): "pans left" means the
cumulative pan is below ``-PAN`` (the camera turns left), "zooms in" a cumulative zoom above
``exp(ZOOM)``, "is static" every component within its threshold.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "THRESHOLDS",
    "expected",
    "moves",
    "observed",
    "matches",
    "shows",
    "estimate_upsampled",
    "ceiling",
    "motion_size",
    "psnr",
    "OPPOSITE",
    "opposite_caption",
    "caption_preference",
]

#: Smallest cumulative move that counts, over an 8-frame clip: pan and tilt in half short
#: sides (a slow pan in the training data moves 0.28), zoom as |log scale| (slow: 0.14),
#: roll in degrees (slow: 10.5).
THRESHOLDS = {"pan": 0.1, "tilt": 0.1, "zoom": 0.05, "roll": 4.0}

#: phrase part -> (component, sign) in the conventions of cammimic.trajectory.
_SIGNS = {
    "pans left": ("pan", -1),
    "pans right": ("pan", 1),
    "tilts up": ("tilt", 1),
    "tilts down": ("tilt", -1),
    "zooms in": ("zoom", 1),
    "zooms out": ("zoom", -1),
    "rolls clockwise": ("roll", -1),
    "rolls counterclockwise": ("roll", 1),
}


def expected(phrase: str) -> dict[str, int]:
    """Component -> sign a phrase implies; ``{}`` for "is static"."""
    out = {}
    for part in phrase.split(" and "):
        part = part.strip()
        if part != "is static":
            comp, sign = _SIGNS[part]
            out[comp] = sign
    return out


def moves(motion) -> dict[str, float]:
    """A motion's cumulative pan and tilt (half short sides), zoom (log scale) and roll (degrees)."""
    from cammimic.trajectory import summarize

    cum = summarize(motion)["cumulative"]
    return {
        "pan": float(cum["pan"][-1]),
        "tilt": float(cum["tilt"][-1]),
        "zoom": math.log(max(float(cum["zoom"][-1]), 1e-6)),
        "roll": float(cum["roll"][-1]),
    }


def observed(motion) -> dict[str, int]:
    """Component -> sign (-1, 0, 1) of a motion's cumulative pan, tilt, zoom, roll."""
    return {k: (0 if abs(v) < THRESHOLDS[k] else int(np.sign(v))) for k, v in moves(motion).items()}


def matches(phrase: str, motion) -> bool:
    """The phrase's components have the right sign; for "is static", nothing moves."""
    want, got = expected(phrase), observed(motion)
    if not want:
        return all(v == 0 for v in got.values())
    return all(got[k] == s for k, s in want.items())


def shows(phrase: str, motion, max_fallback_share: float = 0.15) -> bool:
    """:func:`matches`, counted only when the estimator could read the clip: a clip whose pairs
    fell back (to the identity) would otherwise pass as "is static" and fail every move."""
    pairs = max(motion.num_frames - 1, 1)
    return len(motion.fallbacks) <= max_fallback_share * pairs and matches(phrase, motion)


def motion_size(motion) -> float:
    """Mean resolution-free motion per frame pair: ``|| H - I ||_F`` of each homography in
    resolution-free coordinates (:func:`cammimic.homography.to_resolution_free`: centred, unit =
    half the short side), averaged over the pairs the estimator read (fallback pairs, set to the
    identity, are left out; ``nan`` when none was read). A pan of 4 % of the frame per frame is
    0.08; a zoom of 1.04 per frame about 0.057; 3 degrees of roll about 0.074.
    """
    from cammimic.homography import to_resolution_free
    from cammimic.metrics import fallback_pairs

    h = to_resolution_free(motion.homographies, motion.width, motion.height)
    skip = fallback_pairs(motion)
    sizes = [float(np.linalg.norm(m - np.eye(3))) for i, m in enumerate(h) if i not in skip]
    return float(np.mean(sizes)) if sizes else float("nan")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 videos or images of one shape."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def estimate_upsampled(estimator, frames: np.ndarray, factor: int = 4):
    """Estimate on frames enlarged ``factor`` times (SIFT needs more than 64 px), reported at
    the frames' own size: the homographies are conjugated back by the scale."""
    import attrs
    import cv2

    from cammimic.homography import rescale

    if factor == 1:
        return estimator.estimate(frames)
    t, h, w = frames.shape[:3]
    big = np.stack(
        [cv2.resize(f, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC) for f in frames]
    )
    m = estimator.estimate(big)
    return attrs.evolve(
        m, homographies=rescale(m.homographies, (w * factor, h * factor), (w, h)), width=w, height=h
    )


def ceiling(backbone, estimator, *, clips: int = 40, seed: int = 1, upsample: int = 1) -> dict:
    """How well ``estimator`` reads motion in frames this backbone's VAE renders.

    ``clips`` random clips of the held-out photographs (:data:`cammimic_mini.lab.data.HELD_OUT`)
    under known motion, encoded and decoded by ``backbone`` (the softness of its frames), read
    back with :func:`estimate_upsampled` and checked with :func:`shows` against their phrase.
    Returns ``{"clips", "hits", "pairs", "fallbacks", "psnr"}``: the best the competence check can
    score, and the mean PSNR (dB) of the VAE's reconstructions of those held-out clips.
    """
    from cammimic_mini.lab import data

    rng = np.random.default_rng(seed)
    photos = {n: data.load_photo(n) for n in data.HELD_OUT}
    hits = fallbacks = 0
    quality = []
    for _ in range(clips):
        clip = data.sample_clip(rng, photos, data.HELD_OUT)
        frames = backbone.decode_latents(backbone.encode_video(clip.frames))
        quality.append(psnr(frames, clip.frames))
        motion = estimate_upsampled(estimator, frames, upsample)
        hits += shows(clip.phrase, motion)
        fallbacks += len(motion.fallbacks)
    return {
        "clips": clips,
        "hits": hits,
        "pairs": clips * (data.FRAMES - 1),
        "fallbacks": fallbacks,
        "psnr": float(np.mean(quality)),
    }


#: A motion phrase -> the phrase of the same component with the opposite sign ("is static" -> a pan).
OPPOSITE = {
    **{
        p: q
        for p, (comp, sign) in _SIGNS.items()
        for q, (comp2, sign2) in _SIGNS.items()
        if comp == comp2 and sign == -sign2
    },
    "is static": "pans left",
}


def opposite_caption(caption: str) -> str | None:
    """The caption with each part of its motion phrase replaced by the opposite
    (:data:`OPPOSITE`; speed words kept), or ``None`` when it names no known motion."""
    content, sep, motion = caption.partition(", the camera ")
    if not sep:
        return None
    parts = motion.split(" and ")
    out = []
    for part in parts:
        phrase = next((p for p in OPPOSITE if part == p or part.startswith(p + " ")), None)
        if phrase is None:
            return None
        out.append(OPPOSITE[phrase] + part[len(phrase) :])
    return f"{content}, the camera " + " and ".join(out)


def caption_preference(
    backbone, *, clips: int = 48, timesteps=(600, 850), seed: int = 7, swap: str = "motion"
) -> dict[int, float]:
    """Does the model use the motion words of its captions? A cheap check, long before samples move.

    ``clips`` fresh clips of the training photographs (new crops, single motion phrases) are
    encoded, noised to each timestep, and denoised twice: with their caption and with the same
    caption naming the opposite motion (:data:`OPPOSITE`). Returns timestep -> the share of
    clips whose own caption gives the lower noise error: 0.5 means the motion words are ignored.
    At high noise the clip's motion is not yet visible in its latents, so only the caption can
    tell the model which way to move.

    ``swap="content"`` names another training photograph's content instead (the motion kept):
    the same measure for the content words, which a model uses long before its motion words.
    """
    if swap not in ("motion", "content"):
        raise ValueError(f"swap must be 'motion' or 'content', got {swap!r}")
    import torch

    from cammimic_mini.lab import data

    rng = np.random.default_rng(seed)
    photos = {n: data.load_photo(n) for n in data.TRAIN_PHOTOS}
    sched = backbone.training_scheduler()
    gen = torch.Generator().manual_seed(seed)
    wins = {t: 0.0 for t in timesteps}
    done = 0
    while done < clips:
        clip = data.sample_clip(rng, photos, data.TRAIN_PHOTOS)
        if " and " in clip.phrase:
            continue
        if swap == "motion":
            wrong = opposite_caption(clip.caption)
        else:
            names = list(data.TRAIN_PHOTOS.values())
            own = data.TRAIN_PHOTOS[clip.photo]
            other = names[(names.index(own) + 1 + done % (len(names) - 1)) % len(names)]
            wrong = clip.caption.replace(own + ",", other + ",", 1)
        z0 = backbone.encode_video(clip.frames)
        embeds = backbone.encode_prompt([clip.caption, wrong])
        for t in timesteps:
            noise = torch.randn(z0.shape, generator=gen).to(
                z0.device
            )  # CPU draws: the same on any device
            zt = sched.add_noise(z0, noise, torch.tensor([t], device=z0.device))
            with torch.no_grad():
                pred = backbone.predict_noise(
                    zt.repeat(2, 1, 1, 1, 1), torch.tensor([t, t], device=z0.device), embeds
                ).float()
            err = ((pred - noise) ** 2).mean(dim=(1, 2, 3, 4))
            wins[t] += (
                1.0 if err[0] < err[1] else 0.5 if err[0] == err[1] else 0.0
            )  # a tie is no preference
        done += 1
    return {t: wins[t] / clips for t in timesteps}
