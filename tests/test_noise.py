"""The noise field (noise.py): standard normals drawn from the seed in blocks of rows, numpy only, so the light
install and the torch backend start the diffusion from the same z_1 and write the same bytes; the tiling engine draws
it band by band (NoiseRows) and gets the values of the whole field."""

from __future__ import annotations

import numpy as np
import pytest

from edgesr_cli.config import ScheduleConfig
from edgesr_cli.runtime.noise import ROWS, NoiseRows, block, noise_field
from edgesr_cli.runtime.schedule import SamplingSchedule


def test_pinned_values():
    """The stream is the picture: a numpy release that changed SFC64, SeedSequence or its float32 ziggurat would
    change every seed's output, and this says so."""
    assert block(0, 0, 0, 1, 4).view(np.uint32).tolist() == [[3208052961, 1061111802, 3197569958, 1054185221]]
    assert block(12345, 3, 7, 1, 3).view(np.uint32).tolist() == [[1029793709, 3209928791, 3211100474]]


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 5, 2**64 - 1, -3])
def test_field_is_deterministic_blockwise_and_any_seed_works(seed):
    shape = (2, 3, 2 * ROWS + 5, 37)  # a partial last block
    a = noise_field(shape, seed)
    assert a.shape == shape and a.dtype == np.float32
    assert np.array_equal(a, noise_field(shape, seed))
    planes = a.reshape(6, *shape[2:])
    for p in range(6):
        for b in range(3):
            rows = min(ROWS, shape[2] - b * ROWS)
            assert np.array_equal(planes[p, b * ROWS:b * ROWS + rows], block(seed, p, b, rows, shape[3]))
    # a taller field of the same width starts with the same rows (the last block's stream goes on)
    assert np.array_equal(noise_field((2, 3, 3 * ROWS, 37), seed)[:, :, :shape[2]], a)
    assert not np.array_equal(noise_field(shape, seed + 1), a)


def test_statistics():
    """Standard normal values, planes and blocks independent of each other."""
    x = noise_field((1, 16, 64, 64), 3).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    within = [float((np.abs(x) < k).mean()) for k in (1, 2, 3)]
    assert np.allclose(within, [0.6827, 0.9545, 0.9973], atol=0.005), within
    planes = x.reshape(16, -1)  # 4096 values each: a correlation's standard deviation about 0.016
    corr = np.corrcoef(planes)
    assert np.abs(corr[~np.eye(16, dtype=bool)]).max() < 0.08
    blocks = noise_field((1, 1, 8 * ROWS, 1024), 5)[0, 0].reshape(8, -1)  # 8 blocks of one plane, 8192 values each
    assert np.abs(np.corrcoef(blocks)[~np.eye(8, dtype=bool)]).max() < 0.05


def _windows(h2):
    """Row windows as the tiling engine asks for them (overlapping, moving down), and some it does not."""
    skip = [(0, 2), (5, 8), (h2 - 1, h2)] if h2 > 8 else [(h2 - 1, h2)]
    return [[(0, h2)], [(i, min(h2, i + 4)) for i in range(0, h2, 3)], skip, [(0, 1), (1, 1), (1, h2)],
            [(i, min(h2, i + 40)) for i in range(0, h2, 23)]]


@pytest.mark.parametrize("shape", [(1, 16, 45, 77), (2, 3, 7, 9), (1, 1, 4, 4), (1, 16, 33, 16), (1, 1, 1, 17),
                                   (3, 2, 11, 13), (1, 4, 1, 1), (1, 2, 2 * ROWS, 5)])
def test_noise_rows_are_the_whole_field_band_by_band(shape):
    """NoiseRows (what the tiling engine reads: the field is never held whole) gives exactly the values of
    noise_field(shape), edge-grown to a larger grid, whatever the windows."""
    k, c, h, w = shape
    for seed in (0, 2**40 + 7):
        for h2, w2 in ((h, w), (h + 5, w + 3)):
            full = np.pad(noise_field(shape, seed), [(0, 0), (0, 0), (0, h2 - h), (0, w2 - w)], mode="edge")
            for windows in _windows(h2):
                rows = NoiseRows(shape, seed, w2)
                for lo, hi in windows:
                    got = rows.rows(lo, hi)
                    assert got.shape == (k, c, hi - lo, w2) and got.dtype == np.float32
                    assert np.array_equal(got, full[:, :, lo:hi]), (seed, lo, hi)
                assert rows.window.shape[1] <= 2 * ROWS + 40  # the window holds the rows in use, not the field
    rows = NoiseRows((1, 16, 8, 8), 0)
    rows.rows(2, 4)
    with pytest.raises(ValueError, match="only moves down"):
        rows.rows(1, 4)
    with pytest.raises(ValueError, match="positive"):
        noise_field((3, 0, 5), 0)


@pytest.mark.parametrize("kind", ["cosine", "sd-zsnr"])
def test_sampling_schedule_matches_the_training_schedule(kind):
    from edgesr_cli.diffusion import Schedule

    cfg = ScheduleConfig(kind=kind)
    a, b = SamplingSchedule(cfg), Schedule(cfg)
    for t in [i / 64 for i in range(65)] + [1 / 3, 2 / 3, 0.999]:
        assert a.alpha_sigma_at(t) == b.alpha_sigma_at(t), t
