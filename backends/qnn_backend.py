"""QNN HTP backend (onnxruntime-qnn): runs an `edgesr export --format qnn` directory on the HTP.

onnxruntime-qnn (>= 2) is a plugin execution provider beside plain onnxruntime. Asking for
`providers=["QNNExecutionProvider"]` silently runs on the CPU, so this backend registers the plugin
library, selects the QNN EP devices with `add_provider_for_devices`, and sets
`session.disable_cpu_ep_fallback=1`: a graph the HTP cannot run fails loudly instead of running on
the CPU. It loads the EP-context models (the context binary compiled for the SoC named at export);
`use_context=False` loads the QDQ graphs instead (compiled when the session opens). The x86_64
wheel emulates the HTP (about 100x slower than the CPU): fine for checking, not for speed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgesr_cli.modeldir import ModelFileError

from .base import BUILTIN, BackendUnavailable
from .exported import ExportedRunner, read_manifest

_HINT = BUILTIN["qnn"].install  # the registry's install command

EP_NAME = "QNNExecutionProvider"
_lock = threading.Lock()
_registered = False


def _modules():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}): {_HINT}") from None
    try:
        import onnxruntime_qnn as qnn
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime-qnn is not installed ({exc}): {_HINT}") from None
    except Exception as exc:
        raise BackendUnavailable(f"onnxruntime-qnn does not load ({str(exc).splitlines()[0]}): {_HINT}") from None
    if not hasattr(ort, "register_execution_provider_library"):
        raise BackendUnavailable(f"onnxruntime {ort.__version__} cannot load plugin execution providers "
                                 f"(needs >= 1.22): {_HINT}")
    return ort, qnn


def register() -> None:
    """Register the QNN EP plugin library with onnxruntime (once per process)."""
    global _registered
    ort, qnn = _modules()
    with _lock:
        if _registered or any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
            _registered = True
            return
        try:
            ort.register_execution_provider_library(EP_NAME, qnn.get_library_path())
        except Exception as exc:
            if "already" not in str(exc).lower():
                raise BackendUnavailable(f"onnxruntime could not load the QNN EP library "
                                         f"({str(exc).splitlines()[0]})") from None
        _registered = True


def qnn_devices() -> list:
    ort, _ = _modules()
    register()
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise BackendUnavailable("the QNN execution provider is registered but reports no device here")
    return devices


def qnn_provider_options(soc: dict[str, Any] | None = None, perf_mode: str | None = None) -> dict[str, str]:
    _, qnn = _modules()
    opts = {"backend_path": qnn.get_qnn_htp_path()}
    if soc:
        opts["soc_model"] = str(soc["soc_model"])
        opts["htp_arch"] = str(soc["htp_arch"])
        if soc.get("vtcm_mb"):
            opts["vtcm_mb"] = str(soc["vtcm_mb"])
    if perf_mode:
        opts["htp_performance_mode"] = perf_mode
    return opts


def check() -> None:
    qnn_devices()


class QnnBackend(ExportedRunner):
    name = "qnn"

    def __init__(self, export_dir: Path, manifest: dict, use_context: bool = True, perf_mode: str | None = "burst",
                 scale: int | None = None) -> None:
        super().__init__(export_dir, manifest, scale=scale)
        self.use_context = use_context
        self.soc = manifest.get("qnn")
        self._opts = qnn_provider_options(self.soc, perf_mode)
        self._sessions: dict = {}
        for graph in self.graphs:
            self._session(graph)

    def _session(self, graph: str):
        sess = self._sessions.get(graph)
        if sess is None:
            ort, _ = _modules()
            info = self.graphs[graph]
            fname = info.get("context") if self.use_context and info.get("context") else info["file"]
            path = self.export_dir / fname
            if not path.is_file():
                raise ModelFileError(f"{path}: missing")
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            so.add_provider_for_devices(qnn_devices(), dict(self._opts))
            try:
                sess = ort.InferenceSession(str(path), sess_options=so)
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelFileError(f"{path}: QNN HTP cannot load it ({msg[:300]})") from None
            self._sessions[graph] = sess
        return sess

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._session(graph)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))


def load(model_dir: Path, use_context: bool = True, perf_mode: str | None = "burst", scale: int | None = None,
         verify: bool = True, manifest: dict | None = None, **_: object) -> QnnBackend:
    check()
    manifest = read_manifest(model_dir, expect=("qnn",), verify=verify, manifest=manifest)
    return QnnBackend(Path(model_dir), manifest, use_context=use_context, perf_mode=perf_mode, scale=scale)
