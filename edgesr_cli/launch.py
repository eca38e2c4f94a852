"""The `edgesr` executable: `edgesr --version` answers before the command line (typer, rich) is imported;
everything else is `edgesr_cli.cli.main`."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"edgesr {__version__}")
        return
    from .cli import main as cli_main

    cli_main()
