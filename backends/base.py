"""The backend Protocol and registry.

A backend loads a model (a model directory for `torch`, an exported directory for the others) and
provides encode / denoise / decode (and optionally a fused one-step call). The shared tiling engine
and sampler (edgesr_cli.tiling, edgesr_cli.sampler) drive every backend; none re-implements them.

The registry is an explicit dict of the built-in backends plus the entry-point group
`edgesr.backends` (value: "module:factory"), read when asked, never at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable


from edgesr_cli.runner import Runner

ENTRY_POINT_GROUP = "edgesr.backends"


class BackendUnavailable(RuntimeError):
    """A backend whose packages are missing or that cannot run here; the message says how to fix it."""


@runtime_checkable
class Backend(Runner, Protocol):
    """What the tiling engine drives (encode / denoise / decode and the geometry), plus a name.
    A backend may also offer `fused_one_step(lr_tiles, noise_window)`, which the engine prefers."""

    name: str


@dataclass(frozen=True)
class BackendSpec:
    name: str
    loader: str  # "module:function" taking (model_dir: Path, **options) -> Backend
    check: str  # "module:function" returning None if usable here, else raising BackendUnavailable
    description: str
    speed_rank: int  # lower is preferred by --backend auto


_PKG = "edgesr_cli.backends"
# checks live in backends/checks.py (no torch at import: `edgesr backends` stays instant); loaders load a model
BUILTIN: dict[str, BackendSpec] = {
    "torch": BackendSpec("torch", f"{_PKG}.torch_backend:load", f"{_PKG}.checks:torch",
                         "PyTorch (CPU, CUDA; fp32, bf16, fp16)", 1),
    "onnx": BackendSpec("onnx", f"{_PKG}.onnx_backend:load", f"{_PKG}.checks:onnx",
                        "ONNX Runtime CPU (exported model)", 0),
    "tflite": BackendSpec("tflite", f"{_PKG}.tflite_backend:load", f"{_PKG}.checks:tflite",
                          "LiteRT / TFLite interpreter (exported model)", 2),
    "qnn": BackendSpec("qnn", f"{_PKG}.qnn_backend:load", f"{_PKG}.checks:qnn",
                       "Qualcomm QNN HTP via onnxruntime-qnn (W8A16; emulated on x86_64)", 3),
}


def _resolve(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def registry() -> dict[str, BackendSpec]:
    """Built-in backends plus third-party ones registered under the `edgesr.backends` entry points.
    An entry point's object is either a BackendSpec or a callable returning one."""
    specs = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            spec = obj() if callable(obj) and not isinstance(obj, BackendSpec) else obj
        except Exception as exc:  # a broken plugin must not break edgesr
            specs.setdefault(ep.name, BackendSpec(ep.name, "", "", f"broken plugin: {exc}", 99))
            continue
        if isinstance(spec, BackendSpec):
            specs.setdefault(spec.name, spec)
    return specs


def availability(name: str) -> str | None:
    """None if the backend can run here, else the reason."""
    spec = registry().get(name)
    if spec is None:
        return f"unknown backend {name!r}"
    if not spec.check:
        return spec.description
    try:
        _resolve(spec.check)()
    except BackendUnavailable as exc:
        return str(exc)
    except ImportError as exc:
        return f"cannot import: {exc}"
    return None


def load_backend(name: str, model_dir: str | Path, **options) -> Backend:
    specs = registry()
    if name not in specs:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(sorted(specs))}")
    reason = availability(name)
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} is not usable here: {reason}")
    detail = options.pop("detail", None)
    if not (Path(model_dir) / "manifest.json").is_file():  # a model dir (the loader reports a broken export)
        options["detail"] = detail
    elif detail is not None:
        baked = export_detail(model_dir)
        if baked is None or abs(baked - float(detail)) > 1e-6:
            raise BackendUnavailable(f"{model_dir}: an export runs at the detail it was exported with "
                                     f"({'none recorded' if baked is None else f'{baked:g}'}); "
                                     f"export again with --detail {float(detail):g}")
    return _resolve(specs[name].loader)(Path(model_dir), **options)


def export_detail(model_dir: str | Path) -> float | None:
    """The detail an exported model was made at (its manifest's `detail`), None when not recorded."""
    import json

    try:
        value = json.loads((Path(model_dir) / "manifest.json").read_text()).get("detail")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def detect_model_format(model_dir: str | Path) -> str | None:
    """'torch' for a model directory, the export format for an exported one (its manifest says), else None."""
    d = Path(model_dir)
    manifest = d / "manifest.json"
    if manifest.is_file():
        import json

        from edgesr_cli.model import ModelFileError

        try:
            data = json.loads(manifest.read_text())
        except (ValueError, OSError) as exc:  # a broken manifest is not "no manifest"
            raise ModelFileError(f"{manifest}: not a readable JSON manifest ({str(exc).splitlines()[0]})") from None
        fmt = data.get("format") if isinstance(data, dict) else None
        if not isinstance(fmt, str) or not fmt:
            raise ModelFileError(f"{manifest}: field format must be the export format's name, "
                                 f"got {json.dumps(fmt)[:80]}")
        return fmt
    if (d / "config.json").is_file():
        return "torch"
    return None


def auto_backend(model_dir: str | Path) -> str:
    """The fastest backend that can run this model here (a torch model dir runs only on torch)."""
    fmt = detect_model_format(model_dir)
    if fmt in (None, "torch"):
        return "torch"
    if fmt == "qnn" and availability("qnn") is not None:
        return "onnx"  # the QDQ graphs of a QNN export also run on ONNX Runtime's CPU provider
    return fmt
