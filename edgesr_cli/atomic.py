"""Atomic writes, for files and for folders: a reader (or a crash) sees the old one or the whole new one, never a part.

A file (:func:`write_atomic`, :func:`write_bytes_atomic`) is written to a hidden temp file in the target's folder
(``.<name>.<8 random characters>.tmp``), flushed and fsynced, given the mode of the file it replaces (a new file:
``0o666 & ~umask``), renamed over the target, and the folder fsynced so the rename itself persists. On any failure,
an interrupt included, the temp file is removed.

A folder (a model directory, an export, a training checkpoint) is built in a hidden temp folder beside it
(:func:`temp_folder`: ``.<name>.tmp-<pid>``) and swapped in (:func:`swap_folder`): every file in it fsynced, the old
folder renamed aside (``.<name>.old-<pid>``), the new one renamed into place (the old one put back if that fails),
the old one removed and the parent fsynced. :func:`replacing_folder` does both around a ``with`` block. Folders left
beside the target by a process that died are cleared before the next one is made (:func:`clear_stale`); an old
folder is put back where the target is missing (the process died between the two renames).

No imports beyond the standard library: any module may use this one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

#: What the temp file's name adds to the target's: tempfile's "." + name + "." + 8 random characters + ".tmp".
TEMP_NAME_EXTRA = len("..") + 8 + len(".tmp")


# ---- files ----------------------------------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], emit: Callable[[IO[bytes]], None]) -> Path:
    """Write the file `path` atomically: `emit` writes its bytes to the open temp file (see the module's text).
    The folder must exist. Whatever `emit` or the file system raises is raised, after the temp file is removed."""
    path = Path(path)
    folder = path.parent
    tmp_name: str | None = None
    try:
        mode = _file_mode_for(path)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False,
                                         prefix=_temp_prefix(path.name, folder), suffix=".tmp") as tmp:
            tmp_name = tmp.name
            emit(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
        tmp_name = None
        fsync_folder(folder)
    except BaseException:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data))


def pathconf(folder: str | os.PathLike[str], name: str, default: int) -> int:
    """os.pathconf of an existing folder, or `default` where the system does not say."""
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value and value > 0 else default


def _temp_prefix(name: str, folder: Path) -> str:
    """The hidden temp file's prefix, ".<name>.", the name shortened so that the temp file's name and path fit
    the file system's limits wherever the output's own do."""
    existing = folder
    while not os.path.isdir(existing) and existing != existing.parent:
        existing = existing.parent
    room = min(pathconf(existing, "PC_NAME_MAX", 255) - TEMP_NAME_EXTRA,
               pathconf(existing, "PC_PATH_MAX", 4096) - 1 - len(os.fsencode(str(folder))) - 1 - TEMP_NAME_EXTRA)
    while name and len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}."


def _file_mode_for(path: Path) -> int:
    """Permission bits for the output: keep a replaced file's, else honour the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Persist a rename in `folder` (best effort; not possible on every platform)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- folders --------------------------------------------------------------------------------------------------


def temp_folder_path(target: str | os.PathLike[str], tag: str | None = None) -> Path:
    """Where :func:`temp_folder` builds `target`'s new contents: ``.<name>.tmp-<tag>`` beside it, the tag this
    process's id by default (processes that write one folder together pass a tag they share instead)."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{os.getpid() if tag is None else tag}")


def temp_folder(target: str | os.PathLike[str], tag: str | None = None) -> Path:
    """A new, empty temp folder beside `target` (:func:`temp_folder_path`; its parents created), after clearing
    what dead processes left there (:func:`clear_stale`)."""
    clear_stale(target)
    tmp = temp_folder_path(target, tag)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def swap_folder(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Put the finished folder `tmp` (beside `target`) in `target`'s place, atomically (see the module's text)."""
    tmp, target = Path(tmp), Path(target)
    _fsync_tree(tmp)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        try:
            tmp.rename(target)
        except BaseException:
            old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    fsync_folder(target.parent)
    return target


@contextlib.contextmanager
def replacing_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """``with replacing_folder(out) as tmp:`` write `out`'s new contents into `tmp`; at the end of the block they
    replace `out` atomically (:func:`swap_folder`), or, where the block raises, `tmp` is removed and `out` kept."""
    tmp = temp_folder(target)
    try:
        yield tmp
        swap_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clear_stale(target: str | os.PathLike[str]) -> None:
    """Remove the temp and old folders beside `target` (``.<name>.tmp-<pid>``, ``.<name>.old-<pid>``) whose process
    died; an old one is put back instead where `target` is missing (it died between the two renames)."""
    target = Path(target)
    for p in target.parent.glob(f".{glob.escape(target.name)}.*-*"):
        kind, _, pid = p.name.rpartition("-")
        if not kind.endswith((".tmp", ".old")) or not pid.isdigit() or not p.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (another write to the same place)
        except ProcessLookupError:
            if kind.endswith(".old") and not target.exists():
                p.rename(target)  # died between the two renames: the previous folder is still good
            else:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def _fsync_tree(folder: Path) -> None:
    """fsync every file below `folder`, then every folder (deepest first), so the contents are on disk before
    the rename that publishes them."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        fsync_folder(root)
