"""`edgesr export` (a model dir -> ONNX / TFLite / QNN) and `edgesr backends` (what runs here)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_common import default_model_dir, err_console, friendly_errors
from .defaults import EXPORT_TILE


class ExportFormat(str, Enum):
    onnx = "onnx"
    tflite = "tflite"
    qnn = "qnn"


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def register(app: typer.Typer) -> None:
    @app.command("export")
    @friendly_errors
    def export(
        output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (written to a temp folder, then renamed into place).", show_default=False)],
        fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="onnx: ONNX Runtime CPU; tflite: LiteRT (Android); qnn: Qualcomm HTP (W8A16 + context binary).", show_default=False)],
        model: Annotated[Path | None, typer.Option("--model", "-m", help="Model folder (default: the shipped edge-tiny).")] = None,
        tile: Annotated[int, typer.Option("--tile", "-t", help="Static LR tile size of the exported graphs (use the same --tile to upscale).")] = EXPORT_TILE,
        quantize: Annotated[str | None, typer.Option("--quantize", "-q", help="none | int8 (onnx, CPU) | w8a16 (qnn; the default there).")] = None,
        soc: Annotated[str | None, typer.Option("--soc", help="qnn: Snapdragon SoC to compile the context binary for (SM8650 = Galaxy S24).")] = None,
        calibration: Annotated[Path | None, typer.Option("--calibration", help="Folder of typical input photos to calibrate quantization (qnn, int8).")] = None,
        calibration_tiles: Annotated[int, typer.Option(help="Calibration LR tiles cut from those photos.")] = 64,
        graphs: Annotated[str, typer.Option(help="Graphs to export: all, or a comma list of fused,encoder,denoise,decoder.")] = "all",
        scale: Annotated[int | None, typer.Option("--scale", "-s", help="Export for this scale (default: the model's).")] = None,
        opset: Annotated[int, typer.Option(help="ONNX opset (onnx, qnn).", min=17)] = 18,
        detail: Annotated[Optional[float], typer.Option(
            min=0.0, max=1.0, help="Operating point baked into the export (0 fidelity .. 1 perceptual; default: the model's).")] = None,
        dynamic_size: Annotated[bool, typer.Option(
            "--dynamic-size", help="onnx, fp32: graphs of any tile size (--tile is then the size photos are cut "
            "into); images smaller than a tile run at their own size.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Replace an existing export at --output.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the manifest on stdout.")] = False,
    ) -> None:
        """Export a model for ONNX Runtime, LiteRT/TFLite or QNN HTP, with a checksummed manifest."""
        from .export import export_model

        model_dir = model if model is not None else default_model_dir()
        say = (lambda _m: None) if quiet or as_json else (lambda m: err_console.print(f"[dim]{escape(m)}[/]", highlight=False))
        res = export_model(model_dir, output, fmt.value, tile=tile, quantize=quantize, soc=soc, calibration=calibration,
                           calibration_tiles_count=calibration_tiles, graphs=graphs, scale=scale, opset=opset,
                           overwrite=force, log=say, detail=detail, dynamic_size=dynamic_size)
        m = res.manifest
        if as_json:
            typer.echo(json.dumps(m, indent=2))
            return
        if quiet:
            return
        q = (m.get("quantization") or {}).get("scheme", "fp32")
        extra = f", {m['qnn']['soc']} (HTP v{m['qnn']['htp_arch']})" if "qnn" in m else ""
        sized = "LR tile any size, cut at " if m["tile"].get("dynamic") else "LR tile "
        table = Table(title=f"{m['model']['name']} -> {m['format']} ({q}{extra}), {sized}{tile}, x{m['scale']}, "
                            f"batch {m['batch']}", title_justify="left")
        table.add_column("file")
        table.add_column("size", justify="right")
        table.add_column("sha256")
        for name, info in m["files"].items():
            table.add_row(name, _human(info["bytes"]), info["sha256"][:16])
        Console(stderr=True).print(table)
        err_console.print(f"exported to {escape(str(res.path))} in {res.seconds:.1f} s; run it with: "
                          f"edgesr upscale --backend {m['format']} --model {escape(str(res.path))} --tile {tile} IMAGE",
                          highlight=False, soft_wrap=True)

    @app.command("backends")
    @friendly_errors
    def backends_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List the backends and whether each can run here (with the reason when not)."""
        rows = list_backends()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="edgesr backends")
        for col in ("backend", "usable", "details"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], "[green]yes[/]" if r["usable"] else "[red]no[/]",
                          escape(r["description"] if r["usable"] else r["reason"]))
        Console().print(table)


def list_backends() -> list[dict]:
    """Every registered backend (built-in and entry points), fastest first, with usable / reason."""
    from .backends.base import availability, registry

    rows = []
    for name, spec in sorted(registry().items(), key=lambda kv: (kv[1].speed_rank, kv[0])):
        try:
            reason = availability(name)
        except Exception as exc:  # a check that crashes is a reason, not a traceback
            reason = f"check failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        rows.append({"name": name, "usable": reason is None, "reason": reason or "", "description": spec.description})
    return rows
