"""Real-ESRGAN style second-order degradation (Wang et al., 2021), as pure functions.

Everything here works on float32 torch tensors holding RGB images in ``[0, 1]``,
either a single image ``(3, H, W)`` or a batch ``(B, 3, H, W)``; the output of
each op has the same number of dimensions as its input.

Randomness only ever comes from an explicit ``torch.Generator`` passed by the
caller (the global RNG is never touched), and nothing is registered at import
time.

The pipeline is split in two so that one draw of random parameters can be
applied at several scales (needed for scale distillation):

* :func:`sample_params` draws a :class:`DegradationParams` (kernels, resize
  factors and modes, noise types/levels/seeds, JPEG qualities, final order).
  The params do not depend on the image size.
* :func:`apply_degradation` applies them to an HR image for a given integer
  scale and returns the LR image of size ``(H // scale, W // scale)``.

The first-order stage runs on the HR grid and is therefore identical for every
scale.  The second-order stage runs on a grid relative to the LR size (as in
Real-ESRGAN); its noise is derived from one seeded reference field at the
scale-1 size, area-downsampled to the size needed and rescaled to unit
variance, so the noise realisations at x2 and x4 are correlated instead of
independent.

:func:`degrade` is ``sample_params`` + ``apply_degradation``; :func:`bicubic_lr`
is the clean (bicubic, anti-aliased) pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "DegradationConfig",
    "NoiseParams",
    "DegradationParams",
    "gaussian_kernel",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "sinc_kernel",
    "random_blur_kernel",
    "random_mixed_kernel",
    "filter2d",
    "resize",
    "sample_resize",
    "random_resize",
    "seeded_normal_field",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_noise",
    "sample_noise",
    "random_add_noise",
    "jpeg_compress",
    "random_jpeg",
    "quantize_8bit",
    "sample_params",
    "apply_degradation",
    "degrade",
    "bicubic_lr",
]

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
RESIZE_MODES = ("area", "bilinear", "bicubic")
_MIN_KERNEL_SIZE = 7

# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------


class _JsonConfig:
    """to_dict / from_dict of a frozen dataclass config (tuples <-> lists, unknown keys refused)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return {f.name: _to_json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; lists become tuples again, unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**{k: _from_json_value(v) for k, v in data.items()})


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



def _to_json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json_value(v) for v in value]
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_from_json_value(v) for v in value)
    return value


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_probs(name: str, probs: Sequence[float], length: int | None = None) -> None:
    if length is not None and len(probs) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(probs)}")
    if not probs or any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ValueError(f"{name} must be non-negative and sum to 1, got {tuple(probs)}")


def _check_range(name: str, rng: Sequence[float]) -> None:
    if len(rng) != 2 or not rng[0] <= rng[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {rng!r}")


# ----------------------------------------------------------------------------
# Random draws (always from an explicit generator)
# ----------------------------------------------------------------------------


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _rand(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g, dtype=torch.float64))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo) + (float(hi) - float(lo)) * _rand(g)


def _choice(g: torch.Generator, options: Sequence[Any], probs: Sequence[float] | None = None) -> Any:
    if probs is None:
        probs = [1.0] * len(options)
    u = _rand(g) * float(sum(probs))
    acc = 0.0
    for option, p in zip(options, probs):
        acc += p
        if u < acc:
            return option
    # floating point edge: fall back to the last option with non-zero weight
    return [o for o, p in zip(options, probs) if p > 0][-1]


def _draw_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=g))


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------


def _check_kernel_size(kernel_size: int) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")


def _grid(kernel_size: int) -> torch.Tensor:
    """(K, K, 2) float64 grid of (x, y) offsets from the kernel centre."""
    half = kernel_size // 2
    ax = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack((xx, yy), dim=-1)


