"""What every part of the exporter shares: the error type of a request that cannot be carried out, and the
installed version of an exporter package (recorded in the manifest)."""

from __future__ import annotations


class ExportError(ValueError):
    """An export request that cannot be carried out; the message says why and what to do."""


def package_version(module: str) -> str | None:
    """The installed distribution version of the package that provides `module`, or None."""
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:
        return None
