"""Blur kernels: Gaussian, generalized Gaussian, plateau (isotropic or rotated anisotropic) and sinc, as
(K, K) float32 tensors summing to 1, and one drawn at random by type (:func:`random_blur_kernel`)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .common import _check_generator, _choice, _rand, _uniform

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
_MIN_KERNEL_SIZE = 7


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
