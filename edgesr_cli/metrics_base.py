"""What every image metric shares: how an image is taken in (a PIL image or an array, uint8/uint16 or float in
[0, 1]), rounded to the 8-bit grid, cropped at the border and turned into BT.601 luma, the Gaussian window, and
:class:`MetricUnavailable`. Used by :mod:`edgesr_cli.metrics` (PSNR, SSIM, LPIPS, DISTS) and
:mod:`edgesr_cli.niqe`."""

from __future__ import annotations

import functools
import os
from typing import Union

import numpy as np
from PIL import Image

ArrayLike = Union[np.ndarray, "Image.Image"]
PathLike = Union[str, os.PathLike]


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing package or parameter/weight files)."""


# ---------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------


def _as_float01(img: ArrayLike, name: str = "image") -> np.ndarray:
    """Return ``img`` as float64 HxW or HxWxC (C in {1, 3}) in [0, 1] units.

    uint8 / uint16 arrays are scaled by their maximum value; floats are taken to
    be in [0, 1] already.
    """
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 4:
        raise ValueError(f"{name}: RGBA images are not supported, got shape {arr.shape}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise ValueError(f"{name}: expected an HxW or HxWx3 array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
    return arr.astype(np.float64)


def _quantize(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the 8-bit grid (what saving a PNG would do)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0


BT601_Y = (65.481, 128.553, 24.966)  # R, G, B weights of BT.601 luma on [0, 1] RGB, in 8-bit levels (+16 offset)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in the [16, 235] scale (MATLAB ``rgb2ycbcr``), float64.

    ``img`` is an HxWx3 RGB array in [0, 1] (uint8 is accepted too and scaled
    by 1/255).  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``.
    """
    arr = np.asarray(img)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects RGB with a trailing axis of 3, got shape {arr.shape}")
    x = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    return 16.0 + x @ np.array(BT601_Y, dtype=np.float64)


def _to_y255(img01: np.ndarray) -> np.ndarray:
    """Y channel in [0, 255] units from a float [0, 1] image (gray is used as is)."""
    if img01.ndim == 3 and img01.shape[2] == 3:
        return rgb_to_y(img01)
    if img01.ndim == 3:
        img01 = img01[:, :, 0]
    return img01 * 255.0


def _crop(x: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border == 0:
        return x
    return x[crop_border:-crop_border, crop_border:-crop_border, ...]


def _check_crop(crop_border: int, shape: tuple) -> int:
    if isinstance(crop_border, bool) or int(crop_border) != crop_border or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    crop_border = int(crop_border)
    h, w = shape[:2]
    if 2 * crop_border >= h or 2 * crop_border >= w:
        raise ValueError(f"crop_border={crop_border} leaves nothing of an image of shape {tuple(shape)}")
    return crop_border


@functools.lru_cache(maxsize=None)
def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian (OpenCV ``getGaussianKernel`` / MATLAB ``fspecial``)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    g /= g.sum()
    g.setflags(write=False)
    return g
