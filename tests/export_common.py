"""Helpers shared by the export/backend test files: a tiny random model with a photo-like output
range, a small real (or synthetic) LR photo, PSNR on tensors, `edgesr upscale` of an export run in a
fresh interpreter, and the OpenVINO checks of tests/openvino_child.py run in one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesr_cli.config import get_preset
from edgesr_cli.model import EdgeSR

REPO = Path(__file__).resolve().parents[1]


def make_model(seed: int = 0) -> EdgeSR:
    torch.manual_seed(seed)
    m = EdgeSR(get_preset("test-tiny")).eval()
    with torch.no_grad():  # a random decoder's output hugs 0.5: widen it to a photo-like range
        m.decoder.net[-1].weight.mul_(10.0)
        m.decoder.net[-1].bias.mul_(10.0)
    return m


def lr_image(h: int = 40, w: int = 48) -> torch.Tensor:
    """A real photo (scikit-image's astronaut) shrunk to h x w, or a synthetic one without skimage."""
    try:
        from skimage import data

        img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float() / 255.0
    except ImportError:
        g = torch.Generator().manual_seed(3)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
        img = torch.stack([yy, xx, (yy * xx).sqrt()]) * 0.8 + 0.2 * torch.rand(3, 256, 256, generator=g)
    return F.interpolate(img[None], size=(h, w), mode="area")[0].clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def upscale_in_clean_process(backend: str, exported: Path, tmp_path: Path, lr: torch.Tensor, extra: list[str],
                             timeout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Write `lr` as an 8-bit PNG, run `edgesr upscale --backend BACKEND --model EXPORTED EXTRA...` on it in a
    fresh interpreter, and return (the 8-bit LR it read, as float (3,h,w) in [0,1]; its output, 8-bit-level
    floats (3,H,W)). Fails the test with the tail of stderr when the command fails."""
    from edgesr_cli.io import Photo, read_image, write_image

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, Photo(rgb=lr.permute(1, 2, 0).numpy().copy()), fmt="png")
    lr8 = torch.from_numpy(read_image(src).rgb).permute(2, 0, 1).float()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "edgesr_cli", "upscale", "--backend", backend, "--model", str(exported), *extra,
           str(src), "-o", str(dst)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return lr8, torch.from_numpy(read_image(dst).rgb).permute(2, 0, 1)


OPENVINO_CHILD = Path(__file__).resolve().parent / "openvino_child.py"


def openvino_env(tmp_path: Path) -> dict:
    """A child's environment for OpenVINO: compiled models go to a test folder, never the user's ~/.cache; one thread
    as the other tests."""
    return {**os.environ, "EDGESR_OPENVINO_CACHE": str(tmp_path / "ov-cache"), "OMP_NUM_THREADS": "1",
            "NO_COLOR": "1", "COLUMNS": "200"}


def run_openvino_check(check: str, model_dir: Path, export_dir: Path, tmp_path: Path) -> None:
    """tests/openvino_child.py CHECK MODEL_DIR EXPORT_DIR in a fresh interpreter (that file says why); fails the test
    with the tail of its stderr unless the check held."""
    res = subprocess.run([sys.executable, str(OPENVINO_CHILD), check, str(model_dir), str(export_dir)],
                         env=openvino_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
