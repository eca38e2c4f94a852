"""Stage 1: joint LR encoder + UNet training (eq. 8) at one scale (x2 for the teacher), with the
encoder's stop-gradient for t < 1 and the decaying P(t = 1) schedule (paper 3.3).

The encoder has its own optimizer, stepped only when some sample of the (global) batch has t = 1,
so its weights change only on t = 1 batches (Adam's momentum would move them otherwise).

Ablation of paper Table 3 ("independent encoder"): `train_encoder` (`edgesr train --stage encoder`) trains
the LR encoder alone to regress the HR latent; `cfg.freeze_encoder` then keeps it as loaded through the
joint stage and distillation (no optimizer, no gradient: the diffusion loss never reaches it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..diffusion import LossOutput, Schedule, p_t1, sample_timesteps, x0_loss
from ..model import EdgeSR, load_model_dir, save_model_dir
from .common import (EMA, TrainConfig, TrainError, Trainable, all_reduce_mean, any_across, autocast, channels_last,
                     load_checkpoint, psnr, run_loop, to_dev, wrap_ddp)
from .setup import prepare_stage

RESULT_DIR = "model"


class DiffusionNet(nn.Module):
    """LR encoder + UNet behind one forward (what DDP wraps): returns eq. 8's loss."""

    def __init__(self, model: EdgeSR) -> None:
        super().__init__()
        self.lr_encoder = model.lr_encoder
        self.unet = model.unet
        self.cfg = model.cfg
        self.schedule = Schedule(model.cfg.schedule)

    def forward(self, lr, target, z_h, t, eps) -> LossOutput:
        return x0_loss(self.lr_encoder, self.unet, self.cfg, self.schedule, lr, target, z_h, t, eps)


def load_autoencoder_into(model: EdgeSR, ae_dir: Path) -> None:
    src = load_model_dir(ae_dir, with_autoencoder=True)
    if src.cfg.architecture_dict()["autoencoder"] != model.cfg.architecture_dict()["autoencoder"] or \
            src.cfg.latent_channels != model.cfg.latent_channels or src.cfg.latent_factor != model.cfg.latent_factor:
        raise TrainError(f"{ae_dir}: autoencoder is from another config ({src.cfg.name}); train stage 0 with the same --config")
    model.autoencoder.load_state_dict(src.autoencoder.state_dict())
    model.decoder.load_state_dict(src.decoder.state_dict())


def load_encoder_into(model: EdgeSR, encoder_dir: Path) -> None:
    """The LR encoder of `encoder_dir` (OUT/model of `--stage encoder`, or any model of this config)."""
    src = load_model_dir(encoder_dir, with_autoencoder=False)
    if src.cfg.architecture_dict()["lr_encoder"] != model.cfg.architecture_dict()["lr_encoder"] or \
            src.cfg.latent_channels != model.cfg.latent_channels or src.cfg.variance != model.cfg.variance:
        raise TrainError(f"{encoder_dir}: LR encoder is from another config ({src.cfg.name}); "
                         "train it with the same --config and --mean-only")
    model.lr_encoder.load_state_dict(src.lr_encoder.state_dict())


def train_joint(model_cfg: ModelConfig, cfg: TrainConfig, data: list[Path], val: Path | None, out: Path,
                autoencoder_dir: Path, resume: bool = False, device: str = "auto", show_progress: bool = True,
                workers: int | None = None, encoder_dir: Path | None = None) -> Path:
    """Eq. 8 at `model_cfg.scale`. `encoder_dir` starts the LR encoder from that model's (with
    `cfg.freeze_encoder`, the independent-encoder ablation keeps it there)."""
    if cfg.freeze_encoder and encoder_dir is None:
        raise TrainError("a frozen LR encoder needs one to start from: pass --init-encoder DIR "
                         "(OUT/model of `edgesr train --stage encoder`)")
    ctx = prepare_stage(cfg, data, val, out, resume, device, scales=(model_cfg.scale,), workers=workers)
    model = EdgeSR(model_cfg, with_autoencoder=True)
    load_autoencoder_into(model, autoencoder_dir)
    if encoder_dir is not None:
        load_encoder_into(model, encoder_dir)
    return _diffusion_stage(ctx, model, None, cfg, model_cfg, out, "joint", show_progress)


def encoder_regression_loss(mu: torch.Tensor, sigma: torch.Tensor, z_h: torch.Tensor, variance: bool) -> torch.Tensor:
    """The independent LR encoder's loss: mu regresses the HR latent (squared error) and, with variance,
    sigma is fitted as the Gaussian scale of the residual it leaves (NLL with mu detached, so the mean's
    gradient is plain regression). All (B,C,h,w); returns a scalar."""
    loss = torch.mean((mu.float() - z_h.float()) ** 2)
    if variance:
        s = sigma.float()
        r = (z_h.float() - mu.detach().float()) / s
        loss = loss + torch.mean(0.5 * r * r + torch.log(s))
    return loss


