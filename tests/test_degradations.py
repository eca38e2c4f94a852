"""Tests for edgesr_cli.degradations (tiny synthetic images, fast)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from edgesr_cli import degradations as D
from edgesr_cli.degradations import DegradationConfig, DegradationParams
from edgesr_cli.degrade.ops import _poisson_quantile


def make_image(size: int = 64, seed: int = 0) -> torch.Tensor:
    """(3, size, size) in [0, 1]: smooth gradients, an edge, stripes and a little noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disk = (((xx - 0.6) ** 2 + (yy - 0.4) ** 2) < 0.06).float()
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * 6 * (xx + 0.5 * yy))
    img = torch.stack([0.2 + 0.6 * xx, 0.2 + 0.5 * yy + 0.3 * disk, 0.3 + 0.4 * stripes * (yy > 0.5)])
    return (0.9 * img + 0.02 * torch.randn(3, size, size, generator=g)).clamp(0, 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_image(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(x.shape) == shape
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def assert_8bit(x: torch.Tensor) -> None:
    levels = x * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3)


def down2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x.unsqueeze(0), scale_factor=0.5, mode="bicubic",
                         align_corners=False, antialias=True).squeeze(0).clamp(0, 1)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("size", [7, 13, 21])
def test_isotropic_kernels_sum_to_one_and_are_symmetric(size):
    kernels = [
        D.gaussian_kernel(size, 1.7),
        D.generalized_gaussian_kernel(size, 1.7, beta=0.6),
        D.generalized_gaussian_kernel(size, 1.7, beta=3.0),
        D.plateau_kernel(size, 1.7, beta=1.5),
        D.sinc_kernel(size, math.pi / 3),
    ]
    for k in kernels:
        assert k.shape == (size, size) and k.dtype == torch.float32
        assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-5)
        assert torch.allclose(k, k.T, atol=1e-7)
        assert torch.allclose(k, k.flip(0), atol=1e-7)
        assert torch.allclose(k, k.flip(1), atol=1e-7)
        c = size // 2
        assert float(k[c, c]) == pytest.approx(float(k.max()))


def test_anisotropic_kernels_are_centrally_symmetric_and_rotate():
    for k in (
        D.gaussian_kernel(21, 3.0, 0.8, theta=0.6),
        D.generalized_gaussian_kernel(21, 3.0, 0.8, theta=-1.1, beta=2.5),
        D.plateau_kernel(21, 3.0, 0.8, theta=2.0, beta=1.2),
    ):
        assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-5)
        assert torch.allclose(k, k.flip(0).flip(1), atol=1e-7)  # k(-x) == k(x)
        assert not torch.allclose(k, k.T, atol=1e-4)
    # rotating by 90 degrees swaps the axes
    k0 = D.gaussian_kernel(15, 2.5, 0.7, theta=0.0)
    k90 = D.gaussian_kernel(15, 2.5, 0.7, theta=math.pi / 2)
    assert torch.allclose(k0.T, k90, atol=1e-6)
    # sigma_x spreads along x (columns)
    assert float(k0[7, 10]) > float(k0[10, 7])


def test_sinc_kernel_padding_and_gaussian_limit():
    k = D.sinc_kernel(9, math.pi / 2, pad_to=21)
    assert k.shape == (21, 21)
    assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-5)
    assert float(k[:6].abs().sum()) == 0.0  # zero padding
    assert float(k.min()) < 0  # ringing lobes
    # generalized Gaussian with beta=1 is the plain Gaussian
    assert torch.allclose(D.generalized_gaussian_kernel(11, 1.3, 2.0, 0.4, beta=1.0),
                          D.gaussian_kernel(11, 1.3, 2.0, 0.4), atol=1e-7)


