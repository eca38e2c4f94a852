"""edgesr: Edge-SD-SR one-step diffusion super-resolution."""

__version__ = "0.1.0"


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
