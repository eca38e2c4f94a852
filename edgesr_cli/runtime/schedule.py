"""The noise schedule's (a_t, s_t) at the sampler's few time points, without torch (what the light install's
sampler needs). diffusion.Schedule, the training schedule over tensors, gives the same values at the same t
(tests/test_tiling.py checks them over a grid)."""

from __future__ import annotations

import math

import numpy as np

from ..config import ScheduleConfig


def _sd_zsnr_table(steps: int) -> np.ndarray:
    """sqrt(alpha_bar) at k = 0..T of SD's scaled-linear betas rescaled to zero terminal SNR (Lin et al. 2024),
    in float64, as diffusion.Schedule builds it (torch.linspace's two-sided stepping included)."""
    start, end = 0.00085 ** 0.5, 0.012 ** 0.5
    step = (end - start) / (steps - 1)
    half = steps // 2
    i = np.arange(steps, dtype=np.float64)
    lin = np.where(i < half, start + step * i, end - step * (steps - 1 - i))
    sqrt_ab = np.sqrt(np.cumprod(1.0 - lin ** 2))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    return np.concatenate([[1.0], sqrt_ab])


class SamplingSchedule:
    """a_t, s_t for a float t in [0, 1], as float32 values (Python floats), exactly (0, 1) at t = 1."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self.T = cfg.num_timesteps
        self._table = _sd_zsnr_table(self.T) if cfg.kind == "sd-zsnr" else None

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        t = min(max(float(np.float32(t)), 0.0), 1.0)  # t as the float32 time the samplers have always passed
        if t >= 1.0:
            return 0.0, 1.0
        if self._table is None:
            a = math.cos(t * (math.pi / 2))
        else:
            pos = t * self.T
            lo = min(math.floor(pos), self.T - 1)
            w = pos - lo
            a = float(self._table[lo] * (1 - w) + self._table[lo + 1] * w)
        s = math.sqrt(max(1.0 - a * a, 0.0))
        return float(np.float32(a)), float(np.float32(s))