def test_random_mixed_kernel_properties():
    cfg = DegradationConfig()
    g = gen(3)
    for second in (False, True):
        for _ in range(30):
            k = D.random_mixed_kernel(cfg, g, second_order=second)
            assert k.shape == (21, 21)
            assert math.isclose(float(k.sum()), 1.0, abs_tol=1e-5)
            assert torch.allclose(k, k.flip(0).flip(1), atol=1e-6)
    small = dataclasses.replace(cfg, blur_kernel_size=9, sinc_prob=1.0)
    k = D.random_mixed_kernel(small, gen(0))
    assert k.shape == (9, 9) and math.isclose(float(k.sum()), 1.0, abs_tol=1e-5)
    with pytest.raises(ValueError):
        D.random_blur_kernel("box", 7, (1, 2), (0.5, 4), (1, 2), gen(0))


def test_random_mixed_kernel_is_deterministic():
    cfg = DegradationConfig()
    a = D.random_mixed_kernel(cfg, gen(11))
    b = D.random_mixed_kernel(cfg, gen(11))
    c = D.random_mixed_kernel(cfg, gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------- ops


def test_filter2d_shapes_identity_and_per_image_kernels():
    img = make_image(32)
    batch = torch.stack([img, make_image(32, seed=1)])
    delta = torch.zeros(7, 7)
    delta[3, 3] = 1
    assert torch.allclose(D.filter2d(img, delta), img, atol=1e-6)
    k1 = D.gaussian_kernel(21, 2.0)
    k2 = D.plateau_kernel(21, 1.0, 2.0, 0.3, beta=1.5)
    out = D.filter2d(batch, torch.stack([k1, k2]))
    assert_image(out, (2, 3, 32, 32))
    assert torch.allclose(out[0], D.filter2d(img, k1), atol=1e-6)
    assert torch.allclose(out[1], D.filter2d(batch[1], k2), atol=1e-6)
    # tiny image: falls back from reflect padding, still same size
    assert D.filter2d(img[:, :8, :8], k1).shape == (3, 8, 8)
    # blur of a constant image is the constant (padding does not leak)
    const = torch.full((3, 16, 16), 0.25)
    assert torch.allclose(D.filter2d(const, k1), const, atol=1e-6)


def test_resize_ops():
    img = make_image(64)
    for mode in D.RESIZE_MODES:
        out = D.resize(img, (20, 36), mode)
        assert out.shape == (3, 20, 36)
    for seed in range(10):
        out = D.random_resize(img, (0.2, 0.7, 0.1), (0.15, 1.5), gen(seed))
        assert out.shape[0] == 3 and 9 <= out.shape[1] <= 96
    f, m = D.sample_resize((0.0, 0.0, 1.0), (0.15, 1.5), gen(0))
    assert f == 1.0 and m in D.RESIZE_MODES
    f, _ = D.sample_resize((1.0, 0.0, 0.0), (0.15, 1.5), gen(0))
    assert 1.0 <= f <= 1.5
    f, _ = D.sample_resize((0.0, 1.0, 0.0), (0.15, 1.5), gen(0))
    assert 0.15 <= f <= 1.0
    with pytest.raises(ValueError):
        D.resize(img, (8, 8), "nearest")


def test_gaussian_noise():
    img = make_image(64)
    out = D.add_gaussian_noise(img, 10 / 255, generator=gen(0))
    assert_image(out, (3, 64, 64))
    assert torch.equal(out, D.add_gaussian_noise(img, 10 / 255, generator=gen(0)))
    assert not torch.equal(out, D.add_gaussian_noise(img, 10 / 255, generator=gen(1)))
    mid = torch.full((3, 64, 64), 0.5)
    noise = D.add_gaussian_noise(mid, 10 / 255, generator=gen(0)) - mid
    assert float(noise.std()) == pytest.approx(10 / 255, rel=0.1)
    gray = D.add_gaussian_noise(mid, 10 / 255, gray=True, generator=gen(0)) - mid
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])


