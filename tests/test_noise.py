"""The numpy noise field is torch.randn's, bit for bit (noise.py): the light install (no torch) and the torch
backend start the diffusion from the same z_1, so they write the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from edgesr_cli.noise import randn
from edgesr_cli.schedule import SamplingSchedule
from edgesr_cli.config import ScheduleConfig

torch = pytest.importorskip("torch")


def _torch_randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).numpy()


@pytest.mark.parametrize("n", list(range(16, 49)) + [1000, 4099])  # every remainder mod 16 (the redrawn tail)
def test_every_length_is_bit_identical(n):
    for seed in (0, 12345):
        assert np.array_equal(randn((n,), seed).view(np.uint32), _torch_randn((n,), seed).view(np.uint32))


@pytest.mark.parametrize("seed", [1, 2**32 + 5, 2**40 + 7, 2**64 - 1, -3])
def test_large_fields_and_any_seed_are_bit_identical(seed):
    shape = (1, 16, 131, 97)  # a latent grid as the tiling engine draws it; ~200k values, every lane of the polynomials
    a, b = randn(shape, seed), _torch_randn(shape, seed)
    assert a.shape == b.shape and a.dtype == np.float32
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))  # +0 / -0 included


def test_moments_and_refusal():
    x = randn((16, 64, 64), 3)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02
    with pytest.raises(ValueError, match="at least 16"):
        randn((3, 5), 0)


@pytest.mark.parametrize("kind", ["cosine", "sd-zsnr"])
def test_sampling_schedule_matches_the_training_schedule(kind):
    from edgesr_cli.diffusion import Schedule

    cfg = ScheduleConfig(kind=kind)
    a, b = SamplingSchedule(cfg), Schedule(cfg)
    for t in [i / 64 for i in range(65)] + [1 / 3, 2 / 3, 0.999]:
        assert a.alpha_sigma_at(t) == b.alpha_sigma_at(t), t