def train_encoder(model_cfg: ModelConfig, cfg: TrainConfig, data: list[Path], val: Path | None, out: Path,
                  autoencoder_dir: Path, resume: bool = False, device: str = "auto", show_progress: bool = True,
                  workers: int | None = None) -> Path:
    """Ablation (paper Table 3, independent encoder training): the LR encoder alone, trained to predict
    the frozen autoencoder's HR latent of the crop from its LR (`encoder_regression_loss`); no UNet.
    Writes a model dir whose LR encoder `train_joint(encoder_dir=..., cfg.freeze_encoder)` starts from."""
    ctx = prepare_stage(cfg, data, val, out, resume, device, scales=(model_cfg.scale,), workers=workers)
    d = ctx.d
    model = EdgeSR(model_cfg, with_autoencoder=True)
    load_autoencoder_into(model, autoencoder_dir)
    model = model.to(d.device)
    channels_last(model)
    ae = model.autoencoder.eval().requires_grad_(False)
    enc = model.lr_encoder
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    trainables = [Trainable("lr_encoder", enc, opt, EMA(enc, cfg.ema_decay))]
    frozen = {"autoencoder": ae, "decoder": model.decoder, "unet": model.unet}
    start = load_checkpoint(out, model_cfg, trainables, ctx.generator, d)[0] if ctx.resuming else 0
    net = wrap_ddp(enc, d)
    scale = model_cfg.scale
    val_batch = ctx.val.fixed_batch(cfg.val_images, seed=12345)
    batch_at = ctx.batches(start)

    def step_fn(step: int, g: torch.Generator) -> dict[str, float]:
        b = batch_at(step)
        hr, lr = to_dev(b.hr, d), to_dev(b.lr[scale], d)
        with torch.no_grad(), autocast(d.device, ctx.dtype):
            z_h = ae.encoder(hr).float()
        with autocast(d.device, ctx.dtype):
            mu, sigma = net(lr)
        loss = encoder_regression_loss(mu, sigma, z_h, model_cfg.variance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(all_reduce_mean(loss.detach(), d))}

    @torch.no_grad()
    def val_fn() -> dict[str, float]:
        enc.eval()
        hr, lr = to_dev(val_batch.hr, d), to_dev(val_batch.lr[scale], d)
        with autocast(d.device, ctx.dtype):
            z_h = ae.encoder(hr).float()
            mu, sigma = enc(lr)
            sr = model.decode(mu.float()).float().clamp(0, 1)
        enc.train()
        return {"val_loss": float(encoder_regression_loss(mu, sigma, z_h, model_cfg.variance)),
                "val_psnr": psnr(sr, hr)}  # the LR latent's mean decoded as it is

    run_loop(out=out, cfg=cfg, model_cfg=model_cfg, d=d, trainables=trainables, frozen=frozen, generator=ctx.generator,
             step_fn=step_fn, val_fn=val_fn, start_step=start, description="encoder", show_progress=show_progress)
    result = out / RESULT_DIR
    if d.main:
        final = EdgeSR(model_cfg, with_autoencoder=True)
        final.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        trainables[0].ema.copy_to(final.lr_encoder)
        save_model_dir(final, result, inference_only=False, metadata={"stage": "encoder"})
    return result


