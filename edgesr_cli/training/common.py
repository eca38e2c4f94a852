"""The training loop shared by every stage: distributed setup (torchrun / DDP, gloo on CPU),
mixed precision, EMA, rich progress, CSV + JSONL logs, periodic validation, and checkpoints that
resume bit-exactly (weights, EMA, optimizer and RNG state in safetensors, counters in JSON).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import swap_folder, temp_folder, temp_folder_path
from ..config import ModelConfig
from ..data import LRPipelineConfig
from ..hw import cpu_has_native_bf16

CKPT_DIR = "checkpoint"
CKPT_TAG = "ranks"  # the checkpoint's temp folder, .checkpoint.tmp-ranks: one name every rank knows


class TrainError(ValueError):
    """A training setup that cannot run (bad folder, wrong checkpoint...); one-line message."""


@dataclass(frozen=True)
class TrainConfig:
    """Options common to every stage (saved as train_config.json beside each checkpoint)."""

    stage: str = "joint"
    steps: int = 1000
    batch_size: int = 16
    crop: int = 128  # HR crop size
    lr: float = 5e-5  # paper 3.6: Adam, fixed 5e-5 (encoder+UNet), 1.8e-5 (decoder)
    # one step down of the learning rate: from step lr_drop_at on (0 = never) every optimizer uses lr_drop_to
    lr_drop_at: int = 0
    lr_drop_to: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 200
    val_images: int = 16
    # P(t = 1) schedule (paper 3.3): linear from start to end over decay_steps; end 0.001 = uniform over T=1000
    p_t1_start: float = 0.9
    p_t1_end: float = 0.001
    p_t1_decay_steps: int = 1000
    # decoder finetuning losses (paper 3.4, LDM's autoencoder loss)
    l1_weight: float = 1.0  # weight of the pixel loss (named for its default kind)
    pixel_loss: str = "l1"  # "l1" | "mse": the pixel loss of the decoder stages (mse optimises PSNR directly)
    luma_weight: float = 0.0  # extra pixel loss on BT.601 luma (what PSNR-Y scores), added to the RGB one
    perceptual_weight: float = 1.0
    gan_weight: float = 0.5  # LDM autoencoder configs: disc_weight 0.5 (x the adaptive weight)
    gan_start: int = 0
    # step at which the discriminator starts learning (None = gan_start, as in LDM); earlier lets a fresh
    # discriminator catch up before its gradient reaches a generator that resumes from trained weights
    disc_start: int | None = None
    # distillation: weight of the ground-truth HR latent in the student's target (0 = the teacher's prediction
    # only, as in YONOS-SR; 1 = plain regression to the HR latent)
    hr_target_weight: float = 0.0
    # decoder stage: also train the LR encoder and UNet through the pixel loss (end-to-end one-step finetune)
    finetune_generator: bool = False
    # ablation (paper Table 3, "independent encoder"): the LR encoder stays as loaded (`--init-encoder`, trained
    # alone by `--stage encoder`) and never receives the diffusion loss, in the joint stage and in distillation
    freeze_encoder: bool = False
    lr_pipeline: dict = field(default_factory=lambda: LRPipelineConfig().to_dict())
    # decoder stage with teacher triplets (`edgesr teacher-pairs`): batches come from this folder's first
    # teacher_count triplets (None = all made), and the losses can target the teacher's x4 output beside HR
    teacher_data: str | None = None
    teacher_count: int | None = None
    teacher_pixel_weight: float = 0.0  # pixel loss (cfg.pixel_loss kind) to the teacher's output
    teacher_perceptual_weight: float = 0.0  # LPIPS-vgg to the teacher's output
    teacher_dists_weight: float = 0.0  # DISTS (texture + structure statistics) to the teacher's output
    teacher_alex_weight: float = 0.0  # LPIPS-alex to the teacher's output only (LPIPS-alex to HR is the reported metric)
    # pix2pixHD feature matching: L1 between the discriminator's hidden features of the output and of the teacher's
    teacher_fm_weight: float = 0.0
    gan_real: str = "hr"  # the discriminator's real samples: "hr" or "teacher"
    # decoder stage: residual blocks per decoder level, grown from the loaded model's by identity blocks (the
    # model's output is unchanged at step 0); None = the loaded model's
    decoder_blocks: list[int] | None = None

    def lr_at(self, step: int) -> float:
        """The learning rate of optimisation step `step` (0-based)."""
        return self.lr_drop_to if 0 < self.lr_drop_at <= step else self.lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TrainError(f"train config: unknown option(s) {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# distributed + precision
# ---------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Use torchrun's env vars when present (gloo on CPU, nccl on CUDA); otherwise one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda asked for, but PyTorch sees no CUDA device")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(rank=rank, world=world, local_rank=local, device=dev)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """None = fp32; bf16 on CUDA with bf16 and on CPUs with native bf16 (AVX512-BF16 or AMX), fp16 on older
    CUDA. On the 2-core AVX512-BF16 machine a distill step runs 1.47x faster in bf16 than in fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise TrainError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def to_dev(x: torch.Tensor, d: "Dist") -> torch.Tensor:
    """Move a batch to the device; 4D tensors go channels-last (about 2x faster convolutions on CPU)."""
    x = x.to(d.device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def channels_last(*modules: nn.Module) -> None:
    for m in modules:
        m.to(memory_format=torch.channels_last)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def all_reduce_mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        t = t.clone()
        dist.all_reduce(t)
        t /= d.world
    return t


def any_across(flag: bool, d: Dist) -> bool:
    if d.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# ---------------------------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a module's parameters (with the usual warm-up of the decay)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def copy_to(self, module: nn.Module) -> None:
        state = module.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v.to(state[k].dtype))


