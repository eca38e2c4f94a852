"""Training stages on a tiny config and tiny synthetic images: checkpoints, bit-exact resume, the
encoder stop-gradient, DDP under torchrun, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.config import get_preset
from edgesr_cli.data import LRPipelineConfig
from edgesr_cli.training.autoencoder import train_autoencoder
from edgesr_cli.training.common import TrainConfig, TrainError
from edgesr_cli.training.decoder import finetune_decoder
from edgesr_cli.training.joint import train_distill, train_joint

TINY = dataclasses.replace(get_preset("test-tiny"), scale=2)
runner = CliRunner()


def tcfg(**kw) -> TrainConfig:
    base = dict(steps=4, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1, val_every=2, ckpt_every=2,
                val_images=2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def train_records(run: Path) -> list[dict]:
    """The run's per-step training records from its log.jsonl."""
    recs = (json.loads(line) for line in (run / "log.jsonl").read_text().splitlines())
    return [r for r in recs if r["kind"] == "train"]


def losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "train":
            out[rec["step"]] = rec["loss"]
    return out


@pytest.fixture(scope="module")
def ae_dir(photo_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ae")
    return train_autoencoder(TINY, tcfg(), [photo_dir], None, out, show_progress=False)


@pytest.fixture(scope="module")
def teacher_dir(photo_dir, ae_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    return train_joint(TINY, tcfg(), [photo_dir], None, out, ae_dir, show_progress=False)


@pytest.fixture(scope="module")
def student_dir(photo_dir, teacher_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    return train_distill(tcfg(), [photo_dir], None, out, teacher_dir, scale=4, show_progress=False)


def _resume_matches(run_fn, tmp_path: Path) -> None:
    """A 4-step run == a 2-step run resumed to 4 steps, loss for loss and weight for weight."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_fn(straight, 4, False)
    run_fn(split, 2, False)
    assert (split / "checkpoint" / "state.json").is_file()
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 2
    run_fn(split, 4, True)
    a, b = losses(straight), losses(split)
    assert a[3] == b[3] and a[4] == b[4], (a, b)
    for f in (straight / "checkpoint").glob("*.safetensors"):
        if f.name.startswith("rng_"):
            continue
        sa, sb = load_file(str(f)), load_file(str(split / "checkpoint" / f.name))
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (f.name, k)


def test_autoencoder_stage_checkpoint_and_resume(photo_dir, tmp_path):
    def run(out, steps, resume):
        return train_autoencoder(TINY, tcfg(steps=steps), [photo_dir], None, out, resume=resume, show_progress=False)

    _resume_matches(run, tmp_path)
    model = tmp_path / "straight" / "model"
    assert {p.name for p in model.iterdir()} >= {"config.json", "autoencoder.safetensors", "decoder.safetensors"}


def test_joint_stage_checkpoint_and_resume(photo_dir, ae_dir, tmp_path):
    def run(out, steps, resume):
        return train_joint(TINY, tcfg(steps=steps, p_t1_start=0.5, p_t1_decay_steps=4), [photo_dir], None, out,
                           ae_dir, resume=resume, show_progress=False)

    _resume_matches(run, tmp_path)


def test_distill_stage_checkpoint_and_resume(photo_dir, teacher_dir, tmp_path):
    def run(out, steps, resume):
        return train_distill(tcfg(steps=steps, p_t1_start=1.0, p_t1_end=1.0, p_t1_decay_steps=0), [photo_dir], None,
                             out, teacher_dir, scale=4, resume=resume, show_progress=False)

    _resume_matches(run, tmp_path)
    cfg = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())
    assert cfg["scale"] == 4


def test_decoder_stage_checkpoint_and_resume(photo_dir, student_dir, tmp_path):
    def run(out, steps, resume):
        return finetune_decoder(tcfg(steps=steps, gan_start=1, gan_weight=0.1), [photo_dir], None, out, student_dir,
                                resume=resume, show_progress=False)

    _resume_matches(run, tmp_path)
    recs = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert any("gan_w" in r for r in recs), "the GAN term never ran"
    # the final model dir is what upscale/export take: inference components only
    names = {p.name for p in (tmp_path / "straight" / "model").iterdir()}
    assert names == {"config.json", "lr_encoder.safetensors", "unet.safetensors", "decoder.safetensors"}


def test_encoder_changes_only_on_t1_batches(photo_dir, ae_dir, tmp_path):
    """Step the joint stage one step at a time; the encoder's weights move exactly on the steps whose
    batch held a t = 1 sample, and the UNet's on every step."""
    out = tmp_path / "run"
    prev_enc = prev_unet = None
    moved, had_t1 = [], []
    for step in range(1, 7):
        train_joint(TINY, tcfg(steps=step, batch_size=1, p_t1_start=0.5, p_t1_end=0.5, p_t1_decay_steps=0,
                               ckpt_every=1, val_every=0), [photo_dir], None, out, ae_dir, resume=step > 1,
                    show_progress=False)
        enc = load_file(str(out / "checkpoint" / "lr_encoder.safetensors"))
        unet = load_file(str(out / "checkpoint" / "unet.safetensors"))
        rec = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"train"' in x][-1]
        assert rec["step"] == step
        if prev_enc is not None:
            moved.append(any(not torch.equal(enc[k], prev_enc[k]) for k in enc))
            had_t1.append(bool(rec["encoder_step"]))
            assert any(not torch.equal(unet[k], prev_unet[k]) for k in unet)
        prev_enc, prev_unet = enc, unet
    assert moved == had_t1
    assert any(had_t1) and not all(had_t1), "seeded so that both kinds of batch occur"


def test_torchrun_two_cpu_ranks_hold_identical_weights(photo_dir, ae_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "edgesr_cli",
           "train", "--config", "test-tiny", "--scale", "2", "--data", str(photo_dir), "--out", str(out),
           "--autoencoder", str(ae_dir), "--steps", "3", "--batch-size", "2", "--crop", "32", "--precision", "fp32",
           "--device", "cpu", "--val-every", "0", "--ckpt-every", "3", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["world_size"] == 2
    sums = state["rank_weight_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert (out / "checkpoint" / "rng_rank0.safetensors").is_file() and (out / "checkpoint" / "rng_rank1.safetensors").is_file()
    # the ranks drew different data (different RNG streams), yet hold the same weights
    r0 = load_file(str(out / "checkpoint" / "rng_rank0.safetensors"))["state"]
    r1 = load_file(str(out / "checkpoint" / "rng_rank1.safetensors"))["state"]
    assert not torch.equal(r0, r1)


# ---- bad input: one-line errors, nothing overwritten ---------------------------------------------
def _cli(*args):
    return runner.invoke(app, list(args))


def test_empty_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _cli("train", "--stage", "autoencoder", "-c", "test-tiny", "--data", str(empty), "--out", str(tmp_path / "o"))
    assert r.exit_code == 2
    assert "no images found" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_unreadable_images_are_skipped_and_counted(photo_dir, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    for p in list(photo_dir.iterdir())[:3]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_text("not a jpeg")
    (data / "cut.png").write_bytes((photo_dir / "img_0.png").read_bytes()[:200])
    from edgesr_cli.data import load_images

    with caplog.at_level("WARNING"):
        images, skipped = load_images([data], 32)
    assert len(images) == 3 and skipped == 2
    assert "broken.jpg" in caplog.text and "cut.png" in caplog.text


def test_checkpoint_from_another_config_is_refused(photo_dir, tmp_path):
    out = tmp_path / "run"
    train_autoencoder(TINY, tcfg(steps=2), [photo_dir], None, out, show_progress=False)
    before = (out / "checkpoint" / "autoencoder.safetensors").read_bytes()
    other = dataclasses.replace(TINY, latent_channels=8)
    with pytest.raises(TrainError, match="another config"):
        train_autoencoder(other, tcfg(steps=4), [photo_dir], None, out, resume=True, show_progress=False)
    assert (out / "checkpoint" / "autoencoder.safetensors").read_bytes() == before


def test_existing_run_is_not_overwritten_without_resume(photo_dir, tmp_path):
    out = tmp_path / "run"
    train_autoencoder(TINY, tcfg(steps=2), [photo_dir], None, out, show_progress=False)
    before = (out / "checkpoint" / "state.json").read_text()
    r = _cli("train", "--stage", "autoencoder", "-c", "test-tiny", "--data", str(photo_dir), "--out", str(out),
             "--steps", "4", "--crop", "32", "-b", "2", "-q")
    assert r.exit_code == 2 and "--resume" in r.output and "Traceback" not in r.output
    assert (out / "checkpoint" / "state.json").read_text() == before


def test_teacher_of_wrong_scale_is_refused(photo_dir, student_dir, tmp_path):
    r = _cli("distill", "--teacher", str(student_dir), "--data", str(photo_dir), "--out", str(tmp_path / "o"),
             "--steps", "2", "--crop", "32", "-q")
    assert r.exit_code == 2
    assert "teacher is x4" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_joint_needs_matching_autoencoder(photo_dir, ae_dir, tmp_path):
    other = dataclasses.replace(TINY, latent_channels=8)
    with pytest.raises(TrainError, match="another config"):
        train_joint(other, tcfg(steps=2), [photo_dir], None, tmp_path / "o", ae_dir, show_progress=False)


def test_cli_train_runs_and_writes_model(photo_dir, tmp_path):
    out = tmp_path / "cli"
    r = _cli("train", "--stage", "autoencoder", "-c", "test-tiny", "--data", str(photo_dir), "--out", str(out),
             "--steps", "2", "--crop", "32", "-b", "2", "--val-every", "1", "--precision", "fp32", "-q")
    assert r.exit_code == 0, r.output
    assert (out / "model" / "config.json").is_file()
    header = (out / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,kind,loss,val_loss,val_psnr")


def _weights(model_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / f"{name}.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_decoder_stage_keeps_generator_frozen_unless_asked(photo_dir, student_dir, tmp_path):
    """Plain decoder finetuning leaves the LR encoder and UNet bit-identical; --finetune-generator trains
    them too (end to end through the pixel loss), saves their EMA, and resumes bit-exactly."""
    plain = finetune_decoder(tcfg(steps=3, gan_weight=0.0), [photo_dir], None, tmp_path / "plain", student_dir,
                             show_progress=False)
    for name in ("unet", "lr_encoder"):
        assert _same(_weights(plain, name), _weights(student_dir, name)), name
    assert not _same(_weights(plain, "decoder"), _weights(student_dir, "decoder"))

    def run(out, steps, resume):
        return finetune_decoder(tcfg(steps=steps, gan_weight=0.0, finetune_generator=True), [photo_dir], None, out,
                                student_dir, resume=resume, show_progress=False)

    _resume_matches(run, tmp_path)
    joint = tmp_path / "straight" / "model"
    for name in ("unet", "lr_encoder", "decoder"):
        assert not _same(_weights(joint, name), _weights(student_dir, name)), name
    assert (tmp_path / "straight" / "checkpoint" / "generator.ema.safetensors").is_file()


def test_cli_finetune_generator_flag(photo_dir, student_dir, tmp_path):
    out = tmp_path / "cli"
    r = _cli("finetune-decoder", "--model", str(student_dir), "--finetune-generator", "--data", str(photo_dir),
             "--out", str(out), "--steps", "2", "--crop", "32", "-b", "2", "--gan-weight", "0", "--precision", "fp32",
             "-q")
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "checkpoint" / "train_config.json").read_text())
    assert saved["finetune_generator"] is True
    assert not _same(_weights(out / "model", "unet"), _weights(student_dir, "unet"))


def test_distill_hr_weight_one_regresses_the_hr_latent(photo_dir, teacher_dir, tmp_path, monkeypatch):
    """--hr-weight mixes the ground-truth latent into the student's target: at 1 the teacher is never run,
    at 0.5 it is, and the loss differs from the teacher-only run on the same draws."""
    import edgesr_cli.training.joint as J

    calls = {"n": 0}
    real = J.DiffusionNet.forward

    def counting(self, lr, target, z_h, t, eps):
        if self.cfg.scale == 2:
            calls["n"] += 1
        return real(self, lr, target, z_h, t, eps)

    monkeypatch.setattr(J.DiffusionNet, "forward", counting)
    base = dict(steps=2, val_every=0, p_t1_start=1.0, p_t1_end=1.0, p_t1_decay_steps=0)
    runs = {}
    for w in (0.0, 0.5, 1.0):
        calls["n"] = 0
        out = tmp_path / f"w{w}"
        train_distill(tcfg(hr_target_weight=w, **base), [photo_dir], None, out, teacher_dir, scale=4,
                      show_progress=False)
        runs[w] = (losses(out), calls["n"])
    assert runs[1.0][1] == 0 and runs[0.5][1] > 0 and runs[0.0][1] > 0
    assert runs[0.0][0][1] != runs[0.5][0][1] != runs[1.0][0][1]
    with pytest.raises(TrainError, match="hr target weight"):
        train_distill(tcfg(hr_target_weight=1.5, **base), [photo_dir], None, tmp_path / "bad", teacher_dir, scale=4,
                      show_progress=False)


def test_distill_init_continues_a_student_and_refuses_others(photo_dir, teacher_dir, student_dir, tmp_path):
    base = dict(steps=1, val_every=0, lr=1e-12, p_t1_start=1.0, p_t1_end=1.0, p_t1_decay_steps=0, ema_decay=0.0)
    cont = train_distill(tcfg(**base), [photo_dir], None, tmp_path / "cont", teacher_dir, scale=4,
                         show_progress=False, init_dir=student_dir)
    fresh = train_distill(tcfg(**base), [photo_dir], None, tmp_path / "fresh", teacher_dir, scale=4,
                          show_progress=False)
    # with a vanishing learning rate the result is its starting point: the student, not the teacher
    s, c, f = (_weights(p, "unet") for p in (student_dir, cont, fresh))
    assert all(torch.allclose(c[k], s[k], atol=1e-6) for k in s)
    assert not all(torch.allclose(f[k], s[k], atol=1e-6) for k in s)
    r = _cli("distill", "--teacher", str(teacher_dir), "--init", str(teacher_dir), "--data", str(photo_dir),
             "--out", str(tmp_path / "o"), "--steps", "1", "--crop", "32", "-b", "2", "-q")
    assert r.exit_code == 2 and "not an x4 student" in r.output and "Traceback" not in r.output


def test_resumed_optimizer_keeps_the_runs_lr_and_the_saved_moments():
    from edgesr_cli.training.common import optimizer_from_tensors, optimizer_to_tensors

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=1e-3)
    (w * torch.arange(3.0)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    w2 = torch.nn.Parameter(w.detach().clone())
    resumed = torch.optim.Adam([w2], lr=2.5e-4)  # `--resume --lr 2.5e-4`
    optimizer_from_tensors(resumed, tensors, meta)
    assert resumed.param_groups[0]["lr"] == 2.5e-4
    assert torch.equal(resumed.state[w2]["exp_avg"], opt.state[w]["exp_avg"])
    assert float(resumed.state[w2]["step"]) == 1.0


def test_lr_drop_equals_a_resume_at_the_lower_lr(photo_dir, student_dir, tmp_path):
    """--lr-drop-at 2 --lr-drop-to X over 4 steps is, step for step and weight for weight, a 2-step run at --lr
    resumed to 4 steps with --lr X; the log shows the lr each step used."""
    def run(out, steps, resume, **kw):
        return finetune_decoder(tcfg(steps=steps, gan_weight=0.0, finetune_generator=True, **kw), [photo_dir], None,
                                out, student_dir, resume=resume, show_progress=False)

    run(tmp_path / "drop", 4, False, lr_drop_at=2, lr_drop_to=2e-4)
    run(tmp_path / "split", 2, False)
    run(tmp_path / "split", 4, True, lr=2e-4)
    recs = [json.loads(x) for x in (tmp_path / "drop" / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in recs if r["kind"] == "train"] == [1e-3, 1e-3, 2e-4, 2e-4]
    a, b = losses(tmp_path / "drop"), losses(tmp_path / "split")
    assert a == b, (a, b)
    for name in ("generator.ema", "decoder.ema", "generator", "decoder"):
        drop, split = (_weights(tmp_path / run / "checkpoint", name) for run in ("drop", "split"))
        assert _same(drop, split), name
    # without the drop the same 4 steps end elsewhere
    run(tmp_path / "flat", 4, False)
    assert losses(tmp_path / "flat")[4] != a[4]


def test_cli_lr_drop_needs_a_target(photo_dir, student_dir, tmp_path):
    r = _cli("finetune-decoder", "--model", str(student_dir), "--data", str(photo_dir), "--out", str(tmp_path / "x"),
             "--steps", "2", "--lr-drop-at", "1")
    assert r.exit_code != 0
    assert "--lr-drop-to" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x" / "checkpoint").exists()


def test_pixel_loss_kinds_and_luma_term():
    from edgesr_cli.training.decoder import pixel_loss

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 8, 8, generator=g)
    sr = (hr + 0.1 * torch.randn(2, 3, 8, 8, generator=g)).clamp(0, 1)
    assert torch.allclose(pixel_loss(sr, hr), (sr - hr).abs().mean())
    assert torch.allclose(pixel_loss(sr, hr, "mse", 2.0), 2.0 * ((sr - hr) ** 2).mean())
    # a grey shift d moves BT.601 luma by 219/255 d: that is what the luma term sees
    d = 0.05
    grey = pixel_loss(hr + d, hr, "mse", 0.0, luma_weight=1.0)
    assert torch.allclose(grey, torch.tensor((219 / 255 * d) ** 2), rtol=1e-4)
    # an error with no luma component costs nothing in the luma term
    w = torch.tensor([65.481, 128.553, 24.966])
    chroma = torch.tensor([w[1], -w[0], 0.0]) * 1e-4  # orthogonal to the luma weights
    shifted = hr + chroma.view(1, 3, 1, 1)
    assert float(pixel_loss(shifted, hr, "l1", 0.0, luma_weight=1.0)) < 1e-6
    assert float(pixel_loss(shifted, hr, "l1", 1.0, luma_weight=1.0)) > 1e-3
    with pytest.raises(ValueError, match="pixel loss"):
        pixel_loss(sr, hr, "l2")


def test_cli_pixel_loss_options(photo_dir, student_dir, tmp_path):
    """--pixel-loss and --luma-weight reach the saved config and the loss; a negative weight is a one-line error
    that writes nothing."""
    args = ("finetune-decoder", "--model", str(student_dir), "--finetune-generator", "--data", str(photo_dir),
            "--steps", "1", "--crop", "32", "-b", "2", "--gan-weight", "0", "--precision", "fp32", "-q")
    r = _cli(*args, "--out", str(tmp_path / "l1"))
    assert r.exit_code == 0, r.output
    r = _cli(*args, "--out", str(tmp_path / "mse"), "--pixel-loss", "mse")
    assert r.exit_code == 0, r.output
    r = _cli(*args, "--out", str(tmp_path / "luma"), "--pixel-loss", "mse", "--luma-weight", "1")
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "luma" / "checkpoint" / "train_config.json").read_text())
    assert (saved["pixel_loss"], saved["luma_weight"]) == ("mse", 1.0)
    # same weights, same batch (same seed): the first step's loss is the same errors measured three ways
    l1, mse, luma = (losses(tmp_path / name)[1] for name in ("l1", "mse", "luma"))
    assert mse != l1 and luma > mse > 0
    r = _cli(*args, "--out", str(tmp_path / "bad"), "--luma-weight", "-1")
    assert r.exit_code != 0 and "luma weight" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad" / "checkpoint").exists()


def test_data_workers_do_not_change_the_run(photo_dir, student_dir, tmp_path):
    """Batches made ahead by worker processes (one thread each) are the ones a one-thread loop makes itself:
    an end-to-end decoder run (Real-ESRGAN crops included) with --workers 2 ends bit-identical to one without
    workers, and a run resumed with workers matches them too."""
    cfg = tcfg(finetune_generator=True, gan_weight=0.0, perceptual_weight=0.0,
               lr_pipeline={"realesrgan_prob": 0.5})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the degradation's float rounding follows the thread count (workers run one)
    try:
        finetune_decoder(cfg, [photo_dir], None, tmp_path / "w0", student_dir, show_progress=False, workers=0)
    finally:
        torch.set_num_threads(threads)
    finetune_decoder(cfg, [photo_dir], None, tmp_path / "w2", student_dir, show_progress=False, workers=2)
    finetune_decoder(dataclasses.replace(cfg, steps=2), [photo_dir], None, tmp_path / "split", student_dir,
                     show_progress=False, workers=2)
    finetune_decoder(cfg, [photo_dir], None, tmp_path / "split", student_dir, resume=True, show_progress=False,
                     workers=2)
    assert losses(tmp_path / "w0") == losses(tmp_path / "w2") == losses(tmp_path / "split")
    for name in ("decoder", "unet", "lr_encoder"):
        w0 = _weights(tmp_path / "w0" / "model", name)
        assert _same(w0, _weights(tmp_path / "w2" / "model", name)), name
        assert _same(w0, _weights(tmp_path / "split" / "model", name)), name
        assert not _same(w0, _weights(student_dir, name)), name  # the run trained them


def test_negative_workers_is_a_one_line_error(photo_dir, tmp_path):
    r = runner.invoke(app, ["train", "--stage", "autoencoder", "--config", "test-tiny", "--data", str(photo_dir),
                            "--out", str(tmp_path / "ae"), "--steps", "1", "--crop", "32", "--workers", "-1"])
    assert r.exit_code == 2 and "--workers" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "ae").exists()


def test_batch_stream_is_the_same_for_any_worker_count_and_any_start():
    from edgesr_cli.data import CropDataset, LRPipelineConfig, batch_stream

    g = torch.Generator().manual_seed(0)
    images = [(torch.rand(3, 24, 24, generator=g)[:, None, :, None, :].expand(3, 6, 24, 6, 24)
               .reshape(3, 144, 144) * 255).to(torch.uint8) for _ in range(3)]
    ds = CropDataset(images, 128, (4,), LRPipelineConfig(realesrgan_prob=1.0))
    one = list(batch_stream(ds, 3, seed=5, rank=0, start=0, stop=4, workers=1))
    two = list(batch_stream(ds, 3, seed=5, rank=0, start=2, stop=4, workers=2))
    assert [s for s, _ in one] == [0, 1, 2, 3] and [s for s, _ in two] == [2, 3]
    for (_, a), (_, b) in zip(one[2:], two):
        assert torch.equal(a.hr, b.hr) and torch.equal(a.lr[4], b.lr[4])
    assert not torch.equal(one[0][1].hr, one[1][1].hr)  # steps draw different batches
    other_rank = next(batch_stream(ds, 3, seed=5, rank=1, start=0, stop=1))[1]
    assert not torch.equal(other_rank.hr, one[0][1].hr)
    with pytest.raises(ValueError, match="workers"):
        next(batch_stream(ds, 3, seed=5, rank=0, start=0, stop=1, workers=-1))


def test_discriminator_can_start_before_the_gan_term(photo_dir, student_dir, tmp_path):
    """--disc-start below --gan-start: the discriminator learns (d_loss logged) from its step while the
    generator gets no GAN gradient (no gan_w) until --gan-start; by default both start together."""
    lr_pipe = LRPipelineConfig(realesrgan_prob=0.0).to_dict()
    out = tmp_path / "early"
    finetune_decoder(tcfg(steps=4, gan_weight=0.5, gan_start=3, disc_start=1, perceptual_weight=0.0,
                          lr_pipeline=lr_pipe), [photo_dir], None, out, student_dir, show_progress=False)
    train = train_records(out)
    assert [("d_loss" in r) for r in train] == [False, True, True, True]
    assert [("gan_w" in r) for r in train] == [False, False, False, True]
    out = tmp_path / "together"
    finetune_decoder(tcfg(steps=3, gan_weight=0.5, gan_start=2, perceptual_weight=0.0, lr_pipeline=lr_pipe),
                     [photo_dir], None, out, student_dir, show_progress=False)
    train = train_records(out)
    assert [("d_loss" in r) for r in train] == [("gan_w" in r) for r in train] == [False, False, True]


def test_perceptual_finetune_logs_lpips_and_checkpoint_ema_tool_rebuilds_the_model(photo_dir, student_dir, tmp_path):
    """The LDM loss (pixel L1 + LPIPS-vgg + GAN from a step) runs end to end; tools.checkpoint_ema turns the
    run's last checkpoint into exactly the model the run wrote."""
    from edgesr_cli import lpips as L
    from edgesr_cli.model import INFERENCE_COMPONENTS, COMPONENT_FILES
    from edgesr_cli.tools import checkpoint_ema

    cfg = tcfg(steps=4, finetune_generator=True, gan_weight=0.5, gan_start=2, perceptual_weight=1.0,
               lr_pipeline=LRPipelineConfig(realesrgan_prob=0.0, jpeg_prob=0.5, camera_prob=0.5).to_dict())
    out = tmp_path / "perc"
    model_dir = finetune_decoder(cfg, [photo_dir], None, out, student_dir, show_progress=False)
    train = train_records(out)
    assert [("gan_w" in r) for r in train] == [False, False, True, True]  # the GAN switches on at step 2
    if L.available("vgg"):
        assert all(0 < r["lpips"] < 2 for r in train)
    assert checkpoint_ema.main([str(out / "checkpoint"), str(student_dir), str(tmp_path / "rebuilt")]) == 0
    for c in INFERENCE_COMPONENTS:
        a = load_file(str(model_dir / COMPONENT_FILES[c]))
        b = load_file(str(tmp_path / "rebuilt" / COMPONENT_FILES[c]))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), c
    # --raw: the optimizer's weights, which after 4 steps at lr 1e-3 are not the EMA's
    assert checkpoint_ema.main([str(out / "checkpoint"), str(student_dir), str(tmp_path / "raw"), "--raw"]) == 0
    raw_dec = load_file(str(tmp_path / "raw" / COMPONENT_FILES["decoder"]))
    ck_dec = load_file(str(out / "checkpoint" / "decoder.safetensors"))
    ema_dec = load_file(str(model_dir / COMPONENT_FILES["decoder"]))
    assert all(torch.equal(raw_dec[k], ck_dec[k].to(raw_dec[k].dtype)) for k in raw_dec)
    assert any(not torch.equal(raw_dec[k], ema_dec[k]) for k in raw_dec)
