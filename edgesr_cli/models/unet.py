"""The denoiser Z: an SD-1.5-derived UNet (paper 3.5) taking only z_t and t, predicting z_h.

Changes from SD 1.5: no text cross-attention, transformer blocks only at the low-resolution levels
listed in the config, halved FFN expansion, halved base channels (160 in the paper preset).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .layers import ResBlock, TransformerBlock, Upsample, conv3, make_norm, timestep_embedding


class UNet(nn.Module):
    """(z_t (B,Cin,h,w), t (B,) in [0,1]) -> z_h prediction (B,C,h,w). h, w must divide by 2**(levels-1)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        uc = cfg.unet
        self.cfg = uc
        ch = [uc.base_channels * m for m in uc.channel_mult]
        self.levels = len(ch)
        temb = uc.base_channels * uc.time_embed_mult
        self.time_mlp = nn.Sequential(nn.Linear(uc.base_channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = conv3(cfg.unet_in_channels, ch[0])

        def attn(c: int) -> TransformerBlock:
            return TransformerBlock(c, uc.head_channels, uc.ff_mult, uc.transformer_depth, uc.norm, uc.norm_groups)

        self.down = nn.ModuleList()
        skips = [ch[0]]
        cur = ch[0]
        for lvl, c in enumerate(ch):
            for _ in range(uc.num_res_blocks):
                block = nn.ModuleList([ResBlock(cur, c, temb, uc.norm, uc.norm_groups)])
                if lvl in uc.attention_levels:
                    block.append(attn(c))
                self.down.append(block)
                cur = c
                skips.append(cur)
            if lvl != len(ch) - 1:
                self.down.append(nn.ModuleList([conv3(cur, cur, stride=2)]))
                skips.append(cur)

        self.mid = nn.ModuleList([ResBlock(cur, cur, temb, uc.norm, uc.norm_groups)])
        if uc.mid_attention:
            self.mid.append(attn(cur))
        self.mid.append(ResBlock(cur, cur, temb, uc.norm, uc.norm_groups))

        self.up = nn.ModuleList()
        for lvl in reversed(range(len(ch))):
            c = ch[lvl]
            for i in range(uc.num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(cur + skips.pop(), c, temb, uc.norm, uc.norm_groups)])
                cur = c
                if lvl in uc.attention_levels:
                    block.append(attn(c))
                if lvl != 0 and i == uc.num_res_blocks:
                    block.append(Upsample(cur, cur))
                self.up.append(block)

        self.norm_out = make_norm(uc.norm, cur, uc.norm_groups)
        self.conv_out = conv3(cur, cfg.latent_channels)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def _run(self, block: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.cfg.base_channels).to(z.dtype))
        h = self.conv_in(z)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for block in self.up:
            h = self._run(block, torch.cat([h, hs.pop()], dim=1), emb)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))
