"""The numpy noise field is torch.randn's, bit for bit (noise.py): the light install (no torch) and the torch
backend start the diffusion from the same z_1, so they write the same bytes."""

from __future__ import annotations

import numpy as np
import pytest

from edgesr_cli.runtime.noise import NoiseRows, _NumpyDraws, _TorchDraws, randn
from edgesr_cli.runtime.schedule import SamplingSchedule
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


def _windows(h2):
    """Row windows as the tiling engine asks for them (overlapping, moving down), and some it does not."""
    skip = [(0, 2), (5, 8), (h2 - 1, h2)] if h2 > 8 else [(h2 - 1, h2)]
    return [[(0, h2)], [(i, min(h2, i + 4)) for i in range(0, h2, 3)], skip, [(0, 1), (1, 1), (1, h2)]]


@pytest.mark.parametrize("shape", [(1, 16, 45, 77), (2, 3, 7, 9), (1, 1, 4, 4), (1, 16, 33, 16), (1, 1, 1, 17),
                                   (3, 2, 11, 13), (1, 4, 1, 1)])
@pytest.mark.parametrize("draws", ["numpy", "torch"])
def test_noise_rows_are_the_whole_field_band_by_band(shape, draws):
    """NoiseRows (what the tiling engine reads: the field is never held whole) gives exactly the values of
    torch.randn(shape), edge-grown to a larger grid, whatever the planes' alignment to torch's blocks of 16
    and the redrawn tail; with torch's generator and with the numpy twin. Under 16 values it holds the field."""
    k, c, h, w = shape
    for seed in (0, 2**40 + 7):
        for h2, w2 in ((h, w), (h + 5, w + 3)):
            full = np.pad(_torch_randn(shape, seed), [(0, 0), (0, 0), (0, h2 - h), (0, w2 - w)], mode="edge")
            for windows in _windows(h2):
                src = None if k * c * h * w < 16 else (_NumpyDraws(seed) if draws == "numpy" else
                                                         _TorchDraws(torch, seed))
                rows = NoiseRows(shape, seed, w2, draws=src)
                for lo, hi in windows:
                    got = rows.rows(lo, hi)
                    assert got.shape == (k, c, hi - lo, w2) and got.dtype == np.float32
                    assert np.array_equal(got.view(np.uint32), full[:, :, lo:hi].view(np.uint32)), (seed, lo, hi)
    rows = NoiseRows((1, 16, 8, 8), 0)
    rows.rows(2, 4)
    with pytest.raises(ValueError, match="only moves down"):
        rows.rows(1, 4)


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
