"""OpenVINO CPU backend: runs an `edgesr export --format onnx` directory (the bundled export included) through
OpenVINO's CPU plugin, in bf16 where the CPU computes it natively (AVX512-BF16, AMX) and fp32 elsewhere.

Why beside ONNX Runtime: ONNX Runtime's CPU provider has no bf16 kernels on x86, so on a bf16 CPU the same
export runs about twice as fast here (and as fast as the torch backend's bf16, without torch's import; README
"Backends"). fp32 (`dtype="fp32"`) matches torch fp32 to float rounding; bf16 is as close to it as the torch
backend's bf16 is.

Threads: one OpenVINO stream per thread, each running whole tiles on its one thread (the THROUGHPUT hint); a batch's
tiles go to the streams as they come free. No thread waits for another, so a core taken by another process slows one
stream instead of every layer of every tile (README "Measuring").

A dynamic-size export (`edgesr export --dynamic-size`, the bundled one) is compiled in two variants, each when first
needed: fixed at the tile the engine cuts (it says which: `expect_tile`; the export's own tile until it does), the
fastest kernels, for whole tiles; and for any size (images smaller than a tile on an axis, which the engine cuts at
their own size).

Compiled models are cached in $XDG_CACHE_HOME/edgesr/openvino (~/.cache/...; $EDGESR_OPENVINO_CACHE names
another folder, or "" for none), in a folder per precision and stream count, keyed by OpenVINO on the graph and its
shapes within it: the first load of an
export compiles it (about 0.4 s for the shipped one), later ones read the blob (about 0.1 s for the variant of any
size, 0.23 s for the one fixed at the tile, which prepares what its first inference would). A cache folder
that cannot be created is skipped, not an error. A graph run at another --detail than the export's (its weights
replaced: the bytes the resolver hands the loader, exported.graphs_at) is compiled each time and not cached: every
detail would leave a blob of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgesr_cli.hw import cpu_has_native_bf16, usable_cpus
from edgesr_cli.modeldir import ModelFileError

from .checks import openvino as check  # noqa: F401 (the backend's check, as the others have)
from .checks import openvino_import
from .exported import ExportedRunner, read_manifest

PRECISIONS = {"fp32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16"}


def cache_dir() -> Path | None:
    """Where compiled models are kept, or None (disabled, or the folder cannot be made)."""
    env = os.environ.get("EDGESR_OPENVINO_CACHE")
    if env is not None:
        if not env.strip():
            return None
        d = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        d = Path(base) / "edgesr" / "openvino"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None


def resolve_precision(dtype: str | None) -> str:
    """OpenVINO's inference precision for --dtype (None / "auto": bf16 where the CPU computes it natively)."""
    if dtype in (None, "auto"):
        return "bf16" if cpu_has_native_bf16() else "f32"
    if dtype not in PRECISIONS:
        raise ValueError(f"--dtype {dtype}: the openvino backend runs fp32 or bf16")
    return PRECISIONS[dtype]


def _keep_outputs(request, userdata) -> None:
    """AsyncInferQueue's callback: the finished request's outputs, copied (the request's buffers are reused), into
    results[i]."""
    results, i = userdata
    results[i] = [np.array(t.data, dtype=np.float32) for t in request.output_tensors]


CACHED_DETAILS = (0.0, 1.0)  # the model folder's two operating points


