"""What every stage does before its loop: processes, data, validation batch, output folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import Batch, CropDataset, DataError, LRPipelineConfig, batch_stream, load_images
from .common import Dist, TrainConfig, TrainError, prepare_out, resolve_precision, setup_distributed

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    d: Dist
    out: Path
    resuming: bool
    dtype: torch.dtype | None
    train: CropDataset  # or TeacherTriplets (the same sample(batch, g))
    val: CropDataset
    skipped: int
    generator: torch.Generator  # the stage's own draws (t, eps); batches come from `batches`
    cfg: TrainConfig
    workers: int  # data worker processes making batches ahead of the loop (0: made in the loop)

    def batches(self, start: int) -> Callable[[int], Batch]:
        """`batch_at(step)` for steps start, start+1, ... cfg.steps - 1 (in that order): this rank's batches."""
        stream = batch_stream(self.train, self.cfg.batch_size, self.cfg.seed, self.d.rank, start, self.cfg.steps,
                              self.workers)

        def batch_at(step: int) -> Batch:
            got, batch = next(stream)
            if got != step:
                raise RuntimeError(f"batch stream is at step {got}, the loop asked for step {step}")
            return batch

        return batch_at


def default_workers(device: torch.device, world: int = 1) -> int:
    """Data workers when not given: none on the CPU (the training itself uses every core), else the cores
    this process may use, shared by the ranks, less one for the loop, at most 8."""
    if device.type == "cpu":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world) - 1))


def prepare_stage(cfg: TrainConfig, data: list[Path], val: Path | None, out: Path, resume: bool, device: str,
                  scales: tuple[int, ...], workers: int | None = None) -> StageContext:
    if workers is not None and workers < 0:
        raise TrainError(f"--workers {workers}: must be 0 or more")
    d = setup_distributed(device)
    resuming = prepare_out(out, resume, d)
    lr_cfg = LRPipelineConfig.from_dict(cfg.lr_pipeline)
    try:
        if cfg.teacher_data is not None:  # batches from teacher triplets; validation on --val (or --data) photos
            from .teacher_pairs import SCALE, TeacherTriplets

            if scales != (SCALE,):
                raise TrainError(f"teacher triplets are x{SCALE}; this stage trains at {scales}")
            train_ds = TeacherTriplets(Path(cfg.teacher_data), cfg.teacher_count, cfg.crop)
            if val is None and not data:
                raise TrainError("with --teacher-data, pass --val FOLDER (or --data) for validation")
            val_images, skipped = load_images([val] if val is not None else data, cfg.crop)
            if val is None:
                val_images = val_images[: max(1, len(val_images) // 20)]
        else:
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
                        train=train_ds, val=val_ds, skipped=skipped, generator=g, cfg=cfg,
                        workers=default_workers(d.device, d.world) if workers is None else workers)
