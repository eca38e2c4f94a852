"""edgesr's version, in a module of its own: what the package, `edgesr --version` and the export manifests say,
importable without importing anything else of the package."""

__version__ = "0.1.0"
