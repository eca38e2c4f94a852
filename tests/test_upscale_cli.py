"""`edgesr upscale`: folders, pipes, resume, shards, photo formats, bad input.

Runs the real command (typer's CliRunner, or a subprocess where stdin/stdout matter) with the
test-tiny model, randomly initialised and written to a temp dir once per session. Images are tiny
(40x56 LR) so each run takes a fraction of a second. Nothing here reads ../shared or downloads.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.cli_upscale import in_shard
from edgesr_cli.io import Photo, read_image, write_image

H, W = 40, 56  # LR size of the test photos (rows, columns)
# --batch 1 vs 3 on written 8-bit PNGs: at most one 8-bit step apart (engine float tolerance 1e-5).
BATCH_LSB_TOL = 1


def photo_rgb(h: int = H, w: int = W, name: str = "astronaut") -> np.ndarray:
    from skimage import data, transform

    return transform.resize(getattr(data, name)(), (h, w), anti_aliasing=True).astype(np.float32)


def make_png(path: Path, h: int = H, w: int = W, **photo) -> Path:
    return write_image(path, Photo(rgb=photo_rgb(h, w), **photo))


def upscale(tiny_model_dir: Path, *args: str, ok_codes=(0,)):
    """Run `edgesr upscale ARGS -m MODEL` in-process; a crash (not a clean exit) fails the test."""
    result = CliRunner().invoke(app, ["upscale", *map(str, args), "-m", str(tiny_model_dir), "--threads", "1",
                                      "--dtype", "fp32"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in ok_codes, (result.exit_code, result.output)
    return result


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")] \
        if folder.exists() else True


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


# ---- folders, names, JSON ------------------------------------------------------------------------


def test_folder_is_mirrored_with_names_kept_and_json_summary(tiny_model_dir, tmp_path):
    src = tmp_path / "shoot"
    make_png(src / "a.png")
    write_image(src / "day 2" / "b.jpg", photo_rgb())
    write_image(src / "day 2" / "deeper" / "c.webp", photo_rgb())
    (src / "notes.txt").write_text("not an image")
    make_png(src / ".hidden.png")
    out = tmp_path / "out"
    result = upscale(tiny_model_dir, src, "-o", out, "--json")
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (3, 0, 0)
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == ["a.png", "day 2/b.jpg", "day 2/deeper/c.webp"]
    for rel in made:
        assert size_of(out / rel) == (4 * W, 4 * H)
    assert {r["output"] for r in summary["images"]} == {str(out / m) for m in made}
    assert all(r["status"] == "ok" and r["size"] == [4 * W, 4 * H] for r in summary["images"])
    assert summary["backend"] == "torch"


def test_single_file_to_named_output_and_default_suffix(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png")
    upscale(tiny_model_dir, src, "-o", tmp_path / "big.jpg", "-q")
    assert size_of(tmp_path / "big.jpg") == (4 * W, 4 * H)
    with Image.open(tmp_path / "big.jpg") as im:
        assert im.format == "JPEG"
    upscale(tiny_model_dir, src, "-q")
    assert (tmp_path / "a_x4.png").is_file()


def test_rerun_beside_inputs_does_not_upscale_its_own_outputs(tiny_model_dir, tmp_path):
    """Default output is beside the input (a_x4.png); a re-run must not take a_x4.png as input."""
    folder = tmp_path / "photos"
    make_png(folder / "a.png")
    make_png(folder / "b.png")
    upscale(tiny_model_dir, folder, "-q")
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    summary = json.loads(upscale(tiny_model_dir, folder, "--skip-existing", "--json").stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 2, 0)
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png", "b.png", "b_x4.png"]
    # same with an output folder inside the input folder
    folder = tmp_path / "photos2"
    make_png(folder / "a.png")
    upscale(tiny_model_dir, folder, "-o", folder / "x4", "-q")
    summary = json.loads(upscale(tiny_model_dir, folder, "-o", folder / "x4", "--skip-existing", "--json").stdout)
    assert (summary["done"], summary["skipped"]) == (0, 1) and not (folder / "x4" / "x4").exists()


def test_two_inputs_for_one_output_are_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    write_image(folder / "x.jpg", photo_rgb())
    write_image(folder / "x.jpeg", photo_rgb())
    out = tmp_path / "out"
    result = upscale(tiny_model_dir, folder, "-o", out, "--overwrite", ok_codes=(2,))
    assert "x.jpg" in result.stderr and "x.jpeg" in result.stderr and "both" in result.stderr
    assert not out.exists()


# ---- stdin / stdout ------------------------------------------------------------------------------


def _edgesr(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGESR_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-c", "from edgesr_cli.cli import main; main()", *args],
                          input=stdin, capture_output=True, env=env, timeout=120)


def test_stdin_to_stdout_pipe(tiny_model_dir, tmp_path):
    jpeg = io.BytesIO()
    Image.fromarray((photo_rgb() * 255).round().astype(np.uint8)).save(jpeg, "JPEG", quality=95)
    proc = _edgesr("upscale", "-", "-m", str(tiny_model_dir), "-f", "png", "--dtype", "fp32", stdin=jpeg.getvalue())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(proc.stdout)) as im:
        assert im.format == "PNG" and im.size == (4 * W, 4 * H)
    assert b"error" not in proc.stderr
    # the same bytes as the file path gives
    src = tmp_path / "a.jpg"
    src.write_bytes(jpeg.getvalue())
    upscale(tiny_model_dir, src, "-o", tmp_path / "a.png", "-q")
    assert (tmp_path / "a.png").read_bytes() == proc.stdout


def test_stdin_bad_bytes(tiny_model_dir):
    proc = _edgesr("upscale", "-", "-m", str(tiny_model_dir), "-f", "png", stdin=b"this is not an image\n")
    assert proc.returncode == 1 and proc.stdout == b""
    lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("error:")]
    assert lines == ["error: <stdin>: not an image (cannot identify image file)"]


def test_json_cannot_share_stdout_with_the_image(tiny_model_dir, tmp_path):
    result = upscale(tiny_model_dir, make_png(tmp_path / "a.png"), "-o", "-", "--json", ok_codes=(2,))
    assert "--json" in result.stderr and result.stdout == ""


# ---- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png")
    outs = []
    for run, seed in enumerate((7, 7, 8)):
        dst = tmp_path / f"run{run}.png"
        upscale(tiny_model_dir, src, "-o", dst, "--seed", seed, "-q")
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    a, c = (np.asarray(Image.open(io.BytesIO(b))).astype(int) for b in (outs[0], outs[2]))
    assert np.abs(a - c).max() >= 2  # sigma > 0: a different noise field, visibly different


def test_batch_size_does_not_change_the_output(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png")
    arrays = []
    for batch in (1, 3):
        dst = tmp_path / f"b{batch}.png"
        upscale(tiny_model_dir, src, "-o", dst, "--tile", "24", "--batch", batch, "-q")  # 2x3 = 6 tiles
        arrays.append(np.asarray(Image.open(dst)).astype(int))
    assert np.abs(arrays[0] - arrays[1]).max() <= BATCH_LSB_TOL


# ---- resume, overwrite, shards -------------------------------------------------------------------


def _half_done(tmp_path: Path) -> tuple[Path, Path, Path, bytes]:
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        make_png(src / f"{name}.png")
    done = out / "b.png"
    write_image(done, photo_rgb(8, 8))  # an earlier run's output, recognisably not this run's
    os.utime(done, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return src, out, done, done.read_bytes()


def test_skip_existing_resumes_a_half_done_folder(tiny_model_dir, tmp_path):
    src, out, done, before = _half_done(tmp_path)
    summary = json.loads(upscale(tiny_model_dir, src, "-o", out, "--skip-existing", "--json").stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 1, 0)
    assert done.read_bytes() == before and done.stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert size_of(out / "a.png") == size_of(out / "c.png") == (4 * W, 4 * H)
    assert [r["status"] for r in summary["images"]] == ["ok", "skipped", "ok"]


def test_existing_output_is_not_overwritten_by_default(tiny_model_dir, tmp_path):
    src, out, done, before = _half_done(tmp_path)
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    assert error_lines(result) == [f"error: {done}: exists (use --overwrite to replace it or --skip-existing)"]
    assert done.read_bytes() == before
    assert (out / "a.png").is_file() and (out / "c.png").is_file()  # the others are still done


def test_overwrite_replaces(tiny_model_dir, tmp_path):
    src, out, done, before = _half_done(tmp_path)
    upscale(tiny_model_dir, src, "-o", out, "--overwrite", "-q")
    assert done.read_bytes() != before and size_of(done) == (4 * W, 4 * H)
    assert no_temp_files(out)


def test_skip_existing_and_overwrite_exclude_each_other(tiny_model_dir, tmp_path):
    result = upscale(tiny_model_dir, make_png(tmp_path / "a.png"), "--skip-existing", "--overwrite", ok_codes=(2,))
    assert "exclude" in result.stderr


def test_shards_partition_without_overlap_or_loss(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    names = [f"{d}/{i}.png" for d in ("x", "y/z") for i in range(4)] + ["top.png"]
    for n in names:
        make_png(src / n, 12, 16)
    got = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        summary = json.loads(upscale(tiny_model_dir, src, "-o", out, "--shard", f"{i}/3", "--json").stdout)
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) if out.exists() else []
        assert summary["done"] == len(files)
        assert files == sorted(n for n in names if in_shard(Path(n), (i, 3)))
        got.append(set(files))
    assert set.union(*got) == set(names)
    assert sum(len(g) for g in got) == len(names)
    assert all(got), "every shard gets some of the 9 files"


@pytest.mark.parametrize("bad", ["3/3", "1/0", "a/b", "-1/2"])
def test_bad_shard(tiny_model_dir, tmp_path, bad):
    result = upscale(tiny_model_dir, make_png(tmp_path / "a.png"), f"--shard={bad}", ok_codes=(2,))
    assert "--shard" in result.stderr


def test_stdout_with_a_shard_that_excludes_the_file(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png")
    other = 0 if not in_shard(Path("a.png"), (0, 2)) else 1
    result = upscale(tiny_model_dir, src, "-o", "-", "--shard", f"{other}/2")
    assert result.stdout_bytes == b""


# ---- photo handling ------------------------------------------------------------------------------


def test_16bit_png_in_16bit_png_out(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "deep.png", bit_depth=16)
    dst = tmp_path / "out.png"
    upscale(tiny_model_dir, src, "-o", dst, "-q")
    data = dst.read_bytes()
    assert data[24] == 16  # IHDR bit depth
    p = read_image(dst)
    assert p.bit_depth == 16 and (p.height, p.width) == (4 * H, 4 * W)
    values = np.rint(p.rgb * 65535).astype(np.int64)
    assert (values % 257 != 0).mean() > 0.5  # real 16-bit precision, not 8-bit values widened


def test_rgba_in_rgba_out_with_alpha_upscaled(tiny_model_dir, tmp_path):
    alpha = np.tile(np.linspace(0.0, 1.0, W, dtype=np.float32), (H, 1))
    alpha[:10] = 1.0
    src = make_png(tmp_path / "rgba.png", alpha=alpha)
    dst = tmp_path / "out.png"
    upscale(tiny_model_dir, src, "-o", dst, "-q")
    with Image.open(dst) as im:
        assert im.mode == "RGBA" and im.size == (4 * W, 4 * H)
        a = np.asarray(im)[..., 3].astype(np.float32) / 255
    ref = torch.nn.functional.interpolate(torch.from_numpy(alpha)[None, None], scale_factor=4.0, mode="bicubic",
                                          align_corners=False)[0, 0].clamp(0, 1).numpy()
    assert np.abs(a - ref).max() <= 1 / 255 + 1e-6
    assert a[:36].min() == 1.0 and a[-1, 0] == 0.0


def test_rgba_to_jpeg_is_a_per_file_error(tiny_model_dir, tmp_path):
    alpha = np.full((H, W), 0.5, dtype=np.float32)
    src = tmp_path / "in"
    make_png(src / "rgba.png", alpha=alpha)
    make_png(src / "plain.png")
    result = upscale(tiny_model_dir, src, "-o", tmp_path / "out", "-f", "jpg", ok_codes=(1,))
    assert len(error_lines(result)) == 1 and "rgba.jpg" in error_lines(result)[0]
    assert (tmp_path / "out" / "plain.jpg").is_file() and not (tmp_path / "out" / "rgba.jpg").exists()


def test_grayscale_in_grayscale_out(tiny_model_dir, tmp_path):
    gray = photo_rgb().mean(axis=2)
    src = tmp_path / "gray.png"
    Image.fromarray((gray * 255).round().astype(np.uint8), "L").save(src)
    dst = tmp_path / "out.png"
    upscale(tiny_model_dir, src, "-o", dst, "-q")
    with Image.open(dst) as im:
        assert im.mode == "L" and im.size == (4 * W, 4 * H)
    assert read_image(dst).grayscale


def test_exif_orientation_applied(tiny_model_dir, tmp_path):
    """A JPEG stored 56x40 with orientation 6 (rotate 90 degrees clockwise) displays 40x56."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    src = tmp_path / "rot.jpg"
    Image.fromarray((photo_rgb() * 255).round().astype(np.uint8)).save(src, "JPEG", quality=95, exif=exif.tobytes())
    dst = tmp_path / "out.png"
    upscale(tiny_model_dir, src, "-o", dst, "-q")
    with Image.open(dst) as im:
        assert im.size == (4 * H, 4 * W)  # width, height: transposed, x4
        out_exif = im.getexif()
        assert out_exif.get(0x0112, 1) == 1
        assert out_exif.get(0x010F) == "TestCam"  # the rest of the EXIF is kept


