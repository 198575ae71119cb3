"""The eval metrics: weight-free image metrics, and DINOv2 / CLIP / X-CLIP similarities."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from cammimic.errors import CammimicError


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images (over ``mask`` pixels when given); inf when identical."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean()) if d.size else float("nan")
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) of two uint8 RGB images,
    averaged over channels; equals ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    out = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        blur = _gauss
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        pad = 5  # skimage crops (win_size - 1) // 2 = 5 px of border (win_size 11 at sigma 1.5)
        out.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(out))


def _gauss(z: np.ndarray) -> np.ndarray:
    # skimage: scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5), mode "reflect" (= cv2 REFLECT)
    k = cv2.getGaussianKernel(11, 1.5)  # radius int(3.5 * 1.5 + 0.5) = 5
    return cv2.sepFilter2D(z, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)


class FirstFrame:
    """PSNR and SSIM of the output's first frame to the user image (the paper's method starts there)."""

    name = "first_frame"
    columns = ("psnr_first", "ssim_first")

    def compute(self, sample) -> dict[str, float]:
        return {
            "psnr_first": psnr(sample.output[0], sample.image),
            "ssim_first": ssim(sample.output[0], sample.image),
        }


class InView:
    """PSNR of the output to the weak video over the pixels where the weak video has content."""

    name = "in_view"
    columns = ("psnr_in_view",)

    def compute(self, sample) -> dict[str, float]:
        return {"psnr_in_view": psnr(sample.output, sample.weak, sample.weak_masks)}


# -- models with weights ----------------------------------------------------------------------
def _device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load(cls, what: str, weights: str, metric: str, layout: str):
    """``cls.from_pretrained(weights)``, with a one-line error when the weights are not there."""
    local = Path(weights).expanduser()
    # A Hub id is "org/name"; anything that exists or starts like a path is a folder.
    looks_local = local.exists() or weights.startswith((".", "/", "~")) or weights.count("/") > 1
    from huggingface_hub import constants

    offline = any(
        (os.environ.get(k) or "").upper() in {"1", "ON", "YES", "TRUE"}
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ) or bool(constants.HF_HUB_OFFLINE)
    try:
        if looks_local:
            if not local.is_dir():
                raise CammimicError(
                    f"{metric} weights folder {weights} does not exist; --metric-weights {metric}=DIR needs {layout}"
                )
            return cls.from_pretrained(str(local))
        return cls.from_pretrained(weights, local_files_only=offline)
    except CammimicError:
        raise
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        if looks_local:
            raise CammimicError(
                f"could not load {metric} {what} from {weights}: {first}; the folder needs {layout}"
            ) from exc
        reason = (
            "are not in the Hugging Face cache and downloads are off (HF_HUB_OFFLINE)"
            if offline
            else f"could not be loaded from the Hub or the Hugging Face cache: {first}"
        )
        raise CammimicError(
            f'{metric} weights "{weights}" {reason}; download them once online (hf download {weights}), '
            f"pass a local folder with --metric-weights {metric}=DIR ({layout}), or leave {metric} out of --metrics"
        ) from exc


class _TorchMetric:
    def __init__(self, weights: str, device: str):
        self.weights = str(weights)
        self.device = _device(device)

    def _pixels(self, processor, frames: np.ndarray):
        return processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)


class Dinov2Similarity(_TorchMetric):
    """Scene preservation: mean cosine similarity of DINOv2 CLS embeddings of output frames to the user image."""

    name = "dinov2"
    columns = ("dinov2",)

    def __init__(self, *, weights: str, device: str):
        super().__init__(weights, device)
        from transformers import AutoImageProcessor, Dinov2Model

        layout = "config.json, model.safetensors and preprocessor_config.json (Dinov2Model.save_pretrained)"
        self.model = (
            _load(Dinov2Model, "model", self.weights, "dinov2", layout).to(self.device).eval()
        )
        self.processor = _load(
            AutoImageProcessor, "image processor", self.weights, "dinov2", layout
        )

    def compute(self, sample) -> dict[str, float]:
        import torch

        with torch.no_grad():
            x = self._pixels(self.processor, np.concatenate([sample.image[None], sample.output]))
            cls = self.model(pixel_values=x).last_hidden_state[:, 0].float()
            cls = torch.nn.functional.normalize(cls, dim=-1)
        return {"dinov2": float((cls[1:] @ cls[0]).mean())}


class ClipTextSimilarity(_TorchMetric):
    """Text alignment: cosine similarity of CLIP image embeddings of output frames to the prompt t_u, frame-averaged."""

    name = "clip"
    columns = ("clip",)

    def __init__(self, *, weights: str, device: str):
        super().__init__(weights, device)
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        layout = "config.json, model.safetensors, preprocessor_config.json and the tokenizer files (CLIPModel/CLIPProcessor.save_pretrained)"
        self.model = _load(CLIPModel, "model", self.weights, "clip", layout).to(self.device).eval()
        self.processor = _load(CLIPImageProcessor, "image processor", self.weights, "clip", layout)
        self.tokenizer = _load(CLIPTokenizer, "tokenizer", self.weights, "clip", layout)

    def compute(self, sample) -> dict[str, float]:
        import torch

        with torch.no_grad():
            x = self._pixels(self.processor, sample.output)
            tok = self.tokenizer(
                [sample.item.prompt],
                padding="max_length",
                truncation=True,
                max_length=min(77, self.model.config.text_config.max_position_embeddings),
                return_tensors="pt",
            ).to(self.device)
            img = _embeds(self.model.get_image_features(pixel_values=x))
            txt = _embeds(self.model.get_text_features(**tok))
        return {"clip": float((img @ txt[0]).mean())}


class XClipSimilarity(_TorchMetric):
    """Video-text alignment: X-CLIP cosine similarity of the whole output video to the prompt t_u."""

    name = "xclip"
    columns = ("xclip",)

    def __init__(self, *, weights: str, device: str):
        super().__init__(weights, device)
        from transformers import AutoProcessor, XCLIPModel

        layout = "config.json, model.safetensors and the processor files (XCLIPModel/XCLIPProcessor.save_pretrained)"
        self.model = (
            _load(XCLIPModel, "model", self.weights, "xclip", layout).to(self.device).eval()
        )
        self.processor = _load(AutoProcessor, "processor", self.weights, "xclip", layout)
        self.num_frames = int(self.model.config.vision_config.num_frames)

    def compute(self, sample) -> dict[str, float]:
        import torch

        idx = np.round(np.linspace(0, len(sample.output) - 1, self.num_frames)).astype(int)
        with torch.no_grad():
            inputs = self.processor(
                text=[sample.item.prompt],
                videos=[list(sample.output[idx])],
                return_tensors="pt",
                padding=True,
            )
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            out = self.model(**inputs)
            v = _embeds(out.video_embeds)
            t = _embeds(out.text_embeds.reshape(-1, out.text_embeds.shape[-1]))
        return {"xclip": float((v[0] * t[0]).sum())}


def _embeds(x):
    import torch

    if not isinstance(x, torch.Tensor):  # transformers 5 returns a ModelOutput from get_*_features
        x = (
            getattr(x, "pooler_output", None)
            if getattr(x, "pooler_output", None) is not None
            else x[0]
        )
    return torch.nn.functional.normalize(x.float(), dim=-1)
