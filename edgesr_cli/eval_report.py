"""The reports of `edgesr eval` and `edgesr bench`: the per-image CSV, JSON records (numpy values and non-finite
floats made plain), each written atomically. Plain functions over what evaluate.py and bench.py measured."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic

CSV_FIELDS = ("image", "method", "psnr_y", "ssim_y", "niqe", "lpips", "dists", "seconds",
              "hr_width", "hr_height", "lr_width", "lr_height")


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6g}" if abs(v) < 1e-3 else f"{v:.4f}"
    return str(v)


def write_csv(result: Any, path: str | os.PathLike) -> Path:
    """Per-image CSV of an evaluate.EvalResult (one row per image and method; empty cells where a metric is off)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in result.rows():
        w.writerow([_csv_value(r[k]) for k in CSV_FIELDS])
    return write_file(Path(path), buf.getvalue().encode())


def to_jsonable(obj):
    """Plain JSON: numpy scalars to Python, non-finite floats to None, paths to str."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    return obj


def write_json(record: dict, path: str | os.PathLike) -> Path:
    text = json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n"
    return write_file(Path(path), text.encode())


def write_file(path: Path, data: bytes) -> Path:
    """`data` written to `path` atomically (its folder made first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)
