"""Tests for cammimic.io: reading/writing videos and images, sampling, atomic outputs."""

from __future__ import annotations

import json
import math
import os
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from cammimic import io
from cammimic.errors import CammimicError

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}


def pan(image: np.ndarray, n: int, size: tuple[int, int] = (160, 128), step: int = 3) -> np.ndarray:
    """A camera pan: ``n`` crops of ``size`` (w, h) moving right by ``step`` pixels a frame."""
    w, h = size
    return np.stack([image[20 : 20 + h, 10 + step * k : 10 + step * k + w] for k in range(n)])


def encode(path: Path, frames: np.ndarray, fps: float, codec: str, pix_fmt: str = "yuv420p"):
    """Encode frames with PyAV directly (for codecs write_video does not offer)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(p)
        for p in stream.encode(None):
            container.mux(p)
    return path


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


def raises_with_path(path, match: str | None = None):
    """pytest.raises(CammimicError) that also checks the message names ``path``."""

    class _Ctx:
        def __enter__(self):
            self.ctx = pytest.raises(CammimicError, match=match)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            if not handled:
                return False
            msg = str(self.info.value)
            assert str(path) in msg, f"{path} not in message: {msg}"
            assert "\n" not in msg
            return handled

    return _Ctx()


# --------------------------------------------------------------------------------------------
# videos: formats
# --------------------------------------------------------------------------------------------


def test_mp4_round_trip(tmp_path, photos):
    frames = pan(photos["astronaut"], 12, (192, 160))
    out = io.write_video(tmp_path / "sub" / "clip.mp4", frames, 24, crf=18)
    assert out == tmp_path / "sub" / "clip.mp4" and out.exists()
    assert sorted(os.listdir(out.parent)) == ["clip.mp4"]  # no temp files left behind
    v = io.read_video(out)
    assert v.frames.shape == frames.shape and v.frames.dtype == np.uint8
    assert v.fps == 24 and v.source_fps == 24
    assert v.indices == tuple(range(12)) and v.source_num_frames == 12
    assert v.size == (192, 160) and v.source_size == (192, 160) and v.crop is None
    assert mae(v.frames, frames) < 3
    meta = v.metadata()
    json.dumps(meta)
    assert meta["num_frames"] == 12 and meta["path"] == str(out) and "frames" not in meta


@pytest.mark.parametrize(
    "suffix, how, tol",
    [
        (".mov", "write_video", 3),
        (".mkv", "write_video", 3),
        (".webm", "libvpx-vp9", 4),
        (".avi", "mpeg4", 6),
        (".gif", "write_video", 8),
    ],
)
def test_containers_readable(tmp_path, photos, suffix, how, tol):
    frames = pan(photos["coffee"], 10, (160, 128))
    path = tmp_path / f"clip{suffix}"
    if how == "write_video":
        io.write_video(path, frames, 10)
    else:
        encode(path, frames, 10, how)
    v = io.read_video(path)
    assert v.frames.shape == frames.shape
    assert v.source_fps == pytest.approx(10) and v.fps == pytest.approx(10)
    assert mae(v.frames, frames) < tol
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_gif_keeps_every_frame_and_loops(tmp_path, photos):
    moving = pan(photos["chelsea"], 4, (120, 96))
    frames = np.concatenate([moving[:1], moving[:1], moving[:1], moving])  # a still start
    path = io.write_video(tmp_path / "anim.gif", frames, 20)
    with Image.open(path) as im:
        assert im.n_frames == 7  # identical frames are not merged
        assert im.info["loop"] == 0 and im.info["duration"] == 50
    v = io.read_video(path)
    assert v.frames.shape == frames.shape and v.source_fps == 20
    assert mae(v.frames, frames) < 8
    # 24 fps does not fit centiseconds: delays alternate 4/4/5 cs, the mean rate stays 24
    v = io.read_video(io.write_video(tmp_path / "a24.gif", pan(photos["coffee"], 25, (64, 48)), 24))
    assert v.source_fps == 24 and io.read_video(tmp_path / "a24.gif", fps=8).indices[:3] == (
        0,
        3,
        6,
    )


def test_display_rotation_is_applied(tmp_path, photos):
    frames = pan(photos["astronaut"], 4, (96, 64))
    path = tmp_path / "phone.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(90)
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(p)
        for p in stream.encode(None):
            container.mux(p)
    v = io.read_video(path)
    assert v.frames.shape == (4, 96, 64, 3) and v.source_size == (64, 96)
    assert mae(v.frames, np.rot90(frames, 1, axes=(1, 2))) < 4


# --------------------------------------------------------------------------------------------
# image sequences
# --------------------------------------------------------------------------------------------


def write_sequence(folder: Path, frames: np.ndarray, pattern: str = "frame{}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(frames):
        Image.fromarray(f).save(folder / pattern.format(k + 1))
    return folder


def test_image_sequence_directory_natural_sort(tmp_path, photos):
    frames = pan(photos["chelsea"], 12, (64, 48))
    folder = write_sequence(tmp_path / "seq", frames)  # frame1 … frame12
    (folder / "notes.txt").write_text("not an image")
    v = io.read_video(folder)
    assert np.array_equal(v.frames, frames)  # frame2 before frame10
    assert v.fps == 8 and v.source_fps == 8 and v.indices == tuple(range(12))
    assert io.read_video(folder, sequence_fps=12).fps == 12


def test_image_sequence_glob(tmp_path, photos):
    frames = pan(photos["coffee"], 11, (64, 48))
    folder = write_sequence(tmp_path / "seq", frames, "img_{}.png")
    Image.fromarray(frames[0]).save(folder / "other.jpg")
    v = io.read_video(str(folder / "img_*.png"))
    assert np.array_equal(v.frames, frames)
    assert v.path == str(folder / "img_*.png")


# --------------------------------------------------------------------------------------------
# sampling and resizing
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip48(tmp_path_factory, photos) -> tuple[Path, np.ndarray]:
    """A 48-frame 24 fps mp4, and its decoded frames."""
    frames = pan(photos["coffee"], 48, (64, 48), step=2)
    path = io.write_video(tmp_path_factory.mktemp("clip") / "clip48.mp4", frames, 24)
    return path, io.read_video(path).frames


def test_num_frames_samples_evenly(clip48):
    path, full = clip48
    v = io.read_video(path, num_frames=5)
    expected = np.rint(np.linspace(0, 47, 5)).astype(int)
    assert v.indices == tuple(expected) == (0, 12, 24, 35, 47)
    assert np.array_equal(v.frames, full[expected])
    assert v.source_num_frames == 48 and v.source_fps == 24
    assert v.fps == pytest.approx(24 * 4 / 47)  # same duration
    assert io.read_video(path, num_frames=48).indices == tuple(range(48))


def test_fps_sampling_uses_timestamps(tmp_path, clip48, photos):
    path, full = clip48
    v = io.read_video(path, fps=8)
    assert v.indices == tuple(range(0, 48, 3)) and len(v.indices) == 16
    assert v.fps == 8 and np.array_equal(v.frames, full[::3])
    # Matroska stores millisecond timestamps (0.042, 0.083, …): same result.
    mkv = io.write_video(tmp_path / "clip48.mkv", full, 24)
    assert io.read_video(mkv, fps=8).indices == tuple(range(0, 48, 3))
    assert io.read_video(path, fps=24).indices == tuple(range(48))
    seq = write_sequence(tmp_path / "seq", pan(photos["coffee"], 12, (32, 24)))
    assert io.read_video(seq, sequence_fps=24, fps=8).indices == (0, 3, 6, 9)


def test_size_resizes_and_crops(clip48):
    path, full = clip48
    v = io.read_video(path, size=(40, 40), num_frames=3)
    assert v.frames.shape == (3, 40, 40, 3)
    assert v.source_size == (64, 48) and v.size == (40, 40)
    assert v.crop == (8, 0, 48, 48)
    expected, box = io.resize_center_crop(full[list(v.indices)], (40, 40))
    assert box == v.crop and np.array_equal(v.frames, expected)
    assert v.metadata()["crop"] == [8, 0, 48, 48]


@pytest.mark.parametrize(
    "src, size, box",
    [
        ((512, 512), (256, 128), (0, 128, 512, 256)),  # shrink, crop height
        ((600, 400), (300, 300), (100, 0, 400, 400)),  # shrink, crop width
        ((451, 300), (1000, 600), (0, 14, 451, 271)),  # enlarge: 600 / (1000/451) -> 271 rows
        ((64, 48), (64, 48), (0, 0, 64, 48)),  # identity
    ],
)
def test_resize_center_crop(photos, src, size, box):
    img = cv2.resize(photos["astronaut"], src, interpolation=cv2.INTER_AREA)
    out, got = io.resize_center_crop(img, size)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    assert got == box
    stack, got2 = io.resize_center_crop(np.stack([img, img[::-1]]), size)
    assert stack.shape == (2, size[1], size[0], 3) and got2 == got
    assert np.array_equal(stack[0], out)
    if size == src:
        assert np.array_equal(out, img)
    x, y, w, h = got
    ref = cv2.resize(
        np.ascontiguousarray(img[y : y + h, x : x + w]), size, interpolation=cv2.INTER_AREA
    )
    if size[0] < src[0]:
        assert np.array_equal(out, ref)


def test_resize_center_crop_exact_for_awkward_sizes(photos):
    img = photos["chelsea"]  # 451 x 300
    for size in [(7, 5), (333, 17), (1, 1), (999, 301), (450, 301)]:
        out, (x, y, w, h) = io.resize_center_crop(img, size)
        assert out.shape[:2] == (size[1], size[0])
        assert 0 <= x and 0 <= y and x + w <= 451 and y + h <= 300


# --------------------------------------------------------------------------------------------
# read_image
# --------------------------------------------------------------------------------------------


def test_read_image_rgb_png_and_jpeg(tmp_path, photos):
    img = photos["coffee"]
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    assert np.array_equal(io.read_image(tmp_path / "a.png"), img)
    jpg = io.read_image(tmp_path / "a.jpg")
    assert jpg.shape == img.shape and jpg.dtype == np.uint8 and mae(jpg, img) < 3
    small = io.read_image(tmp_path / "a.png", size=(100, 100))
    assert small.shape == (100, 100, 3)


def test_read_image_rgba_composited(tmp_path, photos):
    rgb = photos["astronaut"]
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    bg = (10, 200, 30)
    got = io.read_image(tmp_path / "rgba.png", background=bg)
    a = alpha[..., None] / 255.0
    expected = np.rint(rgb * a + np.array(bg) * (1 - a))
    assert np.abs(got - expected).max() <= 0.5
    assert np.array_equal(got[:, 0], np.broadcast_to(bg, (512, 3)))  # alpha 0: background
    assert np.array_equal(got[:, -1], rgb[:, -1])  # alpha 255: the image
    # LA (gray + alpha)
    gray = rgb[..., 1]
    Image.fromarray(np.dstack([gray, alpha])).save(tmp_path / "la.png")
    got = io.read_image(tmp_path / "la.png")  # default black background
    assert np.abs(got[..., 0] - np.rint(gray * a[..., 0])).max() <= 0.5


def test_read_image_grayscale_and_palette(tmp_path, photos):
    gray = photos["chelsea"][..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    got = io.read_image(tmp_path / "g.png")
    assert got.shape == gray.shape + (3,) and all(
        np.array_equal(got[..., c], gray) for c in range(3)
    )
    pal = Image.fromarray(photos["coffee"]).quantize(64)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    expected = np.asarray(pal.convert("RGB"))
    assert np.array_equal(io.read_image(tmp_path / "p.png"), expected)
    # palette with a transparent entry: that entry shows the background
    pal.save(tmp_path / "pt.png", transparency=0)
    got = io.read_image(tmp_path / "pt.png", background=(255, 0, 255))
    mask = np.asarray(pal) == 0
    assert mask.any() and np.all(got[mask] == (255, 0, 255))
    assert np.array_equal(got[~mask], expected[~mask])


def test_read_image_16bit(tmp_path, photos):
    rng = np.random.default_rng(0)
    rgb16 = photos["astronaut"].astype(np.uint16) * 257 + rng.integers(
        0, 256, (512, 512, 3)
    ).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "rgb16.tif"), rgb16[..., ::-1])
    expected = np.rint(rgb16 / 257).astype(np.uint8)
    assert np.array_equal(io.read_image(tmp_path / "rgb16.png"), expected)
    assert np.array_equal(io.read_image(tmp_path / "rgb16.tif"), expected)
    gray16 = rgb16[..., 0]
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    got = io.read_image(tmp_path / "g16.png")
    assert np.array_equal(got[..., 2], np.rint(gray16 / 257).astype(np.uint8))
    rgba16 = np.dstack([rgb16, np.full((512, 512), 65535, np.uint16)])
    cv2.imwrite(str(tmp_path / "rgba16.png"), rgba16[..., [2, 1, 0, 3]])
    assert np.array_equal(io.read_image(tmp_path / "rgba16.png"), expected)


def test_read_image_float_tiff(tmp_path, photos):
    img = photos["coffee"]
    cv2.imwrite(str(tmp_path / "f.tif"), (img[..., ::-1] / 255.0).astype(np.float32))
    assert np.array_equal(io.read_image(tmp_path / "f.tif"), img)
    Image.fromarray((img[..., 0] / 255.0).astype(np.float32)).save(tmp_path / "f1.tif")
    assert np.array_equal(io.read_image(tmp_path / "f1.tif")[..., 1], img[..., 0])


def test_read_image_exif_orientation(tmp_path, photos):
    img = photos["chelsea"]  # 451 wide, 300 high
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; display rotated 90 degrees clockwise
    Image.fromarray(img).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    got = io.read_image(tmp_path / "photo.jpg")
    assert got.shape == (451, 300, 3)
    assert mae(got, np.rot90(img, -1)) < 3


@pytest.mark.parametrize("orientation", range(1, 9))
def test_read_image_exif_orientation_of_16_bit_png(tmp_path, photos, orientation):
    """16-bit PNGs are decoded by OpenCV (which ignores EXIF) and turned by Pillow's exif_transpose,
    exactly as the same picture saved as an 8-bit PNG (read by Pillow) is."""
    img = photos["chelsea"][:40, :60, 1]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img.astype(np.uint16) * 257).save(tmp_path / "g16.png", exif=exif)
    Image.fromarray(img).save(tmp_path / "g8.png", exif=exif)
    got = io.read_image(tmp_path / "g16.png")
    assert got.shape == ((40, 60, 3) if orientation < 5 else (60, 40, 3))
    assert np.array_equal(got, io.read_image(tmp_path / "g8.png"))
    assert orientation == 1 or not np.array_equal(got[..., 0], np.resize(img, got.shape[:2]))


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_read_video_errors(tmp_path, photos, clip48):
    clip, _ = clip48
    missing = tmp_path / "missing.mp4"
    with raises_with_path(missing, "does not exist"):
        io.read_video(missing)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with raises_with_path(junk, "cannot be decoded"):
        io.read_video(junk)
    audio = tmp_path / "sound.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with raises_with_path(audio, "no video stream"):
        io.read_video(audio)
    one = io.write_video(tmp_path / "one.mp4", pan(photos["coffee"], 1, (32, 32)), 8)
    with raises_with_path(one, "at least 2 frames"):
        io.read_video(one)
    empty = tmp_path / "empty"
    empty.mkdir()
    with raises_with_path(empty, "no images"):
        io.read_video(empty)
    pattern = str(tmp_path / "nothing_*.png")
    with raises_with_path(pattern, "no images"):
        io.read_video(pattern)
    mixed = write_sequence(tmp_path / "mixed", pan(photos["coffee"], 3, (32, 32)))
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(mixed / "frame4.png")
    with raises_with_path(mixed, "same size"):
        io.read_video(mixed)
    single = write_sequence(tmp_path / "single", pan(photos["coffee"], 1, (32, 32)))
    with raises_with_path(single, "at least 2 frames"):
        io.read_video(single)
    with raises_with_path(clip, "only 48 frames"):
        io.read_video(clip, num_frames=49)
    with raises_with_path(clip, "only one"):
        io.read_video(clip, num_frames=4, fps=8)
    for bad in (0, 1, -3, 2.5, True, "4"):
        with raises_with_path(clip, "num_frames"):
            io.read_video(clip, num_frames=bad)
    for bad in (0, -1, math.nan, math.inf, "fast"):
        with raises_with_path(clip, "fps"):
            io.read_video(clip, fps=bad)
    with raises_with_path(clip, "above the frame rate"):
        io.read_video(clip, fps=60)
    with raises_with_path(clip, "higher fps"):
        io.read_video(clip, fps=0.1)
    for bad in ((0, 10), (10,), (10.0, 20), "64x48", (-1, 5)):
        with raises_with_path(clip, "size"):
            io.read_video(clip, size=bad)


def test_read_video_max_frames_warns(clip48):
    path, full = clip48
    with pytest.warns(UserWarning, match="max_frames=10"):
        v = io.read_video(path, max_frames=10)
    assert v.source_num_frames == 10 and np.array_equal(v.frames, full[:10])


def test_read_image_errors(tmp_path):
    missing = tmp_path / "nope.png"
    with raises_with_path(missing, "does not exist"):
        io.read_image(missing)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00garbage" * 50)
    with raises_with_path(junk, "not an image"):
        io.read_image(junk)
    truncated = tmp_path / "trunc.png"
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with raises_with_path(truncated):
        io.read_image(truncated)
    with raises_with_path(tmp_path, "directory"):
        io.read_image(tmp_path)


def test_write_errors(tmp_path, photos):
    frames = pan(photos["coffee"], 3, (64, 48))
    with raises_with_path(tmp_path / "a.avi", ".mp4, .mov, .mkv, .gif"):
        io.write_video(tmp_path / "a.avi", frames, 8)
    odd = pan(photos["coffee"], 3, (63, 47))
    with raises_with_path(tmp_path / "odd.mp4", "62x46"):
        io.write_video(tmp_path / "odd.mp4", odd, 8)
    io.write_video(tmp_path / "odd.gif", odd, 8)  # GIF has no such limit
    with raises_with_path(tmp_path / "f.mp4", "uint8"):
        io.write_video(tmp_path / "f.mp4", frames.astype(np.float32), 8)
    with raises_with_path(tmp_path / "b.mp4", "fps"):
        io.write_video(tmp_path / "b.mp4", frames, 0)
    with raises_with_path(tmp_path / "x.bmp", ".png"):
        io.write_image(tmp_path / "x.bmp", frames[0])
    assert sorted(os.listdir(tmp_path)) == ["odd.gif"]


def test_write_video_is_deterministic(tmp_path):
    """The same frames give the same .mp4 bytes, call after call (seeded runs promise identical files).

    libx264's macroblock-tree rate control read uninitialised memory (its AVX-512 code; masking
    AVX-512 or turning mbtree off both made it stable): this 192x64 photograph pan, the size of
    a run's side_by_side.mp4, gave 4-7 distinct files in 20 encodes in one process.
    """
    import hashlib

    from conftest import clip

    frames, _ = clip("pan", 192, 64, frames=8, name="astronaut")
    rng = np.random.default_rng(0)
    digests = set()
    for i in range(20):
        # leave freed, non-zero memory on the heap, as a run's other work does between writes
        junk = [
            np.full(int(n), v, np.uint8)
            for n, v in zip(rng.choice([500, 3000, 20000, 100000], 200), rng.integers(1, 256, 200))
        ]
        del junk
        path = io.write_video(tmp_path / f"{i}.mp4", frames, 8.0)
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1
    # and the file still holds the frames at the documented quality (crf 18)
    decoded = io.read_video(path).frames.astype(float)
    psnr = 10 * np.log10(255**2 / ((decoded - frames) ** 2).mean())
    assert psnr > 35, psnr


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_failure_leaves_existing_file(tmp_path, photos, monkeypatch, suffix):
    frames = pan(photos["astronaut"], 8, (64, 48))
    path = io.write_video(tmp_path / f"out{suffix}", frames, 8)
    before = path.read_bytes()
    calls = {"n": 0}
    original = av.VideoFrame.from_ndarray

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("encoder exploded")
        return original(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", flaky)
    with pytest.raises(RuntimeError, match="exploded"):
        io.write_video(path, frames[::-1], 8)
    assert calls["n"] == 5
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]
    monkeypatch.undo()
    io.write_video(path, frames[::-1], 8)  # success replaces it
    assert path.read_bytes() != before and sorted(os.listdir(tmp_path)) == [path.name]


def test_write_image_round_trip_and_atomic(tmp_path, photos, monkeypatch):
    img = photos["chelsea"]
    png = io.write_image(tmp_path / "deep" / "a.png", img)
    assert np.array_equal(io.read_image(png), img)
    jpg = io.write_image(tmp_path / "a.jpg", img)
    assert mae(io.read_image(jpg), img) < 3
    before = png.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with raises_with_path(png, "disk full"):
        io.write_image(png, img[::-1])
    assert png.read_bytes() == before and os.listdir(png.parent) == ["a.png"]


# --------------------------------------------------------------------------------------------
# output directories
# --------------------------------------------------------------------------------------------


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_output_directory_success(tmp_path):
    out = tmp_path / "runs" / "run1"
    with io.output_directory(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".") and tmp.is_dir()
        assert not out.exists()
        (tmp / "result.txt").write_text("ok")
    assert (out / "result.txt").read_text() == "ok"
    assert os.listdir(out.parent) == ["run1"]
    # an existing empty directory is simply replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    with io.output_directory(empty) as tmp:
        (tmp / "a").write_text("1")
    assert listing(empty) == {"a": b"1"}


def test_output_directory_exception_leaves_existing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("precious")
    (out / "sub").mkdir()
    (out / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = listing(out)
    with pytest.raises(ValueError, match="boom"):
        with io.output_directory(out, overwrite=True) as tmp:
            (tmp / "half.txt").write_text("half")
            raise ValueError("boom")
    assert listing(out) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]
    with pytest.raises(KeyboardInterrupt):
        with io.output_directory(tmp_path / "new") as tmp:
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_output_directory_refuses_and_overwrites(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with raises_with_path(out, "--overwrite"):
        io.check_output_directory(out)
    with raises_with_path(out, "not empty"):
        with io.output_directory(out):
            pytest.fail("must not get here")
    assert listing(out) == {"old.txt": b"old"}
    assert io.check_output_directory(out, overwrite=True) == out
    with io.output_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert listing(out) == {"new.txt": b"new"}
    assert sorted(os.listdir(tmp_path)) == ["run"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with raises_with_path(afile, "is a file"):
        io.check_output_directory(afile, overwrite=True)
    with raises_with_path(afile, "is a file"):
        with io.output_directory(afile, overwrite=True):
            pass
    assert afile.read_text() == "x"


def test_output_directory_replaces_a_link_not_its_target(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    with raises_with_path(link, "not empty"):
        io.check_output_directory(link)
    with io.output_directory(link, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert not link.is_symlink() and listing(link) == {"new.txt": b"new"}
    assert listing(target) == {"keep.txt": b"keep"}
    assert sorted(os.listdir(tmp_path)) == ["link", "target"]


# --------------------------------------------------------------------------------------------
# never lose a user's files (issue 8 §3)
# --------------------------------------------------------------------------------------------


def test_output_directory_holding_an_input_is_refused_even_with_overwrite(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "reference.mp4").write_bytes(b"v")
    (proj / "sub").mkdir()
    (proj / "sub" / "scene.jpg").write_bytes(b"i")
    for out, overwrite in ((proj, True), (proj, False), (tmp_path, True)):
        with pytest.raises(CammimicError, match="contains the input .*reference.mp4.*-o out/run1"):
            io.check_output_directory(out, overwrite=overwrite, inputs=[proj / "reference.mp4"])
    with pytest.raises(CammimicError, match="contains the input .*scene.jpg"):
        with io.output_directory(
            proj, overwrite=True, inputs=["x.mp4", str(proj / "sub" / "scene.jpg"), None]
        ):
            pass
    # through a symbolic link to the folder too
    link = tmp_path / "link"
    link.symlink_to(proj)
    with pytest.raises(CammimicError, match="contains the input"):
        io.check_output_directory(link, overwrite=True, inputs=[proj / "reference.mp4"])
    assert sorted(p.name for p in proj.rglob("*")) == ["reference.mp4", "scene.jpg", "sub"]


def test_run_with_overwrite_never_deletes_its_inputs(tmp_path, capsys):
    """The reproduced failure: `cammimic run proj/reference.mp4 proj/scene.jpg -o proj --overwrite`."""
    import shutil

    from cammimic.cli import main

    root = Path(__file__).resolve().parents[1] / "examples"
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(root / "reference.mp4", proj)
    shutil.copy(root / "scene.jpg", proj)
    (proj / "notes.txt").write_text("mine")
    code = main(
        [
            "run",
            str(proj / "reference.mp4"),
            str(proj / "scene.jpg"),
            "-o",
            str(proj),
            "--overwrite",
            "--method",
            "homography",
            "--frames",
            "3",
            "--width",
            "64",
            "--height",
            "64",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "contains the input" in err[0]
    assert sorted(p.name for p in proj.iterdir()) == ["notes.txt", "reference.mp4", "scene.jpg"]


@pytest.mark.parametrize(
    "out, message",
    [
        (".", "is the current directory"),
        ("/", "is the filesystem root"),
        ("..", "is a parent of the current directory"),
        ("", "output directory is empty"),
        ("~", "is your home directory"),
    ],
)
def test_output_directory_dot_root_and_parents_get_one_right_line(
    tmp_path, monkeypatch, out, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path.parent / "home"))
    for overwrite in (False, True):
        with pytest.raises(CammimicError, match=message) as info:
            io.check_output_directory(out, overwrite=overwrite)
        assert "\n" not in str(info.value) and "empty name" not in str(info.value)


def test_dangling_symlink_output_says_so(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(CammimicError, match="symbolic link to .*gone, which does not exist"):
        io.check_output_directory(link, overwrite=True)
    assert link.is_symlink()


# --------------------------------------------------------------------------------------------
# bounded memory on hostile media (issue 8 §4)
# --------------------------------------------------------------------------------------------


def _hostile():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import hostile_media

    return hostile_media


def test_only_the_kept_frames_are_converted(tmp_path, monkeypatch, photos):
    path = io.write_video(tmp_path / "v.mp4", pan(photos["astronaut"], 40, (64, 48), step=2), 20.0)
    calls = []
    real = io.video._frame_to_rgb
    monkeypatch.setattr(io.video, "_frame_to_rgb", lambda f: calls.append(f.pts) or real(f))
    v = io.read_video(path, num_frames=4, size=(32, 24))
    assert v.indices == (0, 13, 26, 39) and len(calls) == 4 and v.frames.shape == (4, 24, 32, 3)
    assert io.count_frames(path) == 40 and len(calls) == 4  # counting decodes nothing
    calls.clear()
    v = io.read_video(path, fps=5.0)
    assert v.indices == (0, 4, 8, 12, 16, 20, 24, 28, 32, 36) and len(calls) == 10
    # the same pixels as decoding everything and picking afterwards
    full = io.read_video(path)
    assert np.array_equal(v.frames, full.frames[list(v.indices)])


def test_total_decoded_pixels_are_capped_with_an_override(tmp_path, monkeypatch, photos):
    path = io.write_video(tmp_path / "v.mp4", pan(photos["astronaut"], 30, (64, 48)), 10.0)
    calls = []
    monkeypatch.setattr(io.video, "_frame_to_rgb", lambda f: calls.append(1))
    with pytest.raises(
        CammimicError,
        match=r"keeping 30 frames of 64x48 needs 0 Mpx, above the limit .*--frames N.*"
        r"CAMMIMIC_MAX_VIDEO_PIXELS",
    ) as info:
        io.read_video(path, max_pixels=64 * 48 * 29)
    assert "\n" not in str(info.value) and calls == []  # refused before decoding anything
    monkeypatch.setenv("CAMMIMIC_MAX_VIDEO_PIXELS", str(64 * 48 * 10))
    with pytest.raises(CammimicError, match="above the limit"):
        io.read_video(path)
    monkeypatch.undo()
    assert io.read_video(path, num_frames=10, max_pixels=64 * 48 * 10).num_frames == 10
    assert (
        io.read_video(path, size=(16, 12), max_pixels=16 * 12 * 30).num_frames == 30
    )  # after resizing
    with pytest.raises(CammimicError, match="max_pixels=0"):
        io.read_video(path, max_pixels=0)


def test_huge_gif_canvas_is_refused_cheaply_and_read_small(tmp_path):
    """A 1-2 KB GIF whose 1x1 frames sit on a 4000x4000 canvas: 48 MB per decoded frame."""
    gif = _hostile().make_canvas_gif(tmp_path / "canvas.gif", side=4000, frames=20)
    assert gif.stat().st_size < 1000
    with pytest.raises(
        CammimicError,
        match="keeping 20 frames of 4000x4000 needs 320 Mpx, above the limit of 268 Mpx",
    ):
        io.read_video(gif)
    v = io.read_video(gif, num_frames=3, size=(40, 40))
    assert (
        v.frames.shape == (3, 40, 40, 3)
        and v.source_size == (4000, 4000)
        and v.indices == (0, 10, 19)
    )


def test_hostile_video_peak_memory_in_a_real_process(tmp_path):
    """`cammimic motion` on the canvas GIF: one line, and well under 1 GB of peak RSS (it was 4.76 GB)."""
    hostile = _hostile()
    gif = hostile.make_canvas_gif(tmp_path / "canvas.gif", side=4000, frames=100)
    code, rss, last = hostile.peak_rss(["motion", str(gif)])
    assert code == 1 and last.startswith("Error: ") and "keeping 100 frames of 4000x4000" in last
    assert rss < 400 * 2**20, rss
    code, rss, last = hostile.peak_rss(
        ["motion", str(gif), "--frames", "3", "--width", "64", "--height", "64"]
    )
    assert code == 0, last
    assert rss < 400 * 2**20, rss  # 100 canvases pass through the decoder, 3 are kept


def test_one_pixel_limit_for_every_image_path(tmp_path, monkeypatch):
    """16-bit PNG (OpenCV path), 8-bit PNG and TIFF (Pillow path): same limit, same line."""
    big16 = _hostile().make_png16_bomb(tmp_path / "big16.png", side=1500)
    Image.fromarray(np.zeros((1500, 1500), np.uint8)).save(tmp_path / "big8.png")
    Image.fromarray(np.zeros((1500, 1500), np.uint8)).save(tmp_path / "big.tif")
    cv2.imwrite(str(tmp_path / "bigf.tif"), np.zeros((1500, 1500, 3), np.float32))
    monkeypatch.setenv("CAMMIMIC_MAX_IMAGE_PIXELS", str(1500 * 1500 - 1))
    import cammimic.io as cio

    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    for name in ("big16.png", "big8.png", "big.tif", "bigf.tif"):
        with pytest.raises(
            CammimicError,
            match=rf"{name} is 1500x1500 \(2 Mpx\), above the limit of 2 Mpx per image "
            r".*CAMMIMIC_MAX_IMAGE_PIXELS",
        ) as info:
            cio.read_image(tmp_path / name)
        assert "\n" not in str(info.value)
    assert decoded == []  # refused from the header, before OpenCV decodes anything
    monkeypatch.setenv("CAMMIMIC_MAX_IMAGE_PIXELS", str(1500 * 1500))
    assert cio.read_image(big16).shape == (1500, 1500, 3)
    assert cio.read_image(tmp_path / "bigf.tif").shape == (1500, 1500, 3)


def test_default_image_limit_refuses_the_reported_bomb_in_one_line(tmp_path, capsys):
    """The reported 14000x14000 16-bit PNG (4.4 GiB for cv2) and an 8-bit one (Pillow's
    DecompressionBombError, once 'unexpected … report it')."""
    from cammimic.cli import main

    bomb = _hostile().make_png16_bomb(tmp_path / "bomb.png", side=14000)
    for path in (bomb,):
        with pytest.raises(
            CammimicError, match=r"is 14000x14000 \(196 Mpx\), above the limit of 179 Mpx"
        ):
            io.read_image(path)
    root = Path(__file__).resolve().parents[1] / "examples"
    code = main(
        [
            "run",
            str(root / "reference.mp4"),
            str(bomb),
            "-o",
            str(tmp_path / "o"),
            "--method",
            "homography",
            "--frames",
            "2",
            "--width",
            "32",
            "--height",
            "32",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 1
        and len(err) == 1
        and "decompression bomb" in err[0]
        and "unexpected" not in err[0]
    )
    assert not (tmp_path / "o").exists()