# ---------------------------------------------------------------------------------------------
# checkpoint I/O (safetensors + JSON; never pickle)
# ---------------------------------------------------------------------------------------------
def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    lrs = [g["lr"] for g in opt.param_groups]  # the run's --lr wins over the saved one, so a resume can change it
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for group, lr in zip(opt.param_groups, lrs):
        group["lr"] = lr


@dataclass
class Trainable:
    """A named set of modules trained by one optimizer."""

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None = None


def save_checkpoint(out: Path, step: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
                    trainables: list[Trainable], frozen: dict[str, nn.Module], generator: torch.Generator,
                    d: Dist, extra: dict | None = None) -> None:
    """Write out/checkpoint atomically (a temp folder all ranks write into, swapped into place by
    atomic.swap_folder). Every rank writes its RNG state."""
    ck = out / CKPT_DIR
    tmp = temp_folder_path(ck, CKPT_TAG)
    if d.main:
        temp_folder(ck, CKPT_TAG)
    if d.world > 1:
        dist.barrier()
    save_file({"state": generator.get_state()}, str(tmp / f"rng_rank{d.rank}.safetensors"))
    checksums = rank_checksums(trainables, d)
    if d.main:
        model_cfg.save(tmp / "config.json")
        (tmp / "train_config.json").write_text(json.dumps(train_cfg.to_dict(), indent=2) + "\n")
        meta = {"step": step, "world_size": d.world, "optimizers": {}, "rank_weight_checksums": checksums,
                **(extra or {})}
        for tr in trainables:
            save_file(_cpu_state(tr.module), str(tmp / f"{tr.name}.safetensors"))
            if tr.ema is not None:
                save_file({k: v.contiguous().cpu() for k, v in tr.ema.shadow.items()}, str(tmp / f"{tr.name}.ema.safetensors"))
            tensors, ometa = optimizer_to_tensors(tr.optimizer)
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp / f"{tr.name}.optim.safetensors"))
            meta["optimizers"][tr.name] = ometa
        for name, module in frozen.items():
            save_file(_cpu_state(module), str(tmp / f"{name}.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")
    if d.world > 1:
        dist.barrier()
    if d.main:
        swap_folder(tmp, ck)
    if d.world > 1:
        dist.barrier()


@torch.no_grad()
def rank_checksums(trainables: list[Trainable], d: Dist) -> list[float]:
    """A position-weighted float64 checksum of the trained weights on every rank (all-gathered):
    DDP replicas must agree exactly; the checkpoint records them so a divergence is visible."""
    total = torch.zeros((), dtype=torch.float64)
    for tr in trainables:
        for i, p in enumerate(tr.module.parameters()):
            w = p.detach().double().cpu().flatten()
            total += (w * torch.linspace(1.0, 2.0, w.numel(), dtype=torch.float64)).sum() * (i + 1)
    if d.world == 1:
        return [float(total)]
    gathered = [torch.zeros((), dtype=torch.float64, device=d.device) for _ in range(d.world)]
    dist.all_gather(gathered, total.to(d.device))
    return [float(v) for v in gathered]


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def load_checkpoint(out: Path, model_cfg: ModelConfig, trainables: list[Trainable], generator: torch.Generator,
                    d: Dist) -> tuple[int, dict]:
    """Restore a checkpoint written by save_checkpoint; refuses one from another architecture."""
    ck = out / CKPT_DIR
    try:
        saved = ModelConfig.load(ck / "config.json")
    except (ValueError, OSError) as exc:
        raise TrainError(f"{ck}: unreadable checkpoint ({exc})") from None
    if saved.architecture_dict() != model_cfg.architecture_dict():
        raise TrainError(f"{ck}: checkpoint is from another config ({saved.name}); use a new --out or the same config")
    meta = json.loads((ck / "state.json").read_text())
    if int(meta.get("world_size", 1)) != d.world:
        raise TrainError(f"{ck}: written with {meta.get('world_size')} process(es), resuming with {d.world}")
    for tr in trainables:
        _load_into(tr.module, ck / f"{tr.name}.safetensors")
        if tr.ema is not None:
            tr.ema.shadow = {k: v.to(d.device) for k, v in load_file(str(ck / f"{tr.name}.ema.safetensors")).items()}
        tensors = {k: v.to(d.device) for k, v in load_file(str(ck / f"{tr.name}.optim.safetensors")).items()}
        optimizer_from_tensors(tr.optimizer, tensors, meta["optimizers"][tr.name])
    rng = ck / f"rng_rank{d.rank}.safetensors"
    generator.set_state(load_file(str(rng))["state"])
    return int(meta["step"]), meta


def _load_into(module: nn.Module, path: Path) -> None:
    state = load_file(str(path))
    own = module.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise TrainError(f"{path}: weights do not match the model")
    module.load_state_dict({k: v.to(own[k].device) for k, v in state.items()})


# ---------------------------------------------------------------------------------------------
# logging + progress
# ---------------------------------------------------------------------------------------------
class Logger:
    """Losses to out/log.csv and out/log.jsonl (rank 0 only), appended across resumes."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.csv_path = out / "log.csv"
        self.jsonl_path = out / "log.jsonl"
        self.fields: list[str] | None = None
        if enabled and self.csv_path.exists():
            with open(self.csv_path) as f:
                header = f.readline().strip()
            self.fields = header.split(",") if header else None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.fields is None:
            self.fields = ["step", "kind", "loss", "val_loss", "val_psnr", "lr", "p_t1", "encoder_step", "lpips", "gan_w", "d_loss",
                           "it_s", "time"]
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(record.get(k, "")) for k in self.fields])


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) and abs(v) < 1e6 else v


def make_progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} it/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled, transient=False,
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0,1] (RGB, whole crop; the eval command does the paper's Y-channel one)."""
    mse = torch.mean((a.float().clamp(0, 1) - b.float().clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
StepFn = Callable[[int, torch.Generator], dict[str, float]]
ValFn = Callable[[], dict[str, float]]


def run_loop(*, out: Path, cfg: TrainConfig, model_cfg: ModelConfig, d: Dist, trainables: list[Trainable],
             frozen: dict[str, nn.Module], generator: torch.Generator, step_fn: StepFn, val_fn: ValFn,
             start_step: int, description: str, show_progress: bool = True,
             on_checkpoint: Callable[[int], None] | None = None) -> list[dict]:
    """Run steps start_step..cfg.steps-1, logging, validating and checkpointing. Returns the val history."""
    logger = Logger(out, d.main)
    history: list[dict] = []
    if start_step == 0 and cfg.val_every > 0:
        rec = {"step": 0, "kind": "val", **val_fn(), "time": time.time()}
        logger.log(rec)
        history.append(rec)
    t0, s0 = time.perf_counter(), start_step
    with make_progress(show_progress and d.main) as progress:
        task = progress.add_task(description, total=cfg.steps, completed=start_step, loss="-", speed="-")
        for step in range(start_step, cfg.steps):
            lr = cfg.lr_at(step)
            for tr in trainables:
                for group in tr.optimizer.param_groups:
                    group["lr"] = lr
            stats = {**step_fn(step, generator), "lr": lr}
            for tr in trainables:
                if tr.ema is not None:
                    tr.ema.update(_unwrap(tr.module), step)
            done = step + 1
            speed = (done - s0) / max(1e-9, time.perf_counter() - t0)
            progress.update(task, completed=done, loss=f"{stats['loss']:.4f}", speed=f"{speed:.2f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                logger.log({"step": done, "kind": "train", **stats, "it_s": speed, "time": time.time()})
            if cfg.val_every > 0 and (done % cfg.val_every == 0 or done == cfg.steps):
                rec = {"step": done, "kind": "val", **val_fn(), "time": time.time()}
                logger.log(rec)
                history.append(rec)
                if d.main:
                    progress.console.print(
                        f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.items() if k.startswith("val_")))
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                save_checkpoint(out, done, model_cfg, cfg, [_unwrapped(tr) for tr in trainables], frozen, generator, d)
                if on_checkpoint is not None:
                    on_checkpoint(done)
    return history


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


def _unwrapped(tr: Trainable) -> Trainable:
    return Trainable(tr.name, _unwrap(tr.module), tr.optimizer, tr.ema)


def wrap_ddp(module: nn.Module, d: Dist) -> nn.Module:
    if d.world == 1:
        return module
    ids = [d.device.index] if d.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def prepare_out(out: Path, resume: bool, d: Dist) -> bool:
    """Create `out`; True if a checkpoint exists there to resume from. Refuses to overwrite a
    finished or started run without --resume."""
    ck = out / CKPT_DIR
    if ck.exists():
        if not resume:
            raise TrainError(f"{out}: already holds a checkpoint; pass --resume to continue it or choose another --out")
        return True
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    return False
