"""Loading an `edgesr export` directory: its manifest (checked field by field, files by sha256) and
ExportedRunner, what the onnx / tflite / qnn backends share. The export side (edgesr_cli/export.py)
imports from here, never the other way round. No torch: numpy arrays in and out (the light install), except
the host-side resize of exports made with `encoder_resize: host`, which uses torch's bicubic.

Any --detail on an fp32 ONNX export: its manifest maps each graph's weight initializers to the model parameters they
hold (`graphs.NAME.parameters`, written and checked by the exporter), so a runtime can be handed the graph with those
initializers' bytes replaced by the two operating points' weights interpolated in numpy (modeldir.interpolated_tensors,
the torch path's arithmetic). The bytes are replaced in the serialized graph, before the runtime reads it, because
ONNX Runtime's SessionOptions.add_initializer takes effect after its graph optimizations (measured: fused and folded
weights kept the file's values, up to 0.27 apart from torch at detail 0). The weights come from the model folder the
export sits in (the bundled layout, MODEL/onnx/), checked against the manifest's sha256 of its source files. The
resolver (edgesr_cli/runtime/resolve.py) makes those bytes (graphs_at) and hands them to the backend's loader (its
`graphs` option): the runners here read what they are given and never turn a detail into weights themselves."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesr_cli.config import ModelConfig
from edgesr_cli.modeldir import ModelFileError, file_sha256
from edgesr_cli.runtime.schedule import SamplingSchedule
from edgesr_cli.runtime.tiling import as_array, reflect_pad
from edgesr_cli.version import __version__

MANIFEST_FILE = "manifest.json"
EXPORT_VERSION = 1


def read_manifest(export_dir: str | Path, expect: Sequence[str] | None = None, verify: bool = True,
                  manifest: dict | None = None) -> dict:
    """Read and check an export's manifest; with `verify`, check every file's sha256. `manifest`: the file's
    contents as read already (by the resolver, edgesr_cli/runtime/resolve.py), checked without reading it again.
    Raises ModelFileError with a one-line reason."""
    d = Path(export_dir)
    path = d / MANIFEST_FILE
    if manifest is None:
        manifest = _read_json(d)
    if not isinstance(manifest, dict) or "format" not in manifest or "graphs" not in manifest:
        raise ModelFileError(f"{path}: not an edgesr export manifest")
    version = manifest.get("edgesr_export")
    if version != EXPORT_VERSION:
        raise ModelFileError(f"{path}: export format version {version!r} is not supported by edgesr {__version__} "
                             f"(expects {EXPORT_VERSION}); re-export the model")
    check_manifest(path, manifest)
    if expect is not None and manifest["format"] not in expect:
        raise ModelFileError(f"{d}: is a {manifest['format']} export; use --backend {manifest['format']}")
    if verify:
        verify_files(d, manifest)
    return manifest


def _read_json(d: Path) -> Any:
    path = d / MANIFEST_FILE
    if not d.is_dir():
        raise ModelFileError(f"{d}: not a folder")
    if not path.is_file():
        hint = " (this is a PyTorch model folder: use --backend torch, or `edgesr export` it first)" \
            if (d / "config.json").is_file() else ""
        raise ModelFileError(f"{path}: missing; not an edgesr export{hint}")
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ModelFileError(f"{path}: unreadable ({exc})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v)


def _lookup(manifest: dict, dotted: str) -> Any:
    value: Any = manifest
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


# Every field the loaders read: (dotted name, check, what it must be).
_MANIFEST_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("format", lambda v: isinstance(v, str) and v != "", "the export format's name"),
    ("scale", lambda v: _is_int(v) and v in (2, 4, 8), "2, 4 or 8"),
    ("tile.lr", _pair, "a list of two integers >= 1"),
    ("tile.latent", _pair, "a list of two integers >= 1"),
    ("tile.lr_multiple", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    ("tile.dynamic", lambda v: v is None or isinstance(v, bool), "true or false"),
    ("batch", lambda v: v is None or v == "dynamic" or (_is_int(v) and v >= 1), '"dynamic" or an integer >= 1'),
    ("graphs", lambda v: isinstance(v, dict) and v and all(isinstance(g, dict) and isinstance(g.get("file"), str)
                                                           for g in v.values()),
     "an object of graphs, each with a file name"),
    ("files", lambda v: v is None or (isinstance(v, dict) and all(
        isinstance(f, dict) and isinstance(f.get("sha256"), str) for f in v.values())),
     "an object of files, each with a sha256"),
    ("model.config", lambda v: isinstance(v, dict), "an object (the model's config)"),
)


def check_manifest(path: Path, manifest: dict) -> None:
    """Validate the manifest field by field; ModelFileError names the file, the field and the value."""
    for name, ok, rule in _MANIFEST_FIELDS:
        value = _lookup(manifest, name)
        if not ok(value):
            raise ModelFileError(f"{path}: field {name} must be {rule}, got {json.dumps(value)[:80]}")
    try:
        ModelConfig.from_dict(manifest["model"]["config"], where="model.config.")
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if text.startswith("field ") and not text.startswith("field model.config."):  # a range check
            text = "field model.config." + text[len("field "):]
        raise ModelFileError(f"{path}: {text}") from None


def verify_files(export_dir: Path, manifest: dict) -> None:
    files = manifest.get("files") or {}
    for graph in manifest["graphs"].values():
        for key in ("file", "context"):
            if key in graph and graph[key] not in files:
                raise ModelFileError(f"{export_dir / graph[key]}: not listed in the manifest's checksums; re-export")
    for name, info in files.items():
        p = export_dir / name
        if not p.is_file():
            raise ModelFileError(f"{p}: missing (listed in {MANIFEST_FILE}); re-export the model")
        got = file_sha256(p)
        if got != info["sha256"]:
            raise ModelFileError(f"{p}: checksum mismatch, the file changed after export "
                                 f"(sha256 {got[:12]}..., manifest {info['sha256'][:12]}...); re-export the model")


class ExportedRunner:
    """What the onnx / tflite / qnn backends share: the Runner attributes from the manifest, and
    encode / denoise / decode / fused_one_step on top of a runtime's `_run(graph, feeds)`.

    Graphs have one static tile size, or any (manifest tile.dynamic: `fixed_tile` None, and the engine cuts an image
    smaller than a tile at its own size). Smaller tiles than a static graph's are padded up to it as the tiling
    engine pads images (tiling.reflect_pad) and the output cropped; larger tiles are refused with the size to use.
    Batch: dynamic graphs take the whole batch; batch-1 graphs are run tile by tile."""

    name = "exported"
    tiles_per_run: int | None = None  # a dynamic-batch graph is run this many tiles at a time (None: the whole batch)

    def __init__(self, export_dir: Path, manifest: dict, scale: int | None = None, detail: float | None = None,
                 graphs: dict[str, bytes] | None = None) -> None:
        """`graphs`: {graph: bytes} read instead of the files, the export's graphs with the weights at `detail`
        (graphs_at, made by the resolver); `detail` other than the export's own needs them."""
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        # the detail the graphs run at when it is not the export's own (None: the graph files' weights as they are)
        baked = manifest.get("detail")
        self.detail = None if detail is None or (isinstance(baked, (int, float)) and abs(float(baked) - float(detail))
                                                 <= 1e-6) else float(detail)
        self.sources: dict[str, bytes] = dict(graphs) if graphs and self.detail is not None else {}
        if self.detail is not None and set(self.sources) != set(manifest["graphs"]):
            raise ValueError(f"{export_dir}: detail {self.detail:g} is not the export's own: its loader takes the "
                             "graphs at that detail (exported.graphs_at; runtime/resolve.py's load_backend makes them)")
        cfg = ModelConfig.from_dict(manifest["model"]["config"])
        if scale is not None and int(scale) != int(manifest["scale"]):
            raise ValueError(f"{export_dir} was exported for x{manifest['scale']}, not x{scale}; re-export with --scale {scale}")
        self.cfg = cfg
        self.scale = int(manifest["scale"])
        self.latent_factor = cfg.latent_factor
        self.latent_channels = cfg.latent_channels
        self.lr_multiple = int(manifest["tile"]["lr_multiple"])
        self.conditioning = cfg.conditioning
        self.schedule = SamplingSchedule(cfg.schedule)
        self.tile = int(manifest["tile"]["lr"][0])
        self.latent_tile = int(manifest["tile"]["latent"][0])
        self.dynamic_size = bool(manifest["tile"].get("dynamic"))
        self.fixed_tile = None if self.dynamic_size else self.tile  # what the engine must cut (tiling.runner_plan)
        self.static_batch = None if manifest.get("batch") == "dynamic" else int(manifest.get("batch", 1))
        self.host_resize = manifest.get("encoder_resize") == "host"
        self.graphs = dict(manifest["graphs"])
        if "fused" in self.graphs:
            self.fused_one_step = self._fused_one_step

    # -- to implement -----------------------------------------------------------------------------
    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------------
    def graph_source(self, graph: str) -> Path | bytes:
        """What a runtime reads for `graph`: its file, or, at another detail, the bytes it was given (weights replaced)."""
        source = self.sources.get(graph)
        return self.export_dir / self.graphs[graph]["file"] if source is None else source

    def _need(self, graph: str) -> None:
        if graph not in self.graphs:
            raise ValueError(f"{self.export_dir} has no {graph} graph (exported: {', '.join(self.graphs)}); "
                             "re-export with --graphs all to sample with more than one step")

    def _call(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = next(iter(feeds.values())).shape[0]
        n = self.static_batch if self.static_batch is not None else self.tiles_per_run
        if n is None or b == n or (self.static_batch is None and b < n):
            return self._run(graph, feeds)
        outs: list[dict[str, np.ndarray]] = []
        for i in range(0, b, n):
            chunk = {k: v[i:i + n] for k, v in feeds.items()}
            short = n - chunk[next(iter(chunk))].shape[0] if self.static_batch is not None else 0
            if short:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
            res = self._run(graph, chunk)
            outs.append({k: v[:n - short] for k, v in res.items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _fit(self, x: np.ndarray, size: int, what: str) -> np.ndarray:
        if self.dynamic_size:  # any size the engine cut (multiples of the LR multiple, as it cuts them)
            return np.ascontiguousarray(as_array(x), dtype=np.float32)
        h, w = x.shape[-2:]
        if h > size or w > size:
            raise ValueError(f"{what} of {h}x{w} is larger than this export's static {size}x{size} "
                             f"(LR tile {self.tile}): run with --tile {self.tile}")
        x = as_array(x)
        if h < size or w < size:
            x = reflect_pad(x, 0, size - h, 0, size - w)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _lr_in(self, lr: np.ndarray) -> np.ndarray:
        x = self._fit(lr, self.tile, "LR tile")
        if self.host_resize:  # exports for LiteRT / QNN (their runtimes lack the in-graph resize); needs torch
            import torch

            from edgesr_cli.models.lr_encoder import resize_to_half_hr

            x = resize_to_half_hr(torch.from_numpy(x), self.scale).numpy()
        return np.ascontiguousarray(x, dtype=np.float32)

    # -- the Runner calls: numpy arrays in and out ----------------------------------------------------------
    def encode(self, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._need("encoder")
        h, w = lr.shape[-2:]
        lh, lw = h * self.scale // self.latent_factor, w * self.scale // self.latent_factor
        out = self._call("encoder", {"lr": self._lr_in(lr)})
        return out["mu"][..., :lh, :lw].copy(), out["sigma"][..., :lh, :lw].copy()

    def denoise(self, z: np.ndarray, t: np.ndarray, mu: np.ndarray | None) -> np.ndarray:
        self._need("denoise")
        h, w = z.shape[-2:]
        feeds = {"z": self._fit(z, self.latent_tile, "latent tile"),
                 "t": np.ascontiguousarray(as_array(t).reshape(-1))}
        if self.conditioning == "unidirectional":
            if mu is None:
                raise ValueError("the unidirectional model needs the LR latent mu to denoise")
            feeds["mu"] = self._fit(mu, self.latent_tile, "latent tile")
        out = self._call("denoise", feeds)
        return out["zh"][..., :h, :w].copy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        self._need("decoder")
        h, w = z.shape[-2:]
        out = self._call("decoder", {"z": self._fit(z, self.latent_tile, "latent tile")})
        f = self.latent_factor
        return out["hr"][..., :h * f, :w * f].copy()

    def _fused_one_step(self, lr_tiles: np.ndarray, noise: np.ndarray) -> np.ndarray:
        h, w = lr_tiles.shape[-2:]
        out = self._call("fused", {"lr": self._lr_in(lr_tiles), "noise": self._fit(noise, self.latent_tile, "noise window")})
        s = self.scale
        return out["hr"][..., :h * s, :w * s].copy()

    def describe(self) -> str:
        q = (self.manifest.get("quantization") or {}).get("scheme", "fp32")
        at = "" if self.detail is None else f", detail {self.detail:g}"
        return f"{self.name}: {self.manifest['model']['name']} x{self.scale}, tile {self.tile}, {q}{at}"


# ---- weights at another detail (see the module docstring) -------------------------------------------------------------
# the backends that take an export's graphs with their weights replaced (ExportedRunner subclasses given graphs_at's
# bytes by the resolver) say so in the registry (backends/base.py: BackendSpec.reweights)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, wire type, payload start, payload end) of each protobuf field in buf[start:end]."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, j = _varint(buf, i)
        elif wire == 1:
            j = i + 8
        elif wire == 5:
            j = i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            j = i + n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        if j > end:
            raise ValueError("field runs past its message")
        yield field, wire, i, j
        i = j


def initializer_data(buf: bytes) -> dict[str, tuple[int, int, int]]:
    """{name: (offset, byte length, ONNX data type)} of the raw data of every initializer of an ONNX model's main graph,
    read from the serialized bytes (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto: data_type = 2,
    name = 8, raw_data = 9); initializers stored another way (typed fields, external data) are left out. No onnx
    package: what the light install has."""
    out: dict[str, tuple[int, int, int]] = {}
    for field, wire, s, e in _fields(buf, 0, len(buf)):
        if field != 7 or wire != 2:
            continue
        for gfield, gwire, gs, ge in _fields(buf, s, e):
            if gfield != 5 or gwire != 2:
                continue
            name, raw, dtype = None, None, None
            for tfield, twire, ts, te in _fields(buf, gs, ge):
                if tfield == 8 and twire == 2:
                    name = bytes(buf[ts:te]).decode("utf-8", "replace")
                elif tfield == 9 and twire == 2:
                    raw = (ts, te - ts)
                elif tfield == 2 and twire == 0:
                    dtype = _varint(buf, ts)[0]
            if name is not None and raw is not None and dtype is not None:
                out[name] = (raw[0], raw[1], dtype)
    return out


ONNX_FLOAT = 1  # TensorProto.FLOAT


def replace_initializers(buf: bytes, values: dict[str, np.ndarray]) -> bytes:
    """The serialized ONNX model `buf` with the named float32 initializers' raw data replaced by `values` (each of
    the initializer's own size; its layout is C order, little-endian, as ONNX stores raw data)."""
    where = initializer_data(buf)
    out = bytearray(buf)
    for name, value in values.items():
        if name not in where:
            raise ModelFileError(f"the graph has no initializer {name!r} stored as raw data; re-export the model")
        offset, length, dtype = where[name]
        data = np.ascontiguousarray(value, dtype="<f4").tobytes()
        if dtype != ONNX_FLOAT or len(data) != length:
            raise ModelFileError(f"initializer {name!r}: {len(data)} bytes of float32 for {length} bytes of ONNX "
                                 f"type {dtype} in the graph; re-export the model")
        out[offset:offset + length] = data
    return bytes(out)


def parameter_map(manifest: dict, graph: str) -> dict[str, tuple[str, str, bool]] | None:
    """{initializer: (component, parameter key, stored transposed)} for a graph, from its manifest entry, or None when
    the export records none (made before it was written, quantized, or a weight the exporter folded away)."""
    raw = (manifest.get("graphs") or {}).get(graph, {}).get("parameters")
    if not isinstance(raw, dict) or not raw:
        return None
    out: dict[str, tuple[str, str, bool]] = {}
    for name, entry in raw.items():
        if not (isinstance(entry, list) and len(entry) in (2, 3) and all(isinstance(x, str) for x in entry)
                and (len(entry) == 2 or entry[2] == "T")):
            raise ModelFileError(f"{MANIFEST_FILE}: graphs.{graph}.parameters.{name} must be [component, key] or "
                                 f"[component, key, \"T\"], got {json.dumps(entry)[:80]}")
        out[name] = (entry[0], entry[1], len(entry) == 3)
    return out


def weights_folder(export_dir: Path, manifest: dict, verify: bool = True) -> tuple[Path | None, str]:
    """(the model folder whose two operating points an export can be run with, "") or (None, why not): the folder the
    export sits in (MODEL/onnx/, the bundled layout), whose files must be those the export was made from (the
    manifest's sha256 of each source file, the detail/ point's included; with `verify` False only their presence)."""
    if manifest.get("format") != "onnx" or manifest.get("quantization"):
        return None, "it is not an fp32 ONNX export"
    if any(parameter_map(manifest, g) is None for g in manifest["graphs"]):
        return None, "its manifest maps no weights to the graph (made by an older edgesr: export it again)"
    source = (manifest.get("model") or {}).get("source") or {}
    files = source.get("files") if isinstance(source, dict) else None
    from edgesr_cli.modeldir import COMPONENT_FILES, DETAIL_DIR, INFERENCE_COMPONENTS

    needed = [COMPONENT_FILES[c] for c in INFERENCE_COMPONENTS] + [f"{DETAIL_DIR}/{COMPONENT_FILES[c]}"
                                                                   for c in INFERENCE_COMPONENTS]
    if not isinstance(files, dict) or not all(n in files for n in needed):
        return None, "it was not made from a model folder with both operating points"
    folder = Path(export_dir).resolve().parent
    for name, sha in files.items():
        p = folder / name
        if not p.is_file():
            return None, f"the model folder it was made from is not beside it ({p} missing)"
        if verify and file_sha256(p) != sha:
            return None, f"{p} is not the file it was exported from (sha256 differs)"
    return folder, ""


def graph_bytes(export_dir: Path, manifest: dict, graph: str, detail: float) -> bytes:
    """The graph file's bytes (checked against the manifest's sha256) with its weights at `detail` (in [0, 1], as
    the resolver checked it): the model folder's two operating points interpolated in numpy
    (modeldir.interpolated_tensors) into the initializers the manifest maps. ModelFileError on one line when the
    export cannot be run at another detail."""
    return _graphs_at_detail(export_dir, manifest, [graph], detail)[graph]


def graphs_at(export_dir: Path, manifest: dict, detail: float) -> dict[str, bytes]:
    """{graph: bytes} of every graph of the export with its weights at `detail` (graph_bytes): what a reweighting
    backend's loader takes as its `graphs` option (the resolver, edgesr_cli/runtime/resolve.py, makes them)."""
    return _graphs_at_detail(export_dir, manifest, list(manifest["graphs"]), detail)


def _graphs_at_detail(export_dir: Path, manifest: dict, graphs: list[str], detail: float) -> dict[str, bytes]:
    """graph_bytes for each of `graphs`, the model folder checked and its weights interpolated once for them all."""
    import hashlib

    from edgesr_cli.modeldir import interpolated_tensors

    folder, why = weights_folder(export_dir, manifest)
    if folder is None:
        raise ModelFileError(f"{export_dir}: runs at the detail it was exported with only: {why}")
    files, mappings = {}, {}
    wanted: dict[str, set[str]] = {}
    for graph in graphs:
        path = Path(export_dir) / manifest["graphs"][graph]["file"]
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{path}: unreadable ({exc})") from None
        info = (manifest.get("files") or {}).get(path.name)
        if info is None or hashlib.sha256(buf).hexdigest() != info.get("sha256"):
            raise ModelFileError(f"{path}: checksum mismatch or not listed, the file changed after export; "
                                 "re-export the model")
        files[graph], mappings[graph] = buf, parameter_map(manifest, graph) or {}
        for component, key, _ in mappings[graph].values():
            wanted.setdefault(component, set()).add(key)
    weights = interpolated_tensors(folder, float(detail), wanted)
    out = {}
    for graph in graphs:
        values = {}
        for name, (component, key, transposed) in mappings[graph].items():
            value = weights[component][key]
            values[name] = value.T if transposed else value
        out[graph] = replace_initializers(files[graph], values)
    return out
