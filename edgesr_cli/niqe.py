"""NIQE (Mittal et al., 2013), as BasicSR's ``calculate_niqe`` (the public face is :mod:`edgesr_cli.metrics`):

* NIQE is computed on the rounded Y channel with 96x96
  blocks, as BasicSR's ``calculate_niqe``; by default with BasicSR's float32
  arithmetic (bit-identical results), ``precision="float64"`` for MATLAB-like
  double precision.

NIQE needs the parameters of a multivariate Gaussian fitted on pristine
images.  This module never downloads anything.  :func:`niqe` looks for them,
in order, in

1. the file named by the ``EDGESR_NIQE_PARAMS`` environment variable;
2. ``basicsr/metrics/niqe_pris_params.npz`` inside an installed ``basicsr``
   distribution (``pip install --no-deps basicsr``: PyPI only has an sdist,
   which builds a pure-Python wheel that contains the file).  The package is
   located with :mod:`importlib` machinery and is *not* imported (it does not
   import beside recent torchvision releases).

If neither is there, :class:`MetricUnavailable` is raised.  Alternatively,
:func:`fit_niqe_params` fits the model on a folder of sharp natural images
with the same feature extractor, and :func:`save_niqe_params` /
:func:`load_niqe_params` store it in the same ``.npz`` layout as BasicSR.

NIQE's file is also found inside an installed ``iqa-torch`` (``iqa/niqe/niqe_pris_params.npz``,
byte-identical to BasicSR's; ``pip install --no-deps iqa-torch==1.2.1``), likewise without importing it.

The MATLAB-compatible bicubic imresize NIQE's second scale needs is here too, with BasicSR's float32 port.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image
from scipy.ndimage import convolve
from scipy.special import gamma as _gamma

from .metrics_base import (BT601_Y, ArrayLike, MetricUnavailable, PathLike, _as_float01, _check_crop, _crop,
                           _gaussian_1d, _quantize, _to_y255)

NIQE_PARAMS_ENV = "EDGESR_NIQE_PARAMS"
_BASICSR_NIQE_FILE = ("metrics", "niqe_pris_params.npz")
_NIQE_BLOCK = 96
_NIQE_FEATURES = 36
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


# ---------------------------------------------------------------------------
# MATLAB-compatible bicubic imresize (used by NIQE's second scale)
# ---------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _resize_weights(in_len: int, out_len: int, scale: float, antialiasing: bool):
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(p, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    if scale < 1 and antialiasing:
        w = scale * _cubic(dist * scale)
    else:
        w = _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    # MATLAB's symmetric boundary handling: mirror indices (1-based) into range.
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx0 = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    return w, idx0


def matlab_imresize(img: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` for HxW or HxWxC float arrays (no rounding)."""
    x = np.asarray(img, dtype=np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[:, :, None]
    h, w = x.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    wh, ih = _resize_weights(h, out_h, scale, antialiasing)
    ww, iw = _resize_weights(w, out_w, scale, antialiasing)
    y = np.einsum("op,opwc->owc", wh, x[ih])  # rows
    y = np.einsum("op,hopc->hoc", ww, y[:, iw])  # columns
    return y[:, :, 0] if squeeze else y


def _basicsr_imresize_half_f32(img: np.ndarray) -> np.ndarray:
    """BasicSR's float32 torch ``imresize(img, 0.5, antialiasing=True)`` for an HxW array.

    A line-by-line port of ``basicsr.utils.matlab_functions.imresize`` (Apache-2.0)
    so that ``precision="float32"`` reproduces BasicSR's NIQE bit for bit: the
    float32 rounding of that routine moves NIQE by up to ~1e-2 on smooth images.
    """
    import torch

    def cubic(x):
        absx = torch.abs(x)
        absx2, absx3 = absx**2, absx**3
        return (1.5 * absx3 - 2.5 * absx2 + 1) * ((absx <= 1).type_as(absx)) + (
            -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
        ) * (((absx > 1) * (absx <= 2)).type_as(absx))

    def weights_indices(in_length, out_length, scale, kernel_width):
        kernel_width = kernel_width / scale  # scale < 1 and antialiasing
        x = torch.linspace(1, out_length, out_length)
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = torch.floor(u - kernel_width / 2)
        p = math.ceil(kernel_width) + 2
        indices = left.view(out_length, 1).expand(out_length, p) + torch.linspace(0, p - 1, p).view(1, p).expand(
            out_length, p
        )
        distance_to_center = u.view(out_length, 1).expand(out_length, p) - indices
        weights = scale * cubic(distance_to_center * scale)
        weights_sum = torch.sum(weights, 1).view(out_length, 1)
        weights = weights / weights_sum.expand(out_length, p)
        weights_zero_tmp = torch.sum((weights == 0), 0)
        if not math.isclose(weights_zero_tmp[0], 0, rel_tol=1e-6):
            indices = indices.narrow(1, 1, p - 2)
            weights = weights.narrow(1, 1, p - 2)
        if not math.isclose(weights_zero_tmp[-1], 0, rel_tol=1e-6):
            indices = indices.narrow(1, 0, p - 2)
            weights = weights.narrow(1, 0, p - 2)
        weights = weights.contiguous()
        indices = indices.contiguous()
        sym_len_s = -indices.min() + 1
        sym_len_e = indices.max() - in_length
        indices = indices + sym_len_s - 1
        return weights, indices, int(sym_len_s), int(sym_len_e)

    def sym_pad(t, dim, s, e):
        n = t.size(dim)
        head = t.narrow(dim, 0, s).flip(dim)
        tail = t.narrow(dim, n - e, e).flip(dim)
        return torch.cat([head, t, tail], dim=dim)

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        in_h, in_w = t.shape
        scale = 0.5
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
        wh, ih, hs, he = weights_indices(in_h, out_h, scale, 4)
        ww, iw, ws, we = weights_indices(in_w, out_w, scale, 4)
        aug = sym_pad(t, 0, hs, he)
        out1 = torch.empty(out_h, in_w, dtype=torch.float32)
        kw = wh.size(1)
        for i in range(out_h):
            idx = int(ih[i][0])
            out1[i, :] = aug[idx : idx + kw, :].transpose(0, 1).mv(wh[i])
        aug = sym_pad(out1, 1, ws, we)
        out2 = torch.empty(out_h, out_w, dtype=torch.float32)
        kw = ww.size(1)
        for i in range(out_w):
            idx = int(iw[i][0])
            out2[:, i] = aug[:, idx : idx + kw].mv(ww[i])
        return out2.numpy()


# ---------------------------------------------------------------------------
# NIQE
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NiqeParams:
    """Pristine multivariate Gaussian model for NIQE (BasicSR ``niqe_pris_params.npz`` layout)."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    gaussian_window: np.ndarray  # (7, 7)
    source: str = ""

    def __post_init__(self):
        mu = np.asarray(self.mu, dtype=np.float64).reshape(-1)
        cov = np.asarray(self.cov, dtype=np.float64)
        win = np.asarray(self.gaussian_window, dtype=np.float64)
        if mu.shape != (_NIQE_FEATURES,) or cov.shape != (_NIQE_FEATURES, _NIQE_FEATURES):
            raise ValueError(f"NIQE params need mu of 36 values and a 36x36 cov, got {mu.shape} and {cov.shape}")
        if win.ndim != 2 or win.shape[0] != win.shape[1] or win.shape[0] % 2 == 0:
            raise ValueError(f"NIQE gaussian_window must be an odd square matrix, got {win.shape}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "gaussian_window", win)


def default_niqe_window() -> np.ndarray:
    """7x7 Gaussian window, sigma 7/6 (MATLAB ``fspecial('gaussian', 7, 7/6)``)."""
    g = _gaussian_1d(7, 7.0 / 6.0)
    return np.outer(g, g)


@functools.lru_cache(maxsize=1)
def _aggd_table():
    gam = np.arange(0.2, 10.001, 0.001)
    r = 1.0 / gam
    r_gam = np.square(_gamma(r * 2)) / (_gamma(r) * _gamma(r * 3))
    return gam, r_gam


def _estimate_aggd_param(block: np.ndarray):
    """AGGD parameters (alpha, beta_l, beta_r), as BasicSR/MATLAB ``estimate_aggd_param``."""
    gam, r_gam = _aggd_table()
    block = block.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        left = block[block < 0]
        right = block[block > 0]
        left_std = np.sqrt(np.mean(left**2)) if left.size else np.nan
        right_std = np.sqrt(np.mean(right**2)) if right.size else np.nan
        gammahat = left_std / right_std
        rhat = np.mean(np.abs(block)) ** 2 / np.mean(block**2)
        rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
        if not np.isfinite(rhatnorm):
            return np.nan, np.nan, np.nan
        alpha = gam[np.argmin((r_gam - rhatnorm) ** 2)]
        k = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
        return alpha, left_std * k, right_std * k


def _block_features(block: np.ndarray) -> list:
    feat = []
    alpha, beta_l, beta_r = _estimate_aggd_param(block)
    feat.extend([alpha, (beta_l + beta_r) / 2])
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        shifted = np.roll(block, shift, axis=(0, 1))
        alpha, beta_l, beta_r = _estimate_aggd_param(block * shifted)
        with np.errstate(invalid="ignore"):
            mean = (beta_r - beta_l) * (_gamma(2 / alpha) / _gamma(1 / alpha))
        feat.extend([alpha, mean, beta_l, beta_r])
    return feat


_PRECISIONS = ("float32", "float64")


def _check_precision(precision: str) -> str:
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    return precision


def _niqe_y(img: ArrayLike, crop_border: int = 0, precision: str = "float32") -> np.ndarray:
    """Rounded Y (or gray) channel in [0, 255] as BasicSR ``calculate_niqe`` sees it."""
    x = _quantize(_as_float01(img, "img"))
    crop_border = _check_crop(crop_border, x.shape)
    x = _crop(x, crop_border)
    if precision == "float32" and x.ndim == 3 and x.shape[2] == 3:
        # BasicSR's to_y_channel: float32 in, float64 dot, float32 out; only matters
        # for the rare Y values that sit on a .5 rounding boundary.
        x32 = np.round(x * 255.0).astype(np.float32) / np.float32(255.0)
        y = (np.dot(x32, BT601_Y) + 16.0) / 255.0
        y = y.astype(np.float32) * np.float32(255.0)
        return np.round(y).astype(np.float64)
    return np.round(_to_y255(x))


def niqe_features(
    y: np.ndarray,
    gaussian_window: np.ndarray | None = None,
    block_size: int = _NIQE_BLOCK,
    precision: str = "float32",
):
    """NIQE block features of a Y/gray image in [0, 255] (HxW float).

    Returns ``(features, sharpness)``: an ``(n_blocks, 36)`` array (18 features at
    full and 18 at half scale) and the mean local deviation of every block at
    full scale (used to select sharp patches when fitting the pristine model).
    Blocks are ``block_size`` squares without overlap, the remainder is cropped.
    ``precision``: see :func:`niqe`.
    """
    _check_precision(precision)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"niqe_features expects an HxW Y/gray image, got shape {y.shape}")
    win = default_niqe_window() if gaussian_window is None else np.asarray(gaussian_window, dtype=np.float64)
    h, w = y.shape
    nbh, nbw = h // block_size, w // block_size
    if nbh == 0 or nbw == 0:
        raise ValueError(f"NIQE needs an image of at least {block_size}x{block_size} pixels, got {y.shape}")
    img = y[: nbh * block_size, : nbw * block_size]
    if precision == "float32":
        img = img.astype(np.float32)  # scipy keeps the input dtype, as in BasicSR

    per_scale = []
    sharpness = None
    for scale in (1, 2):
        mu = convolve(img, win, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(np.square(img), win, mode="nearest") - np.square(mu)))
        mscn = (img - mu) / (sigma + 1)
        bs = block_size // scale
        feats, sharp = [], []
        for bw in range(nbw):  # column-major block order, as MATLAB blkproc / BasicSR
            for bh in range(nbh):
                sl = (slice(bh * bs, (bh + 1) * bs), slice(bw * bs, (bw + 1) * bs))
                feats.append(_block_features(mscn[sl]))
                if scale == 1:
                    sharp.append(float(np.mean(sigma[sl])))
        per_scale.append(np.asarray(feats, dtype=np.float64))
        if scale == 1:
            sharpness = np.asarray(sharp)
            if precision == "float32":
                img = _basicsr_imresize_half_f32(img / np.float32(255.0)) * np.float32(255.0)
            else:
                img = matlab_imresize(img / 255.0, 0.5, antialiasing=True) * 255.0
    return np.concatenate(per_scale, axis=1), sharpness


def _niqe_distance(feats: np.ndarray, params: NiqeParams) -> float:
    mu_d = np.nanmean(feats, axis=0)
    clean = feats[~np.isnan(feats).any(axis=1)]
    if clean.shape[0] >= 2:
        cov_d = np.cov(clean, rowvar=False)
    else:  # a single block: no spread to estimate (BasicSR returns nan here)
        cov_d = np.zeros_like(params.cov)
    inv = np.linalg.pinv((params.cov + cov_d) / 2)
    diff = params.mu - mu_d
    return float(np.sqrt(diff @ inv @ diff))


def niqe(
    img: ArrayLike,
    params: NiqeParams | PathLike | None = None,
    crop_border: int = 0,
    *,
    precision: str = "float32",
) -> float:
    """NIQE score of one image (lower is better), as BasicSR ``calculate_niqe`` (Y channel).

    ``img``: HxWx3 RGB or HxW gray, float in [0, 1] (or uint8), at least 96x96
    after cropping.  ``params``: a :class:`NiqeParams`, a path to a ``.npz`` in
    BasicSR's layout, or None for the published pristine model (see
    :func:`published_niqe_params`; raises :class:`MetricUnavailable` when it is
    not on this machine).

    ``precision="float32"`` (default) reproduces BasicSR's Python code exactly,
    including its float32 filtering and resizing; ``"float64"`` does the same
    computation in double precision like the MATLAB reference code.  The two
    agree closely on textured images but can differ by ~1% on smooth ones, so
    report which one you used when comparing against published numbers.
    """
    _check_precision(precision)
    if params is None:
        params = published_niqe_params()
    elif not isinstance(params, NiqeParams):
        params = load_niqe_params(params)
    y = _niqe_y(img, crop_border, precision)
    feats, _ = niqe_features(y, params.gaussian_window, precision=precision)
    return _niqe_distance(feats, params)


def _iter_images(images) -> Iterable[np.ndarray]:
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a directory of images")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {folder}")
        images = files
    for item in images:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as im:
                yield np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        else:
            yield item


def fit_niqe_params(
    images,
    sharpness_threshold: float = 0.75,
    block_size: int = _NIQE_BLOCK,
    gaussian_window: np.ndarray | None = None,
    precision: str = "float32",
) -> NiqeParams:
    """Fit the NIQE pristine model on sharp natural images (MATLAB ``estimatemodelparam``).

    ``images``: a folder path, or an iterable of paths / arrays (RGB or gray, [0, 1]
    floats or uint8).  Every image is turned into the rounded Y channel exactly
    as in :func:`niqe`; in each image only the blocks whose sharpness exceeds
    ``sharpness_threshold`` times that image's sharpest block are kept (0.75 and
    96x96 blocks as for the published model).  Returns the NaN-aware mean and
    covariance of the kept features.
    """
    _check_precision(precision)
    win = default_niqe_window() if gaussian_window is None else np.asarray(gaussian_window, dtype=np.float64)
    kept = []
    n_images = 0
    for img in _iter_images(images):
        n_images += 1
        feats, sharp = niqe_features(_niqe_y(img, 0, precision), win, block_size, precision)
        kept.append(feats[sharp > sharpness_threshold * sharp.max()] if sharp.max() > 0 else feats[:0])
    if n_images == 0:
        raise ValueError("fit_niqe_params needs at least one image")
    allf = np.concatenate(kept, axis=0)
    clean = allf[~np.isnan(allf).any(axis=1)]
    if clean.shape[0] < 2:
        raise ValueError(f"only {clean.shape[0]} usable block(s) in {n_images} image(s); give more/larger images")
    mu = np.nanmean(allf, axis=0)
    cov = np.cov(clean, rowvar=False)
    return NiqeParams(mu, cov, win, source=f"fitted on {n_images} image(s), {clean.shape[0]} blocks")


def save_niqe_params(params: NiqeParams, path: PathLike) -> Path:
    """Write ``params`` as a ``.npz`` with BasicSR's keys (mu_pris_param, cov_pris_param, gaussian_window)."""
    from .atomic import write_atomic

    # written through an open file (which keeps np.savez from appending '.npz'), atomically: a temp file renamed
    return write_atomic(path, lambda f: np.savez(f, mu_pris_param=params.mu[None, :], cov_pris_param=params.cov,
                                                 gaussian_window=params.gaussian_window))


