"""Stage 0: the HR autoencoder (stands in for SD's frozen VAE). L1 reconstruction loss
(+ LPIPS when available); the final latents are rescaled to unit standard deviation."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..model import EdgeSR, save_model_dir
from ..models.autoencoder import Autoencoder, init_decoder_from
from .common import (EMA, TrainConfig, Trainable, all_reduce_mean, autocast, channels_last, load_checkpoint, psnr,
                     run_loop, to_dev, wrap_ddp)
from .setup import prepare_stage

RESULT_DIR = "model"


def train_autoencoder(model_cfg: ModelConfig, cfg: TrainConfig, data: list[Path], val: Path | None, out: Path,
                      resume: bool = False, device: str = "auto", show_progress: bool = True,
                      workers: int | None = None) -> Path:
    ctx = prepare_stage(cfg, data, val, out, resume, device, scales=(), workers=workers)
    d = ctx.d
    ae = Autoencoder(model_cfg).to(d.device)
    channels_last(ae)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.lr)
    tr = Trainable("autoencoder", ae, opt, EMA(ae, cfg.ema_decay))
    start = load_checkpoint(out, model_cfg, [tr], ctx.generator, d)[0] if ctx.resuming else 0
    net = wrap_ddp(ae, d)
    tr_ddp = Trainable("autoencoder", net, opt, tr.ema)
    val_batch = ctx.val.fixed_batch(cfg.val_images, seed=12345)
    batch_at = ctx.batches(start)

    def step_fn(step: int, g: torch.Generator) -> dict[str, float]:
        hr = to_dev(batch_at(step).hr, d)
        with autocast(d.device, ctx.dtype):
            rec = net(hr)
        loss = F.l1_loss(rec.float(), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(all_reduce_mean(loss.detach(), d))}

    @torch.no_grad()
    def val_fn() -> dict[str, float]:
        ae.eval()
        hr = to_dev(val_batch.hr, d)
        with autocast(d.device, ctx.dtype):
            rec = ae(hr).float().clamp(0, 1)
        ae.train()
        return {"val_loss": float(F.l1_loss(rec, hr)), "val_psnr": psnr(rec, hr)}

    run_loop(out=out, cfg=cfg, model_cfg=model_cfg, d=d, trainables=[tr_ddp], frozen={}, generator=ctx.generator,
             step_fn=step_fn, val_fn=val_fn, start_step=start, description="autoencoder", show_progress=show_progress)
    return finish_autoencoder(model_cfg, ae, tr.ema, val_batch.hr, out) if d.main else out / RESULT_DIR


@torch.no_grad()
def finish_autoencoder(model_cfg: ModelConfig, ae: Autoencoder, ema: EMA | None, val_hr: torch.Tensor, out: Path) -> Path:
    """EMA weights, latents scaled to unit std (folded into the weights), written as a model dir whose
    small decoder is initialised from the autoencoder's decoder."""
    final = Autoencoder(model_cfg)
    final.load_state_dict({k: v.cpu() for k, v in ae.state_dict().items()})
    if ema is not None:
        ema.copy_to(final)
    std = float(final.encoder(val_hr.cpu()).float().std())
    final.fold_latent_scale(1.0 / max(std, 1e-6))
    model = EdgeSR(model_cfg, with_autoencoder=True)
    model.autoencoder.load_state_dict(final.state_dict())
    init_decoder_from(model.decoder, final.decoder)
    return save_model_dir(model, out / RESULT_DIR, inference_only=False, metadata={"stage": "autoencoder"})
