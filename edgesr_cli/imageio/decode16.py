"""16-bit layouts Pillow reads at 8 bits, read here bit-exactly for :mod:`edgesr_cli.imageio.decode`.

Pillow limitation: 16-bit colour
--------------------------------
Pillow (checked with 13.0) has no 16-bit-per-channel RGB mode.  It opens 16-bit
RGB/RGBA PNG and TIFF files as 8-bit ``RGB``/``RGBA`` (keeping only the high
byte of each sample), 16-bit gray+alpha PNG as 8-bit ``RGBA``, and it cannot
*write* 16-bit colour PNG or TIFF at all (:mod:`edgesr_cli.imageio.encode` has its own
encoders).  This module therefore:

* reads such files bit-exactly with Pillow's own (correct) decompression and
  PNG un-filtering: the normal decode gives the high byte of every sample, a
  second decode with the byte order of the tile's raw mode swapped
  (``RGB;16B`` <-> ``RGB;16L``) gives the low byte, and the two are
  recombined; a gray + alpha PNG is re-decoded with the 8-bit ``RGBA`` raw
  mode, which keeps all four bytes of each pixel;
* reads 16-bit planar TIFF (uncompressed or Deflate) and 16-bit PPM (binary or plain) from the file itself.
"""

from __future__ import annotations

import re
import sys
import zlib
from typing import IO, Any

import numpy as np
from PIL import Image, TiffImagePlugin

from .photo import ImageError


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and value else value


# Raw modes Pillow uses for 16-bit colour data it can only store as 8-bit.
_RAW16_COLOUR = re.compile(r"^(RGB|RGBA|LA);16([BLN])$")


def _tile_rawmode(tile: Any) -> str | None:
    args = tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _single_rawmode(im: Image.Image) -> str | None:
    """The raw mode shared by all of ``im``'s tiles, or None."""
    modes = {_tile_rawmode(t) for t in (im.tile or [])}
    return modes.pop() if len(modes) == 1 else None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    if hasattr(tile, "_replace"):
        return tile._replace(args=new_args)
    return (tile[0], tile[1], tile[2], new_args)


def _decode_with_rawmode(fp: IO[bytes], rawmode: str) -> np.ndarray:
    fp.seek(0)
    im = Image.open(fp)
    im.tile = [_with_rawmode(t, rawmode) for t in im.tile]
    im.load()
    return np.asarray(im)


def _decode_16bit_colour(im: Image.Image, fp: IO[bytes], rawmode: str) -> np.ndarray | None:
    """Bit-exact samples of 16-bit RGB(A) / gray+alpha data Pillow keeps at 8 bits.

    ``im`` has already been loaded normally, which gives the high byte of every
    sample.  Pillow's decoders (zlib + PNG un-filtering, libtiff, raw) work on
    whole 16-bit samples and only the final "unpack" step drops the low byte, so
    decoding a second time (from ``fp``, the file) with the opposite byte order yields the low bytes.
    A 16-bit gray+alpha PNG (4 bytes per pixel) is instead decoded once with the
    8-bit RGBA unpacker, which keeps all four bytes.  Returns ``(H, W, C)``
    uint16, or None if this Pillow does not cooperate.
    """
    m = _RAW16_COLOUR.match(rawmode)
    assert m is not None
    base, order = m[1], m[2]
    if order == "N":
        order = "L" if sys.byteorder == "little" else "B"
    try:
        if base == "LA":
            if order != "B":
                return None
            raw = _decode_with_rawmode(fp, "RGBA").astype(np.uint16)
            return np.stack([(raw[..., 0] << 8) | raw[..., 1],
                             (raw[..., 2] << 8) | raw[..., 3]], axis=2)
        high = np.asarray(im)
        low = _decode_with_rawmode(fp, f"{base};16{'L' if order == 'B' else 'B'}")
    except Exception:  # noqa: BLE001 - any failure means "this trick is unavailable"
        return None
    if high.shape != low.shape or high.ndim != 3:
        return None
    return (high.astype(np.uint16) << 8) | low.astype(np.uint16)


# ---- 16-bit layouts Pillow reads at 8 bits: planar TIFF, PPM -----------------------------------------

_DEFLATE = (8, 32946)  # TIFF Adobe Deflate, old-style Deflate


