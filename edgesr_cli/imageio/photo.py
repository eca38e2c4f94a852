"""The types and constants every part of image I/O shares: :class:`Photo` (decoded pixels and what it takes to
write them back), :class:`ImageInfo` (what a header says), :class:`ImageError` (one line, "<file>: <problem>"),
the suffixes read and written. Nothing heavy is imported here (numpy only names a type).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: File suffixes (lower case, no dot) that :func:`find_images` treats as images.
EXTENSIONS = frozenset({"png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"})

#: Output format names accepted by ``fmt`` (and as output suffixes) -> Pillow format.
WRITE_FORMATS = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bmp": "BMP",
}

_STDIN_LABEL = "<stdin>"
_STDOUT_LABEL = "<stdout>"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # read by the decoder, written by the encoder


class ImageError(Exception):
    """A problem with one image file, as a one-line ``"<file>: <problem>"`` message.

    ``path`` is the file as the user named it (``"<stdin>"`` for piped input) and
    ``problem`` the bare description, for callers that format messages themselves.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(self.path, problem)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Photo:
    """A decoded photo plus everything needed to write it back faithfully.

    Attributes:
        rgb: float32 array ``(H, W, 3)`` in ``[0, 1]``; grayscale sources are
            expanded to three identical channels.
        alpha: float32 array ``(H, W)`` in ``[0, 1]``, or ``None``.
        grayscale: the source had a single colour channel; written back as gray.
        bit_depth: 8 or 16 -- the source's bits per sample.
        exif: raw EXIF block starting with ``b"Exif\\0\\0"`` (orientation already
            applied to the pixels and reset to 1), or ``None``.
        icc_profile: raw ICC profile bytes, or ``None``.
        format: Pillow's name of the source format (``"PNG"``, ``"JPEG"``, ...).
        source: the path read from, or ``"-"`` for bytes (stdin).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    bit_depth: int = 8
    exif: bytes | None = None
    icc_profile: bytes | None = None
    format: str = ""
    source: str = "-"

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says, before any pixel is decoded: :func:`read_image` hands it to its
    ``check`` (size limits, a memory estimate) so that an image is refused by its declared size."""

    width: int
    height: int
    bit_depth: int  # 8 or 16: the samples read_image will return
    grayscale: bool
    alpha: bool
    format: str  # Pillow's name: "PNG", "JPEG", ...

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
