"""The one resolution point of the inference path: which backend runs which folder, at which detail and tile.

    r = resolve(model, backend, detail, tile, dtype, device)   # reads config.json / manifest.json / detail.json once
    runner, runner16 = load(r, threads)                        # the registry's loader for r.backend, on r.folder

`resolve` reads the model folder or export named (its manifest.json, and detail.json where a detail has to be
known) once, asks the backend registry (backends/base.py) what each backend loads and can do, and returns a
Resolved: the backend, the folder it loads (a model folder's bundled export for ONNX Runtime and OpenVINO), the
detail actually used, the tile (--tile, else an export's static tile, else DEFAULT_TILE; checked against the
model's LR multiple and the export's tile here and nowhere else), the scale, the LR multiple, the model config and
whether 16-bit photos get an fp32 twin. `edgesr upscale`, `eval`, `bench` and the Python API
(edgesr_cli.load, runtime/upscaler.py) all go through it; load_backend is the same loading for a named folder as
it is (tests, tools). It is also the one place a detail becomes an export's weights: an export run at another
detail than its own is handed to its loader with its graphs' bytes at that detail (exported.graphs_at: the model
folder's two points interpolated by modeldir), so `--detail` walks cli_upscale -> resolve -> exported -> modeldir to
the weights; a model folder's loader reads its own (cli_upscale -> resolve -> torch_backend -> model). Errors are
one line: ModelFileError for a folder that cannot be used, BackendUnavailable for a backend that cannot run here or
cannot run this, ValueError for an option the model cannot take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .. import hw
from ..backends import base
from ..backends.base import BackendSpec, BackendUnavailable
from ..config import ModelConfig
from ..defaults import DEFAULT_TILE
from ..modeldir import (BUNDLED_EXPORT, CONFIG_FILE, ModelFileError, bundled_export, check_detail, default_detail,
                        default_model_dir, read_config)
from .runner import Backend
from .tiling import check_tile

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Resolved:
    """What `resolve` decided, before anything loads."""

    backend: str  # a registered backend's name
    model: Path  # the folder named (a model folder or an export)
    folder: Path  # what the backend loads: `model`, or its bundled export
    detail: float | None  # the detail used (None: a single operating point, or an export that records none)
    tile: int  # LR tile
    scale: int
    lr_multiple: int
    config: ModelConfig
    fp32_twin: bool  # 16-bit photos run on runner.fp32_twin() (dtype auto, and the backend has one)
    device: str = "auto"
    dtype: str | None = None  # None: the backend's own choice
    manifest: dict | None = None  # the export's manifest as read (None for a model folder)
    load_detail: float | None = None  # the detail the loader is given (None: a model folder's default, an export's
    #                                   graph as it is)


class Loaded(NamedTuple):
    runner: Backend
    runner16: Backend | None  # the fp32 twin for 16-bit photos, or None


def resolve(model: str | Path | None = None, backend: str = "auto", detail: float | None = None,
            tile: int | None = None, dtype: str | None = None, device: str = "auto",
            scale: int | None = None) -> Resolved:
    """Resolve `model` (a model folder or an export; None: the shipped model) for `backend` (a registered name or
    auto: the fastest that can run it here). `dtype` None or "auto": the backend's choice; `scale`: refused unless
    it is the model's."""
    d = Path(model) if model is not None else default_model_dir()
    dtype = None if dtype == "auto" else dtype
    manifest = read_manifest_json(d)
    if manifest is None and not (d / CONFIG_FILE).is_file():
        raise ModelFileError(f"{d}: not a model directory (no config.json or manifest.json)")
    folder, bundled = d, False
    if manifest is not None:
        specs = base.registry()  # auto may pick a plugin that runs the export's format
        spec = base.get_spec(_export_backend(d, manifest["format"], backend, specs), specs)
        if spec.loads != "export":
            raise ModelFileError(f"{d}: an exported model ({manifest['format']}); the {spec.name} backend runs model "
                                 "folders (config.json + safetensors)")
    else:
        spec = base.get_spec(_model_backend(d, backend))  # auto picks a built-in one
        if spec.loads == "export":
            export = bundled_export(d) if BUNDLED_EXPORT in spec.formats else None
            if export is None:
                raise _no_export(d, spec)
            folder, bundled, manifest = export, True, read_manifest_json(export)
    base.check_options(spec, device, dtype)
    if manifest is not None:
        from ..backends.exported import read_manifest

        manifest = read_manifest(folder, verify=False, manifest=manifest)  # every field checked (files: at load)
        config = ModelConfig.from_dict(manifest["model"]["config"])
        model_scale, multiple = int(manifest["scale"]), int(manifest["tile"]["lr_multiple"])
        static = int(manifest["tile"]["lr"][0]) if spec.static_tile else None
        if manifest["tile"].get("dynamic"):  # graphs of any size: cut as a model folder is (DEFAULT_TILE)
            static = None
        used, load_detail = export_detail_for(spec, folder, manifest, detail, bundled_in=d if bundled else None)
    else:
        config = read_config(d)
        model_scale, multiple, static = config.scale, config.lr_multiple(), None
        # --detail goes to the loader as given (model.load_model_dir checks it against the folder); without one, the
        # folder's default (its detail.json, read here once) is handed to the loader as if given
        used = default_detail(d) if detail is None else float(detail)
        load_detail = used
    if scale is not None and scale != model_scale:
        raise ValueError(f"--scale {scale}: the model {d} upscales x{model_scale}")
    return Resolved(spec.name, d, folder, used, tile_for(tile, multiple, static), model_scale, multiple, config,
                    spec.fp32_twin and dtype is None, device, dtype, manifest, load_detail)


