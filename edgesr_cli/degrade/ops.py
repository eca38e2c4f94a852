"""The image operations the pipelines chain: blur (:func:`filter2d`), resize, Gaussian and Poisson noise made
from seeded normal fields (so one draw gives correlated noise at every scale), JPEG, and the clean bicubic LR.
Each works on float32 RGB tensors in ``[0, 1]``, ``(3, H, W)`` or ``(B, 3, H, W)``, and keeps the input's rank."""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .common import (_as_batch, _check_generator, _check_scale, _choice, _draw_quality, _draw_seed, _rand,
                     _restore, _uniform, quantize_8bit)

RESIZE_MODES = ("area", "bilinear", "bicubic")


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


def random_jpeg(img: torch.Tensor, jpeg_range: Sequence[float], generator: torch.Generator) -> torch.Tensor:
    """JPEG with an independent quality per image drawn uniformly from ``jpeg_range``
    (rounded to int).  (3, H, W)/(B, 3, H, W) -> same shape, 8-bit levels in [0, 1]."""
    x, _ = _as_batch(img)
    g = _check_generator(generator)
    return jpeg_compress(img, [_draw_quality(g, jpeg_range) for _ in range(x.shape[0])])


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
