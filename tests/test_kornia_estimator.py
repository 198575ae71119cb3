"""The kornia plugin's direct (photometric) homography estimator."""

from __future__ import annotations

import inspect
import io
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("kornia")
torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

import cammimic_kornia  # noqa: E402

import cammimic  # noqa: E402
from cammimic.homography import corner_error  # noqa: E402
from cammimic.motion import MotionEstimate  # noqa: E402
from cammimic.synthetic import add_moving_object, camera_path, render_camera_motion  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def estimator():
    return cammimic_kornia.kornia_estimator(device="cpu")


def _photo(name: str) -> np.ndarray:
    if name == "astronaut":
        return cv2.resize(skdata.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    if name == "coffee":  # 400x600 -> 800x1200
        return cv2.resize(skdata.coffee(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    if name == "chelsea":  # 300x451 -> 750x1127
        return cv2.resize(skdata.chelsea(), None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    raise ValueError(name)


def _h264(frames: np.ndarray, crf: int = 23) -> np.ndarray:
    """Encode frames with libx264 (yuv420p) in memory and decode them back."""
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == frames.shape
    return decoded


def _video(kind, width, height, photo="astronaut", num_frames=16, variant="clean"):
    truth = camera_path(kind, num_frames, width, height)
    frames = render_camera_motion(_photo(photo), truth, width, height)
    if variant == "h264":
        frames = _h264(frames)
    elif variant == "object":
        patch = cv2.resize(skdata.chelsea(), (200, 150))[40:100, 60:120]  # a 60x60 cat face
        frames = add_moving_object(frames, patch, (0.2 * width, 0.3 * height), (4.0, 1.0))
    return frames, truth


# ---------------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    "kind, size, photo, variant",
    [
        ("pan", (256, 256), "astronaut", "clean"),
        ("zoom", (256, 256), "astronaut", "clean"),
        ("roll", (256, 256), "chelsea", "clean"),
        ("orbit", (256, 256), "astronaut", "clean"),
        ("pan_zoom", (576, 320), "coffee", "clean"),
        ("tilt_roll", (256, 256), "chelsea", "h264"),
        ("orbit", (256, 256), "coffee", "object"),
    ],
)
def test_accuracy(estimator, kind, size, photo, variant):
    width, height = size
    frames, truth = _video(kind, width, height, photo, variant=variant)
    result = estimator.estimate(frames)
    assert isinstance(result, MotionEstimate)
    assert result.homographies.shape == (15, 3, 3)
    assert (result.width, result.height, result.estimator) == (width, height, "kornia")
    assert result.fallbacks == ()
    err = corner_error(result.homographies, truth, width, height)
    assert err.mean() < 1.0, err
    assert err.max() < 2.0, err
    json.dumps(result.to_json())  # diagnostics are JSON-ready
    assert len(result.diagnostics["residual"]) == 15


def test_estimate_tensor_matches_estimate(estimator):
    frames, truth = _video("orbit", 128, 96, num_frames=4)
    hs = estimator.estimate_tensor(torch.from_numpy(frames).permute(0, 3, 1, 2).double() / 255)
    assert hs.shape == (3, 3, 3) and hs.dtype == torch.float64
    assert torch.allclose(hs[:, 2, 2], torch.ones(3, dtype=torch.float64))
    ref = estimator.estimate(frames).homographies
    assert corner_error(hs.detach().numpy(), ref, 128, 96).max() < 0.02
    assert corner_error(ref, truth, 128, 96).mean() < 1.0


# ---------------------------------------------------------------------- gradients


def _smooth_frames(shifts, size=32, seed=0):
    """Smooth random texture (float64) seen through integer shifts, as (T, 3, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 8, generator=gen, dtype=torch.float64)
    base = torch.nn.functional.interpolate(
        base, size=(size + 8, size + 8), mode="bicubic", align_corners=False
    )
    base = base.clamp(0, 1)[0]
    return torch.stack(
        [base[:, 2 + dy : 2 + dy + size, 2 + dx : 2 + dx + size] for dx, dy in shifts]
    ).contiguous()


@pytest.mark.parametrize("robust", ["none", "tukey"])
def test_gradcheck(robust):
    frames = _smooth_frames([(0, 0), (0, 1), (2, 1)]).requires_grad_(True)
    est = cammimic_kornia.kornia_estimator(
        device="cpu", levels=2, iterations=3, tolerance=0.0, robust=robust
    )
    hs = est.estimate_tensor(frames)
    # frame i+1 sees the texture shifted by (dx, dy) more, so content moves by -(dx, dy)
    assert torch.allclose(
        hs[:, :2, 2], torch.tensor([[0.0, -1.0], [-2.0, 0.0]], dtype=torch.float64), atol=0.05
    )
    assert torch.autograd.gradcheck(
        est.estimate_tensor, (frames,), fast_mode=True, atol=1e-5, rtol=1e-3
    )


def test_backward_real_size(estimator):
    frames, truth = _video("orbit", 256, 256, num_frames=4)
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255).requires_grad_(True)
    hs = estimator.estimate_tensor(x)
    # a loss that wants the estimated motion to be larger than the truth
    target = torch.from_numpy(truth).float() @ torch.from_numpy(truth).float()
    loss = (hs - target / target[:, 2:3, 2:3]).square().sum()
    loss.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# ---------------------------------------------------------------------- batching


def test_batch_equals_pairs(estimator):
    frames, _ = _video("orbit", 192, 128, num_frames=4)
    together = estimator.estimate(frames).homographies
    alone = np.stack([estimator.estimate(frames[i : i + 2]).homographies[0] for i in range(3)])
    assert corner_error(together, alone, 192, 128).max() < 1e-4


def test_chunked_equals_batched(estimator):
    frames, _ = _video("pan", 128, 128, num_frames=6)
    chunked = (
        cammimic_kornia.kornia_estimator(device="cpu", chunk_size=2).estimate(frames).homographies
    )
    assert corner_error(chunked, estimator.estimate(frames).homographies, 128, 128).max() < 1e-4


# ---------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize("break_with", ["grey", "cut", "black video"])
def test_fallback(estimator, break_with):
    frames, truth = _video("orbit", 192, 128, num_frames=6)
    frames = frames.copy()
    if break_with == "grey":
        frames[3] = 128
        broken = {2, 3}
    elif break_with == "cut":
        frames[3:] = cv2.resize(skdata.coffee(), (192, 128))
        broken = {2}
    else:
        frames[:] = 0
        broken = set(range(5))
    result = estimator.estimate(frames)
    hs = result.homographies
    assert np.isfinite(hs).all()
    assert {f.pair for f in result.fallbacks} == broken
    for f in result.fallbacks:
        assert f.reason and f.used == ("identity" if f.pair == 0 else "previous pair")
        expected = np.eye(3) if f.pair == 0 else hs[f.pair - 1]
        np.testing.assert_allclose(hs[f.pair], expected)
    if break_with == "grey":
        assert "uniform" in result.fallbacks[0].reason
        good = [i for i in range(5) if i not in broken]
        assert corner_error(hs[good], truth[good], 192, 128).max() < 1.0
    json.dumps(result.to_json())


# ---------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((4, 64, 64), np.uint8),  # no channels
        np.zeros((1, 64, 64, 3), np.uint8),  # one frame
        np.zeros((4, 3, 64, 64), np.uint8),  # channels first
        np.zeros((4, 64, 64, 4), np.uint8),  # RGBA
        np.zeros((4, 64, 64, 3), np.float32),  # not uint8
        np.zeros((4, 4, 4, 3), np.uint8),  # too small
        [[0]],  # not an array
    ],
)
def test_bad_input(estimator, frames):
    with pytest.raises(cammimic.CammimicError):
        estimator.estimate(frames)


@pytest.mark.parametrize(
    "frames",
    [
        torch.zeros(4, 64, 64, 3),  # channels last
        torch.zeros(1, 3, 64, 64),  # one frame
        torch.zeros(3, 64, 64),  # no time axis
        torch.zeros(4, 3, 64, 64, dtype=torch.uint8),  # not float
        np.zeros((4, 3, 64, 64), np.float32),  # not a tensor
    ],
)
def test_bad_tensor_input(estimator, frames):
    with pytest.raises(cammimic.CammimicError):
        estimator.estimate_tensor(frames)


@pytest.mark.parametrize(
    "params",
    [
        {"robust": "cauchy"},
        {"iterations": 0},
        {"iterations": "10"},
        {"levels": -1},
        {"levels": 2.5},
        {"tolerance": "small"},
        {"device": "tpu9"},
        {"min_correlation": 2.0},
    ],
)
def test_bad_parameters(params):
    with pytest.raises(cammimic.CammimicError):
        cammimic_kornia.kornia_estimator(**params)


# ---------------------------------------------------------------------- plugin surface


def test_import_is_light():
    code = "import cammimic_kornia, sys; assert 'torch' not in sys.modules and 'kornia' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_factory_signature():
    sig = inspect.signature(cammimic_kornia.kornia_estimator)
    assert sig.parameters, "the factory has parameters"
    for p in sig.parameters.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, p
        assert p.default is not inspect.Parameter.empty, p
        assert type(p.default) in (int, float, str, bool), p
    assert sig.parameters["device"].default == "auto"
    est = cammimic_kornia.kornia_estimator()
    assert est.name == "kornia"
    assert isinstance(est, cammimic.motion.MotionEstimator)
    assert est.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_register_hook():
    calls = []

    def register(name, factory, **kwargs):
        calls.append((name, factory, kwargs))

    cammimic_kornia.register_motion_estimators(register)
    assert len(calls) == 1
    name, factory, kwargs = calls[0]
    assert name == "kornia" and factory is cammimic_kornia.kornia_estimator
    assert kwargs["requires"] == ("torch", "kornia") and kwargs["extra"] == "kornia"
    assert kwargs["description"] and "\n" not in kwargs["description"]


# ---------------------------------------------------------------------- the functional core


def test_the_functional_core_is_what_the_estimator_runs():
    from cammimic_kornia.estimator import align_homographies, gauss_newton_level, pyramid_levels

    from cammimic.homography import resolution_free_matrix

    frames = render_camera_motion(_photo("astronaut"), camera_path("pan", 4, 96, 64), 96, 64)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    est = cammimic_kornia.kornia_estimator(device="cpu")
    h, stats = align_homographies(x)
    assert h.shape == (3, 3, 3) and h.dtype == torch.float32 and stats == {}
    assert torch.equal(h, est.estimate_tensor(x))
    assert pyramid_levels(64, 96) == 3 and pyramid_levels(64, 96, levels=9) == 5
    # one level at full resolution, from the identity, recovers the pan to a small fraction of a pixel
    gray = x.mean(dim=1, keepdim=True)
    eye = torch.eye(3).repeat(3, 1, 1)
    h_n, shift = gauss_newton_level(gray[:-1], gray[1:], eye, ax=64 / 96, ay=1.0, iterations=30)
    assert h_n.shape == (3, 3, 3) and shift.shape == (3,)
    n = torch.as_tensor(resolution_free_matrix(96, 64), dtype=torch.float64)
    h_pix = (torch.linalg.inv(n) @ h_n.double() @ n).numpy()
    assert max(corner_error(a, b, 96, 64) for a, b in zip(h_pix, h.double().numpy())) < 0.05
