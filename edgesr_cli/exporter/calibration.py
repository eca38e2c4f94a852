"""Calibration data for the quantized exports (QNN W8A16, ONNX int8): LR tiles cut from photos, and the
per-graph inputs recorded from the PyTorch model on them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..model import EdgeSR
from ..models.lr_encoder import resize_to_half_hr
from .common import ExportError
from .graphs import EncoderGraph, Geometry


def calibration_tiles(source: str | Path | torch.Tensor | Sequence[torch.Tensor] | None, tile: int, count: int = 64,
                      seed: int = 0) -> tuple[torch.Tensor, str]:
    """LR tiles (N,3,tile,tile) in [0,1] for calibration, and a description of where they came from.

    source: a folder (or file) of photos, cut into random tile crops (the photos are LR input, as a
    user would pass to `edgesr upscale`); or tensors: (N,3,H,W) / a list of (3,H,W) images."""
    if source is None:
        raise ExportError("quantized export needs calibration images: pass --calibration DIR "
                          "(a folder of typical input photos; 20-100 is plenty)")
    g = torch.Generator().manual_seed(seed)
    if isinstance(source, (str, Path)):
        from ..data import load_images

        images, _ = load_images(source, min_size=tile)
        images = [im.float() / 255.0 for im in images]
        label = f"{Path(source).name or source} ({len(images)} image(s))"
    elif isinstance(source, torch.Tensor):
        images = list(source) if source.dim() == 4 else [source]
        label = f"{len(images)} tensor image(s)"
    else:
        images = list(source)
        label = f"{len(images)} tensor image(s)"
    images = [im for im in images if im.shape[-1] >= tile and im.shape[-2] >= tile]
    if not images:
        raise ExportError(f"no calibration image is at least {tile}x{tile} (the export tile)")
    per = max(1, math.ceil(count / len(images)))
    tiles = []
    for im in images:
        h, w = im.shape[-2:]
        for _ in range(per):
            y = int(torch.randint(0, h - tile + 1, (1,), generator=g))
            x = int(torch.randint(0, w - tile + 1, (1,), generator=g))
            tiles.append(im[:3, y:y + tile, x:x + tile].float().clamp(0, 1))
    idx = torch.randperm(len(tiles), generator=g)[:count]
    return torch.stack([tiles[int(i)] for i in idx]), label


@torch.no_grad()
def calibration_feeds(model: EdgeSR, geo: Geometry, lr_tiles: torch.Tensor, graphs: Iterable[str],
                      seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per-graph input batches (batch 1) recorded from the PyTorch model on the calibration tiles:
    the fused graph and encoder see the LR tiles, the denoiser sees the sampler's z_t for 1, 2 and 4
    steps (t = 1, .75, .5, .25), the decoder sees the denoiser's predictions."""
    from ..sampler import sample

    g = torch.Generator().manual_seed(seed)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in graphs}
    enc_graph = EncoderGraph(model, geo.host_resize).eval()
    uni = geo.conditioning == "unidirectional"
    for i in range(lr_tiles.shape[0]):
        lr = lr_tiles[i:i + 1].float()
        enc_in = resize_to_half_hr(lr, geo.scale) if geo.host_resize else lr
        noise = torch.randn(1, geo.latent_channels, geo.latent, geo.latent, generator=g)
        mu, sigma = enc_graph(enc_in)
        if "encoder" in feeds:
            feeds["encoder"].append({"lr": enc_in.numpy()})
        if "fused" in feeds:
            feeds["fused"].append({"lr": enc_in.numpy(), "noise": noise.numpy()})
        steps = (1, 2, 4)[i % 3] if "denoise" in feeds else 1
        extra = [torch.randn(1, *mu.shape[1:], generator=g) for _ in range(steps)]
        start_mu, start_sigma = (torch.zeros_like(mu), torch.ones_like(sigma)) if uni else (mu, sigma)

        def denoiser(z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor = mu) -> torch.Tensor:
            item = {"z": z.numpy().copy(), "t": t.float().numpy().copy()}
            if uni:
                item["mu"] = mu.numpy()
            if "denoise" in feeds:
                feeds["denoise"].append(item)
            return model.denoise(z, t, mu if uni else None)

        zh = sample(denoiser, start_mu, start_sigma, [noise] + extra, model.schedule, steps=steps, eta=0.0)
        if "decoder" in feeds:
            feeds["decoder"].append({"z": zh.numpy()})
    return feeds