def _diffusion_stage(ctx, model: EdgeSR, teacher: EdgeSR | None, cfg: TrainConfig, model_cfg: ModelConfig, out: Path,
                     description: str, show_progress: bool) -> Path:
    d = ctx.d
    model = model.to(d.device)
    channels_last(model)
    ae = model.autoencoder.eval().requires_grad_(False)
    if teacher is not None:
        teacher = teacher.to(d.device).eval().requires_grad_(False)
        channels_last(teacher)
    scale = model_cfg.scale
    opt_unet = torch.optim.Adam(model.unet.parameters(), lr=cfg.lr)
    trainables = [Trainable("unet", model.unet, opt_unet, EMA(model.unet, cfg.ema_decay))]
    frozen = {"autoencoder": ae, "decoder": model.decoder}
    if cfg.freeze_encoder:  # independent-encoder ablation: no optimizer, no gradient
        model.lr_encoder.requires_grad_(False)
        frozen["lr_encoder"] = model.lr_encoder
        opt_enc = None
    else:
        opt_enc = torch.optim.Adam(model.lr_encoder.parameters(), lr=cfg.lr)
        trainables.append(Trainable("lr_encoder", model.lr_encoder, opt_enc, EMA(model.lr_encoder, cfg.ema_decay)))
    start = load_checkpoint(out, model_cfg, trainables, ctx.generator, d)[0] if ctx.resuming else 0
    net = wrap_ddp(DiffusionNet(model), d)
    T = model_cfg.schedule.num_timesteps
    val_batch = ctx.val.fixed_batch(cfg.val_images, seed=12345)
    val_eps = None
    batch_at = ctx.batches(start)

    w_hr = cfg.hr_target_weight

    def targets(b, t, eps, z_h):
        if teacher is None or w_hr >= 1.0:
            return z_h
        with torch.no_grad(), autocast(d.device, ctx.dtype):
            lr2 = to_dev(b.lr[teacher.cfg.scale], d)
            pred = DiffusionNet(teacher)(lr2, z_h, z_h, t, eps).pred.float()
        return pred if w_hr <= 0.0 else torch.lerp(pred, z_h, w_hr)

    def step_fn(step: int, g: torch.Generator) -> dict[str, float]:
        b = batch_at(step)
        hr, lr = to_dev(b.hr, d), to_dev(b.lr[scale], d)
        p = p_t1(step, cfg.p_t1_start, cfg.p_t1_end, cfg.p_t1_decay_steps)
        with torch.no_grad(), autocast(d.device, ctx.dtype):
            z_h = ae.encoder(hr).float()
        t = sample_timesteps(cfg.batch_size, p, T, g).to(d.device)
        eps = to_dev(torch.randn(z_h.shape, generator=g), d)
        target = targets(b, t, eps, z_h)
        with autocast(d.device, ctx.dtype):
            res = net(lr, target, z_h, t, eps)
        opt_unet.zero_grad(set_to_none=True)
        if opt_enc is not None:
            opt_enc.zero_grad(set_to_none=True)
        res.loss.backward()
        opt_unet.step()
        enc_step = opt_enc is not None and any_across(bool((t >= 1.0).any()), d)
        if enc_step:
            opt_enc.step()
        return {"loss": float(all_reduce_mean(res.loss.detach(), d)), "p_t1": p,
                "encoder_step": float(enc_step)}

    @torch.no_grad()
    def val_fn() -> dict[str, float]:
        nonlocal val_eps
        model.eval()
        hr, lr = to_dev(val_batch.hr, d), to_dev(val_batch.lr[scale], d)
        with autocast(d.device, ctx.dtype):
            z_h = ae.encoder(hr).float()
        if val_eps is None:
            val_eps = to_dev(torch.randn(z_h.shape, generator=torch.Generator().manual_seed(7)), d)
        t = torch.ones(z_h.shape[0], device=d.device)
        target = targets(val_batch, t, val_eps, z_h)
        with autocast(d.device, ctx.dtype):
            res = DiffusionNet(model)(lr, target, z_h, t, val_eps)
            sr = model.decode(res.pred).float().clamp(0, 1)
        model.train()
        ae.eval()
        return {"val_loss": float(res.loss), "val_psnr": psnr(sr, hr)}

    run_loop(out=out, cfg=cfg, model_cfg=model_cfg, d=d, trainables=trainables, frozen=frozen, generator=ctx.generator,
             step_fn=step_fn, val_fn=val_fn, start_step=start, description=description, show_progress=show_progress)
    result = out / RESULT_DIR
    if d.main:
        final = EdgeSR(model_cfg, with_autoencoder=True)
        final.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        for tr in trainables:  # a frozen encoder stays as loaded (its weights came in with the state dict)
            tr.ema.copy_to(getattr(final, tr.name))
        save_model_dir(final, result, inference_only=False, metadata={"stage": description})
    return result


def train_distill(cfg: TrainConfig, data: list[Path], val: Path | None, out: Path, teacher_dir: Path,
                  scale: int = 4, resume: bool = False, device: str = "auto", show_progress: bool = True,
                  init_dir: Path | None = None, workers: int | None = None) -> Path:
    """Scale distillation (YONOS-SR): the x`scale` student, initialised from the x2 teacher, regresses
    the teacher's prediction; teacher and student see the same HR crop, t and eps, the teacher through
    the x2 LR and the student through the x`scale` LR of that crop. `cfg.hr_target_weight` > 0 mixes the
    ground-truth HR latent into that target; `init_dir` starts the student from an earlier x`scale`
    student (OUT/model of a previous distill run) instead of the teacher, to continue it."""
    teacher = load_model_dir(teacher_dir, with_autoencoder=True)
    if teacher.cfg.scale * 2 != scale:
        raise TrainError(f"{teacher_dir}: teacher is x{teacher.cfg.scale}; distilling to x{scale} needs an x{scale // 2} teacher")
    if not 0.0 <= cfg.hr_target_weight <= 1.0:
        raise TrainError(f"hr target weight {cfg.hr_target_weight}: must be in [0, 1]")
    student_cfg = dataclasses.replace(teacher.cfg, scale=scale)
    ctx = prepare_stage(cfg, data, val, out, resume, device, scales=(teacher.cfg.scale, scale), workers=workers)
    student = EdgeSR(student_cfg, with_autoencoder=True)
    if init_dir is None:
        student.load_state_dict(teacher.state_dict())
    else:
        start = load_model_dir(init_dir, with_autoencoder=True)
        if start.cfg.scale != scale or start.cfg.architecture_dict() != student_cfg.architecture_dict():
            raise TrainError(f"{init_dir}: not an x{scale} student of this teacher's config ({start.cfg.name} x{start.cfg.scale})")
        student.load_state_dict(start.state_dict())
    return _diffusion_stage(ctx, student, teacher, cfg, student_cfg, out, "distill", show_progress)
