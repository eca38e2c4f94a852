"""Image I/O for the edgesr CLI: read, write and discover photos safely.

This is the layer a photographer's pipeline trusts, so it follows three rules:

* **Fail loudly and clearly.**  Every user-facing problem (not an image, empty,
  truncated, too big, cannot write, format cannot hold the data) raises
  :class:`ImageError`, whose ``str`` is a single line ``"<file>: <problem>"``.
  Programming errors (wrong array shapes, bad arguments) raise ``ValueError``.
* **No silent loss.**  16-bit sources keep 16 bits, transparency, EXIF and the
  ICC profile survive a round trip wherever the output format can hold them.
  Transparency that the output format cannot store is an error, not a drop
  (a fully opaque alpha channel is dropped, since that loses nothing).
* **Never leave a half-written output.**  :func:`write_image` writes to a
  hidden temporary file in the target folder, fsyncs it and atomically renames
  it over the target (:func:`edgesr_cli.atomic.write_atomic`); on failure the
  temporary file is removed.

This module is the public face of :mod:`edgesr_cli.imageio`, which holds the parts, one a file:

==========================  ====================================================================
``imageio/photo.py``        Photo, ImageInfo, ImageError, the suffixes read and written
``imageio/source.py``       bounded input: files, bytes and streams read only as far as allowed
``imageio/decode.py``       :func:`read_image` (what each Pillow mode becomes, and why)
``imageio/decode16.py``     16-bit layouts Pillow reads at 8 bits (colour, planar TIFF, PPM)
``imageio/metadata.py``     EXIF kept through a round trip, orientation, TIFF tags to carry
``imageio/encode.py``       :func:`write_image`, :func:`encode_image`, the PNG and TIFF encoders
``imageio/discover.py``     :func:`find_inputs`: files, folders and globs to (file, relative path)
==========================  ====================================================================
"""

from __future__ import annotations

from .defaults import DEFAULT_COMPRESS_LEVEL, DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MAX_PIXELS
from .imageio.decode import read_image
from .imageio.discover import Inputs, find_images, find_inputs  # noqa: F401 (Inputs: find_inputs' result)
from .imageio.encode import check_writable, encode_image, stored_dtype, write_image
from .imageio.photo import EXTENSIONS, WRITE_FORMATS, ImageError, ImageInfo, Photo
from .imageio.source import byte_limit

__all__ = [
    "DEFAULT_COMPRESS_LEVEL",
    "DEFAULT_MAX_OUTPUT_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "EXTENSIONS",
    "WRITE_FORMATS",
    "ImageError",
    "ImageInfo",
    "Photo",
    "byte_limit",
    "check_writable",
    "encode_image",
    "find_images",
    "find_inputs",
    "read_image",
    "stored_dtype",
    "write_image",
]
