"""Whether each built-in backend can run here, without loading torch or a model: what `edgesr backends`,
`--backend auto` and the resolver (edgesr_cli/runtime/resolve.py) ask first. A check finds the runtime's
packages and, where importing the runtime is cheap (the LiteRT interpreter, the QNN plugin, when installed),
imports it; each raises BackendUnavailable with the pip command that fixes it (the registry's `install`). ONNX
Runtime is only found here: its import is checked, with the same one-line message, when a model loads
(onnx_import)."""

from __future__ import annotations

from importlib.util import find_spec

from .base import BUILTIN, BackendUnavailable

PIP_HINT = {name: spec.install for name, spec in BUILTIN.items()}  # the registry's install commands, by backend


def _found(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is not a package, a broken __spec__
        return False


def torch() -> None:
    missing = [m for m in ("torch", "safetensors") if not _found(m)]
    if missing:
        raise BackendUnavailable(f"{' and '.join(missing)} not installed: {PIP_HINT['torch']}")


def onnx() -> None:
    """Installed (found without importing it: ONNX Runtime's import alone costs ~0.15 s of `edgesr backends`);
    a broken install is reported, on one line, by onnx_import() when a model loads."""
    if not _found("onnxruntime"):
        raise BackendUnavailable(f"onnxruntime is not installed: {PIP_HINT['onnx']}")


def _import_runtime(module: str, hint: str):
    """`module` itself, or BackendUnavailable on one line (missing, or installed but broken)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{module} is not installed ({exc}): {PIP_HINT[hint]}") from None
    except Exception as exc:  # a broken install
        raise BackendUnavailable(f"{module} does not load ({str(exc).splitlines()[0]}): reinstall with "
                                 f"{PIP_HINT[hint]}") from None


def onnx_import():
    """ONNX Runtime itself, or BackendUnavailable on one line (missing, or installed but broken). Its telemetry
    is off unless $ORT_DISABLE_TELEMETRY says otherwise: edgesr runs offline, and ONNX Runtime 1.32 prints a
    coloured warning of its own at import where it cannot store a device id (no home folder)."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return _import_runtime("onnxruntime", "onnx")


def openvino() -> None:
    """Installed (found without importing it; a broken install is reported by openvino_import at load)."""
    if not _found("openvino"):
        raise BackendUnavailable(f"openvino is not installed: {PIP_HINT['openvino']}")


def openvino_import():
    """OpenVINO itself, or BackendUnavailable on one line (missing, or installed but broken). Its package imports
    the model converter (openvino.tools.ovc, about 50 ms of a 200 ms import here) inside a try/except ImportError;
    edgesr never converts, so that import is made to fail (a None in sys.modules) while OpenVINO loads, and the
    entry is taken out again: a later `import openvino.tools.ovc` by the user's own code still works."""
    import sys

    ovc = "openvino.tools.ovc"
    skip = "openvino" not in sys.modules and ovc not in sys.modules
    if skip:
        sys.modules[ovc] = None  # type: ignore[assignment]  # `from openvino.tools.ovc import ...` -> ImportError
    try:
        return _import_runtime("openvino", "openvino")
    finally:
        if skip and sys.modules.get(ovc, 0) is None:
            del sys.modules[ovc]


def tflite() -> None:
    if not (_found("ai_edge_litert") or _found("tflite_runtime")):
        raise BackendUnavailable(f"no TFLite interpreter installed (ai-edge-litert or tflite-runtime): "
                                 f"{PIP_HINT['tflite']}")
    from .tflite_backend import check  # installed: does it load? (that module imports none of this one)

    check()


def qnn() -> None:
    if not _found("onnxruntime"):
        raise BackendUnavailable(f"onnxruntime is not installed: {PIP_HINT['qnn']}")
    if not _found("onnxruntime_qnn"):
        raise BackendUnavailable(f"onnxruntime-qnn is not installed: {PIP_HINT['qnn']}")
    from .qnn_backend import check  # installed: does the plugin load, is there an HTP (or its emulation)? (no circle:
    #                                 qnn_backend takes its install hint from the registry, not from here)

    check()
