"""The `edgesr` executable: `edgesr --version` answers before the command line (typer, rich) is imported;
everything else is `edgesr_cli.cli.main`."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"edgesr {__version__}")
        return
    from . import hw

    hw.start_idle_sample()  # the imports below stand in for the idle-CPU sample's wait (hw.idle_cpus)
    from .cli import main as cli_main

    cli_main()
