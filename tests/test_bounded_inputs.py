"""`edgesr upscale` on hostile inputs, second round (issue 30): nothing silently damaged (16-bit planar TIFF, a PNG
whose data ends early, 16-bit PPM), nothing read before it is bounded (sizes from the header, bytes capped by the
pixel limits), no crash or hang (long names, thread counts, a folder linking to itself, a huge config), and every
problem reported on one line (bad option values, unreadable folders, options a backend cannot honour, signals while
the model loads, third-party lines).

Every image is made here, in tmp_path; nothing reads ../shared or downloads. Cases that need a fresh process (exit
codes of signals, stdin, environment variables read at library load) run the CLI in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr_cli import hw
from edgesr_cli import io as eio
from edgesr_cli.imageio import decode
from edgesr_cli.io import ImageError, Photo, read_image, write_image
from test_hostile_inputs import assert_one_failure, batch_with, edgesr_proc
from test_upscale_cli import error_lines, make_png, no_temp_files, size_of, upscale

tifffile = pytest.importorskip("tifffile")


def q16(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 65535).astype(np.int64)


def noisy16(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (h, w, channels), dtype=np.uint16)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_by_hand(width: int, height: int, rows: int, interlace: int = 0) -> bytes:
    """An 8-bit RGB PNG declaring width x height whose (valid, cleanly ended) zlib stream holds its first `rows`
    scanlines (of the whole image, or of the interlaced passes in order), every sample 200."""
    widths = [width] * height if not interlace else [
        (width - x0 + dx - 1) // dx for x0, y0, dx, dy in ADAM7 for _ in range((height - y0 + dy - 1) // dy)
        if (width - x0 + dx - 1) // dx > 0]
    raw = b"".join(b"\x00" + bytes([200]) * (3 * w) for w in widths[:rows])
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


# ---- silent damage: 16-bit planar TIFF, a PNG that ends early, 16-bit PPM -------------------------------------

PLANAR = {
    "rgb": dict(channels=3),
    "rgba": dict(channels=4, extrasamples=[2]),
    "strips-big-endian": dict(channels=4, extrasamples=[2], rowsperstrip=5, byteorder=">"),
    "deflate-predictor": dict(channels=4, extrasamples=[2], compression="zlib", predictor=True),
    "tiled-deflate": dict(channels=3, compression="zlib", tile=(16, 16)),
}


@pytest.mark.parametrize("kind", list(PLANAR))
def test_16bit_planar_tiff_is_read_exactly(tmp_path, kind):
    """Pillow unpacks each plane of a PlanarConfiguration=2 16-bit TIFF with an 8-bit unpacker (wrong colours) or,
    compressed, keeps only the high byte; read_image gives back every sample."""
    options = dict(PLANAR[kind])
    values = noisy16(21, 30, options.pop("channels"), seed=len(kind))
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(values, -1, 0), planarconfig="separate",
                     photometric="rgb", **options)
    photo = read_image(tmp_path / "planar.tif")
    assert photo.bit_depth == 16 and photo.rgb.shape == (21, 30, 3)
    assert np.array_equal(q16(photo.rgb), values[..., :3])
    assert (photo.alpha is not None) == (values.shape[2] == 4)
    if photo.alpha is not None:
        assert np.array_equal(q16(photo.alpha), values[..., 3])


def test_16bit_planar_rgba_tiff_round_trip_keeps_16_bits_and_alpha(tiny_model_dir, tmp_path):
    """The acceptance case: the planar file upscales to what its chunky twin does, within 1/65535, 16-bit, with alpha."""
    values = noisy16(20, 28, 4, seed=3)
    values[..., :3] = (values[..., :3] // 4) + 16384  # mid-range colour, any alpha
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(values, -1, 0), planarconfig="separate",
                     photometric="rgb", extrasamples=[2])
    tifffile.imwrite(tmp_path / "chunky.tif", values, photometric="rgb", extrasamples=[2])
    upscale(tiny_model_dir, tmp_path / "planar.tif", tmp_path / "chunky.tif", "-o", tmp_path / "out", "-q")
    with tifffile.TiffFile(tmp_path / "out" / "planar.tif") as tf:
        planar = tf.asarray()
        assert tf.pages[0].bitspersample == 16 and planar.shape == (80, 112, 4)
    chunky = tifffile.imread(tmp_path / "out" / "chunky.tif")
    assert np.abs(planar.astype(np.int64) - chunky).max() <= 1
    assert len(np.unique(planar[..., 0])) > 1000  # real 16-bit samples, not 8 bits widened


def test_png_whose_pixel_data_ends_cleanly_early_is_refused(tiny_model_dir, tmp_path):
    src, out = batch_with(tmp_path, "short.png", lambda p: p.write_bytes(png_by_hand(16, 16, rows=1)))
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    assert_one_failure(result, src / "short.png", "truncated image data (its pixel data ends after 1 of 16 rows)", out)
    assert not (out / "short.png").exists()


def test_interlaced_png_that_ends_early_is_refused_and_a_whole_one_is_read():
    with pytest.raises(ImageError, match=r"truncated image data \(its pixel data ends after 41 of its 798 bytes\)"):
        read_image(png_by_hand(16, 16, rows=5, interlace=1))  # the first passes only
    for interlace in (0, 1):
        assert np.allclose(read_image(png_by_hand(16, 16, rows=10 ** 6, interlace=interlace)).rgb, 200 / 255)


@pytest.mark.parametrize("maxval", [65535, 4095])
def test_16bit_ppm_stays_16_bit(tiny_model_dir, tmp_path, maxval):
    values = np.random.default_rng(maxval).integers(0, maxval + 1, (20, 28, 3)).astype(">u2")
    (tmp_path / "deep.ppm").write_bytes(b"P6\n28 20\n%d\n" % maxval + values.tobytes())
    photo = read_image(tmp_path / "deep.ppm")
    assert photo.bit_depth == 16
    assert np.allclose(photo.rgb, values.astype(np.float32) / maxval, atol=1e-6)
    upscale(tiny_model_dir, tmp_path / "deep.ppm", "-o", tmp_path / "out.png", "-q")
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (112, 80) and im.info.get("bit_depth", 16) == 16
    back = read_image(tmp_path / "out.png")
    assert back.bit_depth == 16 and len(np.unique(q16(back.rgb[..., 0]))) > 1000


def test_plain_16bit_ppm_is_read_exactly(tmp_path):
    values = np.random.default_rng(1).integers(0, 4096, (3, 2, 3))
    text = "P3\n# a comment\n2 3\n4095\n" + " ".join(map(str, values.ravel())) + "\n"
    photo = read_image(text.encode())
    assert photo.bit_depth == 16 and np.allclose(photo.rgb, values / 4095, atol=1e-6)


# ---- crash or hang: long names, thread counts, links back to a folder, a huge config ----------------------------


def test_output_name_that_fits_but_whose_temp_name_would_not_is_written(tiny_model_dir, tmp_path):
    """A 250-byte name fits the file system's 255; the hidden temp name (14 bytes more) is shortened to fit."""
    src = make_png(tmp_path / "a.png", 20, 28)
    dst = tmp_path / ("x" * 246 + ".png")
    upscale(tiny_model_dir, src, "-o", dst, "-q")
    assert size_of(dst) == (112, 80) and no_temp_files(tmp_path / "none") and \
        sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", dst.name])


