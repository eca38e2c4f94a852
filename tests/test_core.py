"""Tests for the model (blocks, EdgeSR, model directories), the diffusion process and the sampler.

Everything that runs a model uses the `test-tiny` preset, except the parameter count of the paper's
`edge-sd-sr` preset (built once, module-scoped, on a 16x16 LR tile so it stays cheap).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from edgesr_cli.config import (
    PRESETS,
    AutoencoderConfig,
    DecoderConfig,
    LREncoderConfig,
    ModelConfig,
    ScheduleConfig,
    UNetConfig,
    get_preset,
)
from edgesr_cli.diffusion import Schedule, forward_process, p_t1, sample_timesteps, x0_loss
from edgesr_cli.flops import model_report
from edgesr_cli.model import (
    COMPONENT_FILES,
    CONFIG_FILE,
    EdgeSR,
    ModelFileError,
    count_parameters,
    load_model_dir,
    save_model_dir,
)
from edgesr_cli.models.autoencoder import Autoencoder, Decoder, HREncoder, small_decoder
from edgesr_cli.models.lr_encoder import LREncoder
from edgesr_cli.models.unet import UNet
from edgesr_cli.runtime.sampler import noise_count, sample, timesteps
from edgesr_cli.runtime.tiling import upscale_tensor

SCHEDULES = ("cosine", "sd-zsnr")


# ---------------------------------------------------------------- helpers ------------


def tiny(**changes) -> ModelConfig:
    cfg = get_preset("test-tiny")
    return dataclasses.replace(cfg, **changes) if changes else cfg


def tiny_f8() -> ModelConfig:
    """A test-tiny-sized model with the paper's latent factor 8 (three LR encoder entries)."""
    return ModelConfig(
        name="test-f8",
        latent_channels=4,
        latent_factor=8,
        lr_encoder=LREncoderConfig(channels=(4, 4, 4), blocks=(0, 0, 1)),
        autoencoder=AutoencoderConfig(enc_channels=(4, 4, 4, 4), enc_blocks=(0, 0, 0, 1),
                                      dec_channels=(4, 4, 4, 4), dec_blocks=(1, 0, 0, 0)),
        decoder=DecoderConfig(channels=(4, 4, 4, 4), blocks=(1, 0, 0, 0)),
        unet=get_preset("test-tiny").unet,
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed))


