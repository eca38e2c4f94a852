"""Upscaling a Photo (library level): the model on RGB through the shared tiling engine, alpha
through bicubic, grayscale and bit depth and metadata carried over. No CLI concerns here."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from ..defaults import DEFAULT_OVERLAP, DEFAULT_TILE
from ..io import Photo
from .runner import Runner
from .tiling import upscale_bands


@dataclasses.dataclass(frozen=True)
class UpscaleOptions:
    """The tiling engine's options (tiling.upscale_bands)."""

    tile: int = DEFAULT_TILE
    overlap: float = DEFAULT_OVERLAP
    batch: int = 4
    steps: int = 1
    eta: float = 0.0
    seed: int = 0


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as the writer's and Pillow's "L"


# Peak memory of one upscale beyond the photo's own buffers, measured on this project's CI machine with
# `/usr/bin/time -v` (README, "What happens to your photo"): the process with torch and edge-tiny loaded
# (~270 MB; ~100 MB for the light install), and the batch of tiles in flight, whose decoder activations at HR
# resolution dominate (~230 MB for 4 tiles of 128 px at x4 in torch, about 256 bytes per HR tile pixel with the
# margin; ONNX Runtime runs them one at a time, ~135 MB).
PROCESS_BYTES = 320 * 2**20
_TILE_PIXEL_BYTES = 256
_NOISE_BYTES = 64  # per LR pixel of a noise row: 16 latent channels of float32 (edge-tiny)
_IN_PLACE_FORMATS = ("png", "tif", "tiff")  # io's own encoders write the stored samples without a copy


def estimate_peak_bytes(height: int, width: int, scale: int, opts: UpscaleOptions, stored: np.dtype | type,
                        channels: int = 3, alpha: bool = False, fmt: str = "png") -> int:
    """About how much memory `edgesr upscale` needs for an (height, width) photo written as `fmt`: the process
    and the tiles in flight, the LR image in float, the engine's float sums (at most two tile rows of the output)
    and noise rows, the quantized output, the encoder's copy of it where there is one (Pillow's JPEG and WebP
    encoders take one at 4 bytes a pixel; the PNG and TIFF writers encode the samples in place, unless an alpha
    plane has to be stacked in), and a float alpha plane."""
    out_px = height * width * scale * scale
    tile_hr = opts.tile * scale
    out_w = (width + 2 * opts.tile) * scale
    band = 2 * tile_hr * out_w * 16  # float sums (3 channels) and weights of two tile rows
    noise = 2 * opts.tile * width * _NOISE_BYTES
    stored_bytes = out_px * (channels + alpha) * np.dtype(stored).itemsize
    if fmt.lower() not in _IN_PLACE_FORMATS:
        copy = max(stored_bytes, out_px * 4)  # Pillow's image of the output
    else:
        copy = stored_bytes if alpha else 0  # the planes stacked with the alpha plane
    step = max(1, int(opts.tile * (1 - opts.overlap)))
    in_flight = min(opts.batch, math.ceil(height / step) * math.ceil(width / step))
    return int(PROCESS_BYTES + in_flight * tile_hr * tile_hr * _TILE_PIXEL_BYTES + height * width * 12 + band
               + noise + stored_bytes + copy + (out_px * 8 if alpha else 0))


def quantize_band(x: np.ndarray, maxval: int, dtype: np.dtype) -> np.ndarray:
    """As the writer quantizes a float image (its samples of a float Photo): round(clip(x, 0, 1) * maxval)."""
    return np.rint(np.clip(x, 0.0, 1.0) * np.float32(maxval)).astype(dtype)


def upscale_photo(runner: Runner, photo: Photo, opts: UpscaleOptions,
                  progress: Callable[[int, int], None] | None = None,
                  quantize: np.dtype | type | None = None) -> Photo:
    """Photo (H,W) -> Photo (H*s, W*s) with the same metadata. Alpha is upscaled by bicubic;
    grayscale sources come back grayscale (the writer takes the gray channel).

    quantize=None: the result's rgb is float32 (H*s, W*s, 3) in [0, 1] (what metrics want).
    quantize=np.uint8 or np.uint16 (io.stored_dtype of the output format): the rows are quantized as the
    engine finishes them, into the values the writer stores, (H*s, W*s, 3), or (H*s, W*s, 1) for a
    grayscale source: the same values the writer makes of the float result, at a quarter (8-bit) of its
    memory and without a float copy of the output."""
    lr = np.asarray(photo.rgb, dtype=np.float32).transpose(2, 0, 1)  # a view: the engine copies tiles out of it
    s = runner.scale
    h, w = photo.height * s, photo.width * s
    if quantize is not None:
        dtype = np.dtype(quantize)
        if dtype not in (np.uint8, np.uint16):
            raise ValueError(f"quantize to uint8 or uint16, not {dtype}")
        maxval = 65535 if dtype == np.uint16 else 255
        rgb = np.empty((h, w, 1 if photo.grayscale else 3), dtype=dtype)
    else:
        rgb = np.empty((h, w, 3), dtype=np.float32)

    def emit(row: int, band: np.ndarray) -> None:
        x = band.transpose(1, 2, 0)
        if photo.grayscale:
            y = x @ _LUMA
            if quantize is not None:  # the writer's gray plane of the float result (y, y, y)
                rgb[row:row + x.shape[0], :, 0] = quantize_band(np.repeat(y[..., None], 3, axis=2) @ _LUMA,
                                                                 maxval, dtype)
                return
            x = np.repeat(y[..., None], 3, axis=2)
        rgb[row:row + x.shape[0]] = quantize_band(x, maxval, dtype) if quantize is not None else x

    upscale_bands(runner, lr, emit, tile=opts.tile, overlap=opts.overlap, batch=opts.batch, steps=opts.steps,
                  eta=opts.eta, seed=opts.seed, progress=progress)
    alpha = None
    if photo.alpha is not None:
        alpha = np.clip(bicubic_upscale(photo.alpha, s), 0.0, 1.0)
    return dataclasses.replace(photo, rgb=rgb, alpha=alpha)


def _cubic_weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keys' cubic convolution (A = -0.75, as torch and OpenCV) weights of the taps at -1, 0, 1, 2 for offsets t."""
    a = np.float32(-0.75)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    one = np.float32(1)
    return far(t + one), near(t), near(one - t), far(2 * one - t)


def bicubic_upscale(plane: np.ndarray, scale: int) -> np.ndarray:
    """(H, W) float -> (H*scale, W*scale) float32: bicubic, half-pixel centres, edge taps clamped (torch's
    interpolate(mode="bicubic", align_corners=False) to within 4e-7; numpy only, so the alpha plane comes out the
    same whatever is installed)."""
    x = np.asarray(plane, dtype=np.float32)

    def taps(n: int) -> tuple[list[np.ndarray], tuple[np.ndarray, ...]]:
        src = (np.arange(n * scale, dtype=np.float32) + np.float32(0.5)) / np.float32(scale) - np.float32(0.5)
        base = np.floor(src)
        idx = [np.clip(base.astype(np.int64) + k, 0, n - 1) for k in (-1, 0, 1, 2)]
        return idx, _cubic_weights(np.clip(src - base, 0, 1).astype(np.float32))

    (iy, wy), (ix, wx) = taps(x.shape[0]), taps(x.shape[1])
    rows = sum(x[i] * w[:, None] for i, w in zip(iy, wy))
    return sum(rows[:, i] * w[None, :] for i, w in zip(ix, wx)).astype(np.float32)