def load_niqe_params(path: PathLike) -> NiqeParams:
    """Read a ``.npz`` in BasicSR's ``niqe_pris_params.npz`` layout (no pickles)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = {"mu_pris_param", "cov_pris_param", "gaussian_window"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not a NIQE parameter file: missing {sorted(missing)}")
        return NiqeParams(data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"], source=str(path))


def _basicsr_candidates() -> list[Path]:
    """Where an installed ``basicsr`` keeps niqe_pris_params.npz, found without importing it."""
    out: list[Path] = []
    try:
        spec = importlib.util.find_spec("basicsr")  # top-level: locates, does not execute
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            out.append(Path(loc, *_BASICSR_NIQE_FILE))
    try:
        dist = importlib.metadata.distribution("basicsr")
        out.append(Path(dist.locate_file(Path("basicsr", *_BASICSR_NIQE_FILE))))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:  # iqa-torch ships the same file (byte-identical); located, never imported
        spec = importlib.util.find_spec("iqa")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            out.append(Path(loc, "niqe", "niqe_pris_params.npz"))
    return out


def find_published_niqe_params() -> Path | None:
    """Path of the published pristine NIQE model on this machine, or None.

    Looks at ``$EDGESR_NIQE_PARAMS`` first, then inside an installed ``basicsr``.
    Never downloads, never imports basicsr.
    """
    env = os.environ.get(NIQE_PARAMS_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise MetricUnavailable(f"NIQE off: {NIQE_PARAMS_ENV}={env} does not name a file")
        return p
    for p in _basicsr_candidates():
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> NiqeParams:
    return load_niqe_params(path)


def published_niqe_params() -> NiqeParams:
    """The published pristine model (BasicSR's niqe_pris_params.npz) or :class:`MetricUnavailable`."""
    p = find_published_niqe_params()
    if p is None:
        raise MetricUnavailable(
            "NIQE off: the pristine model parameters (niqe_pris_params.npz, published with BasicSR) "
            "are not on this machine and are never downloaded at run time. Get them with "
            "`pip install --no-deps iqa-torch==1.2.1` (or basicsr; the package is only searched for the file, "
            "not imported), "
            f"or point {NIQE_PARAMS_ENV} at a copy of basicsr/metrics/niqe_pris_params.npz, "
            "or fit your own with edgesr_cli.metrics.fit_niqe_params(<folder of sharp natural images>) "
            "and pass them as niqe(img, params=...) (save/load with save_niqe_params/load_niqe_params)."
        )
    return _load_cached(str(p), p.stat().st_mtime)