def _planar_deep(im: Image.Image) -> bool:
    """A TIFF stored plane by plane (PlanarConfiguration 2) with more than 8 bits per sample: Pillow
    unpacks each plane with an 8-bit unpacker (wrong colours) and, through libtiff, keeps only the high
    byte; :func:`_decode_planar` reads it."""
    tags = getattr(im, "tag_v2", None) if im.format == "TIFF" else None
    if tags is None or tags.get(284, 1) != 2 or int(_first(tags.get(277, 1)) or 1) < 2:
        return False
    bits = tags.get(258, 8)
    return max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _decode_planar(im: Image.Image, fp: IO[bytes], label: str) -> np.ndarray:
    """The samples of a 16-bit planar TIFF, ``(H, W, planes)`` uint16, read strip by strip (or tile by tile)
    from the file: uncompressed or Deflate, with or without the horizontal predictor."""
    tags = im.tag_v2
    width, height = im.size
    planes = int(_first(tags[277]))
    bits = tags.get(258)
    if set(bits if isinstance(bits, tuple) else (bits,)) != {16}:
        raise ImageError(label, f"planar TIFF with {bits} bits per sample is not supported (16 is)")
    compression, predictor = int(tags.get(259, 1)), int(tags.get(317, 1))
    if compression not in (1, *_DEFLATE) or predictor not in (1, 2):
        name = TiffImagePlugin.COMPRESSION_INFO.get(compression, str(compression))
        raise ImageError(label, f"16-bit planar TIFF with {name} compression (predictor {predictor}) is not "
                                f"supported (uncompressed or Deflate are); save it interleaved (chunky) first")
    tiled = 273 not in tags
    if not tiled:
        offsets, counts = tags[273], tags.get(279, ())
        tw, th = width, min(int(tags.get(278, height)), height)
    else:
        offsets, counts = tags.get(324, ()), tags.get(325, ())
        tw, th = int(tags.get(322, 0)), int(tags.get(323, 0))
    if tw < 1 or th < 1:
        raise ImageError(label, "corrupt TIFF (no strip or tile size)")
    across, down = -(-width // tw), -(-height // th)
    if len(offsets) != planes * across * down or len(counts) != len(offsets):
        raise ImageError(label, f"corrupt TIFF ({len(offsets)} strips or tiles for {planes} planes of "
                                f"{across * down})")
    dtype = np.dtype(">u2" if tags.prefix == b"MM" else "<u2")
    out = np.empty((height, width, planes), dtype=np.uint16)
    for k, (offset, count) in enumerate(zip(offsets, counts)):
        plane, i = divmod(k, across * down)
        y, x = (i // across) * th, (i % across) * tw
        rows = th if tiled else min(th, height - y)  # tiles are whole, the last strip ends short
        block = _read_block(fp, offset, count, rows * tw * 2, compression, label).view(dtype).reshape(rows, tw)
        if predictor == 2:
            block = np.cumsum(block, axis=1, dtype=np.uint16)  # undoes the differencing, modulo 2**16
        h, w = min(rows, height - y), min(tw, width - x)
        out[y:y + h, x:x + w, plane] = block[:h, :w]
    return out


def _read_block(fp: IO[bytes], offset: int, count: int, need: int, compression: int, label: str) -> np.ndarray:
    """``need`` bytes of one strip or tile at ``offset`` (``count`` bytes in the file), inflated when compressed."""
    fp.seek(offset)
    data = fp.read(count)
    if compression in _DEFLATE:
        try:
            data = zlib.decompressobj().decompress(data, need)
        except zlib.error as exc:
            raise ImageError(label, f"truncated or corrupt image data ({exc})") from exc
    if len(data) < need:
        raise ImageError(label, f"truncated or corrupt image data (a strip holds {len(data)} of {need} bytes)")
    return np.frombuffer(data[:need], dtype=np.uint8)


def _ppm_maxval(im: Image.Image) -> int:
    """The declared maximum of an RGB PPM (Pillow scales one above 255 down to 8 bits), else 0."""
    if im.format != "PPM" or im.mode != "RGB" or len(im.tile or ()) != 1:
        return 0
    args = im.tile[0][3]
    return int(args[1]) if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) else 0


def _decode_ppm16(im: Image.Image, fp: IO[bytes], label: str) -> tuple[np.ndarray, int]:
    """A PPM with more than 8 bits per sample: ``((H, W, 3) uint16, maxval)``, binary or plain."""
    tile = im.tile[0]
    maxval = _ppm_maxval(im)
    width, height = im.size
    n = width * height * 3
    fp.seek(tile[2])
    if tile[0] == "ppm":  # binary: big-endian 16-bit samples
        data = fp.read(2 * n)
        if len(data) < 2 * n:
            raise ImageError(label, f"truncated or corrupt image data ({len(data)} of {2 * n} bytes)")
        values = np.frombuffer(data, dtype=">u2")
    else:  # plain (ASCII) samples, comments allowed
        words = re.sub(rb"#[^\n]*", b" ", fp.read()).split()
        if len(words) < n:
            raise ImageError(label, f"truncated or corrupt image data ({len(words)} of {n} samples)")
        try:
            values = np.array(words[:n], dtype=np.int64)
        except ValueError as exc:
            raise ImageError(label, "corrupt image data (a sample is not a number)") from exc
    if values.size and int(values.max()) > maxval:
        raise ImageError(label, f"corrupt image data (a sample above the declared maximum {maxval})")
    return values.astype(np.uint16).reshape(height, width, 3), maxval
