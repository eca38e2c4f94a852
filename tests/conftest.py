"""Shared fixtures: tiny synthetic photos and tiny random models (never ../shared, never downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def synthetic_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth-plus-texture uint8 RGB image (H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(x / (4 + seed)) , np.cos(y / (5 + seed)), np.sin((x + y) / 7.0)], -1) * 0.35 + 0.5
    tex = rng.random((h, w, 3)).astype(np.float32) * 0.15
    return (np.clip(base + tex, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for i in range(6):
        Image.fromarray(synthetic_photo(72, 88, i)).save(d / f"img_{i}.png")
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A seeded, randomly initialised `test-tiny` model directory (read-only for tests)."""
    from edgesr_cli.config import get_preset
    from edgesr_cli.model import EdgeSR, save_model_dir

    torch.manual_seed(0)
    return save_model_dir(EdgeSR(get_preset("test-tiny")), tmp_path_factory.mktemp("models") / "test-tiny")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Tiny tensors: intra-op threads only add contention on a two-core machine. OMP_NUM_THREADS is what
    `edgesr upscale` defaults to when set (hw.default_threads), so CLI runs in tests use one thread too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(n)
