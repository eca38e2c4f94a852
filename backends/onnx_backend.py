"""ONNX Runtime CPU backend: runs an `edgesr export --format onnx` directory (fp32 or int8 QDQ).

Graph optimisations are on (ORT_ENABLE_ALL); `threads` sets the intra-op thread count (default:
ONNX Runtime's, one per physical core). A `--format qnn` export also loads here: its QDQ graphs run
on the CPU, which checks the quantized model without the HTP.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr_cli.modeldir import ModelFileError

from .checks import onnx as check  # noqa: F401 (the backend's check, as the others have)
from .checks import onnx_import
from .exported import ExportedRunner, read_manifest


def _ort():
    return onnx_import()


def session_options(threads: int | None = None):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return so


def open_session(path: Path, sess_options, providers: list | None = None):
    """An InferenceSession, with a one-line ModelFileError for a file the runtime cannot read."""
    ort = _ort()
    if not path.is_file():
        raise ModelFileError(f"{path}: missing")
    try:
        if providers is None:
            return ort.InferenceSession(str(path), sess_options=sess_options)
        return ort.InferenceSession(str(path), sess_options=sess_options, providers=providers)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: onnxruntime cannot load it ({msg[:300]})") from None


class OnnxBackend(ExportedRunner):
    name = "onnx"

    def __init__(self, export_dir: Path, manifest: dict, threads: int | None = None, scale: int | None = None) -> None:
        super().__init__(export_dir, manifest, scale=scale)
        self.threads = threads
        self._so = session_options(threads)
        self._sessions: dict = {}
        # open every graph now, so a file the runtime cannot read fails at load, not mid-image
        for graph in self.graphs:
            self._session(graph)

    def _session(self, graph: str):
        sess = self._sessions.get(graph)
        if sess is None:
            path = self.export_dir / self.graphs[graph]["file"]
            sess = open_session(path, self._so, providers=["CPUExecutionProvider"])
            self._sessions[graph] = sess
        return sess

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._session(graph)
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, feeds)
        return dict(zip(names, outs))


def load(model_dir: Path, threads: int | None = None, scale: int | None = None, verify: bool = True,
         **_: object) -> OnnxBackend:
    """Load an exported directory (format onnx, or qnn's QDQ graphs on the CPU)."""
    check()
    manifest = read_manifest(model_dir, expect=("onnx", "qnn"), verify=verify)
    return OnnxBackend(Path(model_dir), manifest, threads=threads, scale=scale)