def _quadratic_form(kernel_size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """x^T Sigma^-1 x on the kernel grid, Sigma = R diag(sx^2, sy^2) R^T."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {(sigma_x, sigma_y)}")
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    pts = _grid(kernel_size)
    return torch.einsum("hwi,ij,hwj->hw", pts, inv, pts)


def _normalize(kernel: torch.Tensor) -> torch.Tensor:
    return (kernel / kernel.sum()).to(torch.float32)


def gaussian_kernel(kernel_size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> torch.Tensor:
    """Bivariate Gaussian kernel, (K, K) float32 summing to 1.

    Isotropic when ``sigma_y`` is None (or equal to ``sigma_x``); ``theta`` is the
    rotation in radians of the anisotropic covariance.
    """
    _check_kernel_size(kernel_size)
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalize(torch.exp(-0.5 * q))


def generalized_gaussian_kernel(kernel_size: int, sigma_x: float, sigma_y: float | None = None,
                                theta: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Generalized Gaussian kernel ``exp(-0.5 * q^beta)``, (K, K) float32 summing to 1.

    ``beta = 1`` is the ordinary Gaussian; smaller beta gives heavier tails.
    """
    _check_kernel_size(kernel_size)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalize(torch.exp(-0.5 * q.pow(beta)))


def plateau_kernel(kernel_size: int, sigma_x: float, sigma_y: float | None = None,
                   theta: float = 0.0, beta: float = 1.0) -> torch.Tensor:
    """Plateau-shaped kernel ``1 / (1 + q^beta)``, (K, K) float32 summing to 1."""
    _check_kernel_size(kernel_size)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    q = _quadratic_form(kernel_size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalize(1.0 / (q.pow(beta) + 1.0))


def sinc_kernel(kernel_size: int, cutoff: float, pad_to: int | None = None) -> torch.Tensor:
    """2D sinc (ideal circular low-pass) kernel, (P, P) float32 summing to 1.

    ``k(r) = cutoff * J1(cutoff * r) / (2 pi r)`` with the limit
    ``cutoff^2 / (4 pi)`` at ``r = 0``; ``cutoff`` is in radians per pixel
    (``pi`` = Nyquist).  The kernel is zero-padded to ``pad_to`` (odd, >= K).
    Note: it has negative lobes (ringing), but still sums to 1.
    """
    _check_kernel_size(kernel_size)
    if not 0 < cutoff <= math.pi:
        raise ValueError(f"cutoff must be in (0, pi], got {cutoff}")
    r = _grid(kernel_size).norm(dim=-1)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe_r) / (2 * math.pi * safe_r)
    kernel = torch.where(r > 0, kernel, torch.full_like(r, cutoff**2 / (4 * math.pi)))
    return _pad_kernel(_normalize(kernel), pad_to)


def _pad_kernel(kernel: torch.Tensor, pad_to: int | None) -> torch.Tensor:
    if pad_to is None or pad_to == kernel.shape[-1]:
        return kernel
    _check_kernel_size(pad_to)
    if pad_to < kernel.shape[-1]:
        raise ValueError(f"pad_to ({pad_to}) is smaller than the kernel ({kernel.shape[-1]})")
    p = (pad_to - kernel.shape[-1]) // 2
    return F.pad(kernel, (p, p, p, p))


def _draw_beta(g: torch.Generator, beta_range: Sequence[float]) -> float:
    # Half the time below 1 (heavier tails), half above, as Real-ESRGAN does.
    lo, hi = beta_range
    if _rand(g) < 0.5:
        return _uniform(g, lo, min(1.0, hi))
    return _uniform(g, max(1.0, lo), hi)


def random_blur_kernel(kernel_type: str, kernel_size: int, sigma_range: Sequence[float],
                       betag_range: Sequence[float], betap_range: Sequence[float],
                       generator: torch.Generator) -> torch.Tensor:
    """Draw one kernel of the named type (one of :data:`KERNEL_TYPES`), (K, K) float32, sum 1.

    Isotropic types use a single sigma and no rotation; anisotropic ones draw
    two sigmas and a rotation in ``[-pi, pi]``.
    """
    g = _check_generator(generator)
    if kernel_type not in KERNEL_TYPES:
        raise ValueError(f"unknown kernel type {kernel_type!r}; known: {KERNEL_TYPES}")
    sigma_x = _uniform(g, *sigma_range)
    if kernel_type.endswith("aniso"):
        sigma_y = _uniform(g, *sigma_range)
        theta = _uniform(g, -math.pi, math.pi)
    else:
        sigma_y, theta = sigma_x, 0.0
    if kernel_type.startswith("generalized"):
        return generalized_gaussian_kernel(kernel_size, sigma_x, sigma_y, theta, _draw_beta(g, betag_range))
    if kernel_type.startswith("plateau"):
        return plateau_kernel(kernel_size, sigma_x, sigma_y, theta, _draw_beta(g, betap_range))
    return gaussian_kernel(kernel_size, sigma_x, sigma_y, theta)


def _random_kernel_size(g: torch.Generator, max_size: int) -> int:
    return _choice(g, list(range(_MIN_KERNEL_SIZE, max_size + 1, 2)))


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


# ----------------------------------------------------------------------------
# Tensor helpers
# ----------------------------------------------------------------------------


def _as_batch(img: Any, name: str = "img", check_range: bool = False) -> tuple[torch.Tensor, bool]:
    """Validate an RGB float tensor and return it as (B, 3, H, W) plus 'was 3D'."""
    if not isinstance(img, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor in [0, 1], got dtype {img.dtype}")
    if img.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (3, H, W) or (B, 3, H, W), got {tuple(img.shape)}")
    squeeze = img.ndim == 3
    x = img.unsqueeze(0) if squeeze else img
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 (RGB) channels, got shape {tuple(img.shape)}")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(img.shape)}")
    if check_range:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name} values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        x = x.clamp(0.0, 1.0)
    return x.float(), squeeze


