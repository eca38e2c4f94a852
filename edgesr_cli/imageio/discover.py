"""Input discovery: the CLI's inputs (files, folders searched recursively, globs) expanded into
``(file, relative path)`` pairs to mirror under the output folder (:func:`find_inputs`), with what cannot be
processed reported one line each rather than dropped."""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .photo import EXTENSIONS, ImageError, _describe
from .source import _kind


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower().lstrip(".") in EXTENSIONS


def _unreadable(failures: list[ImageError] | None) -> Callable[[OSError], None]:
    """os.walk's onerror: a folder that cannot be listed is one failure (its images are not processed)."""

    def onerror(exc: OSError) -> None:
        if failures is not None:
            failures.append(ImageError(exc.filename or "?", f"cannot read this folder ({_describe(exc)}); "
                                                            f"its images were not processed"))
    return onerror


def _walk_images(folder: Path, failures: list[ImageError] | None = None) -> list[Path]:
    """Image-named entries under ``folder``, recursively, skipping hidden files and folders.

    Symlinked folders are not followed (no cycles); the order is sorted by path. Entries are
    returned whatever they are (:func:`_entry_problem` sorts out FIFOs, devices and loops). A folder that
    cannot be listed (no permission, a name too long) is appended to ``failures``.
    """
    found = []
    for root, dirs, files in os.walk(folder, onerror=_unreadable(failures)):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root, f) for f in files if _is_image_name(f))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _entry_problem(path: Path) -> tuple[str, bool] | None:
    """None for a regular file (after symlinks); else ``(problem, is_failure)``: a symlink loop or a
    broken link is a failure (an image was meant to be there), a FIFO, device or socket is not an
    image file at all and is only skipped."""
    import errno

    try:
        st = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (too many levels of symbolic links)", True
        if path.is_symlink():
            return "broken symlink (its target does not exist)", True
        return f"cannot read ({_describe(exc)})", True
    if stat.S_ISREG(st.st_mode):
        return None
    return f"not a regular file ({_kind(st.st_mode)})", False


