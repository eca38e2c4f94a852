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
from .defaults import EXPORT_TILE

_app = typer.Typer(
    name="edgesr",
    help="Edge-SD-SR: one-step diffusion x4 super-resolution for laptops and phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help, not rich's option table: the table cut long option names (--png-compressi…) at 80 columns
    rich_markup_mode=None,
)
console = Console()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgesr {__version__}")
        raise typer.Exit()


@_app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False) -> None:
    """Edge-SD-SR: one-step diffusion x4 super-resolution for laptops and phones."""


@_app.command()
@friendly_errors
def info(
    config: Annotated[str, typer.Option("--config", "-c", help=f"Preset: {', '.join(PRESETS)}.")] = DEFAULT_PRESET,
    tile: Annotated[int, typer.Option("--tile", "-t", help="LR tile size.")] = EXPORT_TILE,
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


# the module that registers each command: `edgesr CMD` builds only CMD's module (each imports a few more
# modules and typer inspects every signature it registers); --help, unknown names and `app` get them all
_COMMAND_MODULES = {"train": "cli_train", "distill": "cli_train", "finetune-decoder": "cli_train",
                    "teacher-pairs": "cli_train",
                    "upscale": "cli_upscale", "export": "cli_export", "backends": "cli_export",
                    "eval": "cli_eval", "bench": "cli_eval", "info": None}
_OPTIONAL = {"cli_export": ("export",), "cli_eval": ("eval", "bench")}  # may be absent from a build
_registered: set[str] = set()


def _register(modules: set[str] | None = None) -> typer.Typer:
    import importlib

    wanted = set(filter(None, _COMMAND_MODULES.values())) if modules is None else modules
    for module in sorted(wanted - _registered):
        _registered.add(module)
        try:
            importlib.import_module(f".{module}", __package__).register(_app)
        except ModuleNotFoundError as exc:
            if module not in _OPTIONAL or exc.name != f"{__package__}.{module}":
                raise
            _placeholders(module)
        except Exception as exc:  # a broken optional command must not take `upscale` and `train` down with it
            if module not in _OPTIONAL:
                raise
            import logging

            logging.getLogger(__name__).error("edgesr: %s could not be loaded: %s", module, exc)
            _placeholders(module)
    return _app


def _placeholders(module: str) -> None:
    """`edgesr export|eval|bench` say they are unavailable rather than 'no such command'."""
    registered = {c.name or (c.callback.__name__ if c.callback else "") for c in _app.registered_commands}
    for name in _OPTIONAL[module]:
        if name not in registered:
            _app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
                _not_implemented(name))


def __getattr__(name: str):
    if name == "app":  # the whole command line (tests, documentation tools)
        return _register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    import sys

    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in _COMMAND_MODULES and "--help" not in sys.argv[1:2]:
        module = _COMMAND_MODULES[command]
        _register({module} if module else set())
    else:
        _register()
    sys.exit(_run(_app))


def _run(app: typer.Typer) -> int:
    """Run the command line and return its exit code. A usage error typer finds (an unknown option, a bad
    value, a missing argument) is one line on stderr and exit 2, as edgesr's own are, not typer's boxed usage."""
    try:  # typer >= 0.20 carries its own click
        from typer._click import exceptions as click_errors
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover - older typer on click
        from click import exceptions as click_errors
        from click.exceptions import Abort

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # `edgesr` alone: the help, as before
        exc.show()
        return exc.exit_code
    except click_errors.ClickException as exc:
        code = getattr(exc, "exit_code", 2)
        fail(_usage_line(exc, click_errors), code)
        return code
    except Abort:
        fail("aborted", 1)
        return 1
    return code if isinstance(code, int) else 0


def _usage_line(exc: Exception, click_errors) -> str:
    """A usage error on one line naming the option and the value given: `--quality 0: input should be ...`."""
    import sys

    message = exc.format_message().splitlines()[0] if exc.format_message() else type(exc).__name__
    param = getattr(exc, "param", None)
    if isinstance(exc, click_errors.BadParameter) and param is not None and getattr(param, "opts", None):
        reason = (str(getattr(exc, "message", "") or "").splitlines() or [""])[0].removeprefix("Value error, ")
        value = _given(param.opts, sys.argv[1:])
        if reason and value is not None:
            message = f"{param.opts[0]} {value}: {reason[:1].lower()}{reason[1:]}"
    ctx = getattr(exc, "ctx", None)
    return message + (f" (see {ctx.command_path} --help)" if ctx is not None else "")


def _given(opts: list[str], argv: list[str]) -> str | None:
    """The value given on the command line for an option with these names (the last one, as the parser keeps)."""
    value = None
    for i, arg in enumerate(argv):
        for opt in opts:
            if arg == opt and i + 1 < len(argv):
                value = argv[i + 1]
            elif opt.startswith("--") and arg.startswith(opt + "="):
                value = arg[len(opt) + 1:]
    return value
