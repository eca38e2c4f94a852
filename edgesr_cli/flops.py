"""Parameter and FLOP counts per component, measured with torch.utils.flop_counter.

Two conventions, both counted from the same pass (on the meta device: shapes only, no arithmetic):

- ``gflops``: 2 x multiply-accumulates of every conv, linear, matmul and attention op, as torch's
  counter reports them (element-wise ops, norms and resizes are not counted). This is the physical
  FLOP count that `edgesr bench` divides by measured time.
- ``gmacs_conv``: multiply-accumulates of the convolution layers only, 1 MAC = 1 "FLOP". This is the
  convention the paper's numbers imply (docs/paper_cost.md): in it SD 1.5's UNet on the 64x64 latent
  of a 128x128 LR tile at x4 counts 222.0 G (paper: 222) and SD 1.5's autoencoder, encoder on the
  512x512 input and decoder to the 512x512 output, 1781 G (paper: 1820); scripts/paper_cost_reference.py
  counts them. The paper's Edge-SD-SR numbers (UNet ~40, autoencoder ~102, total ~142) compare with this.
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .model import EdgeSR, count_parameters

# Edge-SD-SR paper, sec. 3.5 and abstract: one 128x128 LR tile at x4 (convention: PAPER_CONVENTION).
PAPER = {
    "unet": {"params_m": 158.0, "gflops": 40.0},
    "autoencoder": {"params_m": 14.0, "gflops": 102.0},
    "total": {"params_m": 169.0, "gflops": 142.0},
}
# Sec. 3.5's SD 1.5 reference numbers for the same tile; the convention below reproduces them.
PAPER_SD15 = {
    "unet": {"params_m": 860.0, "gflops": 222.0},
    "autoencoder": {"params_m": 83.0, "gflops": 1820.0},
}

FLOP_CONVENTION = "GFLOPs = 2 x MACs of every conv/linear/matmul/attention op (torch.utils.flop_counter)"
PAPER_CONVENTION = (
    "paper GFLOPs = G multiply-accumulates of the convolution layers (1 MAC = 1 FLOP; linear layers and "
    "attention matmuls not counted), LR encoder on the LR tile, UNet on the latent grid, decoder to the full "
    "HR tile; this convention reproduces the paper's SD 1.5 figures (UNet 222, autoencoder 1820 within 3%)"
)

_CONV = "aten.convolution"


def _count(fn) -> tuple[int, int]:
    """(2 x MACs of all counted ops, MACs of convolutions) of one call."""
    # The math SDPA path decomposes attention into matmuls the counter sees; the fused CPU flash kernel
    # that inference uses is not in the counter's table and would count as zero.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), int(per_op.get(_CONV, 0)) // 2


@torch.no_grad()
def model_report(cfg: ModelConfig, tile: int = 128) -> dict:
    """{component: {params, gflops, gmacs_conv}} for one `tile` x `tile` LR tile at the config's scale."""
    with torch.device("meta"):  # counts depend on shapes only: no weights initialised, nothing computed
        model = EdgeSR(cfg).eval()
    model.check_lr(torch.zeros(1, 3, tile, tile, device="cpu"))  # a clear error for a tile that does not fit
    with torch.device("meta"):
        lr = torch.empty(1, 3, tile, tile)
        mu, sigma = model.lr_encoder(lr)
        t = torch.ones(1)
        z = mu + sigma * torch.empty_like(mu)
        cond = mu if cfg.conditioning == "unidirectional" else None
        counts = {
            "lr_encoder": _count(lambda: model.lr_encoder(lr)),
            "unet": _count(lambda: model.denoise(z, t, cond)),
            "decoder": _count(lambda: model.decoder(z)),
        }
    params = {k: count_parameters(getattr(model, k)) for k in counts}

    def entry(names: tuple[str, ...]) -> dict:
        return {
            "params": sum(params[k] for k in names),
            "gflops": sum(counts[k][0] for k in names) / 1e9,
            "gmacs_conv": sum(counts[k][1] for k in names) / 1e9,
        }

    out = {k: entry((k,)) for k in counts}
    out["total"] = entry(tuple(counts))
    out["lr_encoder+decoder"] = entry(("lr_encoder", "decoder"))
    return {
        "config": cfg.name, "scale": cfg.scale, "lr_tile": tile, "hr_tile": tile * cfg.scale,
        "latent": [cfg.latent_channels, tile * cfg.scale // cfg.latent_factor, tile * cfg.scale // cfg.latent_factor],
        "flop_convention": FLOP_CONVENTION,
        "paper_convention": PAPER_CONVENTION,
        "components": out,
        "paper": PAPER,
        "paper_sd15": PAPER_SD15,
    }
