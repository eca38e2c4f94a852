"""edgesr: Edge-SD-SR one-step diffusion super-resolution.

    import edgesr_cli
    up = edgesr_cli.load()                 # the shipped model, the fastest backend here, its default detail
    big = up.upscale(image)                # a PIL image or a numpy array (8- or 16-bit, alpha kept), x4

`load` and `Upscaler` are lazy attributes (edgesr_cli/runtime/upscaler.py): importing the package imports
nothing heavy (`edgesr --version` and `--help` start without numpy, Pillow or torch).
"""

from .version import __version__  # noqa: F401


def _checkout_layout() -> None:
    """In a source checkout (tests, `python -m edgesr_cli` from the repository root) the top-level
    backends/ folder is this package's `edgesr_cli.backends`, as pyproject's package-dir installs it; an
    installed package has its own edgesr_cli/backends and is left alone."""
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not os.path.isdir(os.path.join(here, "backends")) and \
            os.path.isfile(os.path.join(root, "backends", "base.py")) and \
            os.path.isfile(os.path.join(root, "pyproject.toml")):
        __path__.append(root)  # noqa: F821 (a package's __path__)


_checkout_layout()


def __getattr__(name: str):
    if name in ("load", "Upscaler"):
        from .runtime import upscaler

        return getattr(upscaler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