class OpenVinoBackend(ExportedRunner):
    name = "openvino"

    def __init__(self, export_dir: Path, manifest: dict, threads: int | None = None, scale: int | None = None,
                 dtype: str | None = None, compile_now: bool = True, core=None, detail: float | None = None,
                 graphs: dict[str, bytes] | None = None) -> None:
        super().__init__(export_dir, manifest, scale=scale, detail=detail, graphs=graphs)
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.precision = resolve_precision(dtype)
        self.dtype = {"bf16": "bfloat16", "f32": "float32"}[self.precision]  # as bench records it
        self._core = core if core is not None else openvino_import().Core()
        # one stream per thread, each running whole tiles on its one thread: the tiles of a batch are independent, so
        # no thread waits for another (no barrier per layer as in one request over every thread), which keeps the
        # speed when another process shares a core (README "Backends")
        self.streams = int(threads) if threads is not None else usable_cpus()
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": self.precision}
        if self.streams > 1:
            config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams,
                           "INFERENCE_NUM_THREADS": self.streams})
        else:
            config.update({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1})
        # graphs at another detail than the export's are cached at the two operating points only (--detail 0 and 1):
        # a blob for every detail asked for would pile up
        cache = cache_dir() if not self.sources or self.detail in CACHED_DETAILS else None
        if cache is not None:
            # a folder per precision and stream count: OpenVINO keys a model's blob on its graph and shapes, not on
            # these settings (measured with 2026.4: bf16 and fp32, 1 and 2 streams, all read one blob), so an fp32
            # twin would load a bf16 blob, or fail to
            config["CACHE_DIR"] = str(cache / f"{self.precision}-{self.streams}")
        self._config = config
        self._requests: dict = {}
        self._tile = self.tile  # the LR tile the "tile" variant is fixed at (expect_tile)
        # every graph now, so a file the runtime cannot read fails at load, not mid-image; a dynamic-size export's are
        # compiled when first used instead, in the variant the first photo needs (the export's tile or any size)
        if compile_now and not self.dynamic_size:
            for graph in self.graphs:
                self._request(graph)

    def fp32_twin(self) -> OpenVinoBackend | None:
        """The same export in fp32, compiled when first used: for 16-bit photos, which bf16 would bring back
        holding about 8 bits (as the torch backend's fp32 twin). None when this runner is fp32 already."""
        if self.precision == "f32":
            return None
        return OpenVinoBackend(self.export_dir, self.manifest, threads=self.threads, scale=self.scale,
                               dtype="fp32", compile_now=False, core=self._core, detail=self.detail,
                               graphs=self.sources)

    def expect_tile(self, tile: int) -> None:
        """The engine's LR tile (tiling.upscale_bands says it before the first batch): a dynamic-size export's
        graphs are compiled fixed at it when whole tiles of it come (a static export runs its own tile)."""
        if self.dynamic_size:
            self._tile = int(tile)

    def _shapes(self, graph: str, tile: int) -> dict[str, list]:
        """The graph's inputs at LR tile `tile`, batch aside: the manifest's shapes (at the export's tile) scaled."""
        return {k: [*v[1:2], *(d * tile // self.tile for d in v[2:])]
                for k, v in (self.graphs[graph].get("inputs") or {}).items()}

    def _variant(self, graph: str, feeds: dict[str, np.ndarray]) -> str:
        """"tile" where every input has the shape of a whole tile (batch aside: the export's, or expect_tile's for a
        dynamic-size export), else "any" (a dynamic-size export's graph at another size: compiled for any size,
        about 20% slower per tile than fixed at one tile)."""
        if not self.dynamic_size:
            return "tile"
        shapes = self._shapes(graph, self._tile)
        same = all(list(v.shape[1:]) == shapes.get(k) for k, v in feeds.items())
        return "tile" if same else "any"

    def _request(self, graph: str, variant: str = "tile"):
        key = (graph, variant, self._tile if variant == "tile" else None)
        req = self._requests.get(key)
        if req is None:
            path = self.export_dir / self.graphs[graph]["file"]
            if not path.is_file():
                raise ModelFileError(f"{path}: missing")
            source = self.graph_source(graph)  # the file, or its bytes with the weights at --detail (given)
            try:
                if variant == "tile":
                    # one whole tile, batch 1 too: every request runs one tile (streams, or one by one), and a fully
                    # static shape gets OpenVINO's fastest kernels (bf16, 2 streams, 128 px: 41.4 ms per tile against
                    # 46.9 with the batch left dynamic, and 43.6 for the old static-tile export)
                    model = self._core.read_model(source if isinstance(source, bytes) else str(path))
                    ov = openvino_import()
                    model.reshape({k: ov.PartialShape([1, *v]) for k, v in self._shapes(graph, self._tile).items()})
                    compiled = self._core.compile_model(model, "CPU", self._config)
                elif isinstance(source, bytes):
                    compiled = self._core.compile_model(self._core.read_model(source), "CPU", self._config)
                else:
                    compiled = self._core.compile_model(str(path), "CPU", self._config)
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelFileError(f"{path}: OpenVINO cannot compile it ({msg[:300]})") from None
            names = [o.get_any_name() for o in compiled.outputs]
            # one stream: one request, run here; several: a queue of one request per stream (a lone tile goes there too)
            request, queue = None, None
            if self.streams > 1:
                queue = openvino_import().AsyncInferQueue(compiled, self.streams)
                queue.set_callback(_keep_outputs)
            else:
                request = compiled.create_infer_request()
            req = self._requests[key] = (request, queue, names)
        return req

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        variant = self._variant(graph, feeds)
        request, queue, names = self._request(graph, variant)
        b = next(iter(feeds.values())).shape[0]
        if queue is None:
            if b == 1 or variant == "any":  # "any" takes a batch
                request.infer(feeds)
                return {name: np.array(request.get_output_tensor(i).data, dtype=np.float32)
                        for i, name in enumerate(names)}
            # the tile-fixed graph takes one tile: the tiles one after another
            outs = [self._run(graph, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(b)]
            return {name: np.concatenate([o[name] for o in outs]) for name in names}
        # the batch's tiles one per request, on the streams as they come free; outputs by tile index
        results: list[list[np.ndarray] | None] = [None] * b
        for i in range(b):
            queue.start_async({k: v[i:i + 1] for k, v in feeds.items()}, (results, i))
        queue.wait_all()
        if any(r is None for r in results):  # a request that failed without raising here
            raise RuntimeError(f"OpenVINO returned {sum(r is not None for r in results)} of {b} tiles")
        return {name: np.concatenate([r[j] for r in results]) for j, name in enumerate(names)}

    def describe(self) -> str:
        return f"{super().describe()}, OpenVINO {self.precision}"


def load(model_dir: Path, threads: int | None = None, scale: int | None = None, verify: bool = True,
         dtype: str | None = None, detail: float | None = None, manifest: dict | None = None,
         graphs: dict[str, bytes] | None = None, **_: object) -> OpenVinoBackend:
    """Load an ONNX export (fp32, or int8 QDQ) for OpenVINO's CPU plugin; `detail`, `graphs` and `manifest` as
    onnx_backend.load takes them."""
    check()
    manifest = read_manifest(model_dir, expect=("onnx",), verify=verify, manifest=manifest)
    return OpenVinoBackend(Path(model_dir), manifest, threads=threads, scale=scale, dtype=dtype, detail=detail,
                           graphs=graphs)
