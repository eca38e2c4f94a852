"""The command line's shared enums and options: what `upscale`, `eval`, `bench` (and `train`'s device and precision)
mean by --model, --backend, --detail, --tile, --device, --dtype, --overlap, --batch and --steps, said once. Light at
import (typer only): `edgesr --help` builds every command from these."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .defaults import DEFAULT_TILE


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


MAX_TILE = 4096  # LR pixels a tile side: one 4096 tile's HR activations already take tens of GB
MAX_STEPS = 1000  # the model's noise schedule has 1000 timesteps


def check_engine_options(batch: int, steps: int, tile: int | None, overlap: float, seed: int) -> None:
    """Refuse, on one line, tiling-engine option values no image can run with (ValueError: a usage error, exit 2),
    before anything loads. What --tile must be for the model is the resolver's (runtime/resolve.py: tile_for)."""
    if batch < 1 or steps < 1 or (tile is not None and tile < 1):
        raise ValueError("--batch, --steps and --tile must be >= 1")
    if tile is not None and tile > MAX_TILE:
        raise ValueError(f"--tile {tile}: must be at most {MAX_TILE} (LR pixels a side)")
    if steps > MAX_STEPS:
        raise ValueError(f"--steps {steps}: must be at most {MAX_STEPS} (the model is distilled for 1)")
    if not 0.0 <= overlap < 0.5:
        raise ValueError(f"--overlap {overlap}: must be a fraction in [0, 0.5)")
    if not -(2 ** 63) <= seed < 2 ** 64:
        raise ValueError(f"--seed {seed}: must fit in 64 bits (-2**63 to 2**64 - 1)")


def _registered_backend(value: str) -> str:
    """--backend of bench: auto, all, or a registered backend (built-in or an `edgesr.backends` entry point), else a
    usage error. The registry is read only for another name (its entry points cost a scan of the installed packages)."""
    if value in ("auto", "all"):
        return value
    from .backends.base import registry

    known = registry()
    if value not in known:
        raise typer.BadParameter(f"unknown backend; choose auto or one of {', '.join(sorted(known))}")
    return value


def _one_backend(value: str) -> str:
    """--backend of upscale and eval: as bench's, without `all`."""
    if value == "all":
        raise typer.BadParameter("all is for `edgesr bench`; choose one backend, or auto")
    return _registered_backend(value)


BACKENDS_HELP = "auto, torch, onnx, openvino, tflite, qnn, or a plugin's (`edgesr backends` lists them)"

ModelOption = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="Model dir or exported dir (default: the shipped edge-tiny).")]
BackendOption = Annotated[str, typer.Option(
    callback=_one_backend, help=f"Backend: {BACKENDS_HELP}; auto picks the fastest available for the model.")]
BenchBackendOption = Annotated[str, typer.Option(
    callback=_registered_backend, help=f"Backend to measure: {BACKENDS_HELP}; all = torch on --model (and its bundled "
                                  "export) plus every --export.")]
TileOption = Annotated[Optional[int], typer.Option(
    "--tile", "-t", help=f"LR tile size (default {DEFAULT_TILE}, or an exported model's static tile).",
    show_default=False)]
DetailOption = Annotated[Optional[float], typer.Option(
    min=0.0, max=1.0, help="0 = fidelity (closest to the photo's pixels), 1 = perceptual (sharp, natural texture), "
                           "in between = both networks interpolated. Default: the model's own default.")]
DeviceOption = Annotated[Device, typer.Option(help="torch backend device.")]
OverlapOption = Annotated[float, typer.Option(help="Tile overlap as a fraction of the tile.")]
StepsOption = Annotated[int, typer.Option(help="Denoising steps (the model is trained for 1).")]
