"""LiteRT / TFLite backend: runs an `edgesr export --format tflite` directory on the CPU (XNNPACK).

The interpreter is ai-edge-litert's (`ai_edge_litert.interpreter.Interpreter`, the maintained
successor of tflite-runtime); tflite-runtime's Interpreter is used only when it is what is installed.
The exported graphs have batch 1; the shared runner feeds them tile by tile. On Android the same
.tflite files load in the LiteRT Interpreter with the NNAPI or GPU delegate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr_cli.modeldir import ModelFileError

from .base import BUILTIN, BackendUnavailable
from .exported import ExportedRunner, read_manifest

_HINT = BUILTIN["tflite"].install  # the registry's install command


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tflite-runtime"
    except ImportError:
        return None, None


def check() -> None:
    try:
        cls, _ = _interpreter_class()
    except Exception as exc:  # a broken install
        raise BackendUnavailable(f"the LiteRT interpreter does not load ({str(exc).splitlines()[0]}): reinstall with "
                                 f"{_HINT}") from None
    if cls is None:
        raise BackendUnavailable(f"no TFLite interpreter installed (ai-edge-litert or tflite-runtime): {_HINT}")


class TFLiteBackend(ExportedRunner):
    name = "tflite"

    def __init__(self, export_dir: Path, manifest: dict, threads: int | None = None, scale: int | None = None) -> None:
        super().__init__(export_dir, manifest, scale=scale)
        check()
        self._cls, self.runtime = _interpreter_class()
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self._runners: dict = {}
        for graph in self.graphs:
            self._runner(graph)

    def _runner(self, graph: str):
        if graph not in self._runners:
            info = self.graphs[graph]
            path = self.export_dir / info["file"]
            if not path.is_file():
                raise ModelFileError(f"{path}: missing")
            try:
                it = self._cls(model_path=str(path), num_threads=self.threads)
                r = it.get_signature_runner(info.get("signature", "serving_default"))
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelFileError(f"{path}: the TFLite interpreter cannot load it ({msg[:300]})") from None
            self._runners[graph] = (it, r)  # keep the interpreter alive beside its runner
        return self._runners[graph][1]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._runner(graph)(**feeds)
        return {k: np.array(v, copy=True) for k, v in out.items()}


def load(model_dir: Path, threads: int | None = None, scale: int | None = None, verify: bool = True,
         manifest: dict | None = None, **_: object) -> TFLiteBackend:
    check()
    manifest = read_manifest(model_dir, expect=("tflite",), verify=verify, manifest=manifest)
    return TFLiteBackend(Path(model_dir), manifest, threads=threads, scale=scale)
