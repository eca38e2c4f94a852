"""Metadata: the EXIF block kept through a round trip (the orientation applied to the pixels and reset to 1,
patched in place so maker notes stay byte for byte), the TIFF tags worth carrying from one TIFF to another,
and the orientation itself (:func:`_orient`). ICC profiles travel as bytes on the Photo."""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
from PIL import ExifTags, Image

_ORIENTATION = ExifTags.Base.Orientation  # 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"


# IFD0 tags worth carrying between TIFF files (the rest describe the pixel layout).
_TIFF_IFD0_KEEP = frozenset({
    270,    # ImageDescription (unless it is a library's layout record, see _is_layout_record)
    271,    # Make
    272,    # Model
    274,    # Orientation
    282,    # XResolution
    283,    # YResolution
    296,    # ResolutionUnit
    305,    # Software
    306,    # DateTime
    315,    # Artist
    33432,  # Copyright
})
_SUB_IFDS = (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)  # 0x8769, 0x8825


def _exif_for(im: Image.Image) -> tuple[bytes | None, int]:
    """Return ``(exif bytes with orientation reset to 1, orientation to apply)``."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF must not block the pixels
        return None, 1
    if orientation not in range(1, 9):
        orientation = 1

    raw = im.info.get("exif")
    if isinstance(raw, bytes) and raw:
        if not raw.startswith(_EXIF_PREFIX):
            raw = _EXIF_PREFIX + raw  # WebP stores EXIF without the JPEG-style prefix
        if orientation != 1:
            raw = _exif_set_orientation(raw, 1)
            if raw is None:  # orientation tag not where expected: re-serialise
                exif[_ORIENTATION] = 1
                raw = exif.tobytes()
        return raw, orientation

    if im.format == "TIFF" or "Raw profile type exif" in im.info:
        # TIFF keeps EXIF in its own directory (Pillow already applied the
        # orientation); PNG may carry it as an ImageMagick text chunk.
        cleaned = _clean_exif(exif)
        if cleaned is not None and _ORIENTATION in cleaned:
            cleaned[_ORIENTATION] = 1
        return (cleaned.tobytes() if cleaned is not None else None), orientation
    return None, orientation


_IMAGE_DESCRIPTION = 270
# ImageDescription values written by imaging libraries to describe the pixel layout (tifffile's
# JSON or older "shape=(...)" record, ImageJ's header, OME-XML): they would no longer match the
# upscaled output. A person's caption is kept.
_LAYOUT_RECORD = re.compile(r'^\s*(\{\s*"shape"\s*:|shape=\(|ImageJ=|<\?xml[^>]*>\s*<OME[\s>]|<OME[\s>])')


def _is_layout_record(value: Any) -> bool:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return isinstance(value, str) and _LAYOUT_RECORD.match(value) is not None


def _clean_exif(exif: Image.Exif | bytes | None) -> Image.Exif | None:
    """Keep descriptive IFD0 tags + Exif/GPS sub-IFDs; None if nothing is left.

    Drops layout tags (sizes, strip offsets, ...) that must never be copied from
    one TIFF to another, and the Interop pointer whose offset would go stale.
    """
    if exif is None:
        return None
    if isinstance(exif, bytes):
        loaded = Image.Exif()
        try:
            loaded.load(exif)
        except Exception:  # noqa: BLE001
            return None
        exif = loaded
    for tag in _SUB_IFDS:
        if tag in exif:
            exif.get_ifd(tag)  # load nested IFDs before touching IFD0
    exif.get_ifd(ExifTags.IFD.Exif).pop(ExifTags.IFD.Interop, None)
    for tag in list(exif):
        if tag not in _TIFF_IFD0_KEEP and tag not in _SUB_IFDS:
            del exif[tag]
    if _is_layout_record(exif.get(_IMAGE_DESCRIPTION)):
        del exif[_IMAGE_DESCRIPTION]
    for tag in _SUB_IFDS:
        if tag in exif and not exif.get_ifd(tag):
            del exif[tag]
    return exif if len(exif) else None


def _exif_set_orientation(exif: bytes, value: int) -> bytes | None:
    """Overwrite the IFD0 Orientation value in place; None if it cannot be found."""
    body = bytearray(exif)
    base = len(_EXIF_PREFIX)
    try:
        order = {b"II": "<", b"MM": ">"}[bytes(body[base:base + 2])]
        (ifd,) = struct.unpack_from(order + "I", body, base + 4)
        (count,) = struct.unpack_from(order + "H", body, base + ifd)
        for i in range(count):
            entry = base + ifd + 2 + 12 * i
            tag, typ, n = struct.unpack_from(order + "HHI", body, entry)
            if tag == _ORIENTATION:
                if typ != 3 or n != 1:  # not a single SHORT
                    return None
                struct.pack_into(order + "H", body, entry + 8, value)
                return bytes(body)
    except (KeyError, struct.error):
        return None
    return None


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W[, C]) array, like ImageOps.exif_transpose."""
    if orientation == 2:  # FLIP_LEFT_RIGHT
        a = a[:, ::-1]
    elif orientation == 3:  # ROTATE_180
        a = a[::-1, ::-1]
    elif orientation == 4:  # FLIP_TOP_BOTTOM
        a = a[::-1]
    elif orientation == 5:  # TRANSPOSE
        a = a.swapaxes(0, 1)
    elif orientation == 6:  # ROTATE_270 (90 degrees clockwise)
        a = np.rot90(a, k=-1)
    elif orientation == 7:  # TRANSVERSE
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:  # ROTATE_90 (90 degrees counter-clockwise)
        a = np.rot90(a, k=1)
    return np.ascontiguousarray(a)
