"""The asymmetric LR encoder E: LR -> (mu, sigma) on the HR/f latent grid (paper 3.3, 3.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import ConvBlock, conv3


def resize_to_half_hr(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR (B,3,h,w) in [0,1] -> bicubic-resized to HR/2 = (h*scale/2, w*scale/2). Identity at x2."""
    factor = scale // 2
    if factor == 1:
        return lr
    return F.interpolate(lr, scale_factor=float(factor), mode="bicubic", align_corners=False)


class LREncoder(nn.Module):
    """LR image (B,3,h,w) in [0,1] -> mu, sigma, each (B, C, h*scale/f, w*scale/f); sigma > 0.

    The LR is first resized to HR/2 (so one architecture serves x2 and x4, which scale distillation
    needs), then a stem and `log2(f) - 1` stride-2 stages reach the latent grid ("one downsampling
    layer removed" relative to the HR encoder). Plain conv blocks, no normalisation.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ec = cfg.lr_encoder
        self.scale = cfg.scale
        self.variance = cfg.variance
        self.sigma_min, self.sigma_max = ec.sigma_min, ec.sigma_max
        layers: list[nn.Module] = [conv3(3, ec.channels[0]), nn.ReLU()]
        layers += [ConvBlock(ec.channels[0]) for _ in range(ec.blocks[0])]
        for i in range(1, len(ec.channels)):
            layers += [conv3(ec.channels[i - 1], ec.channels[i], stride=2), nn.ReLU()]
            layers += [ConvBlock(ec.channels[i]) for _ in range(ec.blocks[i])]
        layers.append(conv3(ec.channels[-1], 2 * cfg.latent_channels))
        self.net = nn.Sequential(*layers)

    def sigma_from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """softplus, clamped to [sigma_min, sigma_max]: positive and finite for any finite input."""
        if not self.variance:
            return torch.ones_like(raw)
        return F.softplus(raw).clamp(self.sigma_min, self.sigma_max)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = resize_to_half_hr(lr, self.scale) * 2.0 - 1.0
        mu, raw = self.net(x).chunk(2, dim=1)
        return mu, self.sigma_from_raw(raw)