def test_poisson_noise():
    img = make_image(64)
    out = D.add_poisson_noise(img, 1.0, generator=gen(0))
    assert_image(out, (3, 64, 64))
    assert torch.equal(out, D.add_poisson_noise(img, 1.0, generator=gen(0)))
    assert not torch.equal(out, D.add_poisson_noise(img, 1.0, generator=gen(1)))
    # Signal-dependent: variance ~ value / vals with vals = 256 (>128 distinct 8-bit levels).
    ramp = torch.linspace(0, 1, 256).repeat(3, 256, 1)
    noise = D.add_poisson_noise(ramp, 1.0, generator=gen(2)) - ramp
    dark, bright = noise[..., 20:60], noise[..., 190:230]
    assert float(bright.std()) > 1.5 * float(dark.std())
    expected = math.sqrt(float(ramp[..., 190:230].mean()) / 256)
    assert float(bright.std()) == pytest.approx(expected, rel=0.15)
    assert abs(float(noise[..., 20:230].mean())) < 0.01  # zero mean away from the clamp
    gray = D.add_poisson_noise(ramp, 1.0, gray=True, generator=gen(2)) - ramp
    assert torch.allclose(gray[0, :, 20:230], gray[1, :, 20:230], atol=1e-6)


def test_poisson_quantile_matches_poisson_moments():
    g = gen(5)
    for level, vals in ((0, 256), (1, 256), (3, 64), (60, 256), (250, 256), (200, 4)):
        lam = level / 255 * vals
        z = torch.randn(20000, generator=g, dtype=torch.float64)
        u = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        k = _poisson_quantile(torch.full(z.shape, level), vals, u)
        assert torch.equal(k, k.round()) and float(k.min()) >= 0
        assert float(k.mean()) == pytest.approx(lam, abs=0.05 + 0.03 * lam)
        assert float(k.var()) == pytest.approx(lam, abs=0.05 + 0.06 * lam)
    # monotone in u, and matches the CDF definition at a few points
    u = torch.tensor([0.01, 0.3, 0.5, 0.9, 0.999], dtype=torch.float64)
    k = _poisson_quantile(torch.full((5,), 128), 256, u)
    lam = torch.tensor(128 / 255 * 256, dtype=torch.float64)
    assert torch.all(k[1:] >= k[:-1])
    assert torch.all(torch.special.gammaincc(k + 1, lam) >= u)
    assert torch.all(torch.special.gammaincc(k, lam) < u)  # P(X <= k - 1) < u


def test_seeded_normal_field_is_scale_consistent():
    ref = (64, 48)
    z1 = D.seeded_normal_field(7, ref)
    z2 = D.seeded_normal_field(7, (32, 24), reference_size=ref)
    z4 = D.seeded_normal_field(7, (16, 12), reference_size=ref)
    assert torch.equal(z1, D.seeded_normal_field(7, ref))
    assert not torch.equal(z1, D.seeded_normal_field(8, ref))
    # unit variance at every size, and each field is the area-downsampled finer one
    for z in (z1, z2, z4):
        assert float(z.std()) == pytest.approx(1.0, rel=0.15)
    assert torch.allclose(z4, F.avg_pool2d(z2, 2) * 2, atol=1e-5)
    assert torch.allclose(z2, F.avg_pool2d(z1, 2) * 2, atol=1e-5)


def test_random_add_noise_keeps_shape_and_range():
    batch = torch.stack([make_image(32), make_image(32, 1)])
    for seed in range(4):
        out = D.random_add_noise(batch, 0.5, (1, 30), (0.05, 3), 0.4, gen(seed))
        assert_image(out, (2, 3, 32, 32))
    p = D.sample_noise(1.0, (255, 255), (1, 1), 0.0, gen(0))
    assert p.kind == "gaussian" and p.strength == pytest.approx(1.0) and not p.gray
    p = D.sample_noise(0.0, (1, 1), (2, 2), 1.0, gen(0))
    assert p.kind == "poisson" and p.strength == pytest.approx(2.0) and p.gray
    with pytest.raises(ValueError):
        D.add_noise(batch, D.NoiseParams("speckle", False, 0.1, 0))


