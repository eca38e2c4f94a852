"""Stage 3: decoder finetuning (paper 3.4). LR encoder and UNet frozen; the small decoder is trained
on the one-step latents against the HR crop with LDM's autoencoder loss: L1 + perceptual (LPIPS,
when its weights are available here) + a patch-GAN term with the adaptive weight of Esser et al.

With `cfg.finetune_generator` (an extension, not in the paper) the LR encoder and UNet are trained too,
end to end through the same pixel loss: the one-step model then optimises the image, not the latent.
`cfg.pixel_loss = "mse"` swaps L1 for the squared error (the loss PSNR measures), and `cfg.luma_weight` adds
the pixel loss on BT.601 luma (the channel PSNR-Y scores)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import BT601_Y, MetricUnavailable
from ..model import EdgeSR, load_model_dir, save_model_dir, with_decoder_blocks
from .common import (EMA, TrainConfig, TrainError, Trainable, all_reduce_mean, autocast, channels_last, load_checkpoint, psnr,
                     run_loop, to_dev, wrap_ddp)
from .setup import prepare_stage

log = logging.getLogger(__name__)
RESULT_DIR = "model"


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN (no batch norm, so it behaves the same under DDP and any batch)."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers):
            nc = min(channels * 2**i, channels * 8)
            seq += [nn.Conv2d(c, nc, 4, 2 if i < layers - 1 else 1, 1), nn.LeakyReLU(0.2)]
            c = nc
        seq.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each LeakyReLU (the hidden layers pix2pixHD's feature matching compares)."""
        out, h = [], x * 2 - 1
        for layer in self.net[:-1]:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                out.append(h)
        return out


