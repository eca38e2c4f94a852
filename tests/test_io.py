"""Tests for edgesr_cli.io: decoding, encoding, metadata, failures and discovery."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from edgesr_cli.imageio import decode16
from edgesr_cli.io import ImageError, Photo, encode_image, find_images, read_image, write_image

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- helpers ------------


def smooth_rgb(h: int = 24, w: int = 40) -> np.ndarray:
    """A smooth float image (lossy codecs reproduce it closely)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([x / (w - 1), y / (h - 1), 0.5 + 0.4 * np.sin(x / 5) * np.cos(y / 7)], axis=2)


def pil_bytes(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def q(x: np.ndarray, maxval: int) -> np.ndarray:
    return np.rint(x * maxval).astype(np.int64)


def png_by_hand(values: np.ndarray, *, interlace: bool = False) -> bytes:
    """Independent minimal PNG encoder (16-bit samples, any of the 5 filters).

    Row ``i`` of every pass uses filter ``i % 5`` so all filter types are exercised.
    """
    h, w, c = values.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c

    def filtered(sub: np.ndarray) -> bytes:
        rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1).astype(np.int32)
        out = []
        prev = np.zeros(rows.shape[1], np.int32)
        for i, row in enumerate(rows):
            left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
            upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
            kind = i % 5
            if kind == 0:
                res = row
            elif kind == 1:
                res = row - left
            elif kind == 2:
                res = row - prev
            elif kind == 3:
                res = row - (left + prev) // 2
            else:
                p = left + prev - upleft
                pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
                pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
                res = row - pred
            out.append(bytes([kind]) + (res % 256).astype(np.uint8).tobytes())
            prev = row
        return b"".join(out)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b"".join(filtered(values[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                       if values[y0::dy, x0::dx].size)
    else:
        raw = filtered(values)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def tiff16_by_hand(values: np.ndarray, order: str, orientation: int = 1) -> bytes:
    """Independent minimal uncompressed 16-bit RGB TIFF ('<' = II, '>' = MM)."""
    h, w, c = values.shape
    pixels = values.astype(order + "u2").tobytes()
    n_tags = 11
    ifd_size = 2 + 12 * n_tags + 4
    bps_at = 8 + ifd_size
    data_at = bps_at + 2 * c
    tags = [  # (tag, type, count, value) -- SHORT=3, LONG=4
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, c, bps_at), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, data_at), (274, 3, 1, orientation), (277, 3, 1, c), (278, 4, 1, h),
        (279, 4, 1, len(pixels)), (284, 3, 1, 1),
    ]
    out = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    out += struct.pack(order + "H", n_tags)
    for tag, typ, count, value in tags:
        if typ == 3 and count == 1:
            out += struct.pack(order + "HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack(order + "HHII", tag, typ, count, value)
    out += struct.pack(order + "I", 0)
    out += struct.pack(order + "H" * c, *([16] * c))
    return out + pixels


@pytest.fixture
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def make_exif(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[271] = "Canon"
    exif[272] = "EOS R5"
    if orientation is not None:
        exif[274] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal
    return exif.tobytes()


def exif_dict(raw: bytes | None) -> tuple[dict, dict]:
    exif = Image.Exif()
    if raw:
        exif.load(raw)
    return dict(exif), dict(exif.get_ifd(0x8769))


def no_leftovers(folder: Path, expected: set[str]) -> bool:
    return {p.name for p in folder.iterdir()} == expected


# ---------------------------------------------------------------- 8-bit --------------


@pytest.mark.parametrize(
    "fmt, tol", [("png", 0), ("tif", 0), ("bmp", 0), ("jpg", 0.03), ("webp", 0.03)]
)
def test_roundtrip_8bit_rgb(tmp_path, fmt, tol):
    rgb = smooth_rgb()
    out = write_image(tmp_path / f"x.{fmt}", Photo(rgb=rgb))
    photo = read_image(out)
    assert photo.rgb.dtype == np.float32 and photo.rgb.shape == rgb.shape
    assert 0.0 <= photo.rgb.min() and photo.rgb.max() <= 1.0
    assert (photo.bit_depth, photo.grayscale, photo.alpha) == (8, False, None)
    assert photo.source == str(out)
    assert photo.format == Image.open(out).format
    if tol == 0:
        assert np.array_equal(q(photo.rgb, 255), q(rgb, 255))
    else:
        assert np.abs(photo.rgb - rgb).mean() < tol


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif"])
def test_grayscale_stays_grayscale(tmp_path, fmt):
    gray = RNG.integers(0, 256, (12, 17), dtype=np.uint8)
    photo = read_image(pil_bytes(Image.fromarray(gray), "PNG"))
    assert photo.grayscale and photo.bit_depth == 8 and photo.rgb.shape == (12, 17, 3)
    assert np.array_equal(photo.rgb[..., 0], photo.rgb[..., 2])
    out = write_image(tmp_path / f"g.{fmt}", photo)
    assert Image.open(out).mode == "L"
    again = read_image(out)
    assert again.grayscale
    if fmt != "jpg":
        assert np.array_equal(q(again.rgb[..., 0], 255), gray)


def test_bare_arrays_are_accepted():
    rgb = smooth_rgb()
    assert read_image(encode_image(rgb, "png")).rgb.shape == rgb.shape
    gray = encode_image(rgb[..., 0], "png")  # (H, W) means grayscale
    assert Image.open(io.BytesIO(gray)).mode == "L"
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 2)), "png")


