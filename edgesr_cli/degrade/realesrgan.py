"""Real-ESRGAN's second-order degradation (Wang et al., 2021): its config (:class:`DegradationConfig`), one
draw of every random choice (:func:`sample_params`, size independent) and applying it at a scale
(:func:`apply_degradation`); :func:`degrade` is both."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .common import (_as_batch, _check_generator, _check_prob, _check_probs, _check_range, _check_scale, _choice,
                     _draw_quality, _JsonConfig, _rand, _restore, _uniform, quantize_8bit)
from .kernels import _MIN_KERNEL_SIZE, KERNEL_TYPES, _pad_kernel, _random_kernel_size, random_blur_kernel, sinc_kernel
from .ops import (RESIZE_MODES, NoiseParams, _scaled_size, add_noise, filter2d, jpeg_compress, resize, sample_noise,
                  sample_resize)


@dataclass(frozen=True)
class DegradationConfig(_JsonConfig):
    """All probabilities and ranges of the second-order degradation.

    Defaults are Real-ESRGAN x4plus' published training values.  Fields ending
    in ``2`` are the second-order counterparts.  ``resize_prob*`` are the
    probabilities of ``(up, down, keep)`` (Real-ESRGAN's order).  Noise sigmas
    (``noise_range*``) are in 8-bit units (0-255).  ``second_blur_prob`` is the
    probability of *applying* the second blur (it is skipped with probability
    ``1 - second_blur_prob``).  ``final_jpeg_first_prob`` is the probability
    that the final JPEG comes before the final resize + sinc filter.
    """

    # first-order blur
    blur_kernel_size: int = 21
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    # second-order blur
    blur_kernel_size2: int = 21
    kernel_list2: tuple[str, ...] = KERNEL_TYPES
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    # final sinc
    final_sinc_prob: float = 0.8
    # first-order resize / noise / jpeg
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # second-order
    second_blur_prob: float = 0.8
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # choices Real-ESRGAN makes uniformly
    resize_modes: tuple[str, ...] = RESIZE_MODES
    final_jpeg_first_prob: float = 0.5

    def __post_init__(self) -> None:
        for suffix in ("", "2"):
            size = getattr(self, "blur_kernel_size" + suffix)
            if not isinstance(size, int) or size < _MIN_KERNEL_SIZE or size % 2 == 0:
                raise ValueError(
                    f"blur_kernel_size{suffix} must be an odd int >= {_MIN_KERNEL_SIZE}, got {size!r}"
                )
            names = getattr(self, "kernel_list" + suffix)
            probs = getattr(self, "kernel_prob" + suffix)
            unknown = [n for n in names if n not in KERNEL_TYPES]
            if unknown:
                raise ValueError(f"kernel_list{suffix}: unknown kernel types {unknown}; known: {KERNEL_TYPES}")
            if len(names) != len(probs):
                raise ValueError(f"kernel_list{suffix} and kernel_prob{suffix} must have the same length")
            _check_probs(f"kernel_prob{suffix}", probs)
            _check_probs(f"resize_prob{suffix}", getattr(self, "resize_prob" + suffix), length=3)
            for name in ("blur_sigma", "betag_range", "betap_range", "resize_range",
                         "noise_range", "poisson_scale_range", "jpeg_range"):
                _check_range(name + suffix, getattr(self, name + suffix))
            for name in ("sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
                _check_prob(name + suffix, getattr(self, name + suffix))
            lo, hi = getattr(self, "jpeg_range" + suffix)
            if lo < 1 or hi > 100:
                raise ValueError(f"jpeg_range{suffix} must lie in [1, 100], got {(lo, hi)}")
            lo, hi = getattr(self, "resize_range" + suffix)
            if lo <= 0 or lo > 1 or hi < 1:
                raise ValueError(f"resize_range{suffix} must satisfy 0 < lo <= 1 <= hi, got {(lo, hi)}")
            if getattr(self, "blur_sigma" + suffix)[0] <= 0:
                raise ValueError(f"blur_sigma{suffix} must be positive")
        for name in ("final_sinc_prob", "second_blur_prob", "final_jpeg_first_prob"):
            _check_prob(name, getattr(self, name))
        if not self.resize_modes or any(m not in RESIZE_MODES for m in self.resize_modes):
            raise ValueError(f"resize_modes must be a non-empty subset of {RESIZE_MODES}, got {self.resize_modes}")


def random_mixed_kernel(cfg: DegradationConfig, generator: torch.Generator, *,
                        second_order: bool = False) -> torch.Tensor:
    """Draw a first- (or second-) order blur kernel as Real-ESRGAN does.

    The support size is drawn from the odd sizes ``7 .. blur_kernel_size``; with
    probability ``sinc_prob`` the kernel is a sinc (cutoff in ``[pi/3, pi]`` for
    sizes < 13, ``[pi/5, pi]`` otherwise), else a kernel type is drawn from
    ``kernel_list``/``kernel_prob``.  Returns a (S, S) float32 tensor summing
    to 1, zero-padded to ``S = blur_kernel_size`` (``blur_kernel_size2`` when
    ``second_order``).
    """
    g = _check_generator(generator)
    sfx = "2" if second_order else ""
    max_size = getattr(cfg, "blur_kernel_size" + sfx)
    size = _random_kernel_size(g, max_size)
    if _rand(g) < getattr(cfg, "sinc_prob" + sfx):
        cutoff = _uniform(g, math.pi / 3, math.pi) if size < 13 else _uniform(g, math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff, pad_to=max_size)
    kernel_type = _choice(g, getattr(cfg, "kernel_list" + sfx), getattr(cfg, "kernel_prob" + sfx))
    kernel = random_blur_kernel(kernel_type, size, getattr(cfg, "blur_sigma" + sfx),
                                getattr(cfg, "betag_range" + sfx), getattr(cfg, "betap_range" + sfx), g)
    return _pad_kernel(kernel, max_size)


def _final_sinc_kernel(cfg: DegradationConfig, g: torch.Generator) -> torch.Tensor | None:
    if _rand(g) < cfg.final_sinc_prob:
        size = _random_kernel_size(g, cfg.blur_kernel_size)
        return sinc_kernel(size, _uniform(g, math.pi / 3, math.pi), pad_to=cfg.blur_kernel_size)
    return None


@dataclass(eq=False)
class DegradationParams:
    """One draw of every random choice of the second-order pipeline (size independent).

    Kernels are (K, K) float32 tensors summing to 1; ``kernel2`` is None when
    the second blur is skipped and ``final_kernel`` None when there is no final
    sinc filter.  Resize factors are relative: ``resize1_scale`` to the HR
    size, ``resize2_scale`` to the target LR size (as in Real-ESRGAN).
    """

    kernel1: torch.Tensor
    resize1_scale: float
    resize1_mode: str
    noise1: NoiseParams
    jpeg1_quality: int
    kernel2: torch.Tensor | None
    resize2_scale: float
    resize2_mode: str
    noise2: NoiseParams
    jpeg2_quality: int
    final_kernel: torch.Tensor | None
    final_resize_mode: str
    final_jpeg_first: bool = field(default=False)


def sample_params(cfg: DegradationConfig | None, generator: torch.Generator) -> DegradationParams:
    """Draw all random choices of one degradation from ``generator`` (``cfg`` None = defaults)."""
    cfg = DegradationConfig() if cfg is None else cfg
    g = _check_generator(generator)
    kernel1 = random_mixed_kernel(cfg, g)
    kernel2 = random_mixed_kernel(cfg, g, second_order=True)
    if _rand(g) >= cfg.second_blur_prob:
        kernel2 = None
    final_kernel = _final_sinc_kernel(cfg, g)
    resize1_scale, resize1_mode = sample_resize(cfg.resize_prob, cfg.resize_range, g, cfg.resize_modes)
    noise1 = sample_noise(cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range,
                          cfg.gray_noise_prob, g)
    jpeg1 = _draw_quality(g, cfg.jpeg_range)
    resize2_scale, resize2_mode = sample_resize(cfg.resize_prob2, cfg.resize_range2, g, cfg.resize_modes)
    noise2 = sample_noise(cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                          cfg.gray_noise_prob2, g)
    jpeg2 = _draw_quality(g, cfg.jpeg_range2)
    final_jpeg_first = _rand(g) < cfg.final_jpeg_first_prob
    final_resize_mode = _choice(g, cfg.resize_modes)
    return DegradationParams(
        kernel1=kernel1, resize1_scale=resize1_scale, resize1_mode=resize1_mode, noise1=noise1,
        jpeg1_quality=jpeg1, kernel2=kernel2, resize2_scale=resize2_scale, resize2_mode=resize2_mode,
        noise2=noise2, jpeg2_quality=jpeg2, final_kernel=final_kernel,
        final_resize_mode=final_resize_mode, final_jpeg_first=final_jpeg_first,
    )


def _degrade_one(x: torch.Tensor, p: DegradationParams, scale: int) -> torch.Tensor:
    """x: (B, 3, H, W) in [0, 1], one params for the whole batch."""
    h, w = x.shape[-2:]
    lr_size = (h // scale, w // scale)
    # First order, on the HR grid: identical for every scale.
    out = filter2d(x, p.kernel1)
    out = resize(out, _scaled_size((h, w), p.resize1_scale), p.resize1_mode)
    out = add_noise(out, p.noise1)
    out = jpeg_compress(out, p.jpeg1_quality)
    # Second order, on a grid relative to the LR size; noise from a scale-1 reference field.
    if p.kernel2 is not None:
        out = filter2d(out, p.kernel2)
    out = resize(out, _scaled_size(lr_size, p.resize2_scale), p.resize2_mode)
    out = add_noise(out, p.noise2, reference_size=_scaled_size((h, w), p.resize2_scale))
    # Final: (resize + sinc, JPEG) in random order.
    if p.final_jpeg_first:
        out = jpeg_compress(out, p.jpeg2_quality)
        out = resize(out, lr_size, p.final_resize_mode)
        if p.final_kernel is not None:
            out = filter2d(out, p.final_kernel)
    else:
        out = resize(out, lr_size, p.final_resize_mode)
        if p.final_kernel is not None:
            out = filter2d(out, p.final_kernel)
        out = jpeg_compress(out, p.jpeg2_quality)
    return quantize_8bit(out)


def apply_degradation(hr: torch.Tensor, params: DegradationParams | Sequence[DegradationParams],
                      scale: int) -> torch.Tensor:
    """Degrade ``hr`` with fixed ``params`` to an LR image ``scale`` times smaller.

    ``hr``: (3, H, W) or (B, 3, H, W) float in [0, 1], H and W divisible by
    ``scale``.  ``params``: one :class:`DegradationParams` shared by the batch,
    or a sequence with one per image.  Returns (…, H // scale, W // scale)
    float32 in [0, 1] on 8-bit levels.  Deterministic: the same params give the
    same result, and the results at different scales are consistent.
    """
    x, squeeze = _as_batch(hr, "hr", check_range=True)
    _check_scale(scale, x.shape[-2], x.shape[-1])
    if isinstance(params, DegradationParams):
        out = _degrade_one(x, params, scale)
    else:
        plist = list(params)
        if len(plist) != x.shape[0] or not all(isinstance(p, DegradationParams) for p in plist):
            raise ValueError(f"params must be one DegradationParams or {x.shape[0]} of them (one per image)")
        out = torch.cat([_degrade_one(x[i:i + 1], p, scale) for i, p in enumerate(plist)])
    return _restore(out, squeeze)


def degrade(hr: torch.Tensor, scale: int, cfg: DegradationConfig | None,
            generator: torch.Generator) -> torch.Tensor:
    """Random Real-ESRGAN degradation: independent :func:`sample_params` per image, then
    :func:`apply_degradation`.  (3, H, W)/(B, 3, H, W) in [0, 1] -> (…, H // scale, W // scale)
    in [0, 1] on 8-bit levels."""
    x, _ = _as_batch(hr, "hr", check_range=True)
    _check_scale(scale, x.shape[-2], x.shape[-1])
    g = _check_generator(generator)
    params = [sample_params(cfg, g) for _ in range(x.shape[0])]
    return apply_degradation(hr, params, scale)
