"""What phones and the web do to photos, the two first-order pipelines beside Real-ESRGAN's: ``jpeg`` (mild
blur, bicubic down, heavy JPEG, maybe a re-save) and ``camera`` (mild blur, bicubic down, Poisson-Gaussian
sensor noise, the camera's JPEG). A draw (:func:`sample_photo_params`) applies at any scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .common import (_as_batch, _check_generator, _check_prob, _check_range, _check_scale, _draw_quality, _draw_seed,
                     _JsonConfig, _rand, _restore, _uniform, quantize_8bit)
from .kernels import _MIN_KERNEL_SIZE, gaussian_kernel
from .ops import add_gaussian_noise, add_poisson_noise, filter2d, jpeg_compress, seeded_normal_field


@dataclass(frozen=True)
class PhotoDegradationConfig(_JsonConfig):
    """The two first-order photo pipelines beside Real-ESRGAN's (ranges in the units of the draw).

    ``jpeg``: optional mild blur (prob ``jpeg_blur_prob``), bicubic down, JPEG with quality from ``jpeg_heavy``,
    a second JPEG (a re-save, prob ``jpeg_twice_prob``) with quality from ``jpeg_resave``.
    ``camera``: mild blur (prob ``camera_blur_prob``), bicubic down, Poisson-Gaussian sensor noise
    (Gaussian sigma ``camera_sigma`` in 0-255 units plus Poisson of scale ``camera_poisson``, gray with
    ``camera_gray_prob``), then the camera's own JPEG with quality from ``camera_jpeg``."""

    blur_sigma: tuple[float, float] = (0.3, 1.2)  # on the HR grid, isotropic Gaussian
    blur_kernel_size: int = 9
    jpeg_blur_prob: float = 0.3
    jpeg_heavy: tuple[float, float] = (20.0, 60.0)
    jpeg_twice_prob: float = 0.3
    jpeg_resave: tuple[float, float] = (20.0, 60.0)
    camera_blur_prob: float = 0.5
    camera_sigma: tuple[float, float] = (1.0, 8.0)
    camera_poisson: tuple[float, float] = (0.05, 1.0)
    camera_gray_prob: float = 0.2
    camera_jpeg: tuple[float, float] = (60.0, 95.0)

    def __post_init__(self) -> None:
        if not isinstance(self.blur_kernel_size, int) or self.blur_kernel_size < _MIN_KERNEL_SIZE \
                or self.blur_kernel_size % 2 == 0:
            raise ValueError(f"blur_kernel_size must be an odd int >= {_MIN_KERNEL_SIZE}, got {self.blur_kernel_size!r}")
        for name in ("blur_sigma", "jpeg_heavy", "jpeg_resave", "camera_sigma", "camera_poisson", "camera_jpeg"):
            _check_range(name, getattr(self, name))
        for name in ("jpeg_blur_prob", "jpeg_twice_prob", "camera_blur_prob", "camera_gray_prob"):
            _check_prob(name, getattr(self, name))
        for name in ("jpeg_heavy", "jpeg_resave", "camera_jpeg"):
            lo, hi = getattr(self, name)
            if lo < 1 or hi > 100:
                raise ValueError(f"{name} must lie in [1, 100], got {(lo, hi)}")
        if self.blur_sigma[0] <= 0:
            raise ValueError("blur_sigma must be positive")


@dataclass(frozen=True)
class PhotoDegradationParams:
    """One draw of a photo pipeline: blur sigma (0 = none), sensor noise (Gaussian sigma and Poisson
    scale in [0, 1] units, 0 = none, one seed), JPEG qualities in order (may be empty)."""

    kind: str
    blur_sigma: float
    noise_sigma: float
    noise_poisson: float
    noise_gray: bool
    noise_seed: int
    jpeg: tuple[int, ...]


def sample_photo_params(kind: str, cfg: PhotoDegradationConfig | None,
                        generator: torch.Generator) -> PhotoDegradationParams:
    """Draw one ``kind`` ("jpeg" or "camera") photo degradation from ``generator``."""
    cfg = PhotoDegradationConfig() if cfg is None else cfg
    g = _check_generator(generator)
    if kind == "jpeg":
        sigma = _uniform(g, *cfg.blur_sigma) if _rand(g) < cfg.jpeg_blur_prob else 0.0
        q = [_draw_quality(g, cfg.jpeg_heavy)]
        if _rand(g) < cfg.jpeg_twice_prob:
            q.append(_draw_quality(g, cfg.jpeg_resave))
        return PhotoDegradationParams("jpeg", sigma, 0.0, 0.0, False, 0, tuple(q))
    if kind == "camera":
        sigma = _uniform(g, *cfg.blur_sigma) if _rand(g) < cfg.camera_blur_prob else 0.0
        ns = _uniform(g, *cfg.camera_sigma) / 255.0
        npois = _uniform(g, *cfg.camera_poisson)
        gray = _rand(g) < cfg.camera_gray_prob
        return PhotoDegradationParams("camera", sigma, ns, npois, gray, _draw_seed(g),
                                      (_draw_quality(g, cfg.camera_jpeg),))
    raise ValueError(f"unknown photo degradation {kind!r}; choose jpeg or camera")


def apply_photo_degradation(hr: torch.Tensor, p: PhotoDegradationParams, scale: int,
                            blur_kernel_size: int = 9) -> torch.Tensor:
    """Degrade ``hr`` ((3, H, W)/(B, 3, H, W) in [0, 1], H, W divisible by ``scale``) with one photo draw:
    blur on the HR grid, anti-aliased bicubic down by ``scale``, sensor noise on the LR grid (one seeded
    field, see :func:`seeded_normal_field`, drawn at the HR size so the scales agree), 8-bit rounding, JPEG
    passes. Returns (…, H // scale, W // scale) float32 on 8-bit levels."""
    x, squeeze = _as_batch(hr, "hr", check_range=True)
    _check_scale(scale, x.shape[-2], x.shape[-1])
    h, w = x.shape[-2:]
    if p.blur_sigma > 0:
        x = filter2d(x, gaussian_kernel(blur_kernel_size, p.blur_sigma))
    if scale > 1:
        x = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    x = x.clamp(0.0, 1.0)
    if p.noise_sigma > 0 or p.noise_poisson > 0:
        size = tuple(x.shape[-2:])
        if p.noise_poisson > 0:
            z = seeded_normal_field(p.noise_seed, size, (h, w), device=x.device)
            x = add_poisson_noise(x, p.noise_poisson, gray=p.noise_gray, normal=z)
        if p.noise_sigma > 0:
            z = seeded_normal_field(p.noise_seed + 1, size, (h, w), device=x.device)
            x = add_gaussian_noise(x, p.noise_sigma, gray=p.noise_gray, normal=z)
    x = quantize_8bit(x)
    for q in p.jpeg:
        x = jpeg_compress(x, q)
    return _restore(x, squeeze)
