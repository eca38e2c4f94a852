"""The switches of the paper's ablations (Tables 2 and 3, scripts/ablations.sh): each test shows the
computation its switch changes, on the tiny config and tiny synthetic photos."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.config import get_preset
from edgesr_cli.diffusion import Schedule, x0_loss
from edgesr_cli.model import EdgeSR
from edgesr_cli.runtime.tiling import upscale_tiles
from edgesr_cli.training.autoencoder import train_autoencoder
from edgesr_cli.training.common import TrainConfig, TrainError
from edgesr_cli.training.joint import encoder_regression_loss, train_distill, train_encoder, train_joint

TINY = dataclasses.replace(get_preset("test-tiny"), scale=2)
runner = CliRunner()


def tcfg(**kw) -> TrainConfig:
    base = dict(steps=3, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1, val_every=0, ckpt_every=3,
                val_images=2, seed=3, p_t1_start=1.0, p_t1_end=1.0, p_t1_decay_steps=0)  # every sample t = 1
    base.update(kw)
    return TrainConfig(**base)


def weights(model_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / f"{name}.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def ae_dir(photo_dir, tmp_path_factory) -> Path:
    return train_autoencoder(TINY, tcfg(p_t1_start=0.9), [photo_dir], None, tmp_path_factory.mktemp("ae"),
                             show_progress=False)


@pytest.fixture(scope="module")
def encoder_dir(photo_dir, ae_dir, tmp_path_factory) -> Path:
    return train_encoder(TINY, tcfg(), [photo_dir], None, tmp_path_factory.mktemp("enc"), ae_dir, show_progress=False)


# ---------------------------------------------------------------- (c) unidirectional -----------------------

def test_unidirectional_unet_sees_twice_the_channels_and_starts_from_pure_noise():
    """Training at t = 1 and one-step inference both hand the UNet [eps, mu]: 2C channels, the first C the
    N(0, I) noise itself (no LR mean or variance in the start), the last C the LR latent. The bidirectional
    model's UNet gets mu + sigma * eps, C channels."""
    for conditioning in ("unidirectional", "bidirectional"):
        cfg = dataclasses.replace(TINY, conditioning=conditioning)
        torch.manual_seed(0)
        model = EdgeSR(cfg).eval()
        seen = []
        model.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        lr = torch.rand(2, 3, 16, 16)
        with torch.no_grad():
            mu, sigma = model.encode(lr)
            eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
            x0_loss(model.lr_encoder, model.unet, cfg, Schedule(cfg.schedule), lr, mu, mu, torch.ones(2), eps)

            from edgesr_cli.backends.torch_backend import from_model

            upscale_tiles(from_model(model, "cpu", "fp32"), lr, [eps], steps=1)  # the engine over the torch backend
        c = cfg.latent_channels
        assert len(seen) == 2
        for z in seen:  # training, then inference
            if conditioning == "unidirectional":
                assert z.shape[1] == 2 * c
                assert torch.equal(z[:, :c], eps)
                assert torch.equal(z[:, c:], mu)
            else:
                assert z.shape[1] == c
                torch.testing.assert_close(z, mu + sigma * eps)
                assert not torch.allclose(z, eps)


# ---------------------------------------------------------------- (b) mean only --------------------------