def test_names_longer_than_the_file_system_allows_are_one_failure_each(tiny_model_dir, tmp_path):
    good = make_png(tmp_path / "good.png", 20, 28)
    long_input = tmp_path / ("i" * 300 + ".png")
    result = upscale(tiny_model_dir, long_input, good, "-o", tmp_path / "out", ok_codes=(1,))
    assert error_lines(result) == [f"error: {long_input}: cannot read (File name too long)"]
    assert size_of(tmp_path / "out" / "good.png") == (112, 80)
    long_output = tmp_path / ("o" * 300 + ".png")
    result = upscale(tiny_model_dir, good, "-o", long_output, ok_codes=(1,))
    assert error_lines(result) == [f"error: {long_output}: cannot write (File name too long)"]
    assert "Traceback" not in result.output


def test_mirrored_path_deeper_than_path_max_is_one_failure(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    deep = src.joinpath(*["d" * 200] * 12)  # about 2.4 KB below the input folder: readable
    make_png(deep / "a.png", 20, 28)
    make_png(src / "b.png", 20, 28)
    out = tmp_path.joinpath(*["o" * 200] * 9)  # the mirrored a.png would sit about 4.3 KB deep
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    assert error_lines(result) == [f"error: {out / deep.relative_to(src) / 'a.png'}: cannot write (File name too long)"]
    assert size_of(out / "b.png") == (112, 80)


def test_output_path_that_fits_is_written_even_where_a_full_temp_name_would_not(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png", 20, 28)
    folder = tmp_path.joinpath(*["f" * 200] * 19)
    name = "n" * (4090 - len(str(folder)) - 1 - 4) + ".png"  # a 4090-byte path: the temp name must be cut
    upscale(tiny_model_dir, src, "-o", folder / name, "-q")
    assert len(str(folder / name)) == 4090 and size_of(folder / name) == (112, 80)
    assert [p.name for p in folder.iterdir()] == [name]


@pytest.mark.parametrize("threads, env, expect, note", [
    (99999, None, 2, "--threads 99999 is more than the 2 CPUs this process may use; using 2"),
    (None, "99999", 2, "OMP_NUM_THREADS=99999 is more than the 2 CPUs this process may use; using 2"),
    (None, "abc", 1, "OMP_NUM_THREADS='abc' is not a thread count (an integer >= 1); ignored"),
    (2, "1", 2, None),
])
def test_thread_counts_above_the_cpus_are_capped_with_a_note(monkeypatch, threads, env, expect, note):
    monkeypatch.setattr(hw, "usable_cpus", lambda: 2)
    monkeypatch.setattr(hw, "idle_cpus", lambda interval=0.05: 1.0)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    n, notes = hw.thread_count(threads)
    assert n == expect and notes == ([note] if note else [])
    assert os.environ.get("OMP_NUM_THREADS") in (None, "1", "2")  # what torch's OpenMP and ONNX Runtime will read


def test_huge_thread_counts_run_capped_in_a_fresh_process(tiny_model_dir, tmp_path):
    """torch's OpenMP pool crashed (exit 139) at --threads 99999 and OMP_NUM_THREADS=99999."""
    src = make_png(tmp_path / "a.png", 20, 28)
    cpus = hw.usable_cpus()
    proc = edgesr_proc("upscale", src, "-o", tmp_path / "a.png.out.png", "-m", tiny_model_dir, "--threads", "99999")
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"note: --threads 99999 is more than the {cpus} CPU" in proc.stderr.decode()
    proc = edgesr_proc("upscale", src, "-o", tmp_path / "b.png", "-m", tiny_model_dir,
                       pre="import os; os.environ['OMP_NUM_THREADS'] = '99999'")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "note: OMP_NUM_THREADS=99999 is more than" in proc.stderr.decode()


def test_recursive_glob_over_a_folder_linking_to_itself_ends(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    make_png(src / "a.png", 20, 28)
    make_png(src / "sub" / "b.png", 20, 28)
    (src / "selfdir").symlink_to(".")
    (src / "sub" / "up").symlink_to("..")
    proc = edgesr_proc("upscale", f"{src}/**/*.png", "-o", tmp_path / "out", "-m", tiny_model_dir, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert sorted(r["input"] for r in summary["images"]) == [str(src / "a.png"), str(src / "sub" / "b.png")]


def test_config_asking_for_a_huge_model_is_one_line(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["unet"]["base_channels"] = 1_000_000  # a 16 TB UNet
    (model / "config.json").write_text(json.dumps(cfg))
    src = make_png(tmp_path / "a.png", 20, 28)
    from typer.testing import CliRunner

    from edgesr_cli.cli import app

    result = CliRunner().invoke(app, ["upscale", str(src), "-m", str(model), "--dtype", "fp32"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {model / 'unet.safetensors'}: weights do not match the config (shape mismatch")


# ---- read before bounded: sizes from the header, bytes capped --------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any image's pixels are decoded."""

    def refuse(im, label):
        raise AssertionError(f"{label} was decoded")

    monkeypatch.setattr(decode, "_load", refuse)
    monkeypatch.setattr(decode, "_decode_planar", lambda im, fp, label: refuse(im, label), raising=False)


def test_output_size_is_refused_from_the_header_before_decoding(tiny_model_dir, tmp_path, no_decoding):
    """A 170 KB PNG declaring 12000x12000 was decoded (2.6 GB) before --max-output-pixels refused it."""
    src = tmp_path / "big.png"
    src.write_bytes(png_by_hand(300, 200, rows=200))
    result = upscale(tiny_model_dir, src, "-o", tmp_path / "out.png", "--max-output-pixels", "100000", ok_codes=(1,))
    assert error_lines(result) == [f"error: {src}: its x4 output would be 1200x800 = 960,000 pixels, over "
                                   f"--max-output-pixels 100,000"]


def test_memory_is_refused_from_the_header_before_decoding(tiny_model_dir, tmp_path, no_decoding, monkeypatch):
    values = noisy16(64, 64, 4)
    write_image(tmp_path / "deep.png", Photo(rgb=values[..., :3] / 65535, alpha=values[..., 3] / 65535,
                                             bit_depth=16))
    monkeypatch.setattr(hw, "available_memory", lambda: 1 << 20)
    result = upscale(tiny_model_dir, tmp_path / "deep.png", "-o", tmp_path / "out.png", ok_codes=(1,))
    (line,) = error_lines(result)
    assert line.startswith(f"error: {tmp_path / 'deep.png'}: needs about ") and "for its 256x256 output" in line


def test_read_image_hands_the_header_to_check_before_decoding(tmp_path, no_decoding):
    tifffile.imwrite(tmp_path / "p.tif", noisy16(12, 10, 4).transpose(2, 0, 1), planarconfig="separate",
                     photometric="rgb", extrasamples=[2])
    seen = []

    def check(info):
        seen.append(info)
        raise ImageError("p.tif", "refused by its header")

    with pytest.raises(ImageError, match="refused by its header"):
        read_image(tmp_path / "p.tif", check=check)
    assert seen == [eio.ImageInfo(10, 12, 16, False, True, "TIFF")]


# A process that may not grow past 1 GiB of address space: reading a 3 GB file whole fails there.
SMALL_ADDRESS_SPACE = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"


def _read_in_small_process(path: Path) -> subprocess.CompletedProcess:
    code = SMALL_ADDRESS_SPACE + f"""
from edgesr_cli.io import ImageError, read_image
try:
    read_image({str(path)!r})
except ImageError as exc:
    print(exc)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def _sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as f:  # no disk, but `size` bytes to read
        f.write(head)
        f.truncate(size)
    return path


def test_huge_sparse_files_are_refused_unread(tmp_path):
    """A 3 GB file named .png was read whole (3.3 GB) before "not an image"; here the process may not even hold 1 GiB."""
    junk = _sparse(tmp_path / "junk.png", 2 << 30)
    proc = _read_in_small_process(junk)
    assert proc.stdout.strip() == f"{junk}: not an image (cannot identify image file)", proc.stderr
    huge = _sparse(tmp_path / "huge.png", 3 << 30)  # more than any image within the default --max-pixels
    proc = _read_in_small_process(huge)
    assert proc.stdout.strip() == (f"{huge}: 3.0 GiB file, more than an image within the pixel limit (178,956,970 "
                                   f"pixels, --max-pixels) can take up; not read"), proc.stderr
    padded = _sparse(tmp_path / "padded.png", 2 << 30, head=png_by_hand(16, 16, rows=16))  # a 16x16 PNG, then zeros
    proc = _read_in_small_process(padded)
    assert proc.stdout.strip() == (f"{padded}: 2.0 GiB file for a 16x16 image, more than its pixels and metadata "
                                   f"can take up; not read"), proc.stderr


def test_byte_limit_follows_the_pixels():
    assert eio.byte_limit(None) is None
    assert eio.byte_limit(16 * 16) == 16 * 256 + (64 << 20)
    assert eio.byte_limit(178_956_970) < 3 * 2**30  # the default --max-pixels: under a 3 GB file


def _pipe(cmd: str, tiny_model_dir: Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGESR_MODEL": str(tiny_model_dir), **(env or {})}
    full_env.pop("EDGESR_DEBUG", None)
    edgesr = f"{sys.executable} -c 'from edgesr_cli.cli import main; main()'"
    return subprocess.run(["bash", "-c", cmd.format(edgesr=edgesr)], capture_output=True, timeout=120, env=full_env,
                          cwd=cwd)


def test_endless_stdin_is_not_read_past_what_the_image_can_be(tiny_model_dir, tmp_path):
    """`edgesr upscale - < /dev/zero` grew to 5.5 GB. Zeros are not an image after a few bytes; an image followed by
    endless zeros is read as far as the image goes; a PNG whose first chunk declares 2 GB is read only as far as
    its declared 16x16 pixels and metadata can take up (64 MiB + 4 KiB)."""
    proc = _pipe("{edgesr} upscale - -o zeros.png < /dev/zero", tiny_model_dir, tmp_path)
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stderr.decode().splitlines()[0] == "error: <stdin>: not an image (cannot identify image file)"
    (tmp_path / "image.png").write_bytes(png_by_hand(16, 16, rows=16))
    proc = _pipe("cat image.png /dev/zero | {edgesr} upscale - -o image-x4.png", tiny_model_dir, tmp_path)
    assert proc.returncode == 0 and size_of(tmp_path / "image-x4.png") == (64, 64), proc.stderr.decode()
    head = png_by_hand(16, 16, rows=16)[:33] + struct.pack(">I", 2**31 - 1) + b"prVt"  # then 2 GB of zeros, unread
    (tmp_path / "head.png").write_bytes(head)
    proc = _pipe("cat head.png /dev/zero | {edgesr} upscale - -o out.png", tiny_model_dir, tmp_path)
    assert proc.returncode == 1, proc.stderr.decode()
    (line,) = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("error:")]
    assert line == ("error: <stdin>: more than 64.0 MiB of input for a 16x16 image, more than its pixels and "
                    "metadata can take up; stopped reading")
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "zeros.png").exists()


def test_an_image_on_stdin_is_still_read_whole(tiny_model_dir, tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", noisy16(20, 28, 3).transpose(2, 0, 1), planarconfig="separate",
                     photometric="rgb")
    proc = _pipe("{edgesr} upscale - -o out.tif < p.tif", tiny_model_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert tifffile.imread(tmp_path / "out.tif").shape == (80, 112, 3)


# ---- wrongly reported ----------------------------------------------------------------------------------------------


def test_broken_pipe_with_unbuffered_stdout_is_reported(tiny_model_dir, tmp_path):
    """With PYTHONUNBUFFERED=1 stdout takes part of a large write (196 KB, more than a pipe holds) and says so
    only by the count it returns."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    proc = _pipe("{edgesr} upscale a.png -o - --png-compression 0 2>err.txt | head -c 100 > /dev/null; "
                 "echo ${{PIPESTATUS[0]}} > rc.txt", tiny_model_dir, tmp_path, env={"PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0
    err = (tmp_path / "err.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1", err
    assert err.strip().splitlines() == ["error: <stdout>: cannot write (Broken pipe)"]


def test_an_unreadable_subfolder_is_a_failure_not_silence(tiny_model_dir, tmp_path, monkeypatch):
    src = tmp_path / "in"
    make_png(src / "a.png", 20, 28)
    make_png(src / "locked" / "b.png", 20, 28)
    real_scandir = os.scandir

    def scandir(path="."):  # as chmod 000 does for a user other than root
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = upscale(tiny_model_dir, src, "-o", tmp_path / "out", ok_codes=(1,))
    assert error_lines(result) == [f"error: {src / 'locked'}: cannot read this folder (Permission denied); its "
                                   "images were not processed"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


@pytest.mark.parametrize("args", [["--quality", "0"], ["--detail", "2"], ["--backend", "nope"], ["-f", "gif"],
                                  ["--max-pixels", "-1"], ["--tile", str(2 ** 70)], ["--max-output-pixels", "-5"],
                                  ["--steps", str(2 ** 40)]])
def test_bad_option_values_are_one_line_usage_errors(tmp_path, args):
    src = make_png(tmp_path / "a.png", 20, 28)
    proc = edgesr_proc("upscale", src, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {args[0]} {args[1]}: ") or line.startswith(f"error: --ext {args[1]}: "), line
    assert not (tmp_path / "a_x4.png").exists()


COLOUR_TIFFS = {
    "float32": (np.float32, "32-bit floating-point samples are not supported"),
    "float16": (np.float16, "16-bit floating-point samples are not supported"),
    "int16": (np.int16, "signed 16-bit integer samples are not supported"),
    "uint32": (np.uint32, "a TIFF of 3 32-bit samples per pixel, which is not supported"),
}


@pytest.mark.parametrize("kind", list(COLOUR_TIFFS))
def test_colour_tiffs_pillow_cannot_open_are_described(tmp_path, kind):
    dtype, problem = COLOUR_TIFFS[kind]
    tifffile.imwrite(tmp_path / "odd.tif", np.zeros((4, 5, 3), dtype), photometric="rgb")
    with pytest.raises(ImageError, match=problem):
        read_image(tmp_path / "odd.tif")


def test_uint32_tiff_is_described_with_its_unsigned_values(tmp_path):
    tifffile.imwrite(tmp_path / "u32.tif", np.array([[0, 3_000_000_000]], np.uint32))
    with pytest.raises(ImageError, match="32-bit integer samples from 0 to 3000000000 do not fit 16 bits"):
        read_image(tmp_path / "u32.tif")


# In the child: loading the model sends the signal to the process (as a timeout or a closed terminal would).
SIGNAL_WHILE_LOADING = """
import os, signal, time, edgesr_cli.runtime.resolve as resolve
def load(*a, **k):
    os.kill(os.getpid(), signal.{sig})
    time.sleep(30)
resolve.load = load
"""


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_signal_while_the_model_loads_ends_with_the_summary(tiny_model_dir, tmp_path, sig, code):
    src = make_png(tmp_path / "a.png", 20, 28)
    proc = edgesr_proc("upscale", src, "-o", tmp_path / "out.png", "-m", tiny_model_dir,
                       pre=SIGNAL_WHILE_LOADING.format(sig=sig))
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == code, err
    assert err[-2].startswith("0 upscaled, 0 skipped, 0 failed, 1 not started in ")
    assert err[-1] == f"error: terminated ({sig})"


def test_an_invalid_omp_num_threads_is_one_note_not_a_libgomp_line(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png", 20, 28)
    proc = edgesr_proc("upscale", src, "-o", tmp_path / "out.png", "-m", tiny_model_dir, "--dtype", "fp32", "-q",
                       pre="import os; os.environ['OMP_NUM_THREADS'] = 'abc'")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode() == ""  # -q: not even the note; and no "libgomp: Invalid value ..."


# ---- the light install (no torch): options it cannot honour, threads, ONNX Runtime's own lines ---------------------


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("light30")
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(d / "small.png")
    return d / "small.png"


@pytest.mark.parametrize("args, problem", [
    (["--device", "cuda"], "error: --device cuda: the onnx backend runs on cpu only"),
    (["--dtype", "fp16"], "error: --dtype fp16: the onnx backend runs fp32"),
    (["--dtype", "bf16"], "error: --dtype bf16: the onnx backend runs fp32"),
])
def test_light_install_refuses_what_it_would_silently_ignore(small_photo, tmp_path, args, problem):
    from test_light_install import light

    res = light("upscale", str(small_photo), "-o", str(tmp_path / "x.png"), *args, cwd=tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("LOADED=")]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith(problem), res.stderr
    assert not (tmp_path / "x.png").exists()


def test_light_install_caps_threads_and_keeps_onnx_runtime_quiet(small_photo, tmp_path):
    """999 threads on a tiny image took minutes; ONNX Runtime printed a coloured telemetry warning where it could not
    store a device id (no writable home folder)."""
    from test_light_install import light

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {"HOME": str(blocked), "XDG_CACHE_HOME": str(blocked / "cache")}
    old = {k: os.environ.get(k) for k in (*env, "ORT_DISABLE_TELEMETRY")}
    os.environ.update(env)
    os.environ.pop("ORT_DISABLE_TELEMETRY", None)
    try:
        res = light("upscale", str(small_photo), "-o", str(tmp_path / "x.png"), "--threads", "999", cwd=tmp_path)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("LOADED=")]
    cpus = hw.usable_cpus()
    assert lines[0] == f"note: --threads 999 is more than the {cpus} CPU{'s' if cpus != 1 else ''} this process may " \
                       f"use; using {cpus}"
    assert len(lines) == 2 and lines[1].startswith("1 upscaled, 0 skipped, 0 failed in "), res.stderr
    assert "onnxruntime" not in res.stderr


# ---- memory: the light install at or under the torch install's, the output held once -----------------------------

# In the child: a 4000x4000 RGB output in memory (48 MB, every page touched), then encoded to PNG; what the encoder
# adds to the peak resident memory is printed in MiB. Pillow's encoder copied the image (64 MB at 4 bytes a pixel).
PNG_ENCODE_PEAK = """
import numpy as np
from edgesr_cli.io import Photo, encode_image
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
values = np.full((4000, 4000, 3), 7, dtype=np.uint8)  # one value: a small file, so the encoded bytes do not count
before = hwm()
data = encode_image(Photo(rgb=values), "png")
print(hwm() - before)
"""


def test_png_writer_takes_no_copy_of_the_image():
    proc = subprocess.run([sys.executable, "-c", PNG_ENCODE_PEAK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 16, proc.stdout  # MiB: a few blocks of rows, not the 48 MB image


class _Upsampler:
    """A runner with edge-tiny's geometry (x4, latent /4, 16 channels) that only repeats pixels: the engine's own
    memory, without a model's."""

    scale, latent_factor, latent_channels, lr_multiple, conditioning, schedule = 4, 4, 16, 1, "bidirectional", None

    def fused_one_step(self, lr, noise):
        return np.repeat(np.repeat(lr, 4, axis=2), 4, axis=3)


@pytest.mark.parametrize("height, width, tile", [(100, 1000, 32), (60, 600, 16)])
def test_engine_holds_two_tile_rows_of_float_sums_and_no_copy_of_the_photo(height, width, tile):
    """Beyond the output buffer the engine's peak is its float sums and weights (at most two tile rows of the output,
    4 channels of float32) and little else: no float copy of the band it hands out, of the sums when rows finish,
    or of the photo (its (H, W, 3) pixels are read as a (3, H, W) view). It was 2.4 times the sums."""
    import tracemalloc

    from edgesr_cli.runtime.upscale import UpscaleOptions, upscale_photo

    photo = Photo(rgb=np.random.default_rng(0).random((height, width, 3), dtype=np.float32))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = upscale_photo(_Upsampler(), photo, UpscaleOptions(tile=tile), quantize=np.uint8)
        peak = tracemalloc.get_traced_memory()[1] - base - out.rgb.nbytes
    finally:
        tracemalloc.stop()
    sums = 4 * (2 * tile * 4) * (width * 4) * 4
    assert peak < 1.8 * sums, (peak, sums)
    assert out.rgb.shape == (height * 4, width * 4, 3)


def test_onnx_backend_runs_one_tile_per_session_run():
    """ONNX Runtime's arena keeps the largest run's activations for the process: 4 tiles at once cost +520 MB."""
    from edgesr_cli.backends.onnx_backend import OnnxBackend

    runner = OnnxBackend.__new__(OnnxBackend)
    runner.static_batch = None
    seen = []
    runner._run = lambda graph, feeds: seen.append(feeds["lr"].shape[0]) or {"hr": feeds["lr"] * 2}
    out = runner._call("fused", {"lr": np.arange(4.0).reshape(4, 1), "noise": np.zeros((4, 1))})
    assert seen == [1, 1, 1, 1] and np.array_equal(out["hr"], np.arange(4.0).reshape(4, 1) * 2)
