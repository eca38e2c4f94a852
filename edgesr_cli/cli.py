"""The `edgesr` command line. Device and dtype are chosen here, once, and passed down."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .cli_common import fail, friendly_errors
from .config import DEFAULT_PRESET, PRESETS

app = typer.Typer(
    name="edgesr",
    help="Edge-SD-SR: one-step diffusion x4 super-resolution for laptops and phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgesr {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False) -> None:
    """Edge-SD-SR: one-step diffusion x4 super-resolution for laptops and phones."""


@app.command()
@friendly_errors
def info(
    config: Annotated[str, typer.Option("--config", "-c", help=f"Preset: {', '.join(PRESETS)}.")] = DEFAULT_PRESET,
    tile: Annotated[int, typer.Option("--tile", "-t", help="LR tile size.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Parameters and GFLOPs per component for one LR tile at x4, beside the paper's numbers."""
    import dataclasses

    from .config import get_preset
    from .flops import model_report

    cfg = dataclasses.replace(get_preset(config), scale=4)
    report = model_report(cfg, tile)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"{cfg.name}: one {tile}x{tile} LR tile -> {tile * 4}x{tile * 4} (x4), latent {report['latent']}")
    cols = ("component", "params (M)", "paper params (M)", "GFLOPs (paper conv.)", "paper GFLOPs", "GFLOPs (2xMACs)")
    for col in cols:
        if col == "component":
            table.add_column(col, justify="left", no_wrap=True, min_width=len("lr_encoder+decoder"))
        else:
            table.add_column(col, justify="right")
    paper = report["paper"]
    rows = [("lr_encoder", None), ("unet", "unet"), ("decoder", None), ("lr_encoder+decoder", "autoencoder"), ("total", "total")]
    for name, pkey in rows:
        c = report["components"][name]
        p = paper.get(pkey) if pkey else None
        table.add_row(name, f"{c['params'] / 1e6:.2f}", f"{p['params_m']:.0f}" if p else "",
                      f"{c['gmacs_conv']:.1f}", f"{p['gflops']:.0f}" if p else "", f"{c['gflops']:.1f}")
    console.print(table)
    console.print(
        "[dim]GFLOPs (paper conv.) is the paper's convention: 1 FLOP = 1 multiply-accumulate of a convolution "
        "(linear layers and attention matmuls not counted), the decoder run to the full HR tile. The paper does "
        "not state it; its SD 1.5 figures imply it (docs/paper_cost.md). The paper's columns compare with this one.[/]"
    )
    console.print("[dim]GFLOPs (2xMACs): every conv/linear/matmul/attention multiply-accumulate as 2 FLOPs "
                  "(torch.utils.flop_counter), what `edgesr bench` divides by time.[/]")


def _not_implemented(name: str):
    def cmd(ctx: typer.Context) -> None:
        raise fail(f"`edgesr {name}` is not implemented yet", 3)

    cmd.__doc__ = f"(not implemented yet) {name}"
    return cmd


def _register() -> None:
    import importlib

    from . import cli_train, cli_upscale

    cli_train.register(app)
    cli_upscale.register(app)
    for module in ("cli_export", "cli_eval"):  # export + backends; eval + bench
        try:
            importlib.import_module(f".{module}", __package__).register(app)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{module}":
                raise
        except Exception as exc:  # a broken optional command must not take `upscale` and `train` down with it
            import logging

            logging.getLogger(__name__).error("edgesr: %s could not be loaded: %s", module, exc)
    registered = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    for name in ("export", "bench", "eval"):
        if name not in registered:
            app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_not_implemented(name))


_register()


def main() -> None:
    app()
