"""Upscaling a Photo (library level): the model on RGB through the shared tiling engine, alpha
through bicubic, grayscale and bit depth and metadata carried over. No CLI concerns here."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .io import Photo
from .tiling import Runner, upscale_tensor


@dataclasses.dataclass(frozen=True)
class UpscaleOptions:
    tile: int = 128
    overlap: float = 0.25
    batch: int = 4
    steps: int = 1
    eta: float = 0.0
    seed: int = 0


def upscale_photo(runner: Runner, photo: Photo, opts: UpscaleOptions,
                  progress: Callable[[int, int], None] | None = None) -> Photo:
    """Photo (H,W) -> Photo (H*s, W*s) with the same metadata. Alpha is upscaled by bicubic;
    grayscale sources come back grayscale (the writer takes the gray channel)."""
    lr = torch.from_numpy(np.ascontiguousarray(photo.rgb.transpose(2, 0, 1))).float()
    hr = upscale_tensor(runner, lr, tile=opts.tile, overlap=opts.overlap, batch=opts.batch, steps=opts.steps,
                        eta=opts.eta, seed=opts.seed, progress=progress)
    rgb = hr.permute(1, 2, 0).numpy()
    if photo.grayscale:
        y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        rgb = np.repeat(y[..., None], 3, axis=2)
    alpha = None
    if photo.alpha is not None:
        a = torch.from_numpy(np.ascontiguousarray(photo.alpha))[None, None].float()
        alpha = F.interpolate(a, scale_factor=float(runner.scale), mode="bicubic", align_corners=False)[0, 0]
        alpha = alpha.clamp(0, 1).numpy()
    return dataclasses.replace(photo, rgb=np.ascontiguousarray(rgb, dtype=np.float32), alpha=alpha)
