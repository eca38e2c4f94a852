"""edgesr's Python API: the resolver (resolve.py) and the engine (upscale.py) behind one call.

    import edgesr_cli
    up = edgesr_cli.load()                          # model=None: the shipped model; backend="auto"; detail=None
    big = up.upscale(Image.open("photo.jpg"))       # a PIL image in, a PIL image out (x4)
    big = up.upscale(np.asarray(...))               # or a numpy array: uint8, uint16 or float in [0, 1]

The same backend, detail, tile and bytes as `edgesr upscale` with the same options: an 8-bit image comes back with
the samples the CLI writes to an 8-bit PNG, a 16-bit one (run on the fp32 twin, as the CLI runs it) with those of a
16-bit PNG. Grayscale stays grayscale and an alpha channel is upscaled by bicubic and kept. Arrays are (H, W),
(H, W, 1), (H, W, 2) gray + alpha, (H, W, 3) or (H, W, 4); PIL images of modes 1, L, LA, P, PA, RGB, RGBA, CMYK,
I;16 and I (values up to 65535). EXIF orientation is not applied (PIL.ImageOps.exif_transpose does); the ICC
profile of a PIL image is kept in the result's info.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..defaults import DEFAULT_OVERLAP
from ..io import Photo
from .resolve import Resolved, load as load_runner, resolve
from .upscale import UpscaleOptions, quantize_band, upscale_photo


class Upscaler:
    """A loaded model: `upscale(image)`. `resolved` says what runs (backend, folder, detail, tile, scale)."""

    def __init__(self, resolved: Resolved, runner: Any, runner16: Any, options: UpscaleOptions) -> None:
        self.resolved = resolved
        self.runner = runner
        self.runner16 = runner16
        self.options = options

    @property
    def scale(self) -> int:
        return self.resolved.scale

    def __repr__(self) -> str:
        r = self.resolved
        at = "" if r.detail is None else f", detail {r.detail:g}"
        return f"Upscaler({r.backend} on {r.folder}, x{r.scale}, tile {r.tile}{at})"

    def upscale(self, image: Any, progress: Callable[[int, int], None] | None = None) -> Any:
        """`image` upscaled: a PIL image for a PIL image (same mode), an array of the same dtype and channels for a
        numpy array. `progress(done, total)` is called as tiles finish."""
        if hasattr(image, "mode") and hasattr(image, "getbands"):
            return _to_pil(self.upscale(*_from_pil(image), progress=progress), image)
        photo, dtype = _photo(np.asarray(image))
        runner = self.runner16 if self.runner16 is not None and photo.bit_depth > 8 else self.runner
        out = upscale_photo(runner, photo, self.options, progress=progress, quantize=None if dtype.kind == "f" else dtype)
        return _array(out, np.asarray(image).shape, dtype)


def load(model: str | Path | None = None, backend: str = "auto", detail: float | None = None, *,
         tile: int | None = None, dtype: str = "auto", device: str = "auto", threads: int | None = None,
         overlap: float = DEFAULT_OVERLAP, batch: int = 4, steps: int = 1, seed: int = 0) -> Upscaler:
    """An Upscaler: `model` a model folder or an export (None: the shipped model), `backend` a registered backend or
    auto (the fastest here), `detail` 0 (fidelity) .. 1 (perceptual) or None (the model's default); tile, dtype and
    device as `edgesr upscale` takes them (`threads` None: the runtime's own default)."""
    r = resolve(model, backend, detail, tile, dtype, device)
    runner, runner16 = load_runner(r, threads)
    return Upscaler(r, runner, runner16, UpscaleOptions(tile=r.tile, overlap=overlap, batch=batch, steps=steps,
                                                        seed=seed))


def _photo(a: np.ndarray) -> tuple[Photo, np.dtype]:
    """An array as the Photo read_image would make of the same samples (values / maxval in float32)."""
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ValueError(f"expected an image (H, W) or (H, W, 1|2|3|4), got shape {np.asarray(a).shape}")
    if a.dtype in (np.uint8, np.uint16):
        maxval = 255 if a.dtype == np.uint8 else 65535
        values = a.astype(np.float32)
        values *= np.float32(1.0 / maxval)
    elif a.dtype.kind == "f":
        values = np.asarray(a, dtype=np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
    else:
        raise ValueError(f"expected uint8, uint16 or float samples, got {a.dtype}")
    gray = values.shape[2] in (1, 2)
    alpha = values[..., -1] if values.shape[2] in (2, 4) else None
    rgb = values[..., :1 if gray else 3]
    photo = Photo(rgb=np.repeat(rgb, 3, axis=2) if gray else np.ascontiguousarray(rgb),
                  alpha=None if alpha is None else np.ascontiguousarray(alpha), grayscale=gray,
                  bit_depth=8 if a.dtype == np.uint8 else 16)
    return photo, a.dtype


def _array(out: Photo, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The upscaled Photo as an array of the input's dtype and channels."""
    planes = out.rgb  # (h, w, 1) gray or (h, w, 3), quantized; float: (h, w, 3)
    if dtype.kind == "f" and out.grayscale:
        planes = planes[..., :1]
    if out.alpha is not None:
        alpha = out.alpha[..., None]
        if dtype.kind != "f":
            alpha = quantize_band(alpha, 255 if dtype == np.uint8 else 65535, dtype)
        planes = np.concatenate([planes, alpha.astype(planes.dtype)], axis=2)
    planes = planes.astype(dtype, copy=False)
    return planes[..., 0] if len(shape) == 2 else planes


_PIL_MODES = {"1": "L", "P": None, "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
              "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB"}


def _from_pil(im: Any) -> tuple[np.ndarray]:
    """A PIL image's samples as an array (8-bit modes as uint8, I;16 and I as uint16)."""
    mode = im.mode
    if mode in _PIL_MODES:
        target = _PIL_MODES[mode] or ("RGBA" if "transparency" in im.info else "RGB")
        im, mode = im.convert(target), target
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ValueError(f"mode {im.mode}: samples from {int(a.min())} to {int(a.max())} do not fit 16 bits")
        return (a.astype(np.uint16),)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"PIL images of mode {im.mode} are not supported (convert it to RGB, or pass an array)")
    return (np.asarray(im),)


def _to_pil(a: np.ndarray, like: Any) -> Any:
    from PIL import Image

    if a.dtype == np.uint16:  # 16-bit gray: Pillow's I;16 (it has no 16-bit colour mode)
        im = Image.fromarray(a if a.ndim == 2 else a[..., 0])
    else:
        im = Image.fromarray(a)  # L, LA, RGB or RGBA by its channels
    icc = like.info.get("icc_profile")
    if icc:
        im.info["icc_profile"] = icc
    return im
