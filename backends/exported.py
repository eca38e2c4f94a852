"""Loading an `edgesr export` directory: its manifest (checked field by field, files by sha256) and
ExportedRunner, what the onnx / tflite / qnn backends share. The export side (edgesr_cli/export.py)
imports from here, never the other way round. No torch: numpy arrays in and out (the light install), except
the host-side resize of exports made with `encoder_resize: host`, which uses torch's bicubic."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesr_cli import __version__
from edgesr_cli.config import ModelConfig
from edgesr_cli.modeldir import ModelFileError, file_sha256
from edgesr_cli.schedule import SamplingSchedule
from edgesr_cli.tiling import as_array, reflect_pad

MANIFEST_FILE = "manifest.json"
EXPORT_VERSION = 1


def read_manifest(export_dir: str | Path, expect: Sequence[str] | None = None, verify: bool = True) -> dict:
    """Read and check an export's manifest; with `verify`, check every file's sha256.
    Raises ModelFileError with a one-line reason."""
    d = Path(export_dir)
    path = d / MANIFEST_FILE
    if not d.is_dir():
        raise ModelFileError(f"{d}: not a folder")
    if not path.is_file():
        hint = " (this is a PyTorch model folder: use --backend torch, or `edgesr export` it first)" \
            if (d / "config.json").is_file() else ""
        raise ModelFileError(f"{path}: missing; not an edgesr export{hint}")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ModelFileError(f"{path}: unreadable ({exc})") from None
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

    Graphs have one static tile size. Smaller tiles (images smaller than a tile) are padded up to it
    as the tiling engine pads images (tiling.reflect_pad) and the output cropped; larger tiles are
    refused with the size to use.
    Batch: dynamic graphs take the whole batch; batch-1 graphs are run tile by tile."""

    name = "exported"

    def __init__(self, export_dir: Path, manifest: dict, scale: int | None = None) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = manifest
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
        self.static_batch = None if manifest.get("batch") == "dynamic" else int(manifest.get("batch", 1))
        self.host_resize = manifest.get("encoder_resize") == "host"
        self.graphs = dict(manifest["graphs"])
        if "fused" in self.graphs:
            self.fused_one_step = self._fused_one_step

    # -- to implement -----------------------------------------------------------------------------
    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------------
    def _need(self, graph: str) -> None:
        if graph not in self.graphs:
            raise ValueError(f"{self.export_dir} has no {graph} graph (exported: {', '.join(self.graphs)}); "
                             "re-export with --graphs all to sample with more than one step")

    def _call(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = next(iter(feeds.values())).shape[0]
        if self.static_batch is None or b == self.static_batch:
            return self._run(graph, feeds)
        n = self.static_batch
        outs: list[dict[str, np.ndarray]] = []
        for i in range(0, b, n):
            chunk = {k: v[i:i + n] for k, v in feeds.items()}
            short = n - chunk[next(iter(chunk))].shape[0]
            if short:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
            res = self._run(graph, chunk)
            outs.append({k: v[:n - short] for k, v in res.items()})
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _fit(self, x: np.ndarray, size: int, what: str) -> np.ndarray:
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
        return f"{self.name}: {self.manifest['model']['name']} x{self.scale}, tile {self.tile}, {q}"
