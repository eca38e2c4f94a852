"""Shared building blocks. Export-friendly ops only: Conv2d, ReLU/SiLU, nearest upsample, add, concat,
matmul + softmax attention, per-pixel LayerNorm or GroupNorm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ConvBlock(nn.Module):
    """TAESD-style plain residual block (no normalisation, so tiles never disagree on statistics)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv3(channels, channels), nn.ReLU(), conv3(channels, channels))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv(x))


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel: local, hence identical whatever the tile."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused layer_norm over the last axis of an NHWC view: for a channels-last tensor the permutes
        # are free, and it is one kernel instead of eight elementwise passes (about 25% of UNet time on CPU).
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":
        g = math.gcd(groups, channels)
        return nn.GroupNorm(g, channels, eps=1e-6)
    if kind == "layer":
        return LayerNorm2d(channels)
    return nn.Identity()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 as in DDPM code). t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """SD's ResnetBlock2D with the time embedding added after the first conv."""

    def __init__(self, cin: int, cout: int, temb: int, norm: str, groups: int) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, cin, groups)
        self.conv1 = conv3(cin, cout)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = make_norm(norm, cout, groups)
        self.conv2 = conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        self.heads = channels // math.gcd(channels, head_channels)  # head width: gcd(channels, head_channels)
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, C)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # Fused attention (flash kernel on CPU and CUDA): same result as softmax(q k^T / sqrt(d)) v without
        # materialising the N x N matrix; exports as MatMul/Softmax.
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.out(y)


class TransformerBlock(nn.Module):
    """SD's Transformer2DModel with the text cross-attention removed and a halved FFN expansion."""

    def __init__(self, channels: int, head_channels: int, ff_mult: int, depth: int, norm: str, groups: int) -> None:
        super().__init__()
        self.norm = make_norm(norm, channels, groups)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(
                nn.ModuleDict(
                    {
                        "ln1": nn.LayerNorm(channels),
                        "attn": SelfAttention(channels, head_channels),
                        "ln2": nn.LayerNorm(channels),
                        "ff": nn.Sequential(
                            nn.Linear(channels, channels * ff_mult), nn.SiLU(), nn.Linear(channels * ff_mult, channels)
                        ),
                    }
                )
            )
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for layer in self.layers:
            y = y + layer["attn"](layer["ln1"](y))
            y = y + layer["ff"](layer["ln2"](y))
        y = y.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
