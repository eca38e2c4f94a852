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
    devices: tuple[str, ...] | None = None  # --device values it runs on (None: not said, nothing is refused)
    dtypes: tuple[str, ...] | None = None  # --dtype values it computes in (None: not said)


_PKG = "edgesr_cli.backends"
# checks live in backends/checks.py (no torch at import: `edgesr backends` stays instant); loaders load a model
BUILTIN: dict[str, BackendSpec] = {
    "torch": BackendSpec("torch", f"{_PKG}.torch_backend:load", f"{_PKG}.checks:torch",
                         "PyTorch (CPU, CUDA; fp32, bf16, fp16)", 1, ("cpu", "cuda"), ("fp32", "bf16", "fp16")),
    "onnx": BackendSpec("onnx", f"{_PKG}.onnx_backend:load", f"{_PKG}.checks:onnx",
                        "ONNX Runtime CPU (exported model)", 0, ("cpu",), ("fp32",)),
    "openvino": BackendSpec("openvino", f"{_PKG}.openvino_backend:load", f"{_PKG}.checks:openvino",
                            "OpenVINO CPU (exported model; bf16 where the CPU has it)", 0, ("cpu",), ("fp32", "bf16")),
    "tflite": BackendSpec("tflite", f"{_PKG}.tflite_backend:load", f"{_PKG}.checks:tflite",
                          "LiteRT / TFLite interpreter (exported model)", 2, ("cpu",), ("fp32",)),
    "qnn": BackendSpec("qnn", f"{_PKG}.qnn_backend:load", f"{_PKG}.checks:qnn",
                       "Qualcomm QNN HTP via onnxruntime-qnn (W8A16; emulated on x86_64)", 3, ("cpu",), ("fp32",)),
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
    elif detail is not None and not runs_at(export_detail(model_dir), detail):
        why = reweighting_unavailable(model_dir, name)
        if why is not None:
            baked = export_detail(model_dir)
            raise BackendUnavailable(f"{model_dir}: this export runs at the detail it was exported with "
                                     f"({'none recorded' if baked is None else f'{baked:g}'}): {why}; "
                                     f"export again with --detail {float(detail):g}")
        options["detail"] = float(detail)  # its graph with the weights at this detail (exported.graph_bytes)
    return _resolve(specs[name].loader)(Path(model_dir), **options)


def reweighting_unavailable(export_dir: str | Path, name: str) -> str | None:
    """None when the backend `name` can run the export at any detail (its graph with the weights of the model folder
    it sits in, interpolated: backends/exported.py), else why not. Cheap: the files' sha256 are checked at load."""
    from .exported import REWEIGHTING_BACKENDS, read_manifest, weights_folder

    if name not in REWEIGHTING_BACKENDS:
        return f"the {name} backend runs an export's own weights only"
    try:
        manifest = read_manifest(export_dir, verify=False)
    except ValueError as exc:
        return str(exc)
    return weights_folder(Path(export_dir), manifest, verify=False)[1] or None


def check_options(name: str, device: str | None, dtype: str | None) -> None:
    """Refuse, on one line, a --device or --dtype the backend cannot honour (an exported model runs on the CPU
    in its own precision) rather than run something else silently. "auto" and None are always accepted."""
    spec = registry().get(name)
    if spec is None:
        return
    if spec.devices is not None and device not in (None, "auto", *spec.devices):
        raise BackendUnavailable(f"--device {device}: the {name} backend runs on {' or '.join(spec.devices)} only")
    if spec.dtypes is not None and dtype not in (None, "auto", *spec.dtypes):
        raise BackendUnavailable(f"--dtype {dtype}: the {name} backend runs {' or '.join(spec.dtypes)}")


def runs_at(baked: float | None, detail: float | None) -> bool:
    """Whether an export made at detail `baked` (None: not recorded) serves --detail `detail` (None: the default)."""
    return detail is None or (baked is not None and abs(baked - float(detail)) <= 1e-6)


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

        from edgesr_cli.modeldir import ModelFileError

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


# A model folder may carry its own ONNX export (the shipped edge-tiny does, in the wheel): the fused one-step graph
# at the model's default detail, checksummed by its manifest. It is what the light install (no torch) runs, at any
# --detail (the folder's two operating points interpolated into the graph's weights: backends/exported.py).
BUNDLED_EXPORT = "onnx"
# torch's CPU build: PyPI's default torch wheel on Linux is the CUDA one (about 3 GB with its libraries)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def extra_hint(extra: str) -> str:
    """The one command that installs an extra needing torch with torch's CPU build (PyPI's torch on Linux pulls CUDA)."""
    return f"pip install torch --index-url {TORCH_CPU_INDEX} && pip install 'edgesr[{extra}]'"


TORCH_EXTRA_HINT = extra_hint("torch")


def bundled_export(model_dir: str | Path) -> Path | None:
    """The ONNX export a model folder carries (BUNDLED_EXPORT/manifest.json), or None."""
    p = Path(model_dir) / BUNDLED_EXPORT
    return p if (p / "manifest.json").is_file() else None


def auto_backend(model_dir: str | Path) -> str:
    """The fastest backend that can run this model here: for a model folder, torch when it is installed
    (bf16 on this project's CPUs is faster than ONNX Runtime's fp32, README "Backends"), else the folder's bundled
    export on OpenVINO where it is installed and the CPU computes bf16 natively, else on ONNX Runtime; for an
    export, its format's runtime."""
    return resolve_backend(model_dir, "auto")[0]


def resolve_backend(model_dir: str | Path, name: str, detail: float | None = None) -> tuple[str, Path]:
    """(backend, folder to load) for `--backend name` (auto: the fastest that can run it here) on `model_dir`,
    or BackendUnavailable on one line saying what to install or export."""
    d = Path(model_dir)
    fmt = detect_model_format(d)
    if fmt not in (None, "torch"):  # an export
        if name != "auto":
            return name, d
        if fmt == "qnn" and availability("qnn") is not None:
            return "onnx", d  # the QDQ graphs of a QNN export also run on ONNX Runtime's CPU provider
        return fmt, d
    if name not in ("auto", "onnx", "openvino"):
        return name, d  # torch (or a plugin taking model folders): load_backend says if it cannot run here
    if name == "auto" and availability("torch") is None:
        return "torch", d
    export = bundled_export(d)
    if export is None:
        if name in ("onnx", "openvino"):
            raise BackendUnavailable(f"{d} holds no ONNX export ({BUNDLED_EXPORT}/manifest.json): make one with "
                                     f"`edgesr export -f onnx -m {d} -o OUT` and pass -m OUT")
        raise BackendUnavailable(f"{d}: a PyTorch model folder needs torch: {TORCH_EXTRA_HINT}")
    baked = export_detail(export)
    if not runs_at(baked, detail):
        why = reweighting_unavailable(export, "onnx")
        if why is not None:
            raise BackendUnavailable(f"--detail {float(detail):g}: the ONNX export in {d} runs at detail "
                                     f"{'(none recorded)' if baked is None else f'{baked:g}'} only ({why}); "
                                     f"the torch backend runs every detail: {TORCH_EXTRA_HINT}")
    if name == "auto":
        from edgesr_cli.hw import cpu_has_native_bf16

        if availability("openvino") is None and cpu_has_native_bf16():
            return "openvino", export  # bf16 kernels: about twice ONNX Runtime's fp32 speed (README "Backends")
        if availability("onnx") is not None:
            raise BackendUnavailable(f"{d}: neither torch nor ONNX Runtime is installed: pip install edgesr "
                                     f"(ONNX Runtime) or {TORCH_EXTRA_HINT}")
        return "onnx", export
    return name, export