def feature_matching(disc: PatchDiscriminator, sr: torch.Tensor, target: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pixHD's feature-matching loss: the mean over the discriminator's hidden layers of the L1 distance
    between the features of `sr` and those of `target` (no gradient through the target's; the discriminator's
    parameters receive gradient only through `sr`'s path, which its own optimiser step never uses). Returns (the
    loss, the discriminator's logits of `sr` from the same forward, disc(sr): the GAN term reads them)."""
    with torch.no_grad():
        want = disc.features(target)
    got = disc.features(sr)
    loss = torch.stack([F.l1_loss(a.float(), b.float()) for a, b in zip(got, want)]).mean()
    return loss, disc.net[-1](got[-1])


def perceptual_loss_fn(device: torch.device, net: str = "vgg", required_by: str | None = None):
    """LPIPS (`net`: vgg, or alex) as a frozen differentiable loss when its weights are here, else None (said
    once); with `required_by` (the option that asked for it explicitly) a TrainError naming it and what is missing."""
    try:
        from ..metrics import lpips_module

        return lpips_module(device, net)
    except (MetricUnavailable, ImportError) as exc:
        if required_by:
            raise TrainError(f"{required_by}: {str(exc).splitlines()[0]}") from None
        log.warning("perceptual loss OFF: %s", str(exc).splitlines()[0])
        return None


def dists_loss_fn(device: torch.device):
    """A frozen copy of DISTS (edgesr_cli.dists: images in [0, 1]) on `device`, differentiable; TrainError
    naming what is missing when its weights are not here (asked for explicitly, so not silently off)."""
    import copy

    from .. import dists as D

    try:
        return copy.deepcopy(D.load()).to(device)
    except D.DISTSUnavailable as exc:
        raise TrainError(f"--teacher-dists-weight: {exc}") from None


_LUMA = tuple(c / 255.0 for c in BT601_Y)  # metrics.rgb_to_y's luma (without its offset) on [0, 1] images


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l1", weight: float = 1.0,
               luma_weight: float = 0.0) -> torch.Tensor:
    """Pixel loss of two (N, 3, H, W) images in [0, 1]: `weight` x the RGB loss plus `luma_weight` x the
    same loss on BT.601 luma (the channel PSNR-Y scores; its 219/255 scale is kept). `kind`: "l1" | "mse"."""
    fn = {"l1": F.l1_loss, "mse": F.mse_loss}.get(kind)
    if fn is None:
        raise ValueError(f"pixel loss must be 'l1' or 'mse', got {kind!r}")
    loss = weight * fn(sr, hr)
    if luma_weight:
        w = sr.new_tensor(_LUMA).view(1, 3, 1, 1)
        loss = loss + luma_weight * fn((sr * w).sum(1), (hr * w).sum(1))
    return loss


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """||grad rec|| / ||grad gan|| at the decoder's last layer (LDM / taming-transformers)."""
    g_rec = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def finetune_decoder(cfg: TrainConfig, data: list[Path], val: Path | None, out: Path, model_dir: Path,
                     resume: bool = False, device: str = "auto", show_progress: bool = True,
                     workers: int | None = None) -> Path:
    model = load_model_dir(model_dir, with_autoencoder=False)
    if cfg.decoder_blocks is not None:
        try:
            model = with_decoder_blocks(model, cfg.decoder_blocks)
        except ValueError as exc:
            raise TrainError(f"--decoder-blocks: {exc}") from None
    model_cfg = model.cfg
    ctx = prepare_stage(cfg, data, val, out, resume, device, scales=(model_cfg.scale,), workers=workers)
    d = ctx.d
    model = model.to(d.device)
    joint = cfg.finetune_generator
    model.lr_encoder.train(joint).requires_grad_(joint)
    model.unet.train(joint).requires_grad_(joint)
    decoder = model.decoder.train()
    disc = PatchDiscriminator().to(d.device)
    channels_last(model, disc)
    opt_dec = torch.optim.Adam(decoder.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    trainables = [Trainable("decoder", decoder, opt_dec, EMA(decoder, cfg.ema_decay)),
                  Trainable("discriminator", disc, opt_disc, None)]
    frozen: dict[str, nn.Module] = {"lr_encoder": model.lr_encoder, "unet": model.unet}
    generator = _Generator(model)
    if joint:
        opt_gen = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        trainables.insert(1, Trainable("generator", generator, opt_gen, EMA(generator, cfg.ema_decay)))
        frozen = {}
    start = load_checkpoint(out, model_cfg, trainables, ctx.generator, d)[0] if ctx.resuming else 0
    dec_ddp, disc_ddp = wrap_ddp(decoder, d), wrap_ddp(disc, d)
    gen_ddp = wrap_ddp(generator, d) if joint else generator
    with_teacher = cfg.teacher_data is not None
    if not with_teacher and (cfg.teacher_pixel_weight > 0 or cfg.teacher_perceptual_weight > 0 or cfg.gan_real != "hr"):
        raise TrainError("the teacher losses and --gan-real teacher need --teacher-data (teacher triplets)")
    for name, weight in (("--teacher-dists-weight", cfg.teacher_dists_weight),
                         ("--teacher-alex-weight", cfg.teacher_alex_weight),
                         ("--teacher-fm-weight", cfg.teacher_fm_weight)):
        if weight > 0 and not with_teacher:
            raise TrainError(f"{name} needs --teacher-data (teacher triplets)")
    if cfg.gan_real not in {"hr", "teacher"}:
        raise TrainError(f"--gan-real must be hr or teacher, got {cfg.gan_real!r}")
    lpips = perceptual_loss_fn(d.device) if max(cfg.perceptual_weight, cfg.teacher_perceptual_weight) > 0 else None
    if lpips is not None:
        channels_last(lpips)
    dists = dists_loss_fn(d.device) if cfg.teacher_dists_weight > 0 else None
    alex = perceptual_loss_fn(d.device, "alex", required_by="--teacher-alex-weight") if cfg.teacher_alex_weight > 0 else None
    if alex is not None:
        channels_last(alex)
    last_layer = decoder.net[-1].weight
    disc_start = cfg.gan_start if cfg.disc_start is None else cfg.disc_start
    val_batch = ctx.val.fixed_batch(cfg.val_images, seed=12345)
    batch_at = ctx.batches(start)

    def one_step_latents(lr: torch.Tensor, eps: torch.Tensor, grad: bool = False) -> torch.Tensor:
        with torch.set_grad_enabled(grad), autocast(d.device, ctx.dtype):
            return (gen_ddp if grad else generator)(lr, eps).float()

    def step_fn(step: int, g: torch.Generator) -> dict[str, float]:
        b = batch_at(step)
        hr, lr = to_dev(b.hr, d), to_dev(b.lr[model_cfg.scale], d)
        te = to_dev(b.teacher, d) if with_teacher else None
        c, f = model_cfg.latent_channels, model_cfg.latent_factor
        eps = to_dev(torch.randn((hr.shape[0], c, hr.shape[2] // f, hr.shape[3] // f), generator=g), d)
        zh = one_step_latents(lr, eps, grad=joint)
        with autocast(d.device, ctx.dtype):
            sr = dec_ddp(zh).float()
        rec = pixel_loss(sr, hr, cfg.pixel_loss, cfg.l1_weight, cfg.luma_weight)
        stats: dict[str, float] = {}
        if te is not None and cfg.teacher_pixel_weight > 0:
            t_pix = pixel_loss(sr, te, cfg.pixel_loss)
            rec = rec + cfg.teacher_pixel_weight * t_pix
            stats["t_pixel"] = float(t_pix.detach())
        if lpips is not None and cfg.perceptual_weight > 0:
            with autocast(d.device, ctx.dtype):
                p_loss = lpips(sr * 2 - 1, hr * 2 - 1).float().mean()
            rec = rec + cfg.perceptual_weight * p_loss
            stats["lpips"] = float(p_loss.detach())
        if lpips is not None and te is not None and cfg.teacher_perceptual_weight > 0:
            with autocast(d.device, ctx.dtype):
                t_loss = lpips(sr * 2 - 1, te * 2 - 1).float().mean()
            rec = rec + cfg.teacher_perceptual_weight * t_loss
            stats["t_lpips"] = float(t_loss.detach())
        if dists is not None and te is not None:
            with autocast(d.device, ctx.dtype):
                t_dists = dists(sr, te).float().mean()
            rec = rec + cfg.teacher_dists_weight * t_dists
            stats["t_dists"] = float(t_dists.detach())
        if alex is not None and te is not None:
            with autocast(d.device, ctx.dtype):
                t_alex = alex(sr * 2 - 1, te * 2 - 1).float().mean()
            rec = rec + cfg.teacher_alex_weight * t_alex
            stats["t_alex"] = float(t_alex.detach())
        sr_logits = None  # the discriminator's verdict on sr, when feature matching already ran it
        if te is not None and cfg.teacher_fm_weight > 0 and step >= cfg.gan_start:
            with autocast(d.device, ctx.dtype):
                t_fm, sr_logits = feature_matching(disc, sr, te)
            rec = rec + cfg.teacher_fm_weight * t_fm
            stats["t_fm"] = float(t_fm.detach())
        real = te if cfg.gan_real == "teacher" else hr
        use_gan = cfg.gan_weight > 0 and step >= cfg.gan_start
        train_disc = (cfg.gan_weight > 0 or cfg.teacher_fm_weight > 0) and step >= disc_start
        loss = rec
        if use_gan:
            if sr_logits is None:
                with autocast(d.device, ctx.dtype):
                    sr_logits = disc_ddp(sr)
            g_loss = -sr_logits.float().mean()
            w = adaptive_weight(rec, g_loss, last_layer) * cfg.gan_weight
            loss = rec + w * g_loss
            stats["gan_w"] = float(w)
        opt_dec.zero_grad(set_to_none=True)
        if joint:
            opt_gen.zero_grad(set_to_none=True)
        loss.backward()
        opt_dec.step()
        if joint:
            opt_gen.step()
        if train_disc:
            with autocast(d.device, ctx.dtype):
                d_loss = F.relu(1 - disc_ddp(real).float()).mean() + F.relu(1 + disc_ddp(sr.detach()).float()).mean()
            opt_disc.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_disc.step()
            stats["d_loss"] = float(d_loss.detach())
        stats["loss"] = float(all_reduce_mean(loss.detach(), d))
        return stats

    @torch.no_grad()
    def val_fn() -> dict[str, float]:
        decoder.eval()
        if joint:
            model.lr_encoder.eval()
            model.unet.eval()
        hr, lr = to_dev(val_batch.hr, d), to_dev(val_batch.lr[model_cfg.scale], d)
        c, f = model_cfg.latent_channels, model_cfg.latent_factor
        eps = torch.randn((hr.shape[0], c, hr.shape[2] // f, hr.shape[3] // f), generator=torch.Generator().manual_seed(7))
        with autocast(d.device, ctx.dtype):
            sr = decoder(one_step_latents(lr, to_dev(eps, d))).float().clamp(0, 1)
        decoder.train()
        if joint:
            model.lr_encoder.train()
            model.unet.train()
        return {"val_loss": float(F.l1_loss(sr, hr)), "val_psnr": psnr(sr, hr)}

    run_loop(out=out, cfg=cfg, model_cfg=model_cfg, d=d, trainables=trainables, frozen=frozen, generator=ctx.generator,
             step_fn=step_fn, val_fn=val_fn, start_step=start, description="finetune-decoder", show_progress=show_progress)
    result = out / RESULT_DIR
    if d.main:
        final = EdgeSR(model_cfg)
        final.load_state_dict({k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("autoencoder.")})
        trainables[0].ema.copy_to(final.decoder)
        if joint:
            trainables[1].ema.copy_to(_Generator(final))
        save_model_dir(final, result, inference_only=True, metadata={"stage": "finetune-decoder"})
    return result


class _Generator(nn.Module):
    """LR encoder + UNet as one module (what the joint finetune trains and DDP wraps): LR, eps -> one-step latent."""

    def __init__(self, model: EdgeSR) -> None:
        super().__init__()
        self.lr_encoder = model.lr_encoder
        self.unet = model.unet
        self.model = [model]  # not a submodule: denoise() is the model's, its parameters are the two above

    def forward(self, lr: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mu, sigma = self.lr_encoder(lr)
        t = torch.ones(lr.shape[0], device=lr.device)
        return self.model[0].denoise(mu + sigma * eps.to(mu.dtype), t, mu)
