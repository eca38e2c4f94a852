"""Model directories without torch: the file layout (config.json + one safetensors per component, an optional
detail/ point), the config, the detail to load, checksums, and the one error type for a file that cannot be used.
What the light install (ONNX Runtime, no torch) and the model code (model.py) share."""

from __future__ import annotations

import hashlib
import json
import os
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
# A model folder may carry its own ONNX export (the shipped edge-tiny does, in the wheel): the fused one-step graph
# at the model's default detail, checksummed by its manifest. It is what the light install (no torch) runs, at any
# --detail (the folder's two operating points interpolated into the graph's weights: backends/exported.py).
BUNDLED_EXPORT = "onnx"


class ModelFileError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file."""


def default_model_dir() -> Path:
    """The shipped model: $EDGESR_MODEL, else the package data (wheel) or the checkout's weights/."""
    env = os.environ.get("EDGESR_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "weights" / "edge-tiny", here.parent / "weights" / "edge-tiny"):
        if (cand / CONFIG_FILE).is_file():
            return cand
    try:
        from importlib.resources import files

        cand = Path(str(files("edgesr_cli.weights") / "edge-tiny"))
        if (cand / CONFIG_FILE).is_file():
            return cand
    except (ModuleNotFoundError, TypeError):
        pass
    raise ModelFileError("no default model found (weights/edge-tiny is missing from this install); "
                         "pass -m/--model DIR")


def bundled_export(model_dir: str | Path) -> Path | None:
    """The ONNX export a model folder carries (BUNDLED_EXPORT/manifest.json), or None."""
    p = Path(model_dir) / BUNDLED_EXPORT
    return p if (p / "manifest.json").is_file() else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_header(f) -> dict:
    """A safetensors file's JSON header (the file positioned after it); ValueError/struct.error when it is not one."""
    import struct

    (size,) = struct.unpack("<Q", f.read(8))
    if size > 100 << 20:
        raise ValueError(f"a {size:,}-byte header")
    return json.loads(f.read(size))


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its JSON header alone (no tensor is read)."""
    import struct

    try:
        with open(path, "rb") as f:
            header = _read_header(f)
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
    if detail is None:
        return default_detail(model_dir)
    if not 0.0 <= float(detail) <= 1.0:
        raise ModelFileError(f"detail must be in [0, 1], got {detail}")
    if not (Path(model_dir) / DETAIL_DIR).is_dir():  # a given detail needs the perceptual point, not detail.json
        if detail == 0:
            return None
        raise ModelFileError(f"{model_dir}: this model has one operating point (no {DETAIL_DIR}/ weights); "
                             f"--detail {detail:g} needs a model with a perceptual point")
    return float(detail)


# ---- the detail interpolation in numpy (the light install's --detail) ---------------------------------------------
# safetensors dtype -> (numpy dtype of the stored bytes); BF16 is widened to float32 by hand (numpy has no bfloat16)
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_tensors(path: Path, keys=None) -> dict:
    """Tensors of a safetensors file as numpy arrays (floating ones as float32, as `.float()` gives them to the torch
    path), all of them or those named in `keys`; no torch. A one-line ModelFileError for a file that cannot be read."""
    import struct

    import numpy as np

    try:
        with open(path, "rb") as f:
            header = _read_header(f)
            data = f.read()
        out = {}
        for name, info in header.items():
            if name == "__metadata__" or (keys is not None and name not in keys):
                continue
            dtype = info["dtype"]
            if dtype not in _ST_DTYPES:
                raise ValueError(f"{name}: dtype {dtype} is not supported")
            start, end = (int(x) for x in info["data_offsets"])
            shape = tuple(int(n) for n in info["shape"])
            if not 0 <= start <= end <= len(data):
                raise ValueError(f"{name}: data offsets outside the file")
            a = np.frombuffer(data, dtype=_ST_DTYPES[dtype], count=(end - start) // np.dtype(_ST_DTYPES[dtype]).itemsize,
                              offset=start).reshape(shape)
            if dtype == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            elif a.dtype.kind == "f":
                a = a.astype(np.float32)
            out[name] = np.array(a)  # own memory, native byte order
        missing = sorted(set(keys or ()) - set(out))
        if missing:
            raise ValueError(f"missing {missing[:3]}")
        return out
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def lerp(start, end, weight: float):
    """torch.lerp(start, end, weight) on float32 arrays, bit for bit as torch's CPU kernel (what model.py's
    _interpolate_into calls) computes it: diff = end - start in float32, then start + w * diff for w < 0.5, else
    end + (w - 1) * diff, each a fused multiply-add (emulated here in float64, where the product is exact)."""
    import numpy as np

    start = np.asarray(start, dtype=np.float32)
    end = np.asarray(end, dtype=np.float32)
    w = np.float32(weight)
    diff = (end - start).astype(np.float64)
    if abs(w) < 0.5:
        out = start.astype(np.float64) + np.float64(w) * diff
    else:
        out = end.astype(np.float64) + np.float64(w - np.float32(1.0)) * diff
    return out.astype(np.float32)


def interpolated_tensors(model_dir: str | Path, detail: float, wanted: dict) -> dict:
    """{component: {key: float32 array}} at `detail` for the tensors named in `wanted` ({component: set of keys}):
    (1 - detail) * top level + detail * DETAIL_DIR, in the torch path's arithmetic (model.load_model_dir), detail 0
    being the top-level weights exactly. No torch: what the light install hands to an export's graph."""
    d = Path(model_dir)
    out = {}
    for component, keys in wanted.items():
        if component not in INFERENCE_COMPONENTS:
            raise ModelFileError(f"{d}: no component {component!r} to interpolate")
        path = d / COMPONENT_FILES[component]
        a = read_tensors(path, set(keys))
        if detail == 0:
            out[component] = a
            continue
        other = d / DETAIL_DIR / COMPONENT_FILES[component]
        if not other.is_file():
            raise ModelFileError(f"{other}: missing")
        b = read_tensors(other, set(keys))
        if any(a[k].shape != b[k].shape for k in a):
            raise ModelFileError(f"{other}: not the same network as {path}")
        out[component] = {k: lerp(a[k], b[k], detail) if a[k].dtype.kind == "f" else b[k] for k in a}
    return out
