"""Parameter and FLOP counts per component, measured with torch.utils.flop_counter.

Convention: FLOPs = 2 x multiply-accumulates, as torch's counter reports for conv, linear, matmul and
attention; element-wise ops (activations, norms, adds, resize) are not counted.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .model import EdgeSR, count_parameters

# Edge-SD-SR paper, sec. 3.5 and abstract: one 128x128 LR tile at x4.
PAPER = {
    "unet": {"params_m": 158.0, "gflops": 40.0},
    "autoencoder": {"params_m": 14.0, "gflops": 102.0},
    "total": {"params_m": 169.0, "gflops": 142.0},
}


def _count(fn) -> int:
    # The math SDPA path decomposes attention into matmuls the counter sees; the fused CPU flash kernel
    # that inference uses is not in the counter's table and would count as zero.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@torch.no_grad()
def model_report(cfg: ModelConfig, tile: int = 128) -> dict:
    """{component: {params, gflops}} for one `tile` x `tile` LR tile at the config's scale."""
    model = EdgeSR(cfg).eval()
    lr = torch.rand(1, 3, tile, tile)
    model.check_lr(lr)
    mu, sigma = model.lr_encoder(lr)
    t = torch.ones(1)
    z = mu + sigma * torch.randn_like(mu)
    cond = mu if cfg.conditioning == "unidirectional" else None
    flops = {
        "lr_encoder": _count(lambda: model.lr_encoder(lr)),
        "unet": _count(lambda: model.denoise(z, t, cond)),
        "decoder": _count(lambda: model.decoder(z)),
    }
    params = {k: count_parameters(getattr(model, k)) for k in flops}
    out = {k: {"params": params[k], "gflops": flops[k] / 1e9} for k in flops}
    out["total"] = {"params": sum(params.values()), "gflops": sum(flops.values()) / 1e9}
    out["lr_encoder+decoder"] = {"params": params["lr_encoder"] + params["decoder"],
                                 "gflops": (flops["lr_encoder"] + flops["decoder"]) / 1e9}
    return {
        "config": cfg.name, "scale": cfg.scale, "lr_tile": tile, "hr_tile": tile * cfg.scale,
        "latent": [cfg.latent_channels, tile * cfg.scale // cfg.latent_factor, tile * cfg.scale // cfg.latent_factor],
        "flop_convention": "FLOPs = 2 x MACs (torch.utils.flop_counter; conv/linear/matmul/attention only)",
        "components": out,
        "paper": PAPER,
    }
