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


def open_session(path: Path, sess_options, providers: list | None = None, model: bytes | None = None):
    """An InferenceSession of the file `path` (or of `model`, that file's bytes with other weights), with a one-line
    ModelFileError for a file the runtime cannot read."""
    ort = _ort()
    if model is None and not path.is_file():
        raise ModelFileError(f"{path}: missing")
    source = str(path) if model is None else model
    try:
        if providers is None:
            return ort.InferenceSession(source, sess_options=sess_options)
        return ort.InferenceSession(source, sess_options=sess_options, providers=providers)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: onnxruntime cannot load it ({msg[:300]})") from None


class OnnxBackend(ExportedRunner):
    name = "onnx"
    # One tile per session run: ONNX Runtime's arena keeps the activations of the largest run for the rest of the
    # process (the bundled export: +520 MB for 4 tiles, +135 MB for one), at the same speed per tile.
    tiles_per_run = 1

    def __init__(self, export_dir: Path, manifest: dict, threads: int | None = None, scale: int | None = None,
                 detail: float | None = None, graphs: dict[str, bytes] | None = None) -> None:
        super().__init__(export_dir, manifest, scale=scale, detail=detail, graphs=graphs)
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
            source = self.graph_source(graph)  # the file, or its bytes with the weights at --detail (given)
            sess = open_session(path, self._so, providers=["CPUExecutionProvider"],
                                model=source if isinstance(source, bytes) else None)
            self._sessions[graph] = sess
        return sess

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._session(graph)
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, feeds)
        return dict(zip(names, outs))


def load(model_dir: Path, threads: int | None = None, scale: int | None = None, verify: bool = True,
         detail: float | None = None, manifest: dict | None = None, graphs: dict[str, bytes] | None = None,
         **_: object) -> OnnxBackend:
    """Load an exported directory (format onnx, or qnn's QDQ graphs on the CPU). `detail` other than the export's
    own comes with `graphs`, the export's graphs with the weights of the model folder it sits in at that detail
    (exported.graphs_at, made by the resolver: edgesr_cli/runtime/resolve.py), run instead of the files.
    `manifest`: the export's manifest as the resolver read it (checked here, not read again)."""
    check()
    manifest = read_manifest(model_dir, expect=("onnx", "qnn"), verify=verify, manifest=manifest)
    return OnnxBackend(Path(model_dir), manifest, threads=threads, scale=scale, detail=detail, graphs=graphs)