def test_mean_only_start_is_mu_plus_unit_noise_through_training_and_the_cli(photo_dir, ae_dir, tmp_path):
    """--mean-only (eq. 7): the encoder's sigma is 1 everywhere, so z_1 = mu + eps; the flag reaches the saved
    model's config and the distilled student keeps it."""
    out = tmp_path / "t"
    r = runner.invoke(app, ["train", "--stage", "joint", "-c", "test-tiny", "--scale", "2", "--mean-only",
                            "--autoencoder", str(ae_dir), "--data", str(photo_dir), "--out", str(out), "--steps", "2",
                            "--batch-size", "2", "--crop", "32", "--val-every", "0", "--precision", "fp32", "-q"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["variance"] is False and cfg["conditioning"] == "bidirectional"
    student = train_distill(tcfg(steps=1), [photo_dir], None, tmp_path / "s", out / "model", show_progress=False)
    from edgesr_cli.model import load_model_dir

    model = load_model_dir(student)
    assert model.cfg.variance is False
    with torch.no_grad():
        mu, sigma = model.encode(torch.rand(1, 3, 8, 8))
    assert torch.equal(sigma, torch.ones_like(sigma))


# ---------------------------------------------------------------- (d) independent encoder ------------------

def test_encoder_regression_loss_trains_mu_by_squared_error_and_sigma_by_the_residual():
    mu = torch.randn(2, 4, 3, 3, requires_grad=True)
    raw_sigma = torch.rand(2, 4, 3, 3).add(0.5).requires_grad_(True)
    z_h = torch.randn(2, 4, 3, 3)
    encoder_regression_loss(mu, raw_sigma, z_h, variance=True).backward()
    # the NLL term does not touch mu: its gradient is the squared error's alone
    torch.testing.assert_close(mu.grad, 2 * (mu.detach() - z_h) / mu.numel())
    # sigma's optimum is |residual|: the gradient vanishes there and pushes towards it elsewhere
    r = (z_h - mu.detach()).abs()
    s = r.clone().requires_grad_(True)
    encoder_regression_loss(mu.detach(), s, z_h, variance=True).backward()
    torch.testing.assert_close(s.grad, torch.zeros_like(s.grad), atol=1e-6, rtol=0)
    mean_only = encoder_regression_loss(mu.detach(), torch.ones_like(r), z_h, variance=False)
    torch.testing.assert_close(mean_only, torch.mean((mu.detach() - z_h) ** 2))


def test_encoder_stage_trains_only_the_lr_encoder(ae_dir, encoder_dir):
    for name in ("decoder", "autoencoder"):
        assert same(weights(encoder_dir, name), weights(ae_dir, name)), name
    fresh = EdgeSR(TINY)
    assert not same(weights(encoder_dir, "lr_encoder"), {k: v for k, v in fresh.lr_encoder.state_dict().items()})
    log = [json.loads(x) for x in (encoder_dir.parent / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3]


def test_frozen_encoder_never_gets_the_diffusion_loss(photo_dir, ae_dir, encoder_dir, tmp_path):
    """Independent encoder (Table 3): through the joint stage and distillation, with every sample at t = 1
    (where the joint method does train the encoder), the frozen encoder's weights stay those of the encoder
    stage, no optimizer is kept for it, and the UNet trains; without the switch the same run moves it."""
    frozen = train_joint(TINY, tcfg(freeze_encoder=True), [photo_dir], None, tmp_path / "f", ae_dir,
                         encoder_dir=encoder_dir, show_progress=False)
    assert same(weights(frozen, "lr_encoder"), weights(encoder_dir, "lr_encoder"))
    assert not same(weights(frozen, "unet"), weights(encoder_dir, "unet"))
    assert not (tmp_path / "f" / "checkpoint" / "lr_encoder.optim.safetensors").exists()
    assert (tmp_path / "f" / "checkpoint" / "unet.optim.safetensors").is_file()
    joint = train_joint(TINY, tcfg(), [photo_dir], None, tmp_path / "j", ae_dir, encoder_dir=encoder_dir,
                        show_progress=False)
    assert not same(weights(joint, "lr_encoder"), weights(encoder_dir, "lr_encoder"))

    student = train_distill(tcfg(freeze_encoder=True), [photo_dir], None, tmp_path / "s", frozen, show_progress=False)
    assert same(weights(student, "lr_encoder"), weights(encoder_dir, "lr_encoder"))
    assert not same(weights(student, "unet"), weights(frozen, "unet"))
    # no gradient ever reaches it: the frozen module's parameters do not require one
    with pytest.raises(TrainError, match="--init-encoder"):
        train_joint(TINY, tcfg(freeze_encoder=True), [photo_dir], None, tmp_path / "x", ae_dir, show_progress=False)


def test_cli_encoder_stage_and_frozen_joint(photo_dir, ae_dir, tmp_path):
    common = ["-c", "test-tiny", "--scale", "2", "--autoencoder", str(ae_dir), "--data", str(photo_dir),
              "--steps", "2", "--batch-size", "2", "--crop", "32", "--val-every", "0", "--precision", "fp32", "-q"]
    r = runner.invoke(app, ["train", "--stage", "encoder", *common, "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    enc = tmp_path / "e" / "model"
    r = runner.invoke(app, ["train", "--stage", "joint", *common, "--out", str(tmp_path / "j"),
                            "--init-encoder", str(enc), "--freeze-encoder"])
    assert r.exit_code == 0, r.output
    assert same(weights(tmp_path / "j" / "model", "lr_encoder"), weights(enc, "lr_encoder"))
    assert json.loads((tmp_path / "j" / "checkpoint" / "train_config.json").read_text())["freeze_encoder"] is True
    r = runner.invoke(app, ["train", "--stage", "encoder", *common, "--out", str(tmp_path / "x"), "--freeze-encoder"])
    assert r.exit_code != 0 and "belong to --stage joint" in r.output
    r = runner.invoke(app, ["train", "--stage", "joint", *common, "--out", str(tmp_path / "y"), "--freeze-encoder"])
    assert r.exit_code != 0 and "--init-encoder" in r.output


# ---------------------------------------------------------------- (e) independent decoder ------------------

def test_one_step_model_keeps_the_stage0_decoder_untouched(photo_dir, ae_dir, tmp_path):
    """Independent decoder (Table 3): the one-step model before the decoder stage decodes with the stage-0
    autoencoder's own decoder, bit for bit, after the joint stage and distillation."""
    teacher = train_joint(TINY, tcfg(p_t1_start=0.5, p_t1_end=0.5), [photo_dir], None, tmp_path / "t", ae_dir,
                          show_progress=False)
    student = train_distill(tcfg(steps=2), [photo_dir], None, tmp_path / "s", teacher, show_progress=False)
    for m in (teacher, student):
        assert same(weights(m, "decoder"), weights(ae_dir, "decoder"))
        assert not same(weights(m, "unet"), weights(teacher if m is student else ae_dir, "unet"))


# ---------------------------------------------------------------- the script ---------------------------------

def test_ablation_table_reads_a_run(tmp_path):
    """scripts/ablations_table.py: one row per evaluated variant with its stages' steps and minutes, beside the
    paper's LPIPS, and bicubic's row from the same evaluation."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)

    def summary(lp, ps):
        per_image = [{"image": f"img{i}", "methods": {"edgesr": {"lpips": lp + d}}} for i, d in enumerate((-0.01, 0.03))]
        return {"summary": {"bicubic": {"lpips": 0.8, "psnr_y": 22.0, "ssim_y": 0.5},
                            "edgesr": {"lpips": lp, "psnr_y": ps, "ssim_y": 0.6}}, "per_image": per_image}

    for v, lp in (("a", 0.5), ("c", 0.7)):
        for kind in ("realesrgan", "clean"):
            (run / "eval" / f"{v}.{kind}.json").write_text(json.dumps(summary(lp, 23.0)))
    (run / "wall_seconds.txt").write_text("autoencoder 100 60\na_teacher_x2 10 30\na_teacher_x2 10 30\n"
                                          "a_student_x4 5 120\na_decoder 3 6\n")
    res = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "scripts" / "ablations_table.py"), str(run)],
                         capture_output=True, text=True, check=True)
    main, _, paired = res.stdout.partition("Paired, BSD100 degraded")
    rows = [x for x in main.splitlines() if x.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| a", "| c", "| bicubic"]
    a = rows[1].split(" | ")
    assert a[3] == "0.249" and a[4] == "0.5000" and a[5] == "23.00"
    assert "a_teacher_x2 10 / 1.0" in rows[1] and "a_student_x4 5 / 2.0" in rows[1]
    assert "0.8000" in rows[3]
    assert "Shared stage-0 autoencoder: 100 steps, 1.0 min." in res.stdout
    # per image, c minus a: +0.2 on both images (a better on both)
    assert "| c | +0.2000 | 0.0000 | 100% | 2 |" in paired and "Paired, BSD100 clean" in paired