# ---- bad input -----------------------------------------------------------------------------------


def _good_png_bytes(h: int = H, w: int = W) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((photo_rgb(h, w) * 255).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _corrupt() -> bytes:
    data = bytearray(_good_png_bytes(20, 28))  # under --max-pixels 1000: the decoder must notice
    i = data.index(b"IDAT")
    data[i + 40:i + 200] = bytes(160)
    return bytes(data)


BAD_FILES = {
    "corrupt": ("broken.png", _corrupt, "corrupt"),
    "truncated": ("cut.png", lambda: _good_png_bytes(20, 28)[:600], "truncated"),
    "zero-byte": ("empty.png", lambda: b"", "empty file"),
    "text-as-jpg": ("notes.jpg", lambda: b"shopping list: milk, eggs\n", "not an image"),
    "too-many-pixels": ("huge.png", _good_png_bytes, "exceeds the limit of 1000"),
    "brackets-in-name": ("IMG [edit].png", lambda: b"", "empty file"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_input_in_a_batch(tiny_model_dir, tmp_path, kind):
    name, payload, problem = BAD_FILES[kind]
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / name).write_bytes(payload())
    make_png(src / "good.png", 20, 28)  # 560 pixels: under --max-pixels 1000
    result = upscale(tiny_model_dir, src, "-o", out, "--max-pixels", "1000", ok_codes=(1,))
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {src / name}: ") and problem in lines[0], lines
    assert "Traceback" not in result.stderr
    assert size_of(out / "good.png") == (4 * 28, 4 * 20)  # the other file is still processed
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # no partial output, no temp file
    assert "1 upscaled, 0 skipped, 1 failed" in result.stderr


def test_bad_input_single_file_json(tiny_model_dir, tmp_path):
    bad = tmp_path / "cut.png"
    bad.write_bytes(_good_png_bytes()[:1500])
    result = upscale(tiny_model_dir, bad, "-o", tmp_path / "out", "--json", ok_codes=(1,))
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["images"][0]["error"].startswith(f"{bad}: truncated")
    assert not (tmp_path / "out").exists()


def test_output_folder_not_writable(tiny_model_dir, tmp_path):
    """Root ignores chmod, so: an output folder below a regular file."""
    src = tmp_path / "in"
    make_png(src / "a.png")
    make_png(src / "b.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = blocker / "out"
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    lines = error_lines(result)
    assert len(lines) == 2 and all("cannot write" in line for line in lines)
    assert lines[0].startswith(f"error: {out / 'a.png'}: ") and lines[1].startswith(f"error: {out / 'b.png'}: ")
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "in"]


def test_unknown_ext_is_a_usage_error(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png")
    result = upscale(tiny_model_dir, src, "-o", tmp_path / "out", "-f", "gif", ok_codes=(2,))
    assert "--ext" in result.output and "gif" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overlap", ["0.5", "-0.1"])
def test_bad_overlap_is_a_usage_error(tiny_model_dir, tmp_path, overlap):
    result = upscale(tiny_model_dir, make_png(tmp_path / "a.png"), f"--overlap={overlap}", ok_codes=(2,))
    assert "--overlap" in result.stderr and not (tmp_path / "a_x4.png").exists()


def test_missing_input_and_bad_model(tiny_model_dir, tmp_path):
    result = upscale(tiny_model_dir, tmp_path / "nope.png", ok_codes=(2,))
    assert error_lines(result) == [f"error: {tmp_path / 'nope.png'}: no such file or folder"]
    result = CliRunner().invoke(app, ["upscale", str(make_png(tmp_path / "a.png")), "-m", str(tmp_path)])
    assert result.exit_code == 2 and "not a model directory" in result.stderr
