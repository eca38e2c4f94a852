"""`edgesr train`, `edgesr distill`, `edgesr finetune-decoder`: the paper's recipe from the CLI.

Each takes options as flags and/or a JSON file (--train-config); flags given on the command line win.
Each writes OUT/checkpoint (resumable with --resume), OUT/log.csv + log.jsonl and OUT/model (the
stage's result: a model directory that the next stage, `upscale` and `export` accept)."""

from __future__ import annotations

import dataclasses
import json
import logging
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .cli_common import Device, Precision, UserError, friendly_errors, parse_shard
from .config import PRESETS, ModelConfig, get_preset

if TYPE_CHECKING:  # torch, numpy and the training code load when a command runs, not at CLI start
    from .training.common import TrainConfig

log = logging.getLogger(__name__)


class Stage(str, Enum):
    autoencoder = "autoencoder"
    joint = "joint"
    encoder = "encoder"


class PixelLoss(str, Enum):
    l1 = "l1"
    mse = "mse"


class GanReal(str, Enum):
    hr = "hr"
    teacher = "teacher"


class TeacherRuntime(str, Enum):
    torch_bf16 = "torch-bf16"
    torch_fp32 = "torch-fp32"
    ncnn = "ncnn"
    onnx = "onnx"


class Conditioning(str, Enum):
    bidirectional = "bidirectional"
    unidirectional = "unidirectional"


DataOpt = Annotated[list[Path], typer.Option("--data", "-d", help="Folder(s) of HR images (recursive); repeatable.")]
ValOpt = Annotated[Optional[Path], typer.Option("--val", help="Held-out folder for validation PSNR (default: 5% of --data).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint/, log.csv, model/.")]
LrDropAtOpt = Annotated[Optional[int], typer.Option(
    "--lr-drop-at", help="From this step on, train at --lr-drop-to instead of --lr (0 = never).")]
LrDropToOpt = Annotated[Optional[float], typer.Option("--lr-drop-to", help="Learning rate after --lr-drop-at.")]
JpegProbOpt = Annotated[Optional[float], typer.Option(
    "--jpeg-prob", help="Share of crops made heavy-JPEG LR (bicubic, quality 20-60, sometimes saved twice).")]
CameraProbOpt = Annotated[Optional[float], typer.Option(
    "--camera-prob", help="Share of crops made camera LR (mild blur, sensor noise, the camera's JPEG).")]
FreezeEncoderOpt = Annotated[bool, typer.Option(
    "--freeze-encoder",
    help="Ablation (Table 3, independent encoder): keep the LR encoder as loaded; the diffusion loss never trains it.")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", min=0,
    help="Processes that make training batches ahead of the loop (default: none on the CPU; on CUDA the free "
         "cores, up to 8). Same crops and degradations for any count.")]


def _train_config(stage: str, file: Path | None, overrides: dict) -> "TrainConfig":
    from .training.common import TrainConfig, TrainError

    base = TrainConfig(stage=stage).to_dict()
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{file}: cannot read train config ({exc})") from None
        base.update(loaded)
    base.update({k: v for k, v in overrides.items() if v is not None})
    base["stage"] = stage
    try:
        cfg = TrainConfig.from_dict(base)
    except TypeError as exc:
        raise TrainError(f"train config: {exc}") from None
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise UserError(f"steps and batch size must be >= 1 (got {cfg.steps}, {cfg.batch_size})")
    if cfg.lr_drop_at < 0 or (cfg.lr_drop_at > 0 and cfg.lr_drop_to <= 0):
        raise UserError(f"--lr-drop-at {cfg.lr_drop_at} needs --lr-drop-to > 0 (got {cfg.lr_drop_to})")
    if cfg.pixel_loss not in {p.value for p in PixelLoss} or cfg.luma_weight < 0:
        raise UserError(f"pixel loss must be l1 or mse with a luma weight >= 0 "
                        f"(got {cfg.pixel_loss!r}, {cfg.luma_weight})")
    return cfg


def _lr_pipeline(realesrgan_prob: float | None, existing: dict | None = None, jpeg_prob: float | None = None,
                 camera_prob: float | None = None) -> dict | None:
    given = {"realesrgan_prob": realesrgan_prob, "jpeg_prob": jpeg_prob, "camera_prob": camera_prob}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    for k, v in given.items():
        if not 0.0 <= v <= 1.0:
            raise UserError(f"--{k.replace('_', '-')} must be in [0, 1], got {v}")
    from .data import DataError, LRPipelineConfig

    cfg = LRPipelineConfig.from_dict(existing or {})
    try:
        return dataclasses.replace(cfg, **given).to_dict()
    except DataError as exc:
        raise UserError(str(exc)) from None


