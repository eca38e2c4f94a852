"""The backend registry: one entry per backend that says what it loads and what it can do, spandrel-style.

A backend loads a model (a model folder for `torch`, an `edgesr export` folder for the others) and returns a
Backend (edgesr_cli/runtime/runner.py): encode / denoise / decode, optionally a fused one-step call. The shared
tiling engine and sampler (edgesr_cli/runtime/) drive every backend; none re-implements them. Which backend runs
which folder at which detail and tile is decided in one place, edgesr_cli/runtime/resolve.py, from these entries.

The registry is an explicit dict of the built-in backends plus the entry-point group `edgesr.backends` (value:
"module:attribute", a BackendSpec or a callable returning one), read when asked, never at import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


ENTRY_POINT_GROUP = "edgesr.backends"

# torch's CPU build: PyPI's default torch wheel on Linux is the CUDA one (about 3 GB with its libraries)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def extra_hint(extra: str) -> str:
    """The one command that installs an extra needing torch with torch's CPU build (PyPI's torch on Linux pulls CUDA)."""
    return f"pip install torch --index-url {TORCH_CPU_INDEX} && pip install 'edgesr[{extra}]'"


TORCH_EXTRA_HINT = extra_hint("torch")


class BackendUnavailable(RuntimeError):
    """A backend whose packages are missing or that cannot run here; the message says how to fix it."""


@dataclass(frozen=True)
class BackendSpec:
    """What a backend is and can do. Third-party backends register one under the `edgesr.backends` entry point."""

    name: str
    loader: str  # "module:function" taking (folder: Path, **options) -> Backend; options: detail, threads, device,
    #              dtype (when not auto), manifest (an export's, already read), and for a backend that reweights at
    #              a detail not the export's own graphs ({graph: bytes} at that detail) and verify=False (files
    #              checked by the resolver); a loader takes **_ for the others
    check: str  # "module:function" returning None if usable here, else raising BackendUnavailable ("": always)
    description: str
    speed_rank: int  # lower is listed first by `edgesr backends`
    devices: tuple[str, ...] | None = None  # --device values it runs on (None: not said, nothing is refused)
    dtypes: tuple[str, ...] | None = None  # --dtype values it computes in (None: not said)
    loads: str = "model"  # "model": a model folder (config.json + safetensors); "export": an `edgesr export` folder
    formats: tuple[str, ...] = ()  # the export formats it runs ("onnx" includes a model folder's bundled export)
    static_tile: bool = False  # its graphs take one tile size, the export's (manifest tile.lr): --tile at most that
    reweights: bool = False  # runs an fp32 ONNX export at any --detail (the graphs it is given: backends/exported.py)
    fp32_twin: bool = False  # a runner in reduced precision has fp32_twin(), for 16-bit photos
    streams: bool = False  # runs a batch's tiles apart, one thread each (none waits for another): its default thread
    #                        count is every usable CPU, not only the idle ones (hw.default_threads)
    install: str = ""  # the command that installs what it needs


_PKG = "edgesr_cli.backends"
# checks live in backends/checks.py (no torch at import: `edgesr backends` stays instant); loaders load a model
BUILTIN: dict[str, BackendSpec] = {
    "torch": BackendSpec("torch", f"{_PKG}.torch_backend:load", f"{_PKG}.checks:torch",
                         "PyTorch (CPU, CUDA; fp32, bf16, fp16)", 1, ("cpu", "cuda"), ("fp32", "bf16", "fp16"),
                         fp32_twin=True, install=TORCH_EXTRA_HINT),
    "onnx": BackendSpec("onnx", f"{_PKG}.onnx_backend:load", f"{_PKG}.checks:onnx",
                        "ONNX Runtime CPU (exported model)", 0, ("cpu",), ("fp32",), loads="export",
                        formats=("onnx", "qnn"), static_tile=True, reweights=True,
                        install="pip install 'edgesr[onnxruntime]' (part of the base install off x86-64)"),
    "openvino": BackendSpec("openvino", f"{_PKG}.openvino_backend:load", f"{_PKG}.checks:openvino",
                            "OpenVINO CPU (exported model; bf16 where the CPU has it)", 0, ("cpu",), ("fp32", "bf16"),
                            loads="export", formats=("onnx",), static_tile=True, reweights=True, fp32_twin=True,
                            streams=True, install="pip install 'edgesr[openvino]' (part of the base install on x86-64)"),
    "tflite": BackendSpec("tflite", f"{_PKG}.tflite_backend:load", f"{_PKG}.checks:tflite",
                          "LiteRT / TFLite interpreter (exported model)", 2, ("cpu",), ("fp32",), loads="export",
                          formats=("tflite",), static_tile=True, install=extra_hint("tflite")),
    "qnn": BackendSpec("qnn", f"{_PKG}.qnn_backend:load", f"{_PKG}.checks:qnn",
                       "Qualcomm QNN HTP via onnxruntime-qnn (W8A16; emulated on x86_64)", 3, ("cpu",), ("fp32",),
                       loads="export", formats=("qnn",), static_tile=True, install=extra_hint("qnn")),
}


def resolve_ref(ref: str) -> Callable:
    """The object a "module:attribute" reference names (a loader or a check)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def registry() -> dict[str, BackendSpec]:
    """Built-in backends plus third-party ones registered under the `edgesr.backends` entry points.
    An entry point's object is either a BackendSpec or a callable returning one. Reading the entry points imports
    importlib.metadata and scans the installed packages (about 60 ms together here): what only needs a built-in
    backend asks `lookup` or `get_spec`, which leave them unread."""
    from importlib.metadata import entry_points

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


def lookup(name: str) -> BackendSpec | None:
    """The registry's entry for `name`, or None; a built-in name without reading the entry points (a plugin never
    replaces a built-in backend: registry() keeps the built-in one)."""
    return BUILTIN.get(name) or registry().get(name)


def get_spec(name: str, specs: dict[str, BackendSpec] | None = None) -> BackendSpec:
    """The registry's entry for `name`, or BackendUnavailable on one line naming the known ones; a built-in name
    without reading the entry points."""
    if specs is None and name in BUILTIN:
        return BUILTIN[name]
    specs = registry() if specs is None else specs
    if name not in specs:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(sorted(specs))} "
                                 "(`edgesr backends` lists them)")
    return specs[name]


def availability(name: str) -> str | None:
    """None if the backend can run here, else the reason."""
    spec = lookup(name)
    if spec is None:
        return f"unknown backend {name!r}"
    if not spec.loader:
        return spec.description
    if not spec.check:
        return None
    try:
        resolve_ref(spec.check)()
    except BackendUnavailable as exc:
        return str(exc)
    except ImportError as exc:
        return f"cannot import: {exc}"
    return None


def check_options(spec: BackendSpec, device: str | None, dtype: str | None) -> None:
    """Refuse, on one line, a --device or --dtype the backend cannot honour (an exported model runs on the CPU
    in its own precision) rather than run something else silently. "auto" and None are always accepted."""
    name = spec.name
    if spec.devices is not None and device not in (None, "auto", *spec.devices):
        raise BackendUnavailable(f"--device {device}: the {name} backend runs on {' or '.join(spec.devices)} only")
    if spec.dtypes is not None and dtype not in (None, "auto", *spec.dtypes):
        raise BackendUnavailable(f"--dtype {dtype}: the {name} backend runs {' or '.join(spec.dtypes)}")
