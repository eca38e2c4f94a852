"""`edgesr export`: a model directory -> an exported directory that ONNX Runtime, LiteRT/TFLite or
QNN HTP (onnxruntime-qnn) runs, plus what every exported backend shares at load time.

An exported directory holds, for one static LR tile size (batch dynamic where the runtime allows):

- one graph per component: ``encoder`` (LR -> mu, sigma), ``denoise`` (z_t, t [, mu] -> z_h
  prediction) and ``decoder`` (z -> HR), which the shared sampler drives for any number of steps;
- ``fused``: the whole one-step model, ``hr = decode(denoise(mu + sigma * noise, t=1))``, with the
  noise window as an input, so the shared tiling engine still draws (and keeps) the noise;
- ``manifest.json``: format, shapes, scale, tile, quantization, latent geometry, the model config,
  the source model's checksums and the sha256 of every file. Backends verify the checksums on load
  and refuse a file that changed. For an fp32 ONNX export, each graph's ``parameters`` maps its weight
  initializers to the model parameters they hold (checked here: see _parameter_map), which lets ONNX
  Runtime and OpenVINO run the graph at any --detail without torch (backends/exported.py).

Export writes into a hidden temp directory beside the output and swaps it into place
(atomic.replacing_folder), so an interrupted or failed export never leaves a half-written model. Bad
requests (a tile size the architecture cannot take, an unknown SoC, a missing runtime package) fail
before anything is written.

Formats:
- ``onnx``: torch.onnx (dynamo exporter), opset 18, batch dynamic. Optional ``--quantize int8``
  (static QDQ, u8 activations / s8 per-channel weights, calibrated) for CPUs with VNNI.
- ``tflite``: litert-torch, batch 1 (the backend loops over a batch). The same .tflite files are what
  an Android app loads with the NNAPI / GPU delegates.
- ``qnn``: W8A16 QDQ ONNX (uint16 activations, int8 per-channel weights; LayerNorm gamma uint8 as
  the HTP requires), calibrated on real LR tiles, batch 1, plus an EP-context binary per graph
  compiled for a named Snapdragon SoC (``--soc SM8650`` = Galaxy S24). The QDQ graphs are kept so
  the same export can be recompiled for another SoC or checked on the CPU.

This module checks the request, runs the parts and writes the manifest; the parts live in
``exporter/``: the graph wrappers (``graphs``), calibration (``calibration``) and one writer per
format (``onnx_format``, ``qnn_format``, ``tflite_format``). Their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import replacing_folder

# what loading an export needs lives with the backends that load one (backends/ never imports this module)
from .backends.checks import PIP_HINT
from .backends.exported import (EXPORT_VERSION, MANIFEST_FILE, ExportedRunner, check_manifest,  # noqa: F401
                                read_manifest, verify_files)
from .exporter.calibration import calibration_feeds, calibration_tiles
from .exporter.common import ExportError
from .exporter.graphs import (RESIZE_OPS, BicubicUpsample, ChannelLayerNorm, DecoderGraph,  # noqa: F401
                              DenoiseGraph, EncoderGraph, FusedGraph, Geometry, MatrixBicubicUpsample,
                              bicubic_matrix, example_inputs, graph_modules, htp_friendly)
from .exporter.onnx_format import quantize_onnx_int8, write_onnx
from .exporter.qnn_format import DEFAULT_SOC, SOCS, compile_qnn_context, resolve_soc, write_qnn  # noqa: F401
from .exporter.tflite_format import write_tflite
from .model import COMPONENT_FILES, INFERENCE_COMPONENTS, EdgeSR, config_fingerprint, file_sha256

FORMATS = ("onnx", "tflite", "qnn")
ALL_GRAPHS = ("fused", "encoder", "denoise", "decoder")
QUANTIZATIONS = {"onnx": ("none", "int8"), "tflite": ("none",), "qnn": ("w8a16",)}
DEFAULT_QUANTIZATION = {"onnx": "none", "tflite": "none", "qnn": "w8a16"}
DEFAULT_OPSET = 18


def check_tile(model: EdgeSR, tile: int) -> None:
    m = model.lr_multiple
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < m or tile % m:
        lower = (tile // m) * m if isinstance(tile, int) and tile > 0 else 0
        hint = f"{lower} or {lower + m}" if lower >= m else f"{m}"
        raise ExportError(
            f"tile {tile} cannot be exported for {model.cfg.name} at x{model.scale}: LR tiles must be positive "
            f"multiples of {m} (latent grid and UNet downsampling); try --tile {hint}. Nothing was written")


def check_packages(fmt: str) -> None:
    """Raise BackendUnavailable naming the pip command if the packages that export `fmt` are missing."""
    from .backends.base import BackendUnavailable

    need = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "tflite": ("litert_torch",),
            "qnn": ("onnx", "onnxruntime", "onnxscript", "onnxruntime_qnn")}[fmt]
    missing = []
    for mod in need:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
        except Exception as exc:  # a broken install: say so rather than crash
            missing.append(f"{mod} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    if missing:
        hint = "pip install 'edgesr[train]'" if fmt == "onnx" else PIP_HINT[fmt]  # the exporter, not the runtime
        raise BackendUnavailable(f"exporting to {fmt} needs {', '.join(missing)}: {hint}")


def parse_graphs(graphs: str | Sequence[str] | None) -> tuple[str, ...]:
    if graphs is None or graphs == "all":
        return ALL_GRAPHS
    items = [g.strip() for g in (graphs.split(",") if isinstance(graphs, str) else graphs) if g.strip()]
    if "all" in items:
        return ALL_GRAPHS
    bad = [g for g in items if g not in ALL_GRAPHS]
    if bad or not items:
        raise ExportError(f"unknown graph(s) {bad or items}; choose from {', '.join(ALL_GRAPHS)} or all")
    return tuple(g for g in ALL_GRAPHS if g in items)


@dataclasses.dataclass
class ExportResult:
    path: Path
    manifest: dict
    seconds: float


def export_model(
    model: EdgeSR | str | Path,
    out_dir: str | Path,
    fmt: str,
    *,
    tile: int = 128,
    quantize: str | None = None,
    soc: str | None = None,
    calibration: str | Path | torch.Tensor | Sequence[torch.Tensor] | None = None,
    calibration_tiles_count: int = 64,
    graphs: str | Sequence[str] | None = None,
    scale: int | None = None,
    opset: int = DEFAULT_OPSET,
    host_resize: bool | None = None,
    overwrite: bool = True,
    log: Callable[[str], None] | None = None,
    detail: float | None = None,
    dynamic_size: bool = False,
) -> ExportResult:
    """Export `model` (an EdgeSR or a model directory) to `out_dir` in `fmt` (onnx | tflite | qnn). `dynamic_size`
    (fp32 ONNX only): graphs of any tile height and width (multiples of the model's LR multiple), `tile` the size the
    engine cuts photos into; runtimes then run an image smaller than a tile at its own size instead of padded."""
    t_start = time.perf_counter()
    say = log or (lambda _m: None)
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    quant = (quantize or DEFAULT_QUANTIZATION[fmt]).lower()
    if quant not in QUANTIZATIONS[fmt]:
        raise ExportError(f"--quantize {quant} is not available for {fmt}; choose {', '.join(QUANTIZATIONS[fmt])}")
    soc_info = resolve_soc(soc) if fmt == "qnn" else None
    if soc is not None and fmt != "qnn":
        raise ExportError("--soc applies to --format qnn only")
    wanted = parse_graphs(graphs)
    if dynamic_size and (fmt != "onnx" or quant != "none"):
        raise ExportError("--dynamic-size applies to --format onnx without --quantize (fp32)")
    out = Path(out_dir)
    _check_output(out, overwrite)

    source: dict[str, Any]
    if isinstance(model, (str, Path)):
        from .model import DETAIL_DIR, check_detail, load_model_dir

        mdir = Path(model)
        detail_used = check_detail(mdir, detail)
        model = load_model_dir(mdir, scale=scale, detail=detail_used)
        source = {"dir": str(mdir.resolve()), "files": {
            COMPONENT_FILES[c]: file_sha256(mdir / COMPONENT_FILES[c]) for c in INFERENCE_COMPONENTS}}
        source["files"]["config.json"] = file_sha256(mdir / "config.json")
        if detail_used is not None:
            source["detail"] = detail_used
            source["files"].update({f"{DETAIL_DIR}/{COMPONENT_FILES[c]}": file_sha256(mdir / DETAIL_DIR / COMPONENT_FILES[c])
                                    for c in INFERENCE_COMPONENTS})
    else:
        import copy

        if detail is not None:
            raise ExportError("detail applies to a model directory (an EdgeSR module has its weights already)")
        detail_used = None
        model = copy.deepcopy(model).cpu().float().eval()  # the caller's model stays as it was
        if scale is not None and scale != model.cfg.scale:
            model = _rescaled(model, scale)
        source = {"dir": None, "weights_sha256": _weights_sha256(model)}
    model = model.float().eval()
    check_tile(model, tile)
    if fmt in ("tflite", "qnn") or quant != "none":
        check_packages(fmt)
    else:
        check_packages("onnx")
    if quant != "none":
        calib_tiles, calib_label = calibration_tiles(calibration, tile, calibration_tiles_count)
    cfg = model.cfg
    geo = Geometry(tile=tile, scale=cfg.scale, latent_factor=cfg.latent_factor, latent_channels=cfg.latent_channels,
                   conditioning=cfg.conditioning, host_resize=bool(host_resize), dynamic_size=dynamic_size)

    with replacing_folder(out) as tmp:
        extra: dict[str, Any] = {}
        quant_info: dict[str, Any] | None = None
        with _quiet_exporters():
            if fmt == "onnx":
                graph_files, extra = write_onnx(model, geo, wanted, tmp, opset, say)
                if quant == "int8":
                    feeds = calibration_feeds(model, geo, calib_tiles, wanted)
                    graph_files, quant_info = quantize_onnx_int8(tmp, graph_files, feeds, say)
            elif fmt == "tflite":
                graph_files, extra, geo = write_tflite(model, geo, wanted, tmp, say, host_resize)
            else:
                feeds = calibration_feeds(model, geo, calib_tiles, wanted)
                graph_files, extra, quant_info = write_qnn(model, geo, wanted, tmp, opset, feeds, soc_info, say)
        if quant_info is not None:
            quant_info["calibration"] = {"source": calib_label, "tiles": int(calib_tiles.shape[0])}
        if detail_used is not None:
            extra["detail"] = detail_used
        manifest = _manifest(fmt, model, geo, wanted, graph_files, quant_info, source, extra, tmp)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return ExportResult(out, manifest, time.perf_counter() - t_start)


def _rescaled(model: EdgeSR, scale: int) -> EdgeSR:
    new = EdgeSR(dataclasses.replace(model.cfg, scale=scale))
    new.load_state_dict(model.state_dict(), strict=False)
    return new.eval()


def _weights_sha256(model: EdgeSR) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in INFERENCE_COMPONENTS:
        for k, v in sorted(model.components()[name].state_dict().items()):
            h.update(f"{name}.{k}".encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder; choose another -o")
        contents = list(out.iterdir())
        if contents and not (out / MANIFEST_FILE).is_file():
            raise ExportError(f"{out}: exists and is not an edgesr export; choose another -o (nothing was written)")
        if contents and not overwrite:
            raise ExportError(f"{out}: an export is already there (pass --force to replace it)")
    parent = out.resolve().parent
    if not parent.exists():
        raise ExportError(f"{parent}: no such folder")
    if not os.access(parent, os.W_OK):
        raise ExportError(f"{parent}: not writable")


@contextmanager
def _quiet_exporters():
    """The exporters are chatty (warnings, progress bars); keep the CLI's output readable."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow / LiteRT C++ logging
    import logging

    loggers = [logging.getLogger(n) for n in ("", "torch.onnx", "torch.export", "onnxscript", "torch._dynamo",
                                               "torch.fx.experimental.symbolic_shapes", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


def _manifest(fmt: str, model: EdgeSR, geo: Geometry, wanted: Sequence[str], graph_files: dict[str, dict],
              quant: dict | None, source: dict, extra: dict, folder: Path) -> dict:
    cfg = model.cfg
    batch = extra.pop("batch", "dynamic")
    graphs = {}
    for name in wanted:
        ins, outs = geo.io(name)
        b = batch if batch != "dynamic" else "B"
        graphs[name] = {**graph_files[name],
                        "inputs": {k: [b, *v] for k, v in ins.items()},
                        "outputs": {k: [b, *v] for k, v in outs.items()}}
    files = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    return {
        "edgesr_export": EXPORT_VERSION,
        "format": fmt,
        "created_by": f"edgesr {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scale": cfg.scale,
        "tile": {"lr": [geo.tile, geo.tile], "latent": [geo.latent, geo.latent], "hr": [geo.hr, geo.hr],
                 "lr_multiple": model.lr_multiple, **({"dynamic": True} if geo.dynamic_size else {})},
        "batch": batch,
        "latent": {"channels": cfg.latent_channels, "factor": cfg.latent_factor, "conditioning": cfg.conditioning,
                   "schedule": cfg.schedule.to_dict()},
        "encoder_resize": "host" if geo.host_resize else "in_graph",
        "quantization": quant,
        "graphs": graphs,
        "model": {"name": cfg.name, "config": cfg.to_dict(), "fingerprint": config_fingerprint(cfg), "source": source},
        **extra,
        "files": files,
    }
