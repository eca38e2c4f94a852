"""Which FLOP convention do the paper's numbers use? Count SD 1.5's UNet and autoencoder, the two
references the paper quotes for one 128x128 LR tile at x4 (sec. 3.5: "860M parameters and 222 GFLOPS",
"about 83M parameters and 1820 GFLOPS"), in three conventions: conv MACs, all MACs, 2 x all MACs.

    python scripts/paper_cost_reference.py [--json]

Everything runs on the meta device (shapes only), in a few seconds. SD 1.5's UNet is built from edgesr's
own UNet class with SD's sizes (base 320, multipliers 1,2,4,4, transformers at the three upper levels and
the middle, head width 40, FFN inner width 4C with a GEGLU gate = 12 C^2 MACs per token as ff_mult 6);
what that class lacks is the text cross-attention, which is linear layers and matmuls only: its MACs are
added analytically (77 tokens of width 768), and it has no convolutions, so the conv-MAC column is exact.
SD 1.5's autoencoder (AutoencoderKL: 128 base channels, multipliers 1,2,4,4, two ResNet blocks per level
in the encoder and three in the decoder, one attention block in each middle) is written out below.
See docs/paper_cost.md for the reading.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgesr_cli.config import ModelConfig, UNetConfig  # noqa: E402
from edgesr_cli.models.unet import UNet  # noqa: E402


def _count(fn) -> tuple[float, float]:
    """(conv MACs, all counted MACs) of one call, in G."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return per_op.get("aten.convolution", 0) / 2e9, counter.get_total_flops() / 2e9


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------- SD 1.5 UNet -
SD15_UNET = ModelConfig(
    name="sd-1.5-unet", latent_channels=4,
    unet=UNetConfig(base_channels=320, channel_mult=(1, 2, 4, 4), attention_levels=(0, 1, 2), mid_attention=True,
                    head_channels=40, ff_mult=6),
)
_TEXT_TOKENS, _TEXT_DIM = 77, 768


def _cross_attention(latent: int) -> tuple[int, float]:
    """(params, MACs) of SD 1.5's text cross-attention layers, which edgesr's UNet leaves out."""
    # (channels, transformer blocks, grid side): 2 down + 3 up blocks at each attention level, 1 in the middle
    blocks = [(320, 5, latent), (640, 5, latent // 2), (1280, 5, latent // 4), (1280, 1, latent // 8)]
    params, macs = 0, 0.0
    for c, n, side in blocks:
        tokens = side * side
        params += n * (2 * c * c + 2 * _TEXT_DIM * c + c + 2 * c)  # to_q, to_k, to_v, to_out (+bias), its LayerNorm
        macs += n * (2 * tokens * c * c + 2 * _TEXT_TOKENS * _TEXT_DIM * c + 2 * tokens * _TEXT_TOKENS * c)
    return params, macs / 1e9


# --------------------------------------------------------------------------- SD 1.5 autoencoder -
class _ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(32, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(32, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))


class _Attention(nn.Module):  # LDM's AttnBlock: single head, 1x1 convs for q, k, v and the output
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(32, c)
        self.q, self.k, self.v, self.out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (f(y).flatten(2).transpose(1, 2)[:, None] for f in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.out(y)


class _Down(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Up(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def sd15_encoder(ch: int = 128, mult=(1, 2, 4, 4), blocks: int = 2, z: int = 4) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, ch, 3, padding=1)]
    cur = ch
    for i, m in enumerate(mult):
        for _ in range(blocks):
            layers.append(_ResnetBlock(cur, ch * m))
            cur = ch * m
        if i != len(mult) - 1:
            layers.append(_Down(cur))
    layers += [_ResnetBlock(cur, cur), _Attention(cur), _ResnetBlock(cur, cur), nn.GroupNorm(32, cur), nn.SiLU(),
               nn.Conv2d(cur, 2 * z, 3, padding=1), nn.Conv2d(2 * z, 2 * z, 1)]
    return nn.Sequential(*layers)


def sd15_decoder(ch: int = 128, mult=(1, 2, 4, 4), blocks: int = 2, z: int = 4) -> nn.Sequential:
    cur = ch * mult[-1]
    layers: list[nn.Module] = [nn.Conv2d(z, z, 1), nn.Conv2d(z, cur, 3, padding=1),
                               _ResnetBlock(cur, cur), _Attention(cur), _ResnetBlock(cur, cur)]
    for i, m in reversed(list(enumerate(mult))):
        for _ in range(blocks + 1):
            layers.append(_ResnetBlock(cur, ch * m))
            cur = ch * m
        if i != 0:
            layers.append(_Up(cur))
    layers += [nn.GroupNorm(32, cur), nn.SiLU(), nn.Conv2d(cur, 3, 3, padding=1)]
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------- the table -
def reference(lr_tile: int = 128, scale: int = 4) -> dict:
    """SD 1.5 as SD-SR (YONOS-SR, StableSR) runs it on one LR tile: the LR bicubic-resized to the HR
    size, encoded at HR, the UNet on the HR/8 latent, decoded back to HR. G MACs per convention."""
    hr = lr_tile * scale
    lat = hr // 8
    with torch.device("meta"):
        unet, enc, dec = UNet(SD15_UNET), sd15_encoder(), sd15_decoder()
        u_conv, u_all = _count(lambda: unet(torch.empty(1, 4, lat, lat), torch.empty(1)))
        e_conv, e_all = _count(lambda: enc(torch.empty(1, 3, hr, hr)))
        d_conv, d_all = _count(lambda: dec(torch.empty(1, 4, lat, lat)))
    x_params, x_macs = _cross_attention(lat)
    rows = {
        "unet": {"params": _params(unet) + x_params, "gmacs_conv": u_conv, "gmacs_all": u_all + x_macs},
        "encoder": {"params": _params(enc), "gmacs_conv": e_conv, "gmacs_all": e_all},
        "decoder": {"params": _params(dec), "gmacs_conv": d_conv, "gmacs_all": d_all},
    }
    rows["autoencoder"] = {k: rows["encoder"][k] + rows["decoder"][k] for k in rows["encoder"]}
    for r in rows.values():
        r["gflops_2x"] = 2 * r["gmacs_all"]
    return {"lr_tile": lr_tile, "hr_tile": hr, "latent": lat, "rows": rows,
            "paper": {"unet": {"params_m": 860, "gflops": 222}, "autoencoder": {"params_m": 83, "gflops": 1820}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ref = reference()
    if args.json:
        print(json.dumps(ref, indent=2))
        return
    side = f"{ref['latent']}x{ref['latent']}"
    print(f"SD 1.5 on one {ref['lr_tile']}x{ref['lr_tile']} LR tile (HR {ref['hr_tile']}, latent {side})")
    print(f"{'component':<12}{'params (M)':>11}{'conv MACs':>11}{'all MACs':>10}{'2 x MACs':>10}{'paper':>8}")
    for name, r in ref["rows"].items():
        paper = ref["paper"].get(name)
        print(f"{name:<12}{r['params'] / 1e6:>11.1f}{r['gmacs_conv']:>11.1f}{r['gmacs_all']:>10.1f}"
              f"{r['gflops_2x']:>10.1f}{paper['gflops'] if paper else '':>8}")


if __name__ == "__main__":
    main()
