"""Decoding: :func:`read_image` turns a file, its bytes or a stream into a :class:`~edgesr_cli.imageio.photo.Photo`.

Reading (:func:`read_image`)
----------------------------
Anything Pillow can open is accepted, except animations and multi-page TIFFs (refused:
upscaling only the first frame would drop the others silently; an MPO's extra pictures and a
TIFF's reduced-resolution thumbnail pages are not counted as frames);
:data:`EXTENSIONS` lists the suffixes :func:`find_images` picks up in folders.
Supported Pillow modes and what they become:

==============================  ==========================================
``1``, ``L``                    grayscale, 8-bit
``LA``, ``La``                  grayscale + alpha, 8-bit
``P``, ``PA``                   RGB, or RGBA when the palette has transparency
``RGB``, ``RGBX``, ``YCbCr``    RGB, 8-bit
``RGBA``, ``RGBa``              RGB + alpha, 8-bit
``CMYK``                        RGB via the embedded ICC profile when there is
                                one (the photo then carries an sRGB profile),
                                else Pillow's naive conversion
``I;16``, ``I;16B``/``L``/``N`` grayscale, 16-bit (exact)
``I`` (32-bit int)              grayscale, 16-bit, when every sample is in
                                0..65535 (else rejected, never clipped)
signed integer TIFF (int8/16)   rejected with :class:`ImageError` (Pillow
                                would wrap int8 and clip negative int16)
16-bit RGB / RGBA PNG & TIFF    RGB(+alpha), 16-bit (exact, see below)
16-bit gray + alpha PNG         grayscale + alpha, 16-bit (exact)
``F`` (32-bit float), others    rejected with :class:`ImageError`
==============================  ==========================================

A ``tRNS`` colour key (PNG transparency without an alpha channel) becomes an
alpha channel.  The EXIF orientation is applied to the pixels and the stored
EXIF gets ``Orientation = 1`` (patched in place in the original EXIF block, so
maker notes and other tags are kept byte for byte).

Reading is bounded before it starts: the header is parsed first and the image
refused by its declared size (``max_pixels``, and the caller's ``check``)
before any pixel is decoded; a file larger than its pixels could take up is
refused unread (:func:`byte_limit`), and a stream is read only that far.
16-bit layouts Pillow reads at 8 bits (16-bit colour, planar TIFF, PPM) are read by
:mod:`edgesr_cli.imageio.decode16`; EXIF and orientation are :mod:`edgesr_cli.imageio.metadata`'s.

If a future Pillow changes the decoder internals this relies on, reading falls
back to Pillow's 8-bit decode with a ``UserWarning`` (the photo keeps
``bit_depth=16`` so the output container stays 16-bit).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import warnings
import zlib
from typing import IO, Any, Callable, Iterator

import numpy as np
from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from ..defaults import DEFAULT_MAX_PIXELS
from .decode16 import (_RAW16_COLOUR, _decode_16bit_colour, _decode_planar, _decode_ppm16, _first, _planar_deep,
                       _ppm_maxval, _single_rawmode)
from .metadata import _exif_for, _orient
from .photo import _PNG_SIGNATURE, ImageError, ImageInfo, Photo, _describe
from .source import _source


def read_image(
    src: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
    *,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    check: Callable[[ImageInfo], None] | None = None,
) -> Photo:
    """Decode an image file (or its bytes, or a binary stream such as stdin) into a :class:`Photo`.

    Nothing is read before it is bounded: a file larger than any image within ``max_pixels`` could be
    is refused unread, a stream is read only as far as the header needs and then at most as far as the
    declared size allows (:func:`byte_limit`), and the pixels are decoded only after the header's size
    passed ``max_pixels`` and ``check``.

    Args:
        src: a path, the raw file bytes, or a readable binary stream (read once, from its start).
        name: how to call the input in error messages (default: the path, or
            ``"<stdin>"`` for bytes and streams).
        max_pixels: refuse images with more than this many pixels; checked from
            the header *before* any pixel data is decoded.  ``None`` disables it.
        check: called with the header's :class:`ImageInfo` before decoding; raise
            :class:`ImageError` there to refuse the image unread.

    Raises:
        ImageError: missing/unreadable/empty file, not an image, too many pixels or bytes,
            truncated or corrupt data, or an unsupported pixel format.
    """
    with _source(src, name, max_pixels) as source:
        label = source.label
        source.bound_early()
        with _pillow_limits(max_pixels):
            im = _open(source.fp, label, max_pixels)
            _refuse_frames(im, label)
            info, route = _header(im, label)
            source.bound(info.width, info.height)
            if check is not None:
                check(info)
            values, maxval, icc = _decode(im, route, source.fp, label)
            exif, orientation = _exif_for(im)

    alpha = None
    if values.shape[2] in (2, 4):
        alpha = values[..., -1]
        values = values[..., :-1]

    scale = np.float32(1.0 / maxval)
    rgb = values.astype(np.float32)
    rgb *= scale  # in place: no second float copy of the photo
    del values
    if info.grayscale:
        rgb = np.repeat(rgb, 3, axis=2)
    if alpha is not None:
        alpha = alpha.astype(np.float32)
        alpha *= scale
    rgb = _orient(rgb, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)

    return Photo(
        rgb=rgb,
        alpha=alpha,
        grayscale=info.grayscale,
        bit_depth=16 if maxval > 255 else 8,
        exif=exif,
        icc_profile=icc,
        format=im.format or "",
        source=source.name,
    )


_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limits(max_pixels: int | None) -> Iterator[None]:
    """Make our own pixel limit the one that counts.

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` inside
    ``Image.open`` and warns above ``Image.MAX_IMAGE_PIXELS``.  The warning is
    silenced (we check ourselves), and if the caller allows more pixels than
    Pillow would, Pillow's global limit is lifted for the duration of the call.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    lift = pil_limit is not None and (max_pixels is None or max_pixels > 2 * pil_limit)
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if lift:
            stack.enter_context(_PIL_LIMIT_LOCK)
            Image.MAX_IMAGE_PIXELS = None
            stack.callback(setattr, Image, "MAX_IMAGE_PIXELS", pil_limit)
        yield


def _too_many_pixels(label: str, pixels: int | None, size: tuple[int, int] | None,
                     max_pixels: int | None) -> ImageError:
    what = f"{pixels} pixels" if pixels is not None else "the image size"
    if size is not None:
        what = f"{size[0]}x{size[1]} = {what}"
    limit = f"the limit of {max_pixels}" if max_pixels is not None else "Pillow's limit"
    return ImageError(label, f"{what} exceeds {limit} (--max-pixels)")


def _open(fp: IO[bytes], label: str, max_pixels: int | None) -> Image.Image:
    """Parse the header only, and enforce the pixel limit before decoding."""
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(label, int(m[1]) if m else None, None, max_pixels) from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(fp, label) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError,
            TypeError, zlib.error) as exc:
        raise ImageError(label, f"corrupt or unsupported image ({_describe(exc)})") from exc
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise _too_many_pixels(label, width * height, (width, height), max_pixels)
    return im


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _unidentified(fp: IO[bytes], label: str) -> ImageError:
    """Why Pillow could not open the file: a TIFF whose samples it has no mode for (float, signed or
    32-bit colour) is described by its tags, anything else is not an image."""
    problem = None
    with contextlib.suppress(Exception):  # an unreadable directory: just not an image
        fp.seek(0)
        ifh = fp.read(8)
        if ifh[:4] in _TIFF_MAGIC:
            tags = TiffImagePlugin.ImageFileDirectory_v2(ifh)
            fp.seek(tags.next)
            tags.load(fp)
            problem = _sample_problem(tags, None) or _tiff_layout(tags)
    return ImageError(label, problem or "not an image (cannot identify image file)")


def _tiff_layout(tags: Any) -> str:
    spp, bits = int(_first(tags.get(277, 1)) or 1), _first(tags.get(258, 1))
    return (f"a TIFF of {spp} {bits}-bit sample{'s' if spp != 1 else ''} per pixel, which is not supported "
            f"(8 or 16-bit unsigned gray, RGB or RGBA); convert the image first")


def _frame_count(im: Image.Image) -> int:
    """Frames that are images of their own: an MPO's extra pictures (a camera's preview or depth
    map) and a TIFF's reduced-resolution pages (NewSubfileType bit 0: thumbnails) do not count."""
    n = int(getattr(im, "n_frames", 1) or 1)
    if n <= 1 or im.format == "MPO":
        return 1
    if im.format != "TIFF":
        return n
    full = 0
    for i in range(n):
        im.seek(i)
        full += not int(im.tag_v2.get(254, 0) or 0) & 1
    im.seek(0)
    return max(full, 1)


def _refuse_frames(im: Image.Image, label: str) -> None:
    """Upscaling only the first frame of an animation or a multi-page TIFF would drop the rest
    without a word; refuse instead."""
    try:
        n = _frame_count(im)
    except _DECODE_ERRORS as exc:
        raise ImageError(label, f"corrupt or unsupported image ({_describe(exc)})") from exc
    if n > 1:
        what = f"{n} pages (a multi-page TIFF)" if im.format == "TIFF" else f"{n} frames (an animated {im.format})"
        raise ImageError(label, f"has {what}; only single-frame images are supported, split it first")


def _header(im: Image.Image, label: str) -> tuple[ImageInfo, str]:
    """What decoding will give, from the header alone: the ImageInfo and the decoding route (a Pillow
    mode, or "planar16", "raw16" or "ppm16" for the 16-bit layouts Pillow would read at 8 bits). Sample
    formats no photo has (signed, float) and unsupported modes are refused here, before decoding."""
    rawmode = _single_rawmode(im)  # before loading: Pillow clears the tiles
    problem = _sample_problem(getattr(im, "tag_v2", None), rawmode)
    if problem is not None:
        raise ImageError(label, problem)
    mode, key = im.mode, "transparency" in im.info
    if _planar_deep(im):
        if mode not in ("RGB", "RGBA"):
            raise ImageError(label, f"16-bit planar TIFF in mode {mode!r} is not supported (planar RGB and RGBA "
                                    f"are); save it interleaved (chunky) first")
        route, depth, gray, alpha = "planar16", 16, False, mode == "RGBA"
    elif rawmode is not None and _RAW16_COLOUR.match(rawmode):
        base = _RAW16_COLOUR.match(rawmode)[1]
        route, depth, gray, alpha = "raw16", 16, base == "LA", base != "RGB" or key
    elif _ppm_maxval(im) > 255:
        route, depth, gray, alpha = "ppm16", 16, False, False
    elif mode.startswith("I;16") or mode == "I":
        route, depth, gray, alpha = mode, 16, True, key
    elif mode in ("1", "L", "LA", "La"):
        route, depth, gray, alpha = mode, 8, True, mode in ("LA", "La") or key
    elif mode in ("P", "PA"):
        route, depth, gray, alpha = mode, 8, False, mode == "PA" or key
    elif mode in ("RGBA", "RGBa", "RGB", "RGBX", "YCbCr", "HSV", "CMYK"):
        route, depth, gray, alpha = mode, 8, False, mode in ("RGBA", "RGBa") or (mode == "RGB" and key)
    else:
        raise ImageError(label, f"unsupported pixel format {mode!r} "
                                f"(supported: 8/16-bit gray, RGB, RGBA, palette, CMYK)")
    width, height = im.size
    return ImageInfo(width, height, depth, gray, alpha, im.format or ""), route


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  KeyError, TypeError, zlib.error)


def _load(im: Image.Image, label: str) -> None:
    """Fully decode the pixel data, mapping every decoder failure to ImageError."""
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(label, im.width * im.height, im.size, None) from exc
    except MemoryError as exc:
        raise ImageError(label, f"not enough memory to decode {im.width}x{im.height} "
                                f"pixels") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(label, f"truncated or corrupt image data ({_describe(exc)})") from exc


def _decode(im: Image.Image, route: str, fp: IO[bytes], label: str) -> tuple[np.ndarray, int, bytes | None]:
    """Decode pixels to an ``(H, W, C)`` integer array along the route :func:`_header` chose.

    Returns ``(values, maxval, icc_profile)`` where ``C`` is 1 (gray),
    2 (gray + alpha), 3 (RGB) or 4 (RGBA) and ``maxval`` is 255, 65535, or a 16-bit PPM's own maximum.
    """
    icc = im.info.get("icc_profile") or None
    key = im.info.get("transparency")
    if route == "planar16":
        return _decode_planar(im, fp, label), 65535, icc
    if route == "ppm16":
        values, maxval = _decode_ppm16(im, fp, label)
        return values, maxval, icc
    rawmode = _single_rawmode(im)  # before loading: Pillow clears the tiles
    _load(im, label)
    if im.format == "PNG":
        _check_png_complete(fp, label)
    if route == "raw16":
        values = _decode_16bit_colour(im, fp, rawmode)
        if values is None:
            warnings.warn(f"{label}: 16-bit colour could only be decoded at 8-bit precision "
                          f"(Pillow limitation)", stacklevel=4)
            values = np.asarray(im).astype(np.uint16) * np.uint16(257)
        return _apply_colour_key(values, key, 65535), 65535, icc

    mode = route
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode.startswith("I;16"):
        values = np.asarray(im).astype(np.uint16)[..., None]
        return _apply_colour_key(values, key, 65535), 65535, icc
    if mode == "I":
        values = np.asarray(im)
        if _unsigned_32(im):  # Pillow's "I" is signed: a uint32 TIFF's upper half reads negative
            values = values.view(np.uint32)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ImageError(label, f"32-bit integer samples from {low} to {high} do not fit 16 bits "
                                    f"(0..65535); convert the image to 16-bit first")
        values = values.astype(np.uint16)[..., None]
        return _apply_colour_key(values, key, 65535), 65535, icc
    if mode in ("L", "LA", "La"):
        target = "LA" if mode != "L" or "transparency" in im.info else "L"
        return _array(im, target), 255, icc
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info
        return _array(im, "RGBA" if transparent else "RGB"), 255, icc
    if mode in ("RGBA", "RGBa"):
        return _array(im, "RGBA"), 255, icc
    if mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc)
        return _array(im, "RGB"), 255, icc
    target = "RGBA" if mode == "RGB" and "transparency" in im.info else "RGB"
    return _array(im, target), 255, icc


_SAMPLE_FORMAT = 339  # TIFF SampleFormat: 1 unsigned, 2 signed, 3 float
_SIGNED_RAWMODE = re.compile(r"^(I|L|F);\d*B?S$")  # e.g. I;16S, I;16BS, I;32S


def _sample_problem(tags: Any, rawmode: str | None) -> str | None:
    """Why samples have no faithful place in a photo, or None. Signed integers: Pillow decodes signed
    8-bit TIFF as if unsigned (-100 becomes 156) and signed 16-bit into a 32-bit mode whose negative half
    would be clipped to black. Floats: a photo's range is not theirs. Refused before decoding."""
    fmt = tags.get(_SAMPLE_FORMAT) if tags is not None else None
    fmts = set(fmt) if isinstance(fmt, tuple) else {fmt}
    bits = _first(tags.get(258)) if tags is not None else None
    size = f"{bits}-bit " if isinstance(bits, int) else ""
    if 3 in fmts:
        return (f"{size}floating-point samples are not supported (a photo is 8 or 16-bit unsigned integers); "
                f"convert the image to 16-bit first")
    if 2 in fmts or (rawmode is not None and _SIGNED_RAWMODE.match(rawmode) is not None):
        return (f"signed {size}integer samples are not supported (a photo is unsigned); "
                f"convert the image to unsigned 8 or 16-bit first")
    return None


def _unsigned_32(im: Image.Image) -> bool:
    """A TIFF of unsigned 32-bit samples (SampleFormat 1, the default), which Pillow reads as signed "I"."""
    tags = getattr(im, "tag_v2", None)
    return tags is not None and _first(tags.get(258)) == 32 and _first(tags.get(_SAMPLE_FORMAT, 1)) == 1


def _array(im: Image.Image, mode: str) -> np.ndarray:
    if im.mode != mode:
        im = im.convert(mode)
    values = np.asarray(im)
    return values[..., None] if values.ndim == 2 else values


def _apply_colour_key(values: np.ndarray, key: Any, maxval: int) -> np.ndarray:
    """Turn a PNG ``tRNS`` colour key into an alpha channel (16-bit arrays only)."""
    if key is None or values.shape[2] not in (1, 3):
        return values
    key_arr = np.atleast_1d(np.asarray(key, dtype=np.int64))
    if key_arr.size != values.shape[2]:
        return values
    opaque = np.any(values != key_arr, axis=2)
    alpha = np.where(opaque, maxval, 0).astype(values.dtype)
    return np.concatenate([values, alpha[..., None]], axis=2)


# ---- PNG: pixel data that ends early ------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_size(width: int, height: int, depth: int, colour: int, interlace: int) -> tuple[int, int]:
    """(bytes the inflated IDAT stream must hold, bytes per row of the full image incl. the filter byte)."""
    bits = depth * _PNG_CHANNELS.get(colour, 1)
    row = lambda w: 1 + (w * bits + 7) // 8  # noqa: E731
    if not interlace:
        return height * row(width), row(width)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        total += h * row(w) if w > 0 and h > 0 else 0
    return total, 0


def _check_png_complete(fp: IO[bytes], label: str) -> None:
    """Refuse a PNG whose compressed pixel data ends (cleanly) before its last row: Pillow leaves the
    missing rows black without a word. The IDAT stream is inflated again, counted and dropped (at most
    1 MiB at a time), up to the size the header declares."""
    fp.seek(len(_PNG_SIGNATURE))
    need = row = got = 0
    inflate = zlib.decompressobj()
    while True:
        head = fp.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR" and length >= 13:
            need, row = _png_data_size(*struct.unpack(">IIBB2xB", fp.read(13)))
            fp.seek(length - 13 + 4, io.SEEK_CUR)
        elif kind == b"IDAT":
            left = length
            while left and got < need and not inflate.eof:
                data = fp.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                while data and got < need and not inflate.eof:
                    try:
                        got += len(inflate.decompress(data, 1 << 20))
                    except zlib.error:
                        return  # Pillow decoded it; a quirk past the pixels is not ours to judge
                    data = inflate.unconsumed_tail
            fp.seek(left + 4, io.SEEK_CUR)
        elif kind == b"IEND" or got >= need > 0:
            break
        else:
            fp.seek(length + 4, io.SEEK_CUR)
    if got < need:
        where = f"after {got // row} of {need // row} rows" if row else f"after {got:,} of its {need:,} bytes"
        raise ImageError(label, f"truncated image data (its pixel data ends {where})")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB through the embedded profile when possible, else Pillow's formula."""
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            rgb = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if rgb is not None:
                return rgb, dst.tobytes()
        except Exception:  # noqa: BLE001 - broken/unsupported profile: use the formula
            pass
    return im.convert("RGB"), None