def load(r: Resolved, threads: int | None = None) -> Loaded:
    """The runner `r` describes, loaded by its backend's registered loader, and its fp32 twin where 16-bit photos
    need one."""
    options: dict[str, Any] = {"device": r.device, "threads": threads, "detail": r.load_detail}
    if r.dtype is not None:
        options["dtype"] = r.dtype
    if r.manifest is not None:
        options["manifest"] = r.manifest
    runner = _call_loader(base.get_spec(r.backend), r.folder, options)
    return Loaded(runner, fp32_twin(runner) if r.fp32_twin else None)


def load_backend(name: str, folder: str | Path, **options: Any) -> Backend:
    """The registered backend `name` loaded on `folder` as it is (a model folder, or an export), with its loader's
    options (threads, device, dtype, detail, ...): an export at another detail than its own where the backend can
    run one (export_detail_for)."""
    spec = base.get_spec(name)
    folder = Path(folder)
    detail = options.pop("detail", None)
    if (folder / MANIFEST_FILE).is_file():  # an export (a model folder's loader reports a broken one itself)
        if detail is not None:
            from ..backends.exported import read_manifest

            _check_usable(spec)
            options["manifest"] = read_manifest(folder, verify=False)
            detail = export_detail_for(spec, folder, options["manifest"], detail)[1]
    return _call_loader(spec, folder, {**options, "detail": detail})


def fp32_twin(runner: Backend) -> Backend | None:
    """The same loaded model computing in fp32, for 16-bit photos (bf16 keeps 8 bits of mantissa, so a 16-bit photo
    run in bf16 comes back holding about 8 bits): runner.fp32_twin() where the registry says the backend has one,
    None where it has none or the runner is fp32 already."""
    spec = base.lookup(runner.name)
    return runner.fp32_twin() if spec is not None and spec.fp32_twin else None


def resolve_backend(model_dir: str | Path, name: str, detail: float | None = None) -> tuple[str, Path]:
    """(backend, folder to load) that `resolve` picks for `--backend name` on `model_dir`."""
    r = resolve(model_dir, name, detail)
    return r.backend, r.folder


