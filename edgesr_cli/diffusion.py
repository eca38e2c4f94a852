"""Bidirectional diffusion (paper eq. 3-8): zero-terminal-SNR schedule, forward process, losses and
the decaying P(t = 1) timestep schedule.

Notation (DESIGN.md): z_t = a_t * z_h + s_t * (mu + sigma * eps). With zero terminal SNR, a_1 = 0 and
s_1 = 1, so training at t = 1 sees exactly what inference starts from: z_1 = mu + sigma * eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .config import ModelConfig, ScheduleConfig


class Schedule:
    """a_t, s_t for continuous t in [0, 1]; training draws t from the grid k/T, k = 1..T."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.T = cfg.num_timesteps
        if cfg.kind == "sd-zsnr":
            betas = torch.linspace(0.00085**0.5, 0.012**0.5, self.T, dtype=torch.float64) ** 2
            sqrt_ab = torch.cumprod(1.0 - betas, 0).sqrt()
            first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
            sqrt_ab = (sqrt_ab - last) * first / (first - last)  # Lin et al. 2024: rescale to zero terminal SNR
            self._table = torch.cat([torch.ones(1, dtype=torch.float64), sqrt_ab])  # index k <-> t = k/T
        else:
            self._table = None

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t (any shape) in [0, 1] -> (a_t, s_t), float32, a_t^2 + s_t^2 = 1, exactly (0, 1) at t = 1."""
        t64 = t.double().clamp(0.0, 1.0)
        if self._table is None:
            a = torch.cos(t64 * (math.pi / 2))
        else:
            pos = t64 * self.T
            lo = pos.floor().clamp(max=self.T - 1).long()
            w = pos - lo
            table = self._table.to(t.device)
            a = table[lo] * (1 - w) + table[lo + 1] * w
        s = (1.0 - a * a).clamp(min=0.0).sqrt()
        one = t64 >= 1.0
        a = torch.where(one, torch.zeros_like(a), a)
        s = torch.where(one, torch.ones_like(s), s)
        return a.float(), s.float()

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        """(a_t, s_t) at one time point as float32 values (Python floats): what the sampler multiplies by
        (schedule.SamplingSchedule gives the same without torch)."""
        a, s = self.alpha_sigma(torch.tensor(float(t)))
        return float(a), float(s)


def p_t1(step: int, start: float, end: float, decay_steps: int) -> float:
    """P(t = 1) at a training step: linear decay from `start` to `end` over `decay_steps` (paper 3.3).
    end = 1/T is plain uniform sampling over the T steps."""
    if decay_steps <= 0:
        return end
    frac = min(1.0, step / decay_steps)
    return start + (end - start) * frac


def sample_timesteps(batch: int, p_one: float, num_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """(B,) timesteps: 1.0 with probability p_one, else uniform over {k/T : k = 1..T} (1 included)."""
    k = torch.randint(1, num_timesteps + 1, (batch,), generator=generator)
    force = torch.rand(batch, generator=generator) < p_one
    k = torch.where(force, torch.full_like(k, num_timesteps), k)
    return k.float() / num_timesteps


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def forward_process(
    z_h: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    schedule: Schedule,
    conditioning: str = "bidirectional",
) -> torch.Tensor:
    """Eq. 5: z_t = a_t z_h + s_t (mu + sigma * eps); unidirectional: z_t = a_t z_h + s_t eps.
    z_h, mu, sigma, eps: (B,C,h,w); t: (B,) in [0,1]. (Mean-only, eq. 7, is sigma = 1 from the encoder.)"""
    a, s = schedule.alpha_sigma(t)
    a, s = _bcast(a, z_h), _bcast(s, z_h)
    if conditioning == "unidirectional":
        return a * z_h + s * eps
    return a * z_h + s * (mu + sigma * eps)


def stop_gradient_below_one(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample stop-gradient: x keeps its graph where t == 1 and is detached where t < 1 (paper 3.3)."""
    keep = _bcast((t >= 1.0).float(), x)
    return keep * x + (1.0 - keep) * x.detach()


def unet_input(z_t: torch.Tensor, mu: torch.Tensor, conditioning: str) -> torch.Tensor:
    """Bidirectional: the UNet sees z_t alone. Unidirectional ablation: z_t concatenated with the LR latent."""
    return torch.cat([z_t, mu], dim=1) if conditioning == "unidirectional" else z_t


@dataclass
class LossOutput:
    loss: torch.Tensor
    pred: torch.Tensor
    z_t: torch.Tensor


def x0_loss(
    encoder: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    unet: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: ModelConfig,
    schedule: Schedule,
    lr: torch.Tensor,
    target: torch.Tensor,
    z_h: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
) -> LossOutput:
    """Eq. 8 with the stop-gradient: || Z(a_t z_h + s_t E_mu(x_l) + s_t E_sigma(x_l) eps, t) - target ||^2.

    `target` is z_h for joint training and the teacher's prediction for scale distillation. The
    encoder receives gradients only from the samples with t = 1. Weighting w(lambda_t) = 1.
    """
    mu, sigma = encoder(lr)
    if mu.shape != z_h.shape:
        raise ValueError(f"LR latent {tuple(mu.shape)} does not match HR latent {tuple(z_h.shape)}: check LR/HR sizes and scale")
    mu = stop_gradient_below_one(mu, t)
    sigma = stop_gradient_below_one(sigma, t)
    z_t = forward_process(z_h, mu, sigma, eps, t, schedule, cfg.conditioning)
    pred = unet(unet_input(z_t, mu, cfg.conditioning), t)
    loss = torch.mean((pred.float() - target.float()) ** 2)
    return LossOutput(loss=loss, pred=pred, z_t=z_t)
