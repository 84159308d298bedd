"""Quality and size metrics used by every evaluation.

Conventions (stated once, used everywhere):
- Images are numpy arrays H×W×3 RGB, uint8 or float in [0, 1]; everything is computed in float64 on [0, 1].
- PSNR: peak 1.0; `psnr` on RGB (all channels pooled), `psnr_y` on BT.601 studio-range luma
  (Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255), the super-resolution literature's convention.
- SSIM: Wang et al. 2004, Gaussian window σ = 1.5 (11×11), K1 = 0.01, K2 = 0.03, per RGB channel, averaged.
- SI (paper eq. 15): Sobel (3×3, OpenCV) gradients s_h, s_v of the full-range BT.601 luma on [0, 1];
  we report the *mean* of sqrt(s_h² + s_v²) over the image (lower = less spatial information).
- Bytes: lengths of real lossless PNG bitstreams from `refscale_model.io.images` (LR RGB, S_map grey).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from refscale_model.io.images import encode_png
from refscale_model.io.smap_coding import encode_smap


def to_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return image.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all RGB values (peak 1.0); inf for identical images."""
    _check_pair(a, b)
    mse = float(np.mean((to_float(a) - to_float(b)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def uint8_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """`psnr` of two uint8 images in integer arithmetic: no float64 copies of the frame (the car runs it
    on every coded LR)."""
    _check_pair(a, b)
    d = (a.astype(np.int16) - b).ravel().astype(np.int64)
    sse = int(d @ d)  # exact: integer sums
    return float("inf") if sse == 0 else 10.0 * float(np.log10(255.0**2 * d.size / sse))


def luma_bt601_studio(image: np.ndarray) -> np.ndarray:
    x = to_float(image)
    return (16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def luma_bt601_full(image: np.ndarray) -> np.ndarray:
    x = to_float(image)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    _check_pair(a, b)
    mse = float(np.mean((luma_bt601_studio(a) - luma_bt601_studio(b)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = 0.01**2, 0.03**2

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over RGB channels (1.0 for identical images)."""
    _check_pair(a, b)
    x, y = to_float(a), to_float(b)
    if x.ndim == 2:
        return _ssim_channel(x, y)
    return float(np.mean([_ssim_channel(x[..., c], y[..., c]) for c in range(x.shape[2])]))


def spatial_information(image: np.ndarray) -> float:
    """SI of eq. 15: mean Sobel gradient magnitude of the full-range luma on [0, 1]."""
    y = luma_bt601_full(image) if image.ndim == 3 else to_float(image)
    sh = cv2.Sobel(y, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    sv = cv2.Sobel(y, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return float(np.mean(np.sqrt(sh**2 + sv**2)))


@dataclass(frozen=True)
class FrameBytes:
    """Real encoded sizes of one stored frame."""

    lr_bytes: int
    smap_bytes: int
    lr_pixels: int
    hr_pixels: int

    @property
    def bytes_per_frame(self) -> int:
        return self.lr_bytes + self.smap_bytes

    @property
    def bpp_lr(self) -> float:
        """Bits per LR pixel (LR PNG + the S_map as the bag stores it, as the paper's bpp)."""
        return 8.0 * self.bytes_per_frame / self.lr_pixels

    @property
    def bpp_hr(self) -> float:
        return 8.0 * self.bytes_per_frame / self.hr_pixels


def frame_bytes(lr: np.ndarray, smap: np.ndarray | None, hr_size: tuple[int, int]) -> FrameBytes:
    """Encode LR (H×W×3 uint8) as PNG and the S_map (H×W uint8 or None) as the bag stores it; count the bytes."""
    smap_bytes = len(encode_smap(smap)[1]) if smap is not None else 0
    return FrameBytes(
        lr_bytes=len(encode_png(lr)),
        smap_bytes=smap_bytes,
        lr_pixels=lr.shape[0] * lr.shape[1],
        hr_pixels=hr_size[0] * hr_size[1],
    )