def _restore(x: torch.Tensor, squeeze: bool) -> torch.Tensor:
    return x.squeeze(0) if squeeze else x


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels: ``round(x * 255) / 255``; any shape."""
    return (img.clamp(0.0, 1.0) * 255.0).round() / 255.0


# ----------------------------------------------------------------------------
# Blur
# ----------------------------------------------------------------------------


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its kernel, reflect padding (same size output).

    ``img``: (3, H, W) or (B, 3, H, W) float.  ``kernel``: (K, K) shared by the
    batch or (B, K, K) one per image (grouped conv), K odd.  Kernels are
    centrally symmetric here, so correlation == convolution.  When the image is
    too small for reflect padding (K // 2 >= H or W), replicate padding is used.
    The output keeps the input's value range up to kernel negativity (sinc).
    """
    x, squeeze = _as_batch(img)
    b, c, h, w = x.shape
    if not isinstance(kernel, torch.Tensor) or kernel.ndim not in (2, 3):
        raise ValueError("kernel must be a (K, K) or (B, K, K) tensor")
    k = kernel.to(dtype=x.dtype, device=x.device)
    if k.ndim == 2:
        k = k.unsqueeze(0).expand(b, -1, -1)
    if k.shape[0] != b or k.shape[1] != k.shape[2] or k.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be square with odd size and match batch {b}, got {tuple(kernel.shape)}")
    pad = k.shape[-1] // 2
    mode = "reflect" if pad < h and pad < w else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    weight = k.repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, K, K)
    out = F.conv2d(xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return _restore(out.view(b, c, h, w), squeeze)


# ----------------------------------------------------------------------------
# Resize
# ----------------------------------------------------------------------------


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize to ``size = (h, w)`` with ``mode`` in :data:`RESIZE_MODES` (no anti-aliasing,
    as in Real-ESRGAN; ``area`` averages).  (3, H, W)/(B, 3, H, W) -> same dims with new
    H, W; bicubic may slightly overshoot [0, 1]."""
    x, squeeze = _as_batch(img)
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be at least 1x1, got {size}")
    if (h, w) == tuple(x.shape[-2:]):
        return img
    kwargs = {} if mode == "area" else {"align_corners": False}
    return _restore(F.interpolate(x, size=(h, w), mode=mode, **kwargs), squeeze)


def _scaled_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, int(size[0] * factor)), max(1, int(size[1] * factor))


def sample_resize(resize_prob: Sequence[float], resize_range: Sequence[float],
                  generator: torch.Generator, modes: Sequence[str] = RESIZE_MODES) -> tuple[float, str]:
    """Draw ``(factor, mode)``: up (factor in [1, hi]), down ([lo, 1]) or keep (1)
    with probabilities ``resize_prob = (up, down, keep)``, and a mode uniformly from ``modes``."""
    g = _check_generator(generator)
    kind = _choice(g, ("up", "down", "keep"), resize_prob)
    lo, hi = resize_range
    factor = _uniform(g, 1.0, hi) if kind == "up" else _uniform(g, lo, 1.0) if kind == "down" else 1.0
    return factor, _choice(g, tuple(modes))


def random_resize(img: torch.Tensor, resize_prob: Sequence[float], resize_range: Sequence[float],
                  generator: torch.Generator, modes: Sequence[str] = RESIZE_MODES) -> torch.Tensor:
    """Resize the whole batch by one random factor/mode (see :func:`sample_resize`).

    (3, H, W)/(B, 3, H, W) in [0, 1] -> (…, floor(H*f), floor(W*f)), values may
    overshoot [0, 1] slightly for bicubic."""
    x, _ = _as_batch(img)
    factor, mode = sample_resize(resize_prob, resize_range, generator, modes)
    return resize(img, _scaled_size(tuple(x.shape[-2:]), factor), mode)


# ----------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------


@dataclass
class NoiseParams:
    """One noise draw.

    ``kind`` is ``"gaussian"`` (``strength`` = sigma in [0, 1] units) or
    ``"poisson"`` (``strength`` = scale multiplying the Poisson noise);
    ``gray`` uses one noise channel for R, G and B; ``seed`` seeds the unit
    normal field the noise is made from (see :func:`seeded_normal_field`).
    """

    kind: str
    gray: bool
    strength: float
    seed: int


def seeded_normal_field(seed: int, size: tuple[int, int],
                        reference_size: tuple[int, int] | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Unit normal noise field (1, 3, h, w) float32, deterministic in ``seed``.

    The field is drawn at ``reference_size`` (default: ``size``) and, when that
    is larger, area-downsampled to ``size`` and rescaled by
    ``sqrt(ref_pixels / pixels)`` so it keeps (approximately) unit variance.
    Fields for different sizes from the same seed and reference are therefore
    downsampled versions of each other, which keeps noise consistent across
    scales.
    """
    h, w = int(size[0]), int(size[1])
    rh, rw = (h, w) if reference_size is None else (int(reference_size[0]), int(reference_size[1]))
    if rh < h or rw < w:
        rh, rw = h, w
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn((1, 3, rh, rw), generator=g, dtype=torch.float32)
    if (rh, rw) != (h, w):
        z = F.interpolate(z, size=(h, w), mode="area") * math.sqrt((rh * rw) / (h * w))
    return z if device is None else z.to(device)


def _normal_for(x: torch.Tensor, normal: torch.Tensor | None, generator: torch.Generator | None,
                gray: bool) -> torch.Tensor:
    b, _, h, w = x.shape
    if normal is None:
        g = _check_generator(generator)
        normal = torch.randn((b, 3, h, w), generator=g, dtype=torch.float32).to(x.device)
    elif normal.shape[-2:] != x.shape[-2:] or normal.ndim != 4 or normal.shape[1] != 3:
        raise ValueError(f"normal field must be (1 or B, 3, {h}, {w}), got {tuple(normal.shape)}")
    normal = normal.to(device=x.device, dtype=x.dtype)
    return normal[:, :1].expand(-1, 3, -1, -1) if gray else normal


def add_gaussian_noise(img: torch.Tensor, sigma: float, *, gray: bool = False,
                       normal: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Add Gaussian noise of std ``sigma`` (in [0, 1] units) and clamp to [0, 1].

    ``img``: (3, H, W)/(B, 3, H, W) float in [0, 1]; same shape out.  The unit
    normal field is ``normal`` ((1 or B, 3, H, W)) if given, else drawn from
    ``generator``.  ``gray`` uses the first channel of the field for all three.
    """
    x, squeeze = _as_batch(img)
    z = _normal_for(x, normal, generator, gray)
    return _restore((x + float(sigma) * z).clamp(0.0, 1.0), squeeze)


@functools.lru_cache(maxsize=16)
def _poisson_cdf_table(vals: int) -> tuple[torch.Tensor, int]:
    """Poisson CDFs for the 256 rates ``lam = level / 255 * vals``, as one flat sorted table.

    Row ``level`` holds ``level + P(Poisson(lam) <= k)`` for ``k = 0 .. K-1`` (the
    last entry forced to ``level + 1``), so a single ``searchsorted`` of
    ``level + u`` finds the quantile of every pixel.  ``P(X <= k) = Q(k + 1, lam)``
    (regularised upper incomplete gamma).  Cached per ``vals``; never mutated.
    """
    lam = torch.arange(256, dtype=torch.float64) / 255.0 * vals
    n_k = int(math.ceil(vals + 12.0 * math.sqrt(vals) + 20.0)) + 1
    k = torch.arange(n_k, dtype=torch.float64)
    cdf = torch.special.gammaincc(k[None, :] + 1.0, lam[:, None]).cummax(dim=1).values
    cdf[:, -1] = 1.0
    return (cdf + torch.arange(256, dtype=torch.float64)[:, None]).reshape(-1), n_k


def _poisson_quantile(level: torch.Tensor, vals: int, u: torch.Tensor) -> torch.Tensor:
    """Exact Poisson quantile: smallest k with ``P(Poisson(level / 255 * vals) <= k) >= u``.

    ``level``: integer tensor of 8-bit levels (0..255); ``u``: same shape, in [0, 1].
    Returns float64 counts of the same shape.
    """
    table, n_k = _poisson_cdf_table(int(vals))
    level = level.long().cpu()
    idx = torch.searchsorted(table, (level.double() + u.double().cpu()).reshape(-1)).view(level.shape)
    return (idx - level * n_k).clamp(0, n_k - 1).double()


def _rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def add_poisson_noise(img: torch.Tensor, scale: float, *, gray: bool = False,
                      normal: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Add (signal dependent) Poisson noise times ``scale`` and clamp to [0, 1].

    As in Real-ESRGAN, the image (or its luma when ``gray``) is rounded to 8
    bits, the number of photons per unit is ``2^ceil(log2(#unique values))``
    per image, and the noise is ``(Poisson(img * vals) / vals - img) * scale``.
    The Poisson variate is made from a unit normal field by the quantile
    transform ``F^-1(Phi(z))`` so that it can come from a seeded field
    (``normal``, (1 or B, 3, H, W)) or from ``generator``.
    ``img``: (3, H, W)/(B, 3, H, W) float in [0, 1]; same shape out.
    """
    x, squeeze = _as_batch(img)
    z = _normal_for(x, normal, generator, gray=False)
    base = _rgb_to_gray(x) if gray else x
    base = quantize_8bit(base)
    if gray:
        z = z[:, :1]
    z = z.expand(base.shape[0], -1, -1, -1)
    photons = [int(2 ** math.ceil(math.log2(max(1, torch.unique(bi).numel())))) for bi in base]
    levels = (base * 255.0).round()
    u = 0.5 * (1.0 + torch.erf(z.double() / math.sqrt(2.0)))
    counts = torch.stack([_poisson_quantile(lv, v, ui) for lv, v, ui in zip(levels, photons, u)])
    vals = torch.tensor(photons, dtype=torch.float64).view(-1, 1, 1, 1)
    noise = (counts / vals - base.double().cpu()).to(device=x.device, dtype=x.dtype) * float(scale)
    return _restore((x + noise).clamp(0.0, 1.0), squeeze)


def add_noise(img: torch.Tensor, params: NoiseParams,
              reference_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Apply one :class:`NoiseParams` draw (same noise field for every image of a batch).

    ``reference_size`` is the size the seeded field is drawn at before being
    area-downsampled to the image size (see :func:`seeded_normal_field`).
    (3, H, W)/(B, 3, H, W) in [0, 1] -> same shape in [0, 1].
    """
    x, _ = _as_batch(img)
    z = seeded_normal_field(params.seed, tuple(x.shape[-2:]), reference_size, device=x.device)
    if params.kind == "gaussian":
        return add_gaussian_noise(img, params.strength, gray=params.gray, normal=z)
    if params.kind == "poisson":
        return add_poisson_noise(img, params.strength, gray=params.gray, normal=z)
    raise ValueError(f"unknown noise kind {params.kind!r}")


def sample_noise(gaussian_prob: float, sigma_range: Sequence[float], poisson_scale_range: Sequence[float],
                 gray_prob: float, generator: torch.Generator) -> NoiseParams:
    """Draw Gaussian (prob ``gaussian_prob``, sigma from ``sigma_range`` in 0-255 units)
    or Poisson noise (scale from ``poisson_scale_range``), gray with prob ``gray_prob``."""
    g = _check_generator(generator)
    if _rand(g) < gaussian_prob:
        kind, strength = "gaussian", _uniform(g, *sigma_range) / 255.0
    else:
        kind, strength = "poisson", _uniform(g, *poisson_scale_range)
    gray = _rand(g) < gray_prob
    return NoiseParams(kind=kind, gray=gray, strength=strength, seed=_draw_seed(g))


def random_add_noise(img: torch.Tensor, gaussian_prob: float, sigma_range: Sequence[float],
                     poisson_scale_range: Sequence[float], gray_prob: float,
                     generator: torch.Generator) -> torch.Tensor:
    """Add an independently drawn noise (see :func:`sample_noise`) to each image.
    (3, H, W)/(B, 3, H, W) in [0, 1] -> same shape in [0, 1]."""
    x, squeeze = _as_batch(img)
    out = [add_noise(xi.unsqueeze(0), sample_noise(gaussian_prob, sigma_range, poisson_scale_range,
                                                   gray_prob, generator)) for xi in x]
    return _restore(torch.cat(out), squeeze)


# ----------------------------------------------------------------------------
# JPEG
# ----------------------------------------------------------------------------


def jpeg_compress(img: torch.Tensor, quality: int | Sequence[int]) -> torch.Tensor:
    """JPEG encode/decode round trip with Pillow (in memory, 4:2:0 chroma).

    ``img``: (3, H, W)/(B, 3, H, W) float, clamped to [0, 1] and rounded to 8
    bits first; ``quality``: int in [1, 100], or one per image.  Deterministic.
    Returns float32 on the input's device, same shape, 8-bit levels in [0, 1].
    """
    x, squeeze = _as_batch(img)
    qualities = [quality] * x.shape[0] if isinstance(quality, (int, float)) else list(quality)
    if len(qualities) != x.shape[0]:
        raise ValueError(f"got {len(qualities)} JPEG qualities for a batch of {x.shape[0]}")
    arrays = (quantize_8bit(x) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for arr, q in zip(arrays, qualities):
        q = int(round(q))
        if not 1 <= q <= 100:
            raise ValueError(f"JPEG quality must be in [1, 100], got {q}")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as decoded:
            out.append(np.asarray(decoded.convert("RGB")).copy())
    y = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(device=x.device, dtype=torch.float32) / 255.0
    return _restore(y, squeeze)


def _draw_quality(g: torch.Generator, jpeg_range: Sequence[float]) -> int:
    return int(round(_uniform(g, *jpeg_range)))


def random_jpeg(img: torch.Tensor, jpeg_range: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """JPEG with an independent quality per image drawn uniformly from ``jpeg_range``
    (rounded to int).  (3, H, W)/(B, 3, H, W) -> same shape, 8-bit levels in [0, 1]."""
    x, _ = _as_batch(img)
    g = _check_generator(generator)
    return jpeg_compress(img, [_draw_quality(g, jpeg_range) for _ in range(x.shape[0])])


# ----------------------------------------------------------------------------
# Full pipeline
# ----------------------------------------------------------------------------


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


def _check_scale(scale: Any, h: int, w: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by scale {scale}")
    return scale


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


def bicubic_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Clean LR: anti-aliased bicubic downsampling, clamped and rounded to 8 bits.

    (3, H, W)/(B, 3, H, W) in [0, 1], H, W divisible by ``scale`` ->
    (…, H // scale, W // scale) float32 in [0, 1].
    """
    x, squeeze = _as_batch(hr, "hr", check_range=True)
    _check_scale(scale, x.shape[-2], x.shape[-1])
    size = (x.shape[-2] // scale, x.shape[-1] // scale)
    out = x if scale == 1 else F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return _restore(quantize_8bit(out), squeeze)


# ----------------------------------------------------------------------------
# What phones and the web do to photos: heavy JPEG, camera noise, mild blur
# ----------------------------------------------------------------------------


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
