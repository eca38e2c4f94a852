"""Shared CLI plumbing: one-line errors for user mistakes, signals as interruptions, --shard. The shared options
and enums are in cli_options.py."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import signal
import threading
from typing import Callable, Iterator, TypeVar

import typer
from rich.console import Console

from .cli_options import Device, Precision  # noqa: F401 (cli_train imports them from here)
from .modeldir import default_model_dir  # noqa: F401 (the shipped model's folder; commands and tests import it here)

err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """An error caused by input; printed as one line, exit code 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where SIGINT raises KeyboardInterrupt, so that the same cleanup
    runs (the temp file of the output in progress is removed) and the exit code is 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.code = 128 + signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """(`interrupted` or `terminated (SIGTERM)`, exit code) for a KeyboardInterrupt or Terminated."""
    if isinstance(exc, Terminated):
        return f"terminated ({exc.name})", exc.code
    return "interrupted", 130


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """While inside, SIGTERM (timeout, Slurm, docker stop) and SIGHUP (a closed terminal) raise
    Terminated in the main thread; later ones of the same run are ignored while it cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in wanted:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    wanted = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    old = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that are the user's to fix. Those of modules that need torch count only once their module
    is loaded (before that, nothing raised them), so that the light install reports errors without torch."""
    from .backends.base import BackendUnavailable
    from .io import ImageError
    from .modeldir import ModelFileError

    found: list[type[BaseException]] = [UserError, BackendUnavailable, ImageError, ModelFileError]
    for module, name in (("data", "DataError"), ("metrics", "MetricUnavailable"), ("training.common", "TrainError")):
        loaded = sys.modules.get(f"{__package__}.{module}")
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


# Packages the light install (`pip install edgesr`: numpy, Pillow, OpenVINO or ONNX Runtime) leaves out -> the
# extra with them.
EXTRAS = {"torch": "torch", "safetensors": "torch", "scipy": "torch", "onnx": "train", "onnxscript": "train"}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message for a command that needs a package of an extra, or None for any other missing module."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    from .backends.base import extra_hint

    also = "" if extra == "train" else " (training and export: the same with edgesr[train])"
    return f"this command needs {top}, which the light install leaves out: {extra_hint(extra)}{also}"


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def printable(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name, ...) written as escapes."""
    return text.translate(_CONTROL)


def print_error(message: str) -> None:
    """`error: <message>` on one line of stderr, whatever characters the file names in it hold."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> "typer.Exit":
    print_error(message)
    return typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    """Our own messages are one line by design (a newline in them is part of a file name, shown
    escaped); a library's may run on, and only its first line is shown."""
    from .io import ImageError

    text = str(exc)
    if not text:
        return type(exc).__name__
    return text if isinstance(exc, (UserError, ImageError)) else text.splitlines()[0]


def friendly_errors(fn: F) -> F:
    """Turn user-caused exceptions into `error: <one line>` and a non-zero exit; bugs keep tracebacks
    (EDGESR_DEBUG=1 shows tracebacks for user errors too)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            if os.environ.get("EDGESR_DEBUG"):
                raise
            raise fail(_one_line(exc), getattr(exc, "code", 2)) from None
        except ValueError as exc:  # library input validation (config, shapes, options)
            if os.environ.get("EDGESR_DEBUG"):
                raise
            raise fail(str(exc).splitlines()[0], 2) from None
        except ModuleNotFoundError as exc:  # an extra that is not installed
            message = missing_extra(exc)
            if message is None or os.environ.get("EDGESR_DEBUG"):
                raise
            raise fail(message, 2) from None
        except KeyboardInterrupt as exc:
            raise fail(*interruption(exc)) from None

    return wrapper  # type: ignore[return-value]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """--shard 'i/n' (0 <= i < n) of `upscale` and `teacher-pairs`; None stays None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text!r}: need 0 <= i < n")
    return i, n
