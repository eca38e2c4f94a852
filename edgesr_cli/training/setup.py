"""What every stage does before its loop: processes, data, validation batch, output folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import CropDataset, DataError, LRPipelineConfig, load_images
from .common import Dist, TrainConfig, TrainError, prepare_out, resolve_precision, setup_distributed

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    d: Dist
    out: Path
    resuming: bool
    dtype: torch.dtype | None
    train: CropDataset
    val: CropDataset
    skipped: int
    generator: torch.Generator


def prepare_stage(cfg: TrainConfig, data: list[Path], val: Path | None, out: Path, resume: bool, device: str,
                  scales: tuple[int, ...]) -> StageContext:
    d = setup_distributed(device)
    resuming = prepare_out(out, resume, d)
    lr_cfg = LRPipelineConfig.from_dict(cfg.lr_pipeline)
    try:
        images, skipped = load_images(data, cfg.crop)
        val_images, _ = load_images([val], cfg.crop) if val is not None else (images[: max(1, len(images) // 20)], 0)
        train_ds = CropDataset(images, cfg.crop, scales, lr_cfg)
        val_ds = CropDataset(val_images, cfg.crop, scales, lr_cfg)
    except DataError as exc:
        raise TrainError(str(exc)) from None
    if skipped and d.main:
        log.warning("%d unreadable or too small image(s) skipped", skipped)
    g = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank)
    torch.manual_seed(cfg.seed)  # module init is identical on every rank
    return StageContext(d=d, out=out, resuming=resuming, dtype=resolve_precision(cfg.precision, d.device),
                        train=train_ds, val=val_ds, skipped=skipped, generator=g)