def read_manifest_json(d: Path) -> dict | None:
    """The export's manifest.json as read (checked to be JSON naming its format), None for a folder without one."""
    path = d / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:  # a broken manifest is not "no manifest"
        raise ModelFileError(f"{path}: not a readable JSON manifest ({str(exc).splitlines()[0]})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or not fmt:
        raise ModelFileError(f"{path}: field format must be the export format's name, got {json.dumps(fmt)[:80]}")
    return data


def detect_model_format(model_dir: str | Path) -> str | None:
    """'torch' for a model directory, the export format for an exported one (its manifest says), else None."""
    d = Path(model_dir)
    manifest = read_manifest_json(d)
    if manifest is not None:
        return manifest["format"]
    return "torch" if (d / CONFIG_FILE).is_file() else None


def tile_for(tile: int | None, multiple: int, static: int | None) -> int:
    """--tile as every command means it: the LR tile asked for, else an export's static tile, else DEFAULT_TILE (a
    model folder, a dynamic-size export); a multiple of the model's LR multiple, and at most a static export's tile
    (a smaller one is padded up to it)."""
    if tile is None:
        tile = static or DEFAULT_TILE
    elif static is not None and tile > static:
        raise ValueError(f"--tile {tile}: this exported model runs tiles of at most {static} LR pixels")
    check_tile(tile, multiple)
    return tile


def export_detail_for(spec: BackendSpec, export: Path, manifest: dict, detail: float | None,
                      bundled_in: Path | None = None) -> tuple[float | None, float | None]:
    """(the detail used, the detail to load) for the export `export` on `spec`'s backend at --detail `detail`:
    the graph as it is at its own detail (or none asked), else its weights at `detail` where the backend reweights
    and the model folder it was made from is beside it; else BackendUnavailable on one line. `bundled_in`: the
    model folder whose bundled export this is (the message then says how to run every detail)."""
    baked = baked_detail(manifest)
    if detail is None or (baked is not None and abs(baked - float(detail)) <= 1e-6):
        return (baked if detail is None else float(detail)), None
    why = reweighting_unavailable(export, spec.name, manifest)
    if why is not None:
        was = "(none recorded)" if baked is None else f"{baked:g}"
        if bundled_in is not None:
            raise BackendUnavailable(f"--detail {float(detail):g}: the ONNX export in {bundled_in} runs at detail "
                                     f"{was} only ({why}); the torch backend runs every detail: "
                                     f"{base.TORCH_EXTRA_HINT}")
        was = "none recorded" if baked is None else f"{baked:g}"
        raise BackendUnavailable(f"{export}: this export runs at the detail it was exported with ({was}): {why}; "
                                 f"export again with --detail {float(detail):g}")
    check_detail(export.resolve().parent, detail)  # the model folder's own rule (its detail.json, read once)
    return float(detail), float(detail)


def reweighting_unavailable(export_dir: str | Path, name: str, manifest: dict | None = None) -> str | None:
    """None when the backend `name` can run the export at any detail (its graph with the weights of the model folder
    it sits in, interpolated: backends/exported.py), else why not. Cheap: the files' sha256 are checked at load."""
    from ..backends.exported import read_manifest, weights_folder

    spec = base.lookup(name)
    if spec is None or not spec.reweights:
        return f"the {name} backend runs an export's own weights only"
    try:
        manifest = read_manifest(export_dir, verify=False, manifest=manifest)
    except ValueError as exc:
        return str(exc)
    return weights_folder(Path(export_dir), manifest, verify=False)[1] or None


def baked_detail(manifest: dict) -> float | None:
    """The detail an export was made at (its manifest's `detail`), None when not recorded."""
    value = manifest.get("detail")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _export_backend(d: Path, fmt: str, name: str, specs: dict[str, BackendSpec]) -> str:
    """The backend for an export: the one named, or (auto) the one named after its format where it can run here,
    else another that runs the format (a QNN export's QDQ graphs also run on ONNX Runtime's CPU provider)."""
    if name != "auto":
        return name
    runs = [s.name for s in specs.values() if s.loads == "export" and fmt in s.formats]
    if fmt in runs and (len(runs) == 1 or base.availability(fmt) is None):
        return fmt
    usable = [n for n in runs if n != fmt and base.availability(n) is None]
    if usable:
        return usable[0]
    if not runs:
        raise BackendUnavailable(f"{d}: a {fmt} export, which no registered backend runs")
    return runs[0]


def _model_backend(d: Path, name: str) -> str:
    """The backend for a model folder: the one named, or (auto) torch where it is installed (bf16 on this project's
    CPUs), else the folder's bundled export on OpenVINO where the CPU computes bf16 natively (about twice ONNX
    Runtime's fp32 per tile, README "Backends") or ONNX Runtime is not installed (the base install on x86-64 has
    OpenVINO alone), else on ONNX Runtime (the base install elsewhere)."""
    if name != "auto":
        return name
    if base.availability("torch") is None:
        return "torch"
    if bundled_export(d) is None:
        raise BackendUnavailable(f"{d}: a PyTorch model folder needs torch: {base.TORCH_EXTRA_HINT}")
    has_ov, has_ort = base.availability("openvino") is None, base.availability("onnx") is None
    if has_ov and (hw.cpu_has_native_bf16() or not has_ort):
        return "openvino"
    if not has_ort:
        raise BackendUnavailable(f"{d}: none of torch, OpenVINO and ONNX Runtime is installed: pip install edgesr "
                                 f"(OpenVINO on x86-64, ONNX Runtime elsewhere) or {base.TORCH_EXTRA_HINT}")
    return "onnx"


def _no_export(d: Path, spec: BackendSpec) -> BackendUnavailable:
    if BUNDLED_EXPORT in spec.formats:
        return BackendUnavailable(f"{d} holds no ONNX export ({BUNDLED_EXPORT}/manifest.json): make one with "
                                  f"`edgesr export -f onnx -m {d} -o OUT` and pass -m OUT")
    fmt = spec.formats[0] if spec.formats else spec.name
    return BackendUnavailable(f"{d}: a model folder; the {spec.name} backend runs exports: make one with "
                              f"`edgesr export -f {fmt} -m {d} -o OUT` and pass -m OUT")


def _check_usable(spec: BackendSpec) -> None:
    reason = base.availability(spec.name)
    if reason is not None:
        raise BackendUnavailable(f"backend {spec.name!r} is not usable here: {reason}")


def _call_loader(spec: BackendSpec, folder: Path, options: dict[str, Any]) -> Backend:
    _check_usable(spec)
    if spec.reweights and options.get("detail") is not None and options.get("manifest") is not None:
        options = {**options, **_reweighted(Path(folder), options["manifest"], float(options["detail"]),
                                            bool(options.get("verify", True)))}
    return base.resolve_ref(spec.loader)(Path(folder), **options)


def _reweighted(export: Path, manifest: dict, detail: float, verify: bool = True) -> dict[str, Any]:
    """The loader's options for the export `export` run at `detail`, not its own (export_detail_for said it can
    be): its files checked against the manifest's sha256 first (`verify`), as its loader checks them (then not
    again), and its graphs' bytes with the weights at `detail` (`graphs`, read by the runtime instead of the files)."""
    from ..backends.exported import graphs_at, read_manifest

    manifest = read_manifest(export, verify=verify, manifest=manifest)
    return {"manifest": manifest, "verify": False, "graphs": graphs_at(export, manifest, detail)}