def randn(*shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


@pytest.fixture(scope="module")
def tiny_model() -> EdgeSR:
    torch.manual_seed(0)
    return EdgeSR(tiny()).eval()


# ---------------------------------------------------------------- block shapes -------


@pytest.mark.parametrize("cfg_fn", [tiny, tiny_f8], ids=["f4", "f8"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("lr_hw", [(8, 16), (16, 24)])
def test_lr_encoder_shapes(cfg_fn, scale, lr_hw):
    cfg = dataclasses.replace(cfg_fn(), scale=scale)
    f, c = cfg.latent_factor, cfg.latent_channels
    h, w = lr_hw
    enc = LREncoder(cfg).eval()
    with torch.no_grad():
        mu, sigma = enc(rand(2, 3, h, w))
    grid = (h * scale // f, w * scale // f)  # the HR/f latent grid
    assert mu.shape == (2, c, *grid)
    assert sigma.shape == (2, c, *grid)
    assert (sigma > 0).all() and torch.isfinite(sigma).all()


@pytest.mark.parametrize("cfg_fn", [tiny, tiny_f8], ids=["f4", "f8"])
def test_hr_encoder_and_decoder_shapes(cfg_fn):
    cfg = cfg_fn()
    f, c = cfg.latent_factor, cfg.latent_channels
    ae = cfg.autoencoder
    enc = HREncoder(ae.enc_channels, ae.enc_blocks, c)
    dec = Decoder(ae.dec_channels, ae.dec_blocks, c)
    small = small_decoder(cfg)
    x = rand(2, 3, 32, 48)
    with torch.no_grad():
        z = enc(x)
        assert z.shape == (2, c, 32 // f, 48 // f)
        assert dec(z).shape == (2, 3, 32, 48)
        assert small(z).shape == (2, 3, 32, 48)
        assert Autoencoder(cfg)(x).shape == x.shape


def test_unet_shapes_bidirectional_and_unidirectional():
    cfg = tiny()
    c = cfg.latent_channels
    z = randn(2, c, 8, 12)
    t = torch.tensor([1.0, 0.3])
    unet = UNet(cfg).eval()
    assert unet.conv_in.in_channels == c
    with torch.no_grad():
        assert unet(z, t).shape == (2, c, 8, 12)

    uni = dataclasses.replace(cfg, conditioning="unidirectional")
    assert uni.unet_in_channels == 2 * c
    unet_u = UNet(uni).eval()
    assert unet_u.conv_in.in_channels == 2 * c
    with torch.no_grad():
        assert unet_u(torch.cat([z, z], 1), t).shape == (2, c, 8, 12)  # output stays C channels
        with pytest.raises(RuntimeError):
            unet_u(z, t)  # C channels are not enough for the concatenating variant


@pytest.mark.parametrize("scale", [2, 4])
def test_edgesr_encode_denoise_decode_shapes(scale):
    cfg = tiny(scale=scale)
    f, c = cfg.latent_factor, cfg.latent_channels
    model = EdgeSR(cfg).eval()
    h, w = 8, 12
    with torch.no_grad():
        mu, sigma = model.encode(rand(2, 3, h, w))
        grid = (h * scale // f, w * scale // f)
        assert mu.shape == sigma.shape == (2, c, *grid)
        zh = model.denoise(mu + sigma * randn(*mu.shape), torch.ones(2))
        assert zh.shape == mu.shape
        assert model.decode(zh).shape == (2, 3, h * scale, w * scale)


def test_edgesr_unidirectional_denoise_needs_mu():
    model = EdgeSR(tiny(conditioning="unidirectional")).eval()
    z = randn(1, 4, 8, 8)
    with torch.no_grad():
        assert model.denoise(z, torch.ones(1), z).shape == z.shape
    with pytest.raises(ValueError, match="mu"):
        model.denoise(z, torch.ones(1))


# ---------------------------------------------------------------- config ---------------


def _walk_fields(obj):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        yield f.name, v
        if dataclasses.is_dataclass(v):
            yield from _walk_fields(v)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name, tmp_path):
    cfg = get_preset(name)
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg
    for field_name, value in _walk_fields(back):
        assert not isinstance(value, list), f"{field_name} came back as a list"
    assert isinstance(back.unet.channel_mult, tuple) and isinstance(back.lr_encoder.channels, tuple)
    path = tmp_path / "config.json"
    cfg.save(path)
    assert ModelConfig.load(path) == cfg


def test_config_unknown_field_rejected():
    d = tiny().to_dict()
    d["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict(d)
    d = tiny().to_dict()
    d["unet"]["wings"] = 2
    with pytest.raises(ValueError, match="wings"):
        ModelConfig.from_json(json.dumps(d))


def test_config_load_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        ModelConfig.load(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"latent_factor": 8}, "lr_encoder"),  # test-tiny's encoder has 2 entries, f=8 needs 3
        ({"lr_encoder": LREncoderConfig(channels=(8, 8, 8), blocks=(0, 1, 1))}, "lr_encoder"),
        ({"lr_encoder": LREncoderConfig(channels=(8, 8), blocks=(0,))}, "lr_encoder"),
        ({"decoder": DecoderConfig(channels=(8, 8), blocks=(1, 0))}, "decoder"),
        ({"latent_factor": 6}, "power of two"),
        ({"scale": 3}, "scale"),
        ({"conditioning": "sideways"}, "conditioning"),
        ({"unet": UNetConfig(norm="batch")}, "norm"),
        ({"schedule": ScheduleConfig(kind="linear")}, "schedule"),
    ],
)
def test_config_inconsistent_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(**changes)


def test_config_inconsistent_json_rejected():
    d = tiny().to_dict()
    d["lr_encoder"]["channels"] = [8, 8, 8]
    with pytest.raises(ValueError, match="lr_encoder"):
        ModelConfig.from_json(json.dumps(d))


# ---------------------------------------------------------------- forward process -----


@pytest.mark.parametrize("kind", SCHEDULES)
def test_forward_process_at_t1_is_exactly_the_lr_latent(kind):
    sched = Schedule(ScheduleConfig(kind=kind))
    z_h, mu, eps = randn(3, 4, 5, 6, seed=1), randn(3, 4, 5, 6, seed=2), randn(3, 4, 5, 6, seed=3)
    sigma = rand(3, 4, 5, 6, seed=4) + 0.1
    t = torch.ones(3)
    a, s = sched.alpha_sigma(t)
    assert torch.equal(a, torch.zeros(3)) and torch.equal(s, torch.ones(3))
    z1 = forward_process(z_h, mu, sigma, eps, t, sched)
    assert torch.equal(z1, mu + sigma * eps)
    # unidirectional ablation starts from pure noise
    assert torch.equal(forward_process(z_h, mu, sigma, eps, t, sched, "unidirectional"), eps)
    # and t < 1 does mix in z_h (per sample)
    zt = forward_process(z_h, mu, sigma, eps, torch.tensor([1.0, 0.5, 0.1]), sched)
    assert torch.equal(zt[0], z1[0])
    assert not torch.allclose(zt[1], z1[1])
    a_half, s_half = sched.alpha_sigma(torch.tensor([0.5]))
    torch.testing.assert_close(zt[1], a_half * z_h[1] + s_half * (mu[1] + sigma[1] * eps[1]))


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedule_is_variance_preserving_and_decreasing(kind):
    sched = Schedule(ScheduleConfig(kind=kind))
    t = torch.linspace(0, 1, 2001)
    a, s = sched.alpha_sigma(t)
    torch.testing.assert_close(a * a + s * s, torch.ones_like(t), atol=1e-6, rtol=0)
    assert (a[1:] < a[:-1]).all(), "a_t must decrease strictly"
    assert (s[1:] >= s[:-1]).all(), "s_t must not decrease"
    low = s[1:] < 0.999  # near s = 1, float32 cannot resolve sqrt(1 - a^2) any more
    assert (s[1:][low] > s[:-1][low]).all() and low.sum() > 1000
    assert a[0] == pytest.approx(1.0, abs=1e-6) and s[0] == pytest.approx(0.0, abs=1e-3)
    assert a[-1] == 0.0 and s[-1] == 1.0
    if kind == "cosine":
        torch.testing.assert_close(a, torch.cos(t.double() * math.pi / 2).float(), atol=1e-6, rtol=0)


def test_mean_only_sigma_is_one():
    cfg = tiny(variance=False)
    enc = LREncoder(cfg).eval()
    with torch.no_grad():
        _, sigma = enc(rand(2, 3, 8, 8))
    assert torch.equal(sigma, torch.ones_like(sigma))
    assert torch.equal(enc.sigma_from_raw(torch.tensor([-1e4, 0.0, 1e4])), torch.ones(3))
    with torch.no_grad():
        _, sigma2 = EdgeSR(cfg).eval().encode(rand(1, 3, 8, 8))
    assert torch.equal(sigma2, torch.ones_like(sigma2))


# ---------------------------------------------------------------- sigma ---------------


def test_sigma_from_raw_positive_and_finite_for_extremes():
    cfg = tiny()
    enc = LREncoder(cfg)
    lo, hi = cfg.lr_encoder.sigma_min, cfg.lr_encoder.sigma_max
    raw = torch.tensor([-1e30, -1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, 1e30])
    sigma = enc.sigma_from_raw(raw)
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
    assert (sigma >= lo).all() and (sigma <= hi).all()
    assert sigma[1].item() == pytest.approx(lo) and sigma[7].item() == pytest.approx(hi)
    assert (sigma[1:] >= sigma[:-1]).all()  # monotone in raw


@pytest.mark.parametrize("bias", [-1e4, 1e4])
def test_sigma_positive_and_finite_with_extreme_weights(bias):
    cfg = tiny()
    c = cfg.latent_channels
    enc = LREncoder(cfg).eval()
    lo, hi = cfg.lr_encoder.sigma_min, cfg.lr_encoder.sigma_max
    with torch.no_grad():
        for p in enc.parameters():  # huge weights everywhere
            p.mul_(100.0)
        last = enc.net[-1]
        last.weight[c:].mul_(1e4)
        last.bias[c:] = bias
        mu, sigma = enc(rand(2, 3, 8, 8, seed=5) * 10)
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
    assert (sigma >= lo).all() and (sigma <= hi).all()
    assert sigma.max() == pytest.approx(hi) or sigma.min() == pytest.approx(lo)  # the raw output really is extreme


# ---------------------------------------------------------------- sampler ---------------


def dummy_denoiser(calls: list | None = None):
    def den(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (z.shape[0],)
        if calls is not None:
            calls.append(t.clone())
        return 0.5 * z + 0.1 + 0.2 * t.view(-1, 1, 1, 1)

    return den


def _ab(sched: Schedule, kind: str, t: float) -> tuple[float, float]:
    """a_t, s_t by hand for the cosine schedule, else from the schedule table."""
    if kind == "cosine":
        if t >= 1.0:
            return 0.0, 1.0
        return math.cos(t * math.pi / 2), math.sin(t * math.pi / 2)
    a, s = sched.alpha_sigma(torch.tensor(t))
    return float(a), float(s)


def _den64(z: torch.Tensor, t: float) -> torch.Tensor:
    return 0.5 * z + 0.1 + 0.2 * t


def _sampler_inputs(seed: int = 0, n: int = 3):
    mu = randn(2, 4, 3, 5, seed=seed)
    sigma = rand(2, 4, 3, 5, seed=seed + 1) + 0.5
    noise = [randn(2, 4, 3, 5, seed=seed + 10 + i) for i in range(n)]
    return mu, sigma, noise


@pytest.mark.parametrize("kind", SCHEDULES)
def test_sampler_one_step_by_hand(kind):
    sched = Schedule(ScheduleConfig(kind=kind))
    mu, sigma, noise = _sampler_inputs()
    calls: list = []
    out = sample(dummy_denoiser(calls), mu, sigma, noise[:1], sched, steps=1)
    expected = 0.5 * (mu + sigma * noise[0]) + 0.1 + 0.2 * 1.0  # zh = Z(z_1), z_1 = mu + sigma eps
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert len(calls) == 1 and torch.equal(calls[0], torch.ones(2))


@pytest.mark.parametrize("kind", SCHEDULES)
def test_sampler_two_steps_eta0_by_hand(kind):
    sched = Schedule(ScheduleConfig(kind=kind))
    mu, sigma, noise = _sampler_inputs(seed=3)
    out = sample(dummy_denoiser(), mu, sigma, noise[:1], sched, steps=2, eta=0.0)
    m, sg, e = mu.double(), sigma.double(), noise[0].double()
    z1 = m + sg * e
    zh1 = _den64(z1, 1.0)
    # at t = 1: a = 0, s = 1, so n = ((z1 - 0) / 1 - mu) / sigma = eps
    n = (z1 - m) / sg
    a, s = _ab(sched, kind, 0.5)
    z_half = a * zh1 + s * m + s * sg * n
    expected = _den64(z_half, 0.5)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_sampler_three_steps_eta1_by_hand(kind):
    sched = Schedule(ScheduleConfig(kind=kind))
    mu, sigma, noise = _sampler_inputs(seed=5)
    calls: list = []
    out = sample(dummy_denoiser(calls), mu, sigma, noise, sched, steps=3, eta=1.0)
    m, sg = mu.double(), sigma.double()
    e, xi1, xi2 = (x.double() for x in noise)
    z1 = m + sg * e
    zh = _den64(z1, 1.0)
    a, s = _ab(sched, kind, 2 / 3)
    z = a * zh + s * m + s * sg * xi1  # eta = 1: fresh noise only
    zh = _den64(z, 2 / 3)
    a, s = _ab(sched, kind, 1 / 3)
    z = a * zh + s * m + s * sg * xi2
    expected = _den64(z, 1 / 3)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(calls)[:, 0], torch.tensor([1.0, 2 / 3, 1 / 3]))


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_sampler_three_steps_by_hand(kind, eta):
    sched = Schedule(ScheduleConfig(kind=kind))
    mu, sigma, noise = _sampler_inputs(seed=7)
    out = sample(dummy_denoiser(), mu, sigma, noise, sched, steps=3, eta=eta)
    m, sg = mu.double(), sigma.double()
    ts = [1.0, 2 / 3, 1 / 3, 0.0]
    z = m + sg * noise[0].double()
    for i in range(3):
        zh = _den64(z, ts[i])
        if i == 2:
            break
        a_t, s_t = _ab(sched, kind, ts[i])
        a_s, s_s = _ab(sched, kind, ts[i + 1])
        n = ((z - a_t * zh) / s_t - m) / sg
        z = a_s * zh + s_s * m + s_s * sg * (math.sqrt(1 - eta**2) * n + eta * noise[i + 1].double())
    torch.testing.assert_close(out.double(), zh, atol=1e-5, rtol=0)
    if eta == 0.0:  # deterministic DDIM: the unused noise fields do not matter
        other = sample(dummy_denoiser(), mu, sigma, [noise[0], noise[2] * 3, noise[1]], sched, steps=3, eta=0.0)
        assert torch.equal(other, out)
    else:
        other = sample(dummy_denoiser(), mu, sigma, [noise[0], noise[2], noise[1]], sched, steps=3, eta=eta)
        assert not torch.allclose(other, out)


def test_sampler_noise_count_and_timesteps():
    assert noise_count(1, 0.0) == 1 and noise_count(1, 1.0) == 1
    assert noise_count(3, 0.0) == 1 and noise_count(3, 0.5) == 3
    assert timesteps(1) == [1.0, 0.0]
    assert timesteps(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="steps"):
        timesteps(0)


def test_sampler_errors_on_too_few_noise_fields():
    sched = Schedule(ScheduleConfig())
    mu, sigma, noise = _sampler_inputs()
    with pytest.raises(ValueError, match="noise field"):
        sample(dummy_denoiser(), mu, sigma, [], sched, steps=1)
    with pytest.raises(ValueError, match="noise field"):
        sample(dummy_denoiser(), mu, sigma, noise[:2], sched, steps=3, eta=1.0)
    with pytest.raises(ValueError, match="eta"):
        sample(dummy_denoiser(), mu, sigma, noise, sched, steps=2, eta=1.5)


def test_sampler_noise_only_from_caller():
    sched = Schedule(ScheduleConfig())
    mu, sigma, noise = _sampler_inputs()
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = sample(dummy_denoiser(), mu, sigma, noise, sched, steps=3, eta=0.5)
    assert torch.equal(torch.get_rng_state(), state), "the sampler must not draw from the global RNG"
    torch.manual_seed(99)
    b = sample(dummy_denoiser(), mu, sigma, noise, sched, steps=3, eta=0.5)
    assert torch.equal(a, b)
    c = sample(dummy_denoiser(), mu, sigma, [noise[0] + 1, *noise[1:]], sched, steps=3, eta=0.5)
    assert not torch.allclose(a, c)


def test_sampler_real_tiny_model_rng_untouched(tiny_model):
    mu, sigma = tiny_model.encode(rand(1, 3, 8, 8))
    noise = [randn(*mu.shape, seed=i) for i in range(2)]
    state = torch.get_rng_state()
    with torch.no_grad():
        a = sample(lambda z, t: tiny_model.denoise(z, t), mu, sigma, noise, tiny_model.schedule, steps=2, eta=1.0)
        b = sample(lambda z, t: tiny_model.denoise(z, t), mu, sigma, noise, tiny_model.schedule, steps=2, eta=1.0)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------- training pieces ------


def _loss_setup(conditioning: str, t: torch.Tensor):
    torch.manual_seed(0)
    cfg = tiny(conditioning=conditioning)
    model = EdgeSR(cfg, with_autoencoder=True)
    hr = rand(len(t), 3, 16, 16, seed=1)
    lr = F.avg_pool2d(hr, cfg.scale)
    with torch.no_grad():
        z_h = model.autoencoder.encoder(hr)
    eps = randn(*z_h.shape, seed=2)
    out = x0_loss(model.lr_encoder, model.unet, cfg, model.schedule, lr, z_h, z_h, t, eps)
    out.loss.backward()
    return model, out


def _grad_abs_sum(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("conditioning", ["bidirectional", "unidirectional"])
def test_stop_gradient_encoder_only_learns_from_t1(conditioning):
    model, out = _loss_setup(conditioning, torch.tensor([0.5, 0.999]))
    assert out.loss.item() > 0
    assert _grad_abs_sum(model.lr_encoder) == 0.0
    assert _grad_abs_sum(model.unet) > 0  # the UNet still learns from t < 1

    model, _ = _loss_setup(conditioning, torch.tensor([1.0, 0.5]))
    assert _grad_abs_sum(model.lr_encoder) > 0


def test_x0_loss_shape_mismatch():
    cfg = tiny()
    model = EdgeSR(cfg)
    z_h = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="does not match"):
        x0_loss(model.lr_encoder, model.unet, cfg, model.schedule, rand(1, 3, 4, 4), z_h, z_h, torch.ones(1), z_h)


def test_p_t1_decays_from_start_to_end():
    start, end, steps = 0.5, 1 / 1000, 1000
    vals = [p_t1(s, start, end, steps) for s in range(0, 1501, 10)]
    assert vals[0] == pytest.approx(start)
    assert p_t1(steps, start, end, steps) == pytest.approx(end)
    assert p_t1(5 * steps, start, end, steps) == pytest.approx(end)
    assert p_t1(steps // 2, start, end, steps) == pytest.approx((start + end) / 2)
    assert all(b <= a for a, b in zip(vals, vals[1:]))
    assert vals[1] < vals[0]
    assert p_t1(10, start, end, 0) == end


@pytest.mark.parametrize("p_one", [0.0, 0.3, 0.9])
def test_sample_timesteps_frequency_of_t1(p_one):
    T, n = 100, 20000
    t = sample_timesteps(n, p_one, T, gen(123))
    assert t.shape == (n,)
    k = t * T
    assert torch.allclose(k, k.round(), atol=1e-4) and (t > 0).all() and (t <= 1).all()  # on the grid k/T
    expected = p_one + (1 - p_one) / T  # forced, or uniform landing on k = T
    assert abs((t == 1.0).float().mean().item() - expected) < 0.02
    if p_one < 1:  # the rest stays spread over the grid
        assert len(torch.unique(t)) > T // 2
    assert torch.equal(t, sample_timesteps(n, p_one, T, gen(123)))  # reproducible from the generator


def test_short_overfit_drives_x0_loss_down():
    torch.manual_seed(0)
    cfg = tiny()
    model = EdgeSR(cfg, with_autoencoder=True)
    hr_enc = model.autoencoder.encoder.requires_grad_(False)  # frozen random HR encoder
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    hr = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(6 * xx) * torch.cos(4 * yy)])[None]  # one image
    lr = F.interpolate(hr, scale_factor=1 / cfg.scale, mode="area")
    with torch.no_grad():
        z_h = hr_enc(hr)
    b = 4
    lr_b, z_b = lr.expand(b, -1, -1, -1), z_h.expand(b, -1, -1, -1)
    t = torch.tensor([1.0, 1.0, 0.6, 0.3])
    eps = randn(b, *z_h.shape[1:], seed=3)
    params = list(model.lr_encoder.parameters()) + list(model.unet.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)

    def loss() -> torch.Tensor:
        return x0_loss(model.lr_encoder, model.unet, cfg, model.schedule, lr_b, z_b, z_b, t, eps).loss

    with torch.no_grad():
        initial = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        final = loss().item()
    assert math.isfinite(final)
    assert final < 0.5 * initial, f"x0 loss {initial:.4g} -> {final:.4g}"


# ---------------------------------------------------------------- bad input ------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rand(1, 4, 8, 8), "3 colour channels"),
        (lambda: rand(1, 1, 8, 8), "3 colour channels"),
        (lambda: rand(3, 8, 8), r"\(B, 3, H, W\)"),
        (lambda: rand(1, 3, 7, 8), "latent grid"),
        (lambda: rand(1, 3, 8, 9), "latent grid"),
        (lambda: torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (lambda: torch.full((1, 3, 8, 8), float("inf")), "infinite"),
        (lambda: torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating-point"),
        (lambda: torch.zeros(1, 3, 8, 8, dtype=torch.int64), "floating-point"),
        (lambda: [[0.0]], "torch.Tensor"),
    ],
    ids=["4ch", "1ch", "3d", "h-grid", "w-grid", "nan", "inf", "uint8", "int64", "list"],
)
def test_encode_rejects_bad_input(tiny_model, make, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.encode(make())


def test_encode_grid_message_names_the_multiple():
    model = EdgeSR(tiny(scale=2))
    assert model.lr_multiple == 4
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode(rand(1, 3, 6, 8))


def test_upscale_tensor_rejects_nan_and_runs_on_good_input():
    from edgesr_cli.backends.torch_backend import from_model

    runner = from_model(EdgeSR(tiny()).eval())  # its own model: the backend makes it channels_last in place
    img = rand(3, 10, 14)
    bad = img.clone()
    bad[1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        upscale_tensor(runner, bad, tile=8)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        upscale_tensor(runner, img[None], tile=8)
    out = upscale_tensor(runner, img, tile=8)
    assert out.shape == (3, 40, 56) and torch.isfinite(out).all()


# ---------------------------------------------------------------- model directories -----


def _outputs(model: EdgeSR):
    with torch.no_grad():
        mu, sigma = model.encode(rand(1, 3, 8, 12, seed=9))
        zh = model.denoise(mu + sigma * randn(*mu.shape, seed=10), torch.ones(1))
        return mu, sigma, zh, model.decode(zh)


@contextlib.contextmanager
def no_unpickling():
    """Any unpickling while loading a model directory fails the test."""

    def boom(*a, **k):
        raise AssertionError("unpickling during model load")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", boom)
        mp.setattr(pickle, "load", boom)
        mp.setattr(pickle, "loads", boom)
        mp.setattr(pickle, "Unpickler", boom)
        yield


def test_model_dir_round_trip(tiny_model, tmp_path):
    out = save_model_dir(tiny_model, tmp_path / "m")
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([CONFIG_FILE, COMPONENT_FILES["lr_encoder"], COMPONENT_FILES["unet"], COMPONENT_FILES["decoder"]])
    all_files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in all_files if p.suffix in (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp dir left behind
    with no_unpickling():
        loaded = load_model_dir(out)
    assert loaded.cfg == tiny_model.cfg
    for a, b in zip(_outputs(tiny_model), _outputs(loaded)):
        assert torch.equal(a, b)
    # saving again over an existing directory replaces it
    save_model_dir(tiny_model, out)
    assert sorted(p.name for p in out.iterdir()) == files


def test_model_dir_with_autoencoder(tmp_path):
    torch.manual_seed(1)
    model = EdgeSR(tiny(), with_autoencoder=True).eval()
    out = save_model_dir(model, tmp_path / "m", inference_only=False)
    assert (out / COMPONENT_FILES["autoencoder"]).is_file()
    with no_unpickling():
        loaded = load_model_dir(out, with_autoencoder=True)
    x = rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.autoencoder(x), loaded.autoencoder(x))


def test_model_dir_config_weights_mismatch(tiny_model, tmp_path):
    out = save_model_dir(tiny_model, tmp_path / "m")
    d = json.loads((out / CONFIG_FILE).read_text())
    d["unet"]["base_channels"] = 16
    (out / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match=r"unet\.safetensors"):
        load_model_dir(out)


def test_model_dir_missing_pieces(tiny_model, tmp_path):
    with pytest.raises(ModelFileError, match="not a model directory"):
        load_model_dir(tmp_path / "nowhere")
    out = save_model_dir(tiny_model, tmp_path / "m")
    (out / COMPONENT_FILES["decoder"]).unlink()
    with pytest.raises(ModelFileError, match=r"decoder\.safetensors"):
        load_model_dir(out)
    (out / CONFIG_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"config\.json"):
        load_model_dir(out)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "bad-header"])
def test_model_dir_corrupted_safetensors(tiny_model, tmp_path, damage):
    out = save_model_dir(tiny_model, tmp_path / "m")
    path = out / COMPONENT_FILES["lr_encoder"]
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        n = int.from_bytes(data[:8], "little")
        path.write_bytes(data[:8] + b"{" * n + data[8 + n:])
    with pytest.raises(ModelFileError, match=r"lr_encoder\.safetensors"):
        load_model_dir(out)


# ---------------------------------------------------------------- parameter / FLOP counts -


@pytest.fixture(scope="module")
def sd_report() -> dict:
    # Built once; a 16x16 LR tile (the smallest the paper preset accepts) keeps the FLOP pass cheap.
    # Parameter counts do not depend on the tile.
    return model_report(get_preset("edge-sd-sr"), tile=16)


def test_edge_sd_sr_parameter_counts_match_the_paper(sd_report):
    comp = sd_report["components"]
    assert comp["total"]["params"] == pytest.approx(169e6, rel=0.05)
    assert comp["unet"]["params"] == pytest.approx(158e6, rel=0.05)
    assert comp["lr_encoder+decoder"]["params"] == pytest.approx(14e6, rel=0.05)  # the inference autoencoder
    assert comp["total"]["params"] == sum(comp[k]["params"] for k in ("lr_encoder", "unet", "decoder"))
    for name in ("lr_encoder", "unet", "decoder", "total", "lr_encoder+decoder"):
        assert comp[name]["gflops"] > 0, name
    assert sd_report["latent"] == [8, 8, 8]  # 16 LR px at x4 = 64 HR px, /8
    assert sd_report["paper"]["total"]["params_m"] == 169.0


def test_model_report_counts_on_the_meta_device_what_a_real_forward_costs():
    # model_report counts shapes on the meta device; a real forward of the same modules counts the same
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = tiny()
    report = model_report(cfg, tile=16)["components"]
    model = EdgeSR(cfg).eval()
    lr = rand(1, 3, 16, 16)
    with torch.no_grad():
        mu, sigma = model.lr_encoder(lr)
        calls = {"lr_encoder": lambda: model.lr_encoder(lr), "unet": lambda: model.unet(mu, torch.ones(1)),
                 "decoder": lambda: model.decoder(mu)}
        for name, call in calls.items():
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                call()
            conv = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}.get("aten.convolution", 0)
            assert report[name]["gflops"] == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9), name
            assert report[name]["gmacs_conv"] == pytest.approx(conv / 2e9, rel=1e-9), name
            assert 0 < report[name]["gmacs_conv"] <= report[name]["gflops"] / 2, name


def test_model_report_tiny_counts_and_flop_scaling():
    cfg = tiny()
    r16, r32 = model_report(cfg, tile=16), model_report(cfg, tile=32)
    model = EdgeSR(cfg)
    for name in ("lr_encoder", "unet", "decoder"):
        assert r16["components"][name]["params"] == count_parameters(getattr(model, name))
        ratio = r32["components"][name]["gflops"] / r16["components"][name]["gflops"]
        if name == "unet":  # convs grow with the area, self-attention with its square
            assert 4.0 < ratio < 16.0, (name, ratio)
        else:  # conv-only: FLOPs grow with the tile area
            assert 3.5 < ratio < 4.6, (name, ratio)
    assert r16["hr_tile"] == 64 and r16["latent"] == [4, 16, 16]
