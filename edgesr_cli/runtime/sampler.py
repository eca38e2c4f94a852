"""The one reference sampler (DDIM, eq. 6 written out in DESIGN.md), k-diffusion style: plain
functions over a denoiser callable `denoiser(z_t, t) -> z_h prediction`, noise passed in.

From a prediction zh at time t, the standardized noise estimate is
    n = ((z_t - a_t zh) / s_t - mu) / sigma
and the next state at time s < t is
    z_s = a_s zh + s_s mu + s_s sigma (sqrt(1 - eta^2) n + eta xi).
One step is zh = Z(z_1) with z_1 = mu + sigma eps. The unidirectional ablation is the same sampler
with mu = 0 and sigma = 1 (its denoiser closes over the LR latent it concatenates).

The arrays are numpy arrays (what the tiling engine hands every backend) or torch tensors (the export's
calibration); the arithmetic is the same float32 operations in the same order either way, and the schedule's
values are float32 numbers (`schedule.alpha_sigma_at(t)`), so both give the same bits.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np

Array = Any  # np.ndarray or torch.Tensor, float32, (B, C, h, w)
Denoiser = Callable[[Array, Array], Array]


class Schedule(Protocol):
    def alpha_sigma_at(self, t: float) -> tuple[float, float]: ...


def timesteps(steps: int) -> list[float]:
    """[1, ..., 0] with `steps` equal intervals."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [1.0 - i / steps for i in range(steps + 1)]


def noise_count(steps: int, eta: float) -> int:
    """How many noise fields `sample` consumes: the start, plus one per intermediate step if eta > 0."""
    return 1 + (steps - 1 if eta > 0 else 0)


def _times(like: Array, t: float) -> Array:
    """The time vector (B,) float32 for a batch like `like`, of its array type (and device)."""
    if isinstance(like, np.ndarray):
        return np.full((like.shape[0],), t, dtype=np.float32)
    return like.new_full((like.shape[0],), t).float()


def sample(
    denoiser: Denoiser,
    mu: Array,
    sigma: Array,
    noise: Sequence[Array],
    schedule: Schedule,
    steps: int = 1,
    eta: float = 0.0,
) -> Array:
    """DDIM from z_1 = mu + sigma * noise[0] down to t = 0; returns the final z_h prediction.

    mu, sigma: (B,C,h,w) (sigma > 0); noise: `noise_count(steps, eta)` arrays shaped like mu.
    """
    need = noise_count(steps, eta)
    if len(noise) < need:
        raise ValueError(f"sampler needs {need} noise field(s) for steps={steps}, eta={eta}; got {len(noise)}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    ts = timesteps(steps)
    z = mu + sigma * noise[0]
    zh = z
    for i in range(steps):
        t_now, t_next = ts[i], ts[i + 1]
        zh = denoiser(z, _times(mu, t_now))
        if t_next <= 0.0:
            break
        a_t, s_t = schedule.alpha_sigma_at(t_now)
        a_s, s_s = schedule.alpha_sigma_at(t_next)
        n = ((z - a_t * zh) / s_t - mu) / sigma
        direction = n if eta == 0 else (1.0 - eta**2) ** 0.5 * n + eta * noise[i + 1]
        z = a_s * zh + s_s * mu + s_s * sigma * direction
    return zh