@pytest.mark.parametrize("fmt", ["png", "webp", "tif"])
def test_rgba_alpha_kept(tmp_path, fmt):
    rgba = RNG.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 14, dtype=np.uint8)[None, :]  # smooth alpha
    photo = read_image(pil_bytes(Image.fromarray(rgba), "PNG"))
    assert photo.alpha is not None and photo.alpha.shape == (10, 14)
    assert np.array_equal(q(photo.alpha, 255), rgba[..., 3])
    again = read_image(write_image(tmp_path / f"a.{fmt}", photo))
    assert again.alpha is not None
    assert np.abs(q(again.alpha, 255) - rgba[..., 3]).max() <= (0 if fmt != "webp" else 1)


def test_gray_alpha_and_palette_transparency():
    la = np.stack([RNG.integers(0, 256, (6, 9)), np.full((6, 9), 77)], axis=2).astype(np.uint8)
    photo = read_image(pil_bytes(Image.fromarray(la), "PNG"))
    assert photo.grayscale and np.all(q(photo.alpha, 255) == 77)
    back = Image.open(io.BytesIO(encode_image(photo, "png")))
    assert back.mode == "LA"

    pal = Image.fromarray(RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)).convert("P")
    photo = read_image(pil_bytes(pal, "PNG", transparency=pal.getpixel((0, 0))))
    assert photo.alpha is not None and photo.alpha[0, 0] == 0.0 and not photo.grayscale
    assert read_image(pil_bytes(pal, "PNG")).alpha is None

    bilevel = Image.fromarray(RNG.integers(0, 2, (6, 9), dtype=np.uint8) * 255).convert("1")
    photo = read_image(pil_bytes(bilevel, "PNG"))
    assert photo.grayscale and set(np.unique(photo.rgb)) <= {0.0, 1.0}


def test_cmyk_becomes_rgb():
    cmyk = Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("CMYK")
    photo = read_image(pil_bytes(cmyk, "JPEG"))
    assert photo.rgb.shape == (8, 8, 3) and not photo.grayscale


# ---------------------------------------------------------------- 16-bit -------------


def test_pillow_alone_drops_16bit_colour_precision():
    """Documents the Pillow limitation that read_image works around."""
    values = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    im = Image.open(io.BytesIO(png_by_hand(values)))
    assert im.mode == "RGB" and np.asarray(im).dtype == np.uint8
    assert np.array_equal(np.asarray(im), values >> 8)


def test_16bit_gray_png_roundtrip(tmp_path):
    gray = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    photo = read_image(pil_bytes(Image.fromarray(gray), "PNG"))
    assert (photo.bit_depth, photo.grayscale) == (16, True)
    assert np.array_equal(q(photo.rgb[..., 1], 65535), gray)
    out = write_image(tmp_path / "g16.png", photo)
    assert Image.open(out).mode == "I;16"
    assert np.array_equal(np.asarray(Image.open(out)), gray)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_png_read_exact(channels, interlace):
    values = RNG.integers(0, 65536, (13, 21, channels), dtype=np.uint16)
    photo = read_image(png_by_hand(values, interlace=interlace))
    assert photo.bit_depth == 16
    assert photo.grayscale == (channels <= 2)
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
    assert np.array_equal(q(photo.rgb, 65535), colour)
    if channels in (2, 4):
        assert np.array_equal(q(photo.alpha, 65535), values[..., -1])
    else:
        assert photo.alpha is None


