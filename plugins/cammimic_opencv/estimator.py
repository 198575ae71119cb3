"""Keypoint-based homography estimation with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

from cammimic.errors import CammimicError
from cammimic.homography import rescale
from cammimic.motion import Fallback, MotionEstimate

DETECTORS = ("sift", "akaze", "orb")
METHODS = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.RANSAC}


class OpenCVEstimator:
    """Frame-to-frame homographies from matched keypoints; see :func:`cammimic_opencv.opencv_estimator`."""

    name = "opencv"

    def __init__(
        self,
        *,
        detector,
        max_features,
        ratio,
        method,
        threshold,
        min_matches,
        min_size=128,
        contrast_thresholds=(0.04, 0.01, 0.003),
    ):
        if detector not in DETECTORS:
            raise CammimicError(
                f"opencv detector '{detector}' is unknown. Try one of {list(DETECTORS)}"
            )
        if method not in METHODS:
            raise CammimicError(
                f"opencv method '{method}' is unknown. Try one of {sorted(METHODS)}"
            )
        if not 0 < ratio < 1:
            raise CammimicError(f"opencv ratio must be between 0 and 1, got {ratio}")
        if min_matches < 4:
            raise CammimicError(f"opencv min_matches must be at least 4, got {min_matches}")
        self.detector = detector
        self.max_features = max_features
        self.ratio = ratio
        self.method = method
        self.threshold = threshold
        self.min_matches = min_matches
        if min_size < 0:
            raise CammimicError(
                f"opencv min_size must be 0 (never upsample) or a size in pixels, got {min_size}"
            )
        self.min_size = int(min_size)
        cts = tuple(float(c) for c in contrast_thresholds)
        if not cts or any(not 0 < c < 1 for c in cts):
            raise CammimicError(
                f"opencv contrast_thresholds must be numbers between 0 and 1, got {list(contrast_thresholds)}"
            )
        self.contrast_thresholds = cts

    def _features(self, contrast=0.04):
        if self.detector == "sift":
            return cv2.SIFT_create(
                nfeatures=self.max_features, contrastThreshold=contrast
            ), cv2.NORM_L2
        if self.detector == "akaze":
            return cv2.AKAZE_create(), cv2.NORM_HAMMING
        return cv2.ORB_create(nfeatures=self.max_features), cv2.NORM_HAMMING

    def estimate(self, frames: np.ndarray) -> MotionEstimate:
        """Estimate T-1 homographies of ``frames`` ``(T, H, W, 3)`` uint8 RGB."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
            raise CammimicError(
                f"the opencv estimator needs (T>=2, H, W, 3) uint8 RGB frames, got {frames.shape} {frames.dtype}"
            )
        height, width = frames.shape[1:3]
        # Small frames (generated videos are often 64-128 px) have too few keypoints at native
        # size: upsample by an integer factor first and map the homographies back exactly.
        factor = (
            -(-self.min_size // min(height, width)) if self.min_size > min(height, width) else 1
        )
        contrasts = self.contrast_thresholds if self.detector == "sift" else (None,)
        extractors = [self._features(c) if c is not None else self._features() for c in contrasts]
        matcher = cv2.BFMatcher(extractors[0][1])
        feats, used_contrast = [], []
        for frame in frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            if factor > 1:
                gray = cv2.resize(
                    gray, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC
                )
            # Soft (low-contrast) frames: lower SIFT's contrast threshold until enough keypoints.
            for (feature, _), contrast in zip(extractors, contrasts):
                kp, desc = feature.detectAndCompute(gray, None)
                used = contrast
                if len(kp) >= 4 * self.min_matches:
                    break
            used_contrast.append(used)
            feats.append((np.float32([k.pt for k in kp]).reshape(-1, 2), desc))

        hs: list[np.ndarray | None] = []
        reasons: dict[int, str] = {}
        inliers: list[int] = []
        for i in range(len(frames) - 1):
            h, n_in, reason = self._pair(
                feats[i], feats[i + 1], matcher, width * factor, height * factor, factor
            )
            if h is not None and factor > 1:
                h = rescale(h, (width * factor, height * factor), (width, height))
            hs.append(h)
            inliers.append(n_in)
            if h is None:
                reasons[i] = reason

        fallbacks = []
        for i in sorted(reasons):
            j = _nearest_good(hs, i, reasons)
            if j is None:
                hs[i] = np.eye(3)
                used = "identity"
            else:
                hs[i] = hs[j]
                used = f"pair {j}"
            fallbacks.append(Fallback(pair=i, reason=reasons[i], used=used))
        return MotionEstimate(
            homographies=np.stack(hs),
            width=width,
            height=height,
            estimator=self.name,
            fallbacks=tuple(fallbacks),
            diagnostics={
                "inliers": inliers,
                "upsample": factor,
                "contrast_threshold": used_contrast,
            },
        )

    def _pair(self, a, b, matcher, width, height, factor=1):
        (pa, da), (pb, db) = a, b
        if da is None or db is None or len(pa) < self.min_matches or len(pb) < self.min_matches:
            n = min(len(pa), len(pb))
            return None, 0, f"{n} keypoints, need {self.min_matches}"
        good = []
        for pair in matcher.knnMatch(da, db, k=2):
            if len(pair) == 2 and pair[0].distance < self.ratio * pair[1].distance:
                good.append(pair[0])
        if len(good) < self.min_matches:
            return None, len(good), f"{len(good)} matches, need {self.min_matches}"
        src = pa[[m.queryIdx for m in good]]
        dst = pb[[m.trainIdx for m in good]]
        h, mask = cv2.findHomography(
            src,
            dst,
            METHODS[self.method],
            self.threshold * factor,
            maxIters=10000,
            confidence=0.9999,
        )
        n_in = int(mask.sum()) if mask is not None else 0
        if h is None or n_in < self.min_matches:
            return None, n_in, f"{n_in} inliers, need {self.min_matches}"
        h = h / h[2, 2]
        if not _plausible(h, width, height):
            return None, n_in, "implausible homography (degenerate or extreme)"
        return h, n_in, ""


def _plausible(h: np.ndarray, width: int, height: int) -> bool:
    """Reject degenerate fits: a frame-to-frame camera move never flips or halves the image."""
    if not np.all(np.isfinite(h)):
        return False
    det = np.linalg.det(h[:2, :2])
    if not 0.5 < det < 2.0:
        return False
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float
    )
    w = corners @ h[2]
    return bool(np.all(w > 0.5))


def _nearest_good(hs, i, bad) -> int | None:
    """The nearest frame pair that was estimated, preferring the previous one."""
    for d in range(1, len(hs)):
        for j in (i - d, i + d):
            if 0 <= j < len(hs) and j not in bad and hs[j] is not None:
                return j
    return None