def _int_list(option: str, text: str | None) -> list[int] | None:
    """"1,1,0" -> [1, 1, 0] (each >= 0), None for None; a bad list is a usage error naming the option."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise typer.BadParameter(f"comma-separated counts >= 0 expected, got {text!r}", param_hint=option)
    return values


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_time=False, show_path=False)], force=True)


def _check_data(data: list[Path]) -> None:
    if not data:
        raise UserError("no training data: pass --data FOLDER")


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def train(
        data: DataOpt = [],  # noqa: B006
        out: OutOpt = Path("runs/train"),
        stage: Annotated[Stage, typer.Option(help="autoencoder (stage 0), joint (LR encoder + UNet, eq. 8) or encoder "
                                                  "(ablation: the LR encoder alone, regressing the HR latent).")] = Stage.joint,
        config: Annotated[str, typer.Option("--config", "-c", help=f"Model preset ({', '.join(PRESETS)}) or a config.json.")] = "edge-tiny",
        autoencoder: Annotated[Optional[Path], typer.Option(help="Stage-0 model dir (OUT/model of --stage autoencoder); needed by --stage joint and encoder.")] = None,
        init_encoder: Annotated[Optional[Path], typer.Option(
            "--init-encoder", exists=True, file_okay=False,
            help="--stage joint: start the LR encoder from this model dir (OUT/model of --stage encoder).")] = None,
        freeze_encoder: FreezeEncoderOpt = False,
        scale: Annotated[int, typer.Option("--scale", "-s", help="Training scale (2 for the teacher).")] = 2,
        conditioning: Annotated[Conditioning, typer.Option(help="Ablation: unidirectional = LR latent concatenated, N(0, I) start.")] = Conditioning.bidirectional,
        mean_only: Annotated[bool, typer.Option("--mean-only", help="Ablation eq. 7: sigma = 1.")] = False,
        val: ValOpt = None,
        train_config: Annotated[Optional[Path], typer.Option("--train-config", help="JSON file of training options.")] = None,
        steps: Annotated[Optional[int], typer.Option(help="Total optimisation steps.")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b")] = None,
        crop: Annotated[Optional[int], typer.Option(help="HR crop size.")] = None,
        lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate.")] = None,
        lr_drop_at: LrDropAtOpt = None,
        lr_drop_to: LrDropToOpt = None,
        p_t1_start: Annotated[Optional[float], typer.Option(help="P(t=1) at step 0.")] = None,
        p_t1_decay_steps: Annotated[Optional[int], typer.Option(help="Steps over which P(t=1) decays to uniform.")] = None,
        realesrgan_prob: Annotated[Optional[float], typer.Option(help="Share of crops degraded with Real-ESRGAN (rest bicubic).")] = None,
        val_every: Annotated[Optional[int], typer.Option()] = None,
        ckpt_every: Annotated[Optional[int], typer.Option()] = None,
        seed: Annotated[Optional[int], typer.Option()] = None,
        precision: Annotated[Precision, typer.Option()] = Precision.auto,
        device: Annotated[Device, typer.Option()] = Device.auto,
        workers: WorkersOpt = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Train the HR autoencoder (--stage autoencoder) or the LR encoder + UNet jointly (eq. 8)."""
        _setup_logging(quiet)
        _check_data(data)
        model_cfg = _model_config(config, scale, conditioning.value, not mean_only)
        cfg = _train_config(stage.value, train_config, dict(
            steps=steps, batch_size=batch_size, crop=crop, lr=lr, lr_drop_at=lr_drop_at, lr_drop_to=lr_drop_to,
            p_t1_start=p_t1_start, p_t1_decay_steps=p_t1_decay_steps, val_every=val_every, ckpt_every=ckpt_every,
            seed=seed, precision=precision.value, lr_pipeline=_lr_pipeline(realesrgan_prob),
            freeze_encoder=freeze_encoder or None))
        if stage is not Stage.joint and (init_encoder is not None or cfg.freeze_encoder):
            raise UserError("--init-encoder and --freeze-encoder belong to --stage joint")
        if stage is Stage.autoencoder:
            from .training.autoencoder import train_autoencoder

            result = train_autoencoder(model_cfg, cfg, data, val, out, resume, device.value, not quiet, workers=workers)
        else:
            if autoencoder is None:
                raise UserError(f"--stage {stage.value} needs --autoencoder DIR (the model/ folder of a stage-0 run)")
            from .training.joint import train_encoder, train_joint

            if stage is Stage.encoder:
                result = train_encoder(model_cfg, cfg, data, val, out, autoencoder, resume, device.value, not quiet,
                                       workers=workers)
            else:
                result = train_joint(model_cfg, cfg, data, val, out, autoencoder, resume, device.value, not quiet,
                                     workers=workers, encoder_dir=init_encoder)
        typer.echo(f"model written to {result}")

    @app.command()
    @friendly_errors
    def distill(
        teacher: Annotated[Path, typer.Option("--teacher", "-t", help="The x2 teacher: OUT/model of `edgesr train`.")],
        data: DataOpt = [],  # noqa: B006
        out: OutOpt = Path("runs/distill"),
        scale: Annotated[int, typer.Option("--scale", "-s", help="Student scale (twice the teacher's).")] = 4,
        val: ValOpt = None,
        train_config: Annotated[Optional[Path], typer.Option("--train-config")] = None,
        steps: Annotated[Optional[int], typer.Option()] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b")] = None,
        crop: Annotated[Optional[int], typer.Option()] = None,
        lr: Annotated[Optional[float], typer.Option("--lr")] = None,
        lr_drop_at: LrDropAtOpt = None,
        lr_drop_to: LrDropToOpt = None,
        p_t1: Annotated[float, typer.Option("--p-t1", help="P(t=1) for the student (1 = train the one-step model only).")] = 1.0,
        hr_weight: Annotated[Optional[float], typer.Option(
            "--hr-weight", min=0.0, max=1.0,
            help="Weight of the ground-truth HR latent in the student's target (0 = teacher only).")] = None,
        init: Annotated[Optional[Path], typer.Option(
            "--init", exists=True, file_okay=False,
            help="Start the student from this x4 model (OUT/model of an earlier distill) instead of the teacher.")] = None,
        realesrgan_prob: Annotated[Optional[float], typer.Option()] = None,
        freeze_encoder: FreezeEncoderOpt = False,
        val_every: Annotated[Optional[int], typer.Option()] = None,
        ckpt_every: Annotated[Optional[int], typer.Option()] = None,
        seed: Annotated[Optional[int], typer.Option()] = None,
        precision: Annotated[Precision, typer.Option()] = Precision.auto,
        device: Annotated[Device, typer.Option()] = Device.auto,
        workers: WorkersOpt = None,
        resume: Annotated[bool, typer.Option("--resume")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Scale distillation x2 -> x4: the student, initialised from the teacher, regresses its prediction."""
        _setup_logging(quiet)
        _check_data(data)
        cfg = _train_config("distill", train_config, dict(
            steps=steps, batch_size=batch_size, crop=crop, lr=lr, lr_drop_at=lr_drop_at, lr_drop_to=lr_drop_to,
            p_t1_start=p_t1, p_t1_end=p_t1, p_t1_decay_steps=0,
            hr_target_weight=hr_weight, val_every=val_every, ckpt_every=ckpt_every, seed=seed,
            precision=precision.value, lr_pipeline=_lr_pipeline(realesrgan_prob),
            freeze_encoder=freeze_encoder or None))
        from .training.joint import train_distill

        result = train_distill(cfg, data, val, out, teacher, scale, resume, device.value, not quiet, init, workers=workers)
        typer.echo(f"model written to {result}")

    @app.command("finetune-decoder")
    @friendly_errors
    def finetune_decoder_cmd(
        model: Annotated[Path, typer.Option("--model", "-m", help="The one-step x4 model: OUT/model of `edgesr distill`.")],
        data: DataOpt = [],  # noqa: B006
        out: OutOpt = Path("runs/decoder"),
        val: ValOpt = None,
        train_config: Annotated[Optional[Path], typer.Option("--train-config")] = None,
        steps: Annotated[Optional[int], typer.Option()] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b")] = None,
        crop: Annotated[Optional[int], typer.Option()] = None,
        lr: Annotated[Optional[float], typer.Option("--lr")] = None,
        lr_drop_at: LrDropAtOpt = None,
        lr_drop_to: LrDropToOpt = None,
        gan_weight: Annotated[Optional[float], typer.Option(help="Patch-GAN weight (x the adaptive weight); 0 = off.")] = None,
        gan_start: Annotated[Optional[int], typer.Option(help="Step at which the GAN term starts.")] = None,
        disc_start: Annotated[Optional[int], typer.Option(
            help="Step at which the discriminator starts learning (default: --gan-start); set it earlier when "
                 "resuming a trained generator with a fresh discriminator.")] = None,
        perceptual_weight: Annotated[Optional[float], typer.Option(help="LPIPS weight (used only when LPIPS is available).")] = None,
        pixel_loss: Annotated[Optional[PixelLoss], typer.Option(
            "--pixel-loss", help="Pixel loss: l1 (LDM's) or mse (optimises PSNR directly).")] = None,
        luma_weight: Annotated[Optional[float], typer.Option(
            "--luma-weight", help="Extra pixel loss on BT.601 luma (what PSNR-Y scores), x this weight.")] = None,
        finetune_generator: Annotated[bool, typer.Option(
            "--finetune-generator",
            help="Also train the LR encoder and UNet end to end through the pixel loss (not in the paper).")] = False,
        pixel_weight: Annotated[Optional[float], typer.Option(
            "--pixel-weight", min=0.0, help="Weight of the pixel loss to HR (default 1).")] = None,
        teacher_data: Annotated[Optional[Path], typer.Option(
            "--teacher-data", exists=True, file_okay=False,
            help="Train on the triplets of `edgesr teacher-pairs` (LR, teacher x4, HR) instead of --data's photos.")] = None,
        teacher_count: Annotated[Optional[int], typer.Option(
            "--teacher-count", min=1, help="Use triplets 0..N-1 of --teacher-data (default: all made).")] = None,
        teacher_pixel_weight: Annotated[Optional[float], typer.Option(
            "--teacher-pixel-weight", min=0.0, help="Weight of the pixel loss to the teacher's output.")] = None,
        teacher_perceptual_weight: Annotated[Optional[float], typer.Option(
            "--teacher-perceptual-weight", min=0.0, help="Weight of LPIPS-vgg to the teacher's output.")] = None,
        teacher_dists_weight: Annotated[Optional[float], typer.Option(
            "--teacher-dists-weight", min=0.0,
            help="Weight of DISTS (texture and structure statistics) to the teacher's output.")] = None,
        teacher_alex_weight: Annotated[Optional[float], typer.Option(
            "--teacher-alex-weight", min=0.0, help="Weight of LPIPS-alex to the teacher's output.")] = None,
        teacher_fm_weight: Annotated[Optional[float], typer.Option(
            "--teacher-fm-weight", min=0.0,
            help="Weight of feature matching to the teacher's output (L1 between the discriminator's hidden "
                 "features, from --gan-start).")] = None,
        gan_real: Annotated[Optional[GanReal], typer.Option(
            "--gan-real", help="The discriminator's real samples: the HR photo or the teacher's output.")] = None,
        decoder_blocks: Annotated[Optional[str], typer.Option(
            "--decoder-blocks", metavar="N,N,..",
            help="Residual blocks per decoder level; levels that gain blocks start as identity (the loaded "
                 "model's output is unchanged at step 0).")] = None,
        realesrgan_prob: Annotated[Optional[float], typer.Option(help="Share of crops degraded with Real-ESRGAN.")] = None,
        jpeg_prob: JpegProbOpt = None,
        camera_prob: CameraProbOpt = None,
        val_every: Annotated[Optional[int], typer.Option()] = None,
        ckpt_every: Annotated[Optional[int], typer.Option()] = None,
        seed: Annotated[Optional[int], typer.Option()] = None,
        precision: Annotated[Precision, typer.Option()] = Precision.auto,
        device: Annotated[Device, typer.Option()] = Device.auto,
        workers: WorkersOpt = None,
        resume: Annotated[bool, typer.Option("--resume")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Finetune the small decoder on the frozen one-step model's latents (pixel L1 or MSE + LPIPS + patch-GAN)."""
        _setup_logging(quiet)
        if teacher_data is None:
            _check_data(data)
        cfg = _train_config("decoder", train_config, dict(
            steps=steps, batch_size=batch_size, crop=crop, lr=lr if lr is not None else (None if train_config else 1.8e-5),
            lr_drop_at=lr_drop_at, lr_drop_to=lr_drop_to,
            gan_weight=gan_weight, gan_start=gan_start, disc_start=disc_start, perceptual_weight=perceptual_weight,
            pixel_loss=pixel_loss.value if pixel_loss else None, luma_weight=luma_weight,
            finetune_generator=finetune_generator or None, val_every=val_every, l1_weight=pixel_weight,
            teacher_data=str(teacher_data) if teacher_data is not None else None, teacher_count=teacher_count,
            teacher_pixel_weight=teacher_pixel_weight, teacher_perceptual_weight=teacher_perceptual_weight,
            teacher_dists_weight=teacher_dists_weight, teacher_alex_weight=teacher_alex_weight,
            teacher_fm_weight=teacher_fm_weight,
            gan_real=gan_real.value if gan_real else None,
            decoder_blocks=_int_list("--decoder-blocks", decoder_blocks),
            ckpt_every=ckpt_every, seed=seed, precision=precision.value,
            lr_pipeline=_lr_pipeline(realesrgan_prob, None, jpeg_prob, camera_prob)))
        from .training.decoder import finetune_decoder

        result = finetune_decoder(cfg, data, val, out, model, resume, device.value, not quiet, workers=workers)
        typer.echo(f"model written to {result}")

    @app.command("teacher-pairs")
    @friendly_errors
    def teacher_pairs_cmd(
        data: DataOpt = [],  # noqa: B006
        out: Annotated[Path, typer.Option("--out", "-o", help="Pairs folder: pairs.json, manifest-*.jsonl, lr/ teacher/ hr/.")] = Path("runs/teacher-pairs"),
        count: Annotated[int, typer.Option("--count", "-n", min=1, help="Triplets 0..N-1 (this shard's share of them).")] = 10000,
        teacher: Annotated[TeacherRuntime, typer.Option(
            "--teacher", help="Real-ESRGAN x4plus on torch bf16 (default: 3.6x ncnn's speed per crop, 4.5x in "
                              "batches of 8, on a 2-core AMX CPU: benchmarks/teacher_speed.py), torch fp32, ncnn "
                              "(fp32, no torch), or an x4 ONNX model (--teacher-model).")] = TeacherRuntime.torch_bf16,
        teacher_model: Annotated[Optional[Path], typer.Option(
            "--teacher-model", dir_okay=False, help="--teacher onnx: the x4 model file (NCHW RGB in [0, 1]).")] = None,
        shard: Annotated[str, typer.Option("--shard", help="I/N: make only the indices = I mod N (parallel runs).")] = "0/1",
        seed: Annotated[int, typer.Option(help="Triplet i is a function of (seed, i) and the photos.")] = 0,
        lr_size: Annotated[int, typer.Option("--lr-size", min=8, help="LR crop kept (teacher and HR: 4x).")] = 64,
        context: Annotated[int, typer.Option(min=0, help="LR pixels of real image around the crop that the teacher sees.")] = 4,
        realesrgan_prob: Annotated[float, typer.Option(help="Share of Real-ESRGAN second-order LR.")] = 0.5,
        jpeg_prob: Annotated[float, typer.Option("--jpeg-prob", help="Share of heavy-JPEG LR.")] = 0.2,
        camera_prob: Annotated[float, typer.Option("--camera-prob", help="Share of camera-noise LR (the rest: clean bicubic).")] = 0.15,
        batch: Annotated[int, typer.Option(min=1, help="Crops per teacher call.")] = 8,
        threads: Annotated[Optional[int], typer.Option(min=1, help="Threads (default: the usable CPUs).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Make (degraded LR, teacher x4, HR) triplets from photo folders, for finetune-decoder --teacher-data."""
        _setup_logging(quiet)
        _check_data(data)
        from .data import DataError, LRPipelineConfig
        from .hw import thread_count, usable_cpus
        from .teachers import TeacherError, load_teacher
        from .training.teacher_pairs import PairsConfig, make_pairs

        shard_in = parse_shard(shard)
        try:
            lr_cfg = _lr_pipeline(realesrgan_prob, None, jpeg_prob, camera_prob)
            cfg = PairsConfig(seed=seed, lr_size=lr_size, context=context, lr_pipeline=LRPipelineConfig.from_dict(lr_cfg))
            if threads is None:  # a long background job: every usable CPU, not only those idle at its start
                n_threads = usable_cpus()
            else:
                n_threads, notes = thread_count(threads)
                for note in notes:
                    log.warning(note)
            t = load_teacher(teacher.value, teacher_model, n_threads)
            result = make_pairs(data, out, count, t, cfg, shard_in, batch, show_progress=not quiet)
        except (DataError, TeacherError) as exc:
            raise UserError(str(exc)) from None
        typer.echo(json.dumps(result))


def _model_config(config: str, scale: int, conditioning: str, variance: bool) -> ModelConfig:
    if config.endswith(".json") or Path(config).is_file():
        path = Path(config)
        if not path.is_file():
            raise UserError(f"{config}: no such config file")
        cfg = ModelConfig.load(path)
    else:
        cfg = get_preset(config)
    return dataclasses.replace(cfg, scale=scale, conditioning=conditioning, variance=variance)
