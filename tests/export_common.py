"""Helpers shared by the export/backend test files: a tiny random model with a photo-like output
range, a small real (or synthetic) LR photo, and PSNR on tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgesr_cli.config import get_preset
from edgesr_cli.model import EdgeSR


def make_model(seed: int = 0) -> EdgeSR:
    torch.manual_seed(seed)
    m = EdgeSR(get_preset("test-tiny")).eval()
    with torch.no_grad():  # a random decoder's output hugs 0.5: widen it to a photo-like range
        m.decoder.net[-1].weight.mul_(10.0)
        m.decoder.net[-1].bias.mul_(10.0)
    return m


def lr_image(h: int = 40, w: int = 48) -> torch.Tensor:
    """A real photo (scikit-image's astronaut) shrunk to h x w, or a synthetic one without skimage."""
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255.0
    except ImportError:
        g = torch.Generator().manual_seed(3)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
        img = torch.stack([yy, xx, (yy * xx).sqrt()]) * 0.8 + 0.2 * torch.rand(3, 256, 256, generator=g)
    return F.interpolate(img[None], size=(h, w), mode="area")[0].clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
