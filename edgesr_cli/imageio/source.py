"""Bounded input for :func:`~edgesr_cli.imageio.decode.read_image`: a path, bytes or a stream (stdin) as one
seekable file object, read only as far as the image's declared size allows (:func:`byte_limit`). A FIFO,
device or socket is refused before a byte is read; a stream is buffered up to the limit and no further.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from pathlib import Path
from typing import IO, Any, Iterator

from .photo import _PNG_SIGNATURE, _STDIN_LABEL, ImageError, _describe


#: Bytes a file may hold beyond its pixels (EXIF, ICC, XMP, previews) before it counts as padding.
_METADATA_BYTES = 64 << 20


def byte_limit(pixels: int | None) -> int | None:
    """The most bytes read for an image of ``pixels`` pixels (None: no limit): twice its samples at 16-bit
    RGBA (no image codec doubles what it compresses) plus 64 MiB of metadata."""
    return None if pixels is None else 16 * int(pixels) + _METADATA_BYTES


def _size_text(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


class _Source:
    """The input as a seekable binary file object (``fp``), with what bounds reading it: a file's size is
    checked against the limits, a stream's buffer is capped (:class:`_CappedStream`)."""

    def __init__(self, fp: IO[bytes], label: str, name: str, size: int | None, max_pixels: int | None) -> None:
        self.fp, self.label, self.name, self.size = fp, label, name, size
        limit = byte_limit(max_pixels)
        if size is not None and limit is not None and size > limit:
            raise ImageError(label, f"{_size_text(size)} file, more than an image within the pixel limit "
                                    f"({max_pixels:,} pixels, --max-pixels) can take up; not read")

    def bound(self, width: int, height: int) -> None:
        """Once the size is declared: refuse a file much larger than that size needs, cap a stream there."""
        limit = byte_limit(width * height)
        if isinstance(self.fp, _CappedStream):
            self.fp.limit(limit, f"a {width}x{height} image")
        elif self.size is not None and self.size > limit:
            raise ImageError(self.label, f"{_size_text(self.size)} file for a {width}x{height} image, "
                                         f"more than its pixels and metadata can take up; not read")

    def bound_early(self) -> None:
        """A PNG declares its size in its first 24 bytes (IHDR): bound the input by it before Pillow parses the
        chunks that follow (a private chunk may declare 2 GB of data, which Pillow would read to skip it)."""
        head = self.fp.read(24)
        self.fp.seek(0)
        if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
            self.bound(*struct.unpack(">II", head[16:24]))


class _CappedStream(io.RawIOBase):
    """A seekable view of a one-way stream (stdin): bytes are read from it only as far as a read or seek
    asks, kept for seeking back, and at most ``cap`` of them (an ImageError beyond)."""

    _CHUNK = 1 << 20

    def __init__(self, stream: IO[bytes], label: str, cap: int | None, what: str) -> None:
        super().__init__()
        self._stream, self._label, self._cap, self._what = stream, label, cap, what
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def limit(self, cap: int | None, what: str) -> None:
        if cap is not None and (self._cap is None or cap < self._cap):
            self._cap, self._what = cap, what
            self._check()

    def _check(self) -> None:
        if self._cap is not None and len(self._buf) > self._cap:
            raise ImageError(self._label, f"more than {_size_text(self._cap)} of input for {self._what}, more "
                                          f"than its pixels and metadata can take up; stopped reading")

    def _fill(self, upto: int | None) -> None:
        """Read from the stream until ``upto`` bytes are buffered (None: to its end) or it ends."""
        while not self._eof and (upto is None or len(self._buf) < upto):
            want = self._CHUNK if upto is None else max(upto - len(self._buf), 1 << 16)
            if self._cap is not None:
                want = min(want, self._cap + 1 - len(self._buf))
            try:
                chunk = self._stream.read(min(want, self._CHUNK))
            except (OSError, ValueError) as exc:
                raise ImageError(self._label, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from exc
            if not chunk:
                self._eof = True
            self._buf += chunk
            self._check()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        self._fill(self._pos + len(view))
        n = max(0, min(len(view), len(self._buf) - self._pos))
        view[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._fill(None)
        data = bytes(self._buf[self._pos:])
        self._pos = len(self._buf)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            self._fill(None)
            offset += len(self._buf)
        elif whence == io.SEEK_CUR:
            offset += self._pos
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos


@contextlib.contextmanager
def _source(src: Any, name: str | None, max_pixels: int | None) -> Iterator[_Source]:
    """The input of read_image as a _Source, open for the duration."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        label = name or _STDIN_LABEL
        if not data:
            raise ImageError(label, "empty file (0 bytes)")
        yield _Source(io.BytesIO(data), label, "-", len(data), max_pixels)
    elif hasattr(src, "read"):
        label = name or _STDIN_LABEL
        stream = _CappedStream(src, label, byte_limit(max_pixels), f"an image within the pixel limit "
                                                                  f"({max_pixels:,} pixels, --max-pixels)"
                               if max_pixels is not None else "an image")
        if not stream.read(1):
            raise ImageError(label, "empty input (0 bytes)")
        stream.seek(0)
        yield _Source(stream, label, "-", None, max_pixels)
    else:
        label = name or str(src)
        with _open_regular_file(Path(src), label) as (fp, size):
            if size == 0:
                raise ImageError(label, "empty file (0 bytes)")
            yield _Source(fp, label, str(src), size, max_pixels)


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _not_regular(label: str, mode: int) -> ImageError:
    if stat.S_ISDIR(mode):
        return ImageError(label, "is a folder, not an image")
    return ImageError(label, f"not a regular file ({_kind(mode)}); only image files are read")


@contextlib.contextmanager
def _open_regular_file(path: Path, label: str) -> Iterator[tuple[IO[bytes], int]]:
    """A regular file open for reading, and its size; nothing is read here. A FIFO, device or socket is
    refused before a single byte is read (opened non-blocking, so a FIFO without a writer cannot hang us,
    and checked with fstat on the open descriptor, so a file swapped after a check is caught too)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(label, _open_problem(exc)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(label, st.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise ImageError(label, f"cannot read ({_describe(exc)})") from exc
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fp:
        try:
            yield fp, st.st_size
        except OSError as exc:  # a read error while Pillow parses or decodes
            raise ImageError(label, f"cannot read ({_describe(exc)})") from exc


def _open_problem(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if exc.errno == errno.EISDIR:
        return "is a folder, not an image"
    return f"cannot read ({_describe(exc)})"
