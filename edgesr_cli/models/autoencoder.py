"""The HR autoencoder (stage 0; frozen at training time) and the small inference decoder.

Both are flat `nn.Sequential`s of plain conv blocks (TAESD-style), so they export cleanly and give
every tile the same result. Decoders do most work at the latent grid and upsample late.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import ConvBlock, Upsample, conv3


class HREncoder(nn.Module):
    """HR image (B,3,H,W) in [0,1] -> latent z_h (B,C,H/f,W/f)."""

    def __init__(self, channels: tuple[int, ...], blocks: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3(3, channels[0]), nn.ReLU()]
        layers += [ConvBlock(channels[0]) for _ in range(blocks[0])]
        for i in range(1, len(channels)):
            layers += [conv3(channels[i - 1], channels[i], stride=2), nn.ReLU()]
            layers += [ConvBlock(channels[i]) for _ in range(blocks[i])]
        layers.append(conv3(channels[-1], latent_channels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0)


class Decoder(nn.Module):
    """Latent (B,C,h,w) -> HR image (B,3,h*f,w*f), nominally in [0,1] (not clamped: callers clamp)."""

    def __init__(self, channels: tuple[int, ...], blocks: tuple[int, ...], latent_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3(latent_channels, channels[0]), nn.ReLU()]
        layers += [ConvBlock(channels[0]) for _ in range(blocks[0])]
        for i in range(1, len(channels)):
            layers += [Upsample(channels[i - 1], channels[i]), nn.ReLU()]
            layers += [ConvBlock(channels[i]) for _ in range(blocks[i])]
        layers.append(conv3(channels[-1], 3))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * 0.5 + 0.5


class Autoencoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ae = cfg.autoencoder
        self.encoder = HREncoder(ae.enc_channels, ae.enc_blocks, cfg.latent_channels)
        self.decoder = Decoder(ae.dec_channels, ae.dec_blocks, cfg.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def fold_latent_scale(self, scale: float) -> None:
        """Make latents unit-scale (as SD's 0.18215) by folding `scale` into the last encoder conv
        and 1/scale into the first decoder conv: the autoencoder's output is unchanged."""
        last = self.encoder.net[-1]
        last.weight.mul_(scale)
        last.bias.mul_(scale)
        self.decoder.net[0].weight.div_(scale)


def small_decoder(cfg: ModelConfig) -> Decoder:
    return Decoder(cfg.decoder.channels, cfg.decoder.blocks, cfg.latent_channels)


@torch.no_grad()
def grow_decoder(source: Decoder, target: Decoder) -> Decoder:
    """Copy `source` into `target`, a decoder of the same widths with at least as many residual blocks per
    level, and make every block `source` lacks an identity (its last conv zero: a ConvBlock fed a ReLU's
    output then returns its input), so `target` computes exactly what `source` does. Returns `target`."""
    src = list(source.net)
    i = 0
    for module in target.net:
        if i < len(src) and type(src[i]) is type(module) and all(
                a.shape == b.shape for a, b in zip(src[i].state_dict().values(), module.state_dict().values())):
            module.load_state_dict(src[i].state_dict())
            i += 1
        elif isinstance(module, ConvBlock):
            last = module.conv[-1]
            last.weight.zero_()
            last.bias.zero_()
        else:
            raise ValueError(f"cannot grow the decoder: layer {type(module).__name__} has no counterpart")
    if i != len(src):
        raise ValueError("cannot grow the decoder: the target has fewer layers than the source")
    return target


@torch.no_grad()
def init_decoder_from(target: Decoder, source: Decoder) -> int:
    """Copy weights from `source` where shapes allow: equal shapes whole, larger ones by their
    leading slice (halved channels keep the first half). Returns the number of tensors copied."""
    src = source.state_dict()
    copied = 0
    for name, t in target.state_dict().items():
        s = src.get(name)
        if s is None or s.dim() != t.dim():
            continue
        if all(a >= b for a, b in zip(s.shape, t.shape)):
            t.copy_(s[tuple(slice(0, n) for n in t.shape)])
            copied += 1
    return copied