def test_jpeg():
    img = make_image(64)
    out = D.jpeg_compress(img, 40)
    assert_image(out, (3, 64, 64))
    assert_8bit(out)
    assert torch.equal(out, D.jpeg_compress(img, 40))
    err_low = float((D.jpeg_compress(img, 10) - img).abs().mean())
    err_high = float((D.jpeg_compress(img, 95) - img).abs().mean())
    assert err_low > err_high
    batch = torch.stack([img, make_image(64, 1)])
    outb = D.jpeg_compress(batch, [40, 90])
    assert torch.equal(outb[0], out)
    assert_image(D.random_jpeg(batch, (30, 95), gen(0)), (2, 3, 64, 64))
    assert torch.equal(D.random_jpeg(batch, (30, 95), gen(0)), D.random_jpeg(batch, (30, 95), gen(0)))
    with pytest.raises(ValueError):
        D.jpeg_compress(img, 0)
    with pytest.raises(ValueError):
        D.jpeg_compress(batch, [50])


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_degrade_shape_range_and_8bit(scale):
    img = make_image(64)
    for seed in range(3):
        lr = D.degrade(img, scale, None, gen(seed))
        assert_image(lr, (3, 64 // scale, 64 // scale))
        assert_8bit(lr)
    batch = torch.stack([img, make_image(64, 1)])
    lrb = D.degrade(batch, scale, DegradationConfig(), gen(0))
    assert_image(lrb, (2, 3, 64 // scale, 64 // scale))


def test_degrade_is_deterministic_and_leaves_global_rng_alone():
    img = make_image(64)
    state = torch.get_rng_state()
    a = D.degrade(img, 4, None, gen(123))
    b = D.degrade(img, 4, None, gen(123))
    c = D.degrade(img, 4, None, gen(124))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_apply_degradation_same_params_same_result():
    img = make_image(64)
    params = D.sample_params(DegradationConfig(), gen(9))
    assert isinstance(params, DegradationParams)
    x1 = D.apply_degradation(img, params, 4)
    x2 = D.apply_degradation(img, params, 4)
    assert torch.equal(x1, x2)
    # degrade() == sample_params() + apply_degradation() for a batch
    batch = torch.stack([img, make_image(64, 1)])
    g = gen(10)
    plist = [D.sample_params(None, g) for _ in range(2)]
    assert torch.equal(D.degrade(batch, 2, None, gen(10)), D.apply_degradation(batch, plist, 2))
    # one params shared by a batch == applying it to each image
    shared = D.apply_degradation(batch, params, 4)
    assert torch.equal(shared[0], x1)


def test_params_cover_both_final_orders_and_blur_skip():
    cfg = DegradationConfig()
    params = [D.sample_params(cfg, gen(s)) for s in range(40)]
    assert {p.final_jpeg_first for p in params} == {True, False}
    assert any(p.kernel2 is None for p in params) and any(p.kernel2 is not None for p in params)
    assert any(p.final_kernel is None for p in params) and any(p.final_kernel is not None for p in params)
    assert {p.noise1.kind for p in params} == {"gaussian", "poisson"}
    for p in params:
        assert 30 <= p.jpeg1_quality <= 95 and 30 <= p.jpeg2_quality <= 95
        assert 0.15 <= p.resize1_scale <= 1.5 and 0.3 <= p.resize2_scale <= 1.2
    forced = dataclasses.replace(cfg, second_blur_prob=0.0, final_sinc_prob=0.0, final_jpeg_first_prob=1.0)
    p = D.sample_params(forced, gen(0))
    assert p.kernel2 is None and p.final_kernel is None and p.final_jpeg_first


def test_x2_and_x4_lr_from_same_params_are_consistent():
    """x4 LR ~ bicubic-downscaled x2 LR for the same params, closer than for other params.

    Exact equality is impossible: as in Real-ESRGAN the second-order noise,
    JPEG and final sinc act per LR pixel, so x4 keeps the full noise sigma
    while down2(x2) halves it.  Tolerance: averaged over 24 draws, the mean
    absolute difference with the same params must be < 0.85x the one with
    unrelated params (typically ~0.65-0.8 on this image), and < 0.05 absolute.
    """
    img = make_image(64)
    same, other = [], []
    for seed in range(24):
        p = D.sample_params(None, gen(seed))
        q = D.sample_params(None, gen(1000 + seed))
        ref = down2(D.apply_degradation(img, p, 2))
        same.append(float((D.apply_degradation(img, p, 4) - ref).abs().mean()))
        other.append(float((D.apply_degradation(img, q, 4) - ref).abs().mean()))
    mean_same, mean_other = sum(same) / len(same), sum(other) / len(other)
    assert mean_same < 0.85 * mean_other, (mean_same, mean_other)
    assert mean_same < 0.05


def test_second_order_noise_is_correlated_across_scales():
    """Same params => the x4 noise is a downsampled version of the x2 noise, not a new draw."""
    cfg = DegradationConfig(gaussian_noise_prob2=1.0, noise_range2=(20, 20), gray_noise_prob2=0.0,
                            jpeg_range2=(95, 95), final_sinc_prob=0.0, noise_range=(1, 1),
                            poisson_scale_range=(0.05, 0.05))
    img = make_image(64)
    same, new_seed = [], []
    for seed in range(8):
        p = D.sample_params(cfg, gen(seed))
        reseeded = dataclasses.replace(p, noise2=dataclasses.replace(p.noise2, seed=p.noise2.seed + 1))
        ref = down2(D.apply_degradation(img, p, 2))
        same.append(float((D.apply_degradation(img, p, 4) - ref).abs().mean()))
        new_seed.append(float((D.apply_degradation(img, reseeded, 4) - ref).abs().mean()))
    assert sum(same) < 0.8 * sum(new_seed), (same, new_seed)


def test_x2_x4_consistency_is_tight_without_lr_grid_noise_and_jpeg():
    """With noise, JPEG and final sinc off, x4 LR is close to down2(x2 LR) in absolute terms."""
    cfg = DegradationConfig(
        noise_range=(0, 0), poisson_scale_range=(0, 0), noise_range2=(0, 0), poisson_scale_range2=(0, 0),
        jpeg_range=(100, 100), jpeg_range2=(100, 100), final_sinc_prob=0.0,
    )
    img = make_image(64)
    diffs = []
    for seed in range(6):
        p = D.sample_params(cfg, gen(seed))
        x2, x4 = D.apply_degradation(img, p, 2), D.apply_degradation(img, p, 4)
        diffs.append(float((x4 - down2(x2)).abs().mean()))
    assert max(diffs) < 0.03 and sum(diffs) / len(diffs) < 0.02, diffs


def test_bicubic_lr():
    img = make_image(64)
    lr = D.bicubic_lr(img, 4)
    assert_image(lr, (3, 16, 16))
    assert_8bit(lr)
    expected = F.interpolate(img[None], size=(16, 16), mode="bicubic", antialias=True, align_corners=False)
    assert torch.allclose(lr, expected[0].clamp(0, 1), atol=0.5 / 255 + 1e-6)
    assert torch.equal(D.bicubic_lr(img, 1), D.quantize_8bit(img))
    batch = torch.stack([img, img])
    assert D.bicubic_lr(batch, 2).shape == (2, 3, 32, 32)


# --------------------------------------------------------------------------- config


def test_config_defaults_match_real_esrgan_x4plus():
    cfg = DegradationConfig()
    assert cfg.blur_kernel_size == 21 and cfg.blur_kernel_size2 == 21
    assert cfg.kernel_list == (
        "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
    assert cfg.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert cfg.sinc_prob == 0.1 and cfg.sinc_prob2 == 0.1 and cfg.final_sinc_prob == 0.8
    assert cfg.blur_sigma == (0.2, 3) and cfg.blur_sigma2 == (0.2, 1.5)
    assert cfg.betag_range == (0.5, 4) and cfg.betap_range == (1, 2)
    assert cfg.resize_prob == (0.2, 0.7, 0.1) and cfg.resize_range == (0.15, 1.5)
    assert cfg.resize_prob2 == (0.3, 0.4, 0.3) and cfg.resize_range2 == (0.3, 1.2)
    assert cfg.gaussian_noise_prob == 0.5 and cfg.noise_range == (1, 30)
    assert cfg.poisson_scale_range == (0.05, 3) and cfg.gray_noise_prob == 0.4
    assert cfg.noise_range2 == (1, 25) and cfg.poisson_scale_range2 == (0.05, 2.5)
    assert cfg.jpeg_range == (30, 95) and cfg.jpeg_range2 == (30, 95)
    assert cfg.second_blur_prob == 0.8
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sinc_prob = 0.5  # type: ignore[misc]


def test_config_json_round_trip():
    cfg = dataclasses.replace(DegradationConfig(), jpeg_range=(50.0, 90.0), kernel_list=("iso", "aniso"),
                              kernel_prob=(0.5, 0.5), sinc_prob2=0.3)
    text = json.dumps(cfg.to_dict())
    back = DegradationConfig.from_dict(json.loads(text))
    assert back == cfg
    assert isinstance(back.jpeg_range, tuple) and isinstance(back.kernel_list, tuple)
    assert DegradationConfig.from_dict(json.loads(json.dumps(DegradationConfig().to_dict()))) == DegradationConfig()
    with pytest.raises(ValueError):
        DegradationConfig.from_dict({"not_a_field": 1})


@pytest.mark.parametrize("bad", [
    {"kernel_prob": (0.5, 0.5)},
    {"kernel_list": ("iso", "box"), "kernel_prob": (0.5, 0.5)},
    {"resize_prob": (0.5, 0.6, 0.1)},
    {"blur_kernel_size": 20},
    {"jpeg_range": (95, 30)},
    {"jpeg_range": (0, 95)},
    {"sinc_prob": 1.5},
    {"resize_range": (0.0, 1.5)},
    {"resize_modes": ("nearest",)},
])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        DegradationConfig(**bad)


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_value_error():
    img = make_image(64)
    params = D.sample_params(None, gen(0))
    cases = [
        lambda: D.degrade(img[:, :62], 4, None, gen(0)),           # H not divisible by 4
        lambda: D.degrade(img[:, :, :30], 4, None, gen(0)),        # W not divisible by 4
        lambda: D.degrade(img[:2], 2, None, gen(0)),               # 2 channels
        lambda: D.degrade(img[0], 2, None, gen(0)),                # 2D tensor
        lambda: D.degrade(img[None, None], 2, None, gen(0)),       # 5D tensor
        lambda: D.degrade(img * 2, 2, None, gen(0)),               # out of range
        lambda: D.degrade(img - 0.5, 2, None, gen(0)),             # negative
        lambda: D.degrade((img * 255).to(torch.uint8), 2, None, gen(0)),  # integer dtype
        lambda: D.degrade(img, 0, None, gen(0)),                   # bad scale
        lambda: D.degrade(img, 2.0, None, gen(0)),                 # non-int scale
        lambda: D.apply_degradation(img, params, 3),               # 64 % 3 != 0
        lambda: D.apply_degradation(torch.stack([img, img]), [params], 2),  # params count
        lambda: D.apply_degradation(img.numpy(), params, 2),       # not a tensor
        lambda: D.bicubic_lr(img, 5),
        lambda: D.bicubic_lr(torch.full((3, 8, 8), float("nan")), 2),
        lambda: D.filter2d(img, torch.ones(4, 4) / 16),            # even kernel
        lambda: D.jpeg_compress(img[:1], 50),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()
    with pytest.raises(TypeError):
        D.degrade(img, 2, None, 0)  # a seed is not a generator