def _glob_base(pattern: str) -> Path:
    """The leading part of a glob pattern that has no wildcards."""
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _match_parts(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether path parts match glob pattern parts as glob.glob(recursive=True) matches them: ``**`` takes zero
    or more folders, and a wildcard never matches a hidden name (leading dot)."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for i in range(len(parts) + 1):
            if i and parts[i - 1].startswith("."):
                return False
            if _match_parts(rest, parts[i:]):
                return True
        return False
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match_parts(rest, parts[1:])


def _glob(pattern: str, failures: list[ImageError]) -> list[Path]:
    """glob.glob(pattern, recursive=True), sorted, except that a ``**`` walk enters every real folder once: a
    link back to a folder already walked (``selfdir -> .``) is not followed again, where glob would recurse
    through it until the path is too long. Folders that cannot be listed are appended to ``failures``."""
    if "**" not in Path(pattern).parts:
        return [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
    base = _glob_base(pattern)
    pat = Path(pattern).parts[len(base.parts):]  # Path(".").parts is ()
    hidden = any(p.startswith(".") for p in pat)
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for root, dirs, files in os.walk(base, followlinks=True, onerror=_unreadable(failures)):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(root).relative_to(base).parts
        found.extend(Path(root, n) for n in (*dirs, *files) if _match_parts(pat, (*rel, n)))
        if not rel and _match_parts(pat, ()):
            found.append(base)
    return sorted(found)


@dataclass
class Inputs:
    """What :func:`find_inputs` found: ``pairs`` to process, ``failures`` (one :class:`ImageError`
    per input that cannot be processed: missing, a symlink loop, a FIFO named explicitly, an empty
    folder) and ``skipped`` (one-line notes on special files met inside folders and globs)."""

    pairs: list[tuple[Path, Path]]
    failures: list[ImageError]
    skipped: list[str]


def _expand(raw: str, failures: list[ImageError], skipped: list[str]) -> list[tuple[Path, Path]]:
    """One CLI input -> its (file, relative path) pairs, problems appended to the lists."""
    path = Path(raw)
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name longer than the file system allows, ...
        failures.append(ImageError(raw, f"cannot read ({_describe(exc)})"))
        return []

    def keep(files: list[Path], base: Path) -> list[tuple[Path, Path]]:
        out = []
        for f in files:
            problem = _entry_problem(f)
            if problem is None:
                out.append((f, f.relative_to(base)))
            elif problem[1]:
                failures.append(ImageError(f, problem[0]))
            else:
                skipped.append(f"{f}: skipped, {problem[0]}")
        return out

    if is_dir:
        reported = len(failures)
        files = _walk_images(path, failures)
        if not files and len(failures) == reported:  # (a folder that cannot be listed is reported already)
            failures.append(ImageError(raw, "no images found in this folder "
                                            f"(looking for .{', .'.join(sorted(EXTENSIONS))})"))
        return keep(files, path)
    if os.path.lexists(path):  # a file, or something that is not: named explicitly, so a failure
        problem = _entry_problem(path)
        if problem is not None:
            failures.append(ImageError(raw, problem[0]))
            return []
        return [(path, Path(path.name))]
    if glob.has_magic(raw):
        base = _glob_base(raw)
        found: list[tuple[Path, Path]] = []
        matched = False
        for m in _glob(raw, failures):
            if _is_folder(m):
                files = _walk_images(m, failures)
                matched |= bool(files)
                found.extend((f, f.relative_to(base)) for f, _ in keep(files, m))
            elif _is_image_name(m.name):
                matched = True
                found.extend(keep([m], base))
        if not matched:
            failures.append(ImageError(raw, "no images match this pattern"))
        return found
    failures.append(ImageError(raw, "no such file or folder"))
    return []


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def find_inputs(inputs: list[str]) -> Inputs:
    """Expand CLI inputs into ``(file, relative path for mirroring)`` pairs.

    * a file is taken as is (whatever its suffix); relative path = its name;
    * a folder is searched recursively (sorted, hidden entries skipped) for
      files with a suffix in :data:`EXTENSIONS`; relative path = below the folder;
    * a glob (``*``, ``?``, ``[...]``, ``**`` recursive) keeps matching image
      files (and searches matching folders); relative path = below the
      pattern's fixed leading folder, e.g. ``shots/**/*.jpg`` -> ``2024/a.jpg``.

    Only regular files (after symlinks) are taken: FIFOs, devices and sockets met in folders and
    globs are skipped with a note; symlink loops and broken links are failures of their own, as
    are inputs that do not exist; the other inputs are still expanded. A file reached twice is
    listed once. ``"-"`` (stdin) is not handled here.

    Raises:
        ImageError: two different files would be mirrored to the same relative path.
    """
    failures: list[ImageError] = []
    skipped: list[str] = []
    pairs = [pair for raw in inputs for pair in _expand(raw, failures, skipped)]
    unique: list[tuple[Path, Path]] = []
    seen_files: set[Path] = set()
    seen_rel: dict[Path, Path] = {}
    for file, rel in pairs:
        key = file.resolve()
        if key in seen_files:
            continue
        seen_files.add(key)
        if rel in seen_rel:
            raise ImageError(file, f"would be written to the same output {rel} as {seen_rel[rel]}")
        seen_rel[rel] = file
        unique.append((file, rel))
    return Inputs(unique, failures, skipped)


def find_images(inputs: list[str]) -> list[tuple[Path, Path]]:
    """:func:`find_inputs`'s pairs, for callers that want all or nothing.

    Raises:
        ImageError: the first input that cannot be processed (does not exist, matches nothing,
            a folder/glob holds no images, a symlink loop, not a regular file); or two different
            files would be mirrored to the same relative path.
    """
    found = find_inputs(inputs)
    if found.failures:
        raise found.failures[0]
    return found.pairs