@pytest.mark.parametrize("fmt", ["png", "tif"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_write_roundtrip_exact(tmp_path, fmt, channels):
    values = RNG.integers(0, 65536, (19, 23, channels), dtype=np.uint16)
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=2)
    photo = Photo(rgb=colour / np.float32(65535), grayscale=channels <= 2, bit_depth=16,
                  alpha=values[..., -1] / np.float32(65535) if channels in (2, 4) else None)
    out = write_image(tmp_path / f"x16.{fmt}", photo)
    back = read_image(out)
    assert back.bit_depth == 16
    assert np.array_equal(q(back.rgb, 65535), colour)
    if channels in (2, 4):
        assert np.array_equal(q(back.alpha, 65535), values[..., -1])
    if channels >= 3:  # an independent decoder (Pillow's 8-bit view) sees the high bytes
        assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), colour >> 8)


def test_16bit_colour_fallback_warns(monkeypatch):
    values = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)

    def unavailable(data, rawmode):
        raise ValueError("unknown raw mode")

    monkeypatch.setattr(decode16, "_decode_with_rawmode", unavailable)
    with pytest.warns(UserWarning, match="8-bit precision"):
        photo = read_image(png_by_hand(values), name="deep.png")
    assert photo.bit_depth == 16  # the output stays a 16-bit file
    assert np.array_equal(q(photo.rgb, 65535), (values >> 8) * 257)


@pytest.mark.parametrize("order", ["<", ">"])
def test_16bit_uncompressed_tiff_with_orientation(order):
    values = RNG.integers(0, 65536, (5, 8, 3), dtype=np.uint16)
    photo = read_image(tiff16_by_hand(values, order, orientation=6))
    assert photo.bit_depth == 16 and photo.rgb.shape == (8, 5, 3)
    assert np.array_equal(q(photo.rgb, 65535), np.rot90(values, k=-1))


def test_16bit_to_8bit_formats(tmp_path):
    photo = Photo(rgb=smooth_rgb(), bit_depth=16)
    assert Image.open(write_image(tmp_path / "x.jpg", photo)).mode == "RGB"
    assert Image.open(write_image(tmp_path / "x.webp", photo)).mode == "RGB"


# ---------------------------------------------------------------- metadata -----------


def test_exif_orientation_applied_and_reset(tmp_path):
    pixels = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)  # H=24, W=40
    path = tmp_path / "rot.jpg"
    Image.fromarray(pixels).save(path, quality=100, exif=make_exif(orientation=6))
    photo = read_image(path)
    assert photo.rgb.shape == (40, 24, 3)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(q(photo.rgb, 255), reference)
    ifd0, exif_ifd = exif_dict(photo.exif)
    assert ifd0[274] == 1 and ifd0[271] == "Canon"
    assert exif_ifd[0x9003] == "2024:05:06 07:08:09"
    # written back upright, so a viewer must not rotate it again
    again = read_image(write_image(tmp_path / "out.jpg", photo))
    assert again.rgb.shape == (40, 24, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation):
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = pil_bytes(Image.fromarray(pixels), "PNG", exif=make_exif(orientation))
    photo = read_image(data)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert np.array_equal(q(photo.rgb, 255), reference)
    assert exif_dict(photo.exif)[0][274] == 1


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_icc_and_exif_preserved(tmp_path, srgb_icc, fmt, bit_depth):
    source = pil_bytes(Image.fromarray(RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)),
                       "JPEG", icc_profile=srgb_icc, exif=make_exif(orientation=1))
    photo = read_image(source)
    assert photo.icc_profile == srgb_icc
    photo.bit_depth = bit_depth
    again = read_image(write_image(tmp_path / f"meta.{fmt}", photo))
    assert again.icc_profile == srgb_icc
    ifd0, exif_ifd = exif_dict(again.exif)
    assert ifd0[271] == "Canon" and ifd0[272] == "EOS R5"
    assert exif_ifd[0x9003] == "2024:05:06 07:08:09"


