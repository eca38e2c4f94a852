"""Model directories without torch: the file layout (config.json + one safetensors per component, an optional
detail/ point), the config, the detail to load, checksums, and the one error type for a file that cannot be used.
What the light install (ONNX Runtime, no torch) and the model code (model.py) share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import ModelConfig

CONFIG_FILE = "config.json"
COMPONENT_FILES = {
    "lr_encoder": "lr_encoder.safetensors",
    "unet": "unet.safetensors",
    "decoder": "decoder.safetensors",
    "autoencoder": "autoencoder.safetensors",
}
INFERENCE_COMPONENTS = ("lr_encoder", "unet", "decoder")
# A model directory may hold a second operating point of the same network in DETAIL_DIR (its three
# inference safetensors, finetuned from the top-level weights): the top level is detail 0 (fidelity), the
# subdirectory detail 1 (perceptual), and a detail in between is network interpolation of the two (Wang et
# al., ESRGAN 2018). DETAIL_FILE there says which detail the model uses when none is asked for.
DETAIL_DIR = "detail"
DETAIL_FILE = "detail.json"


class ModelFileError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its JSON header alone (no tensor is read)."""
    import struct

    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 << 20:
                raise ValueError(f"a {size:,}-byte header")
            header = json.loads(f.read(size))
        return {k: tuple(int(n) for n in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def shape_mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str | None:
    """What differs between the tensors a config builds and those a file holds (missing, unexpected, or the
    first shape that differs), or None when they match."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    bad = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing:
        return f"missing {missing[:3]}"
    if unexpected:
        return f"unexpected {unexpected[:3]}"
    if bad:
        return f"shape mismatch at {bad[0]}: file {tuple(found[bad[0]])} vs model {tuple(expected[bad[0]])}"
    return None


def read_config(model_dir: str | Path) -> ModelConfig:
    d = Path(model_dir)
    path = d / CONFIG_FILE
    if not d.is_dir():
        raise ModelFileError(f"{d}: not a model directory")
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (a model directory holds config.json + safetensors)")
    try:
        return ModelConfig.load(path)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None


def default_detail(model_dir: str | Path) -> float | None:
    """The detail a model directory uses by default, or None when it has a single operating point."""
    sub = Path(model_dir) / DETAIL_DIR
    if not sub.is_dir():
        return None
    path = sub / DETAIL_FILE
    try:
        value = json.loads(path.read_text())["default_detail"]
    except FileNotFoundError:
        return 1.0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a detail file with a default_detail ({type(exc).__name__})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ModelFileError(f"{path}: default_detail must be a number in [0, 1], got {value!r}")
    return float(value)


def check_detail(model_dir: str | Path, detail: float | None) -> float | None:
    """The detail to load (`detail`, or the directory's default); None for a single-point model asked for
    no detail or detail 0. A one-line ModelFileError when the value cannot be honoured."""
    default = default_detail(model_dir)
    if detail is None:
        return default
    if not 0.0 <= float(detail) <= 1.0:
        raise ModelFileError(f"detail must be in [0, 1], got {detail}")
    if default is None:
        if detail == 0:
            return None
        raise ModelFileError(f"{model_dir}: this model has one operating point (no {DETAIL_DIR}/ weights); "
                             f"--detail {detail:g} needs a model with a perceptual point")
    return float(detail)
