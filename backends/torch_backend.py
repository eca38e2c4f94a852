"""PyTorch backend: CPU or CUDA, fp32 / bf16 / fp16. Device and dtype are chosen by the caller.
The tiling engine hands it numpy arrays and gets numpy arrays back (float32, CPU); tensors are converted here."""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from edgesr_cli.hw import cpu_has_native_bf16
from edgesr_cli.model import EdgeSR, load_model_dir


def check() -> None:
    return None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .base import BackendUnavailable

        raise BackendUnavailable("--device cuda asked for, but PyTorch sees no CUDA device")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware computes it natively (CUDA; CPUs with AVX512-BF16 or AMX), else fp32.
    On this project's 2-core AVX512-BF16 machine bf16 upscales 512 -> 2048 in 2.57 s against 4.67 s for
    fp32 (one bench run each, back to back, with the shipped weights), at the same BSD100 PSNR-Y within
    0.002 dB; see weights/MODEL_CARD.md."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


class TorchBackend:
    name = "torch"
    fixed_tile = None  # any tile size: an image smaller than a tile runs at its own size (tiling.runner_plan)

    def __init__(self, model: EdgeSR, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.dtype = dtype
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        cfg = model.cfg
        self.scale = cfg.scale
        self.latent_factor = cfg.latent_factor
        self.latent_channels = cfg.latent_channels
        self.lr_multiple = model.lr_multiple
        self.conditioning = cfg.conditioning
        self.schedule = model.schedule

    def fp32_twin(self) -> TorchBackend | None:
        """The same loaded model computing in fp32 (only the autocast dtype differs), for 16-bit photos; None when
        this runner is fp32 already."""
        if self.dtype == torch.float32:
            return None
        twin = copy.copy(self)
        twin.dtype = torch.float32
        return twin

    def _ctx(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _in(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x).to(self.device, torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else x

    @staticmethod
    def _out(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.float().cpu().numpy())

    @torch.inference_mode()
    def encode(self, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._ctx():
            mu, sigma = self.model.encode(self._in(lr))
        return self._out(mu), self._out(sigma)

    @torch.inference_mode()
    def denoise(self, z: np.ndarray, t: np.ndarray, mu: np.ndarray | None) -> np.ndarray:
        with self._ctx():
            out = self.model.denoise(self._in(z), torch.as_tensor(t).float().to(self.device),
                                     None if mu is None else self._in(mu))
        return self._out(out)

    @torch.inference_mode()
    def decode(self, z: np.ndarray) -> np.ndarray:
        with self._ctx():
            return self._out(self.model.decode(self._in(z)))


def load(model_dir: Path, device: str = "auto", dtype: str | torch.dtype | None = None, scale: int | None = None,
         detail: float | None = None, threads: int | None = None, **_: object) -> TorchBackend:
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    model = load_model_dir(model_dir, device=dev, scale=scale, detail=detail)
    dt = _parse_dtype(dtype) if dtype is not None else default_dtype(dev)
    return TorchBackend(model, dev, dt)


def from_model(model: EdgeSR, device: str = "cpu", dtype: str | torch.dtype = "fp32") -> TorchBackend:
    dev = resolve_device(device)
    return TorchBackend(model, dev, _parse_dtype(dtype))


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use fp32, bf16 or fp16")
    return table[dtype]