# ---------------------------------------------------------------- bad input ----------


def test_missing_and_empty_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError) as err:
        read_image(empty)
    assert str(err.value) == f"{empty}: empty file (0 bytes)"
    with pytest.raises(ImageError, match=r"nope\.png: cannot read \(No such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="stdin.*empty file"):
        read_image(b"")


def test_text_file_named_jpg(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a JPEG\n")
    with pytest.raises(ImageError) as err:
        read_image(fake)
    assert str(err.value) == f"{fake}: not an image (cannot identify image file)"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(fmt):
    data = pil_bytes(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageError) as err:
        read_image(data[: len(data) // 2], name=f"cut.{fmt.lower()}")
    assert str(err.value).startswith(f"cut.{fmt.lower()}: truncated or corrupt image data")
    assert "\n" not in str(err.value)


def test_pixel_limit_checked_before_decoding():
    data = pil_bytes(Image.fromarray(RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageError) as err:
        read_image(data[: len(data) // 2], name="big.png", max_pixels=100)  # truncated too
    assert str(err.value) == "big.png: 30x20 = 600 pixels exceeds the limit of 100 (--max-pixels)"
    assert read_image(data, max_pixels=600).rgb.shape == (20, 30, 3)


def test_pixel_limit_independent_of_pillow_global(monkeypatch):
    data = pil_bytes(Image.fromarray(np.zeros((20, 30, 3), np.uint8)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse > 20 pixels
    assert read_image(data, max_pixels=None).rgb.shape == (20, 30, 3)  # our limit wins
    assert read_image(data, max_pixels=1000).rgb.shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 10  # restored
    with pytest.raises(ImageError, match=r"x\.png: 600 pixels exceeds the limit of 15"):
        read_image(data, name="x.png", max_pixels=15)  # Pillow's own error, converted


# ---------------------------------------------------------------- writing ------------


def test_write_and_encode_share_the_encoder(tmp_path):
    photo = Photo(rgb=smooth_rgb())
    for fmt in ("png", "jpg", "webp", "tif"):
        out = write_image(tmp_path / f"same.{fmt}", photo)
        assert out.read_bytes() == encode_image(photo, fmt)


def test_format_from_fmt_or_suffix(tmp_path):
    photo = Photo(rgb=smooth_rgb())
    assert Image.open(write_image(tmp_path / "a.JPEG", photo)).format == "JPEG"
    assert Image.open(write_image(tmp_path / "b.png", photo, fmt="webp")).format == "WEBP"
    with pytest.raises(ImageError, match=r"c\.gif: unknown output format '\.gif'"):
        write_image(tmp_path / "c.gif", photo)
    with pytest.raises(ImageError, match="no file extension"):
        write_image(tmp_path / "noext", photo)
    assert not (tmp_path / "c.gif").exists()


def test_new_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_image(tmp_path / "perm.png", Photo(rgb=smooth_rgb()))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
    out.chmod(0o600)
    write_image(out, Photo(rgb=smooth_rgb()))  # replacing keeps the existing mode
    assert out.stat().st_mode & 0o777 == 0o600


def test_jpeg_refuses_transparency_without_leftovers(tmp_path):
    alpha = np.ones((24, 40), np.float32)
    alpha[0, 0] = 0.5
    out = tmp_path / "out" / "x.jpg"
    with pytest.raises(ImageError) as err:
        write_image(out, Photo(rgb=smooth_rgb(), alpha=alpha))
    assert str(err.value).startswith(f"{out}: JPEG cannot store transparency")
    assert not out.parent.exists() or not any(out.parent.iterdir())
    # a fully opaque alpha channel loses nothing and is dropped silently
    write_image(out, Photo(rgb=smooth_rgb(), alpha=np.ones((24, 40), np.float32)))
    assert no_leftovers(out.parent, {"x.jpg"})


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"previous result")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ImageError) as err:
        write_image(target, Photo(rgb=smooth_rgb(), bit_depth=16))
    assert str(err.value) == f"{target}: cannot write (Input/output error)"
    assert target.read_bytes() == b"previous result"
    assert no_leftovers(tmp_path, {"keep.png"})

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, Photo(rgb=smooth_rgb()))
    assert no_leftovers(tmp_path, {"keep.png"})


def test_unwritable_destinations(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ImageError) as err:
        write_image(blocker / "x.png", Photo(rgb=smooth_rgb()))
    assert str(err.value).startswith(f"{blocker / 'x.png'}: cannot write (")
    with pytest.raises(ImageError, match="cannot write"):
        write_image(blocker / "sub" / "x.png", Photo(rgb=smooth_rgb()))
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(ImageError, match=r"dir\.png: cannot write \(Is a directory\)"):
        write_image(folder, Photo(rgb=smooth_rgb()))
    assert no_leftovers(tmp_path, {"file.txt", "dir.png"})


def test_permission_error_message(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    with pytest.raises(ImageError) as err:
        write_image(tmp_path / "out" / "x.png", Photo(rgb=smooth_rgb()))
    assert str(err.value) == f"{tmp_path / 'out' / 'x.png'}: cannot write (Permission denied)"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(tmp_path):
    locked = tmp_path / "out"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ImageError) as err:
            write_image(locked / "x.png", Photo(rgb=smooth_rgb()))
        assert str(err.value) == f"{locked / 'x.png'}: cannot write (Permission denied)"
    finally:
        locked.chmod(0o700)
    assert not any(locked.iterdir())


def test_creates_missing_output_folders(tmp_path):
    out = write_image(tmp_path / "a" / "b" / "x.png", Photo(rgb=smooth_rgb()))
    assert out.is_file() and no_leftovers(out.parent, {"x.png"})


# ---------------------------------------------------------------- discovery ----------


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel in ["shots/b.jpg", "shots/a.PNG", "shots/2024/z.tif", "shots/2024/deep/c.webp",
                "shots/notes.txt", "shots/.hidden.png", "shots/.cache/x.png", "other/d.jpeg",
                "other/e.bmp"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def as_str(pairs):
    return [(str(f), str(r)) for f, r in pairs]


def test_find_images_folder_recursive_sorted(tree):
    assert as_str(find_images(["shots"])) == [
        ("shots/2024/deep/c.webp", "2024/deep/c.webp"),
        ("shots/2024/z.tif", "2024/z.tif"),
        ("shots/a.PNG", "a.PNG"),
        ("shots/b.jpg", "b.jpg"),
    ]


def test_find_images_files_globs_and_dedup(tree):
    pairs = as_str(find_images(["other/e.bmp", "shots/**/*.tif", "other/*", "shots/notes.txt"]))
    assert pairs == [
        ("other/e.bmp", "e.bmp"),
        ("shots/2024/z.tif", "2024/z.tif"),
        ("other/d.jpeg", "d.jpeg"),  # e.bmp already listed
        ("shots/notes.txt", "notes.txt"),  # named explicitly: the reader decides
    ]
    assert as_str(find_images(["*"])) == [
        ("other/d.jpeg", "other/d.jpeg"),
        ("other/e.bmp", "other/e.bmp"),
        ("shots/2024/deep/c.webp", "shots/2024/deep/c.webp"),
        ("shots/2024/z.tif", "shots/2024/z.tif"),
        ("shots/a.PNG", "shots/a.PNG"),
        ("shots/b.jpg", "shots/b.jpg"),
    ]
    absolute = find_images([str(tree / "shots" / "*.jpg")])
    assert as_str(absolute) == [(str(tree / "shots" / "b.jpg"), "b.jpg")]


def test_find_images_errors(tree):
    with pytest.raises(ImageError, match="^missing.jpg: no such file or folder$"):
        find_images(["shots", "missing.jpg"])
    with pytest.raises(ImageError, match=r"nothing\*\.png: no images match"):
        find_images(["nothing*.png"])
    (tree / "empty").mkdir()
    with pytest.raises(ImageError, match="^empty: no images found"):
        find_images(["empty"])
    (tree / "again").mkdir()
    (tree / "again" / "b.jpg").write_bytes(b"x")
    with pytest.raises(ImageError, match="same output b.jpg"):
        find_images(["shots/b.jpg", "again/b.jpg"])
