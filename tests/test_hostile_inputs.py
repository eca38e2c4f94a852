"""`edgesr upscale` on hostile and unusual inputs (issue 16): every case is one clear line, the rest
of the batch still runs, and nothing is damaged, left half-written or silently dropped.

The corpus is generated here, at test time, in tmp_path (tiny images, the test-tiny model except
where the shipped model's default precision is the point). Nothing reads ../shared or downloads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.io import Photo, read_image, write_image
from test_upscale_cli import error_lines, make_png, no_temp_files, size_of, upscale

tifffile = pytest.importorskip("tifffile")


def run_cli(*args: str, ok_codes=(0,)):
    """`edgesr upscale ARGS` in-process with no -m/--dtype added (the defaults are under test)."""
    result = CliRunner().invoke(app, ["upscale", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in ok_codes, (result.exit_code, result.output)
    return result


def batch_with(tmp_path: Path, name: str, write) -> tuple[Path, Path]:
    """A folder holding one hostile file (written by `write(path)`) and one good PNG."""
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    write(src / name)
    make_png(src / "good.png", 20, 28)
    return src, tmp_path / "out"


def assert_one_failure(result, path: Path, problem: str, out: Path) -> None:
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and problem in lines[0], lines
    assert "Traceback" not in result.output
    assert size_of(out / "good.png") == (4 * 28, 4 * 20)  # the rest of the batch is processed
    assert no_temp_files(out)


# ---- 1. precision: 16-bit inputs run in fp32 -----------------------------------------------------


def test_16bit_gradient_keeps_16_bits_with_default_options(tmp_path):
    """Default options (shipped model, --dtype auto: bf16 on CPUs with native bf16) on a 16-bit RGB
    gradient: the output must hold real 16-bit precision, not ~8 bits widened."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    g = (y * 64 + x) / 4095.0  # 4096 levels over the whole 16-bit range
    src = write_image(tmp_path / "grad.png", Photo(rgb=np.stack([g, g[::-1], g[:, ::-1]], -1), bit_depth=16))
    dst = tmp_path / "out.png"
    run_cli(src, "-o", dst, "-q", "--threads", "1")
    out = read_image(dst)
    assert out.bit_depth == 16 and (out.height, out.width) == (256, 256)
    values = np.rint(out.rgb * 65535).astype(np.int64)
    distinct = [len(np.unique(values[..., c])) for c in range(3)]
    assert min(distinct) > 10_000, distinct


def test_16bit_runs_on_an_fp32_twin_of_a_bf16_runner(tiny_model_dir):
    import torch

    from edgesr_cli.backends.torch_backend import load
    from edgesr_cli.runtime.resolve import fp32_twin

    bf16 = load(tiny_model_dir, device="cpu", dtype="bf16")
    twin = fp32_twin(bf16)
    assert twin.dtype == torch.float32 and twin.model is bf16.model and bf16.dtype == torch.bfloat16
    assert fp32_twin(load(tiny_model_dir, device="cpu", dtype="fp32")) is None


def test_dtype_help_says_16bit_runs_in_fp32():
    import typer

    command = typer.main.get_command(app).commands["upscale"]
    (option,) = [p for p in command.params if p.name == "dtype"]
    assert "16-bit inputs always run in fp32" in option.help


# ---- 2. signed and other integer TIFF modes --------------------------------------------------------

INTEGER_TIFFS = {
    "int16": (np.array([[-100, 0], [100, 30000]], dtype=np.int16), "signed 16-bit integer samples"),
    "int8": (np.array([[-100, 0], [100, 127]], dtype=np.int8), "signed 8-bit integer samples"),
    "int32": (np.array([[-5, 0], [7, 9]], dtype=np.int32), "signed 32-bit integer samples"),
    "uint32-over-16-bit": (np.array([[0, 70000], [5, 6]], dtype=np.uint32), "from 0 to 70000 do not fit 16 bits"),
}


@pytest.mark.parametrize("kind", list(INTEGER_TIFFS))
def test_integer_tiff_modes_are_refused_not_wrapped(tiny_model_dir, tmp_path, kind):
    values, problem = INTEGER_TIFFS[kind]
    src, out = batch_with(tmp_path, "odd.tif", lambda p: tifffile.imwrite(p, np.tile(values, (10, 14))))
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    assert_one_failure(result, src / "odd.tif", problem, out)
    assert not (out / "odd.tif").exists()


def test_uint32_tiff_within_16_bits_is_read_exactly(tmp_path):
    values = np.array([[0, 65535], [1234, 7]], dtype=np.uint32)
    tifffile.imwrite(tmp_path / "u32.tif", values)
    p = read_image(tmp_path / "u32.tif")
    assert p.bit_depth == 16 and p.grayscale
    assert np.array_equal(np.rint(p.rgb[..., 0] * 65535).astype(np.int64), values)


# ---- 3. multi-frame input; output TIFFs do not copy a layout ImageDescription --------------------


def _gif(path: Path, frames: int = 3) -> None:
    ims = [Image.fromarray(np.full((20, 28, 3), 40 * i, np.uint8)) for i in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0)


def _apng(path: Path, frames: int = 4) -> None:
    ims = [Image.fromarray(np.full((20, 28, 3), 40 * i + 1, np.uint8)) for i in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100)


def _multipage_tiff(path: Path, pages: int = 2) -> None:
    tifffile.imwrite(path, np.zeros((pages, 20, 28, 3), np.uint8))


MULTI_FRAME = {
    "gif": ("anim.gif", _gif, "has 3 frames (an animated GIF)"),
    "apng": ("anim.png", _apng, "has 4 frames (an animated PNG)"),
    "tiff": ("pages.tif", _multipage_tiff, "has 2 pages (a multi-page TIFF)"),
}


@pytest.mark.parametrize("kind", list(MULTI_FRAME))
def test_multi_frame_input_is_refused_naming_the_frame_count(tiny_model_dir, tmp_path, kind):
    name, write, problem = MULTI_FRAME[kind]
    src, out = batch_with(tmp_path, name, write)
    inputs = [src] if kind != "gif" else [src / name, src / "good.png"]  # .gif is not picked from folders
    result = upscale(tiny_model_dir, *inputs, "-o", out, ok_codes=(1,))
    assert_one_failure(result, src / name, problem, out)
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_tiff_with_a_reduced_resolution_page_is_one_image(tmp_path):
    path = tmp_path / "thumb.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.full((20, 28, 3), 9, np.uint8))
        tw.write(np.zeros((5, 7, 3), np.uint8), subfiletype=1)  # a reduced-resolution preview
    p = read_image(path)
    assert (p.height, p.width) == (20, 28) and np.allclose(p.rgb, 9 / 255)


def test_tiff_output_drops_a_layout_description_but_keeps_a_caption(tiny_model_dir, tmp_path):
    img = (np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "layout.tif", img)  # tifffile writes {"shape": [20, 28, 3]}
    tifffile.imwrite(tmp_path / "caption.tif", img, description="Sunset over the harbour", metadata=None)
    with tifffile.TiffFile(tmp_path / "layout.tif") as tf:
        assert tf.pages[0].tags[270].value.startswith('{"shape"')
    out = tmp_path / "out"
    upscale(tiny_model_dir, tmp_path / "layout.tif", tmp_path / "caption.tif", "-o", out, "-q")
    with tifffile.TiffFile(out / "layout.tif") as tf:
        assert 270 not in tf.pages[0].tags and tf.pages[0].shape == (80, 112, 3)
    with tifffile.TiffFile(out / "caption.tif") as tf:
        assert tf.pages[0].tags[270].value == "Sunset over the harbour"


# ---- 5, 6, 9. inputs: regular files only, loops per file, a missing input is one failure ---------


def edgesr_proc(*args: str, input: bytes | None = None, pre: str = "") -> subprocess.CompletedProcess:
    """`edgesr ARGS` in a fresh interpreter (after the Python lines `pre`), with a timeout so that a
    hang fails the test instead of stalling the suite."""
    env = {k: v for k, v in os.environ.items() if k != "EDGESR_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    code = f"{pre}\nfrom edgesr_cli.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], input=input, capture_output=True,
                          env=env, timeout=60, stdin=None if input is not None else subprocess.DEVNULL)


def proc_errors(proc) -> list[str]:
    return [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("error:")]


def test_special_files_in_a_folder_are_skipped_and_loops_reported_per_file(tiny_model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_png(src / "good.png", 20, 28)
    os.mkfifo(src / "pipe.png")  # no writer: reading it would block forever
    (src / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    (src / "loop.png").symlink_to("loop.png")
    (src / "gone.png").symlink_to(tmp_path / "deleted.png")
    proc = edgesr_proc("upscale", src, "-o", out, "-m", tiny_model_dir, "--dtype", "fp32")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert proc_errors(proc) == [
        f"error: {src / 'gone.png'}: broken symlink (its target does not exist)",
        f"error: {src / 'loop.png'}: symlink loop (too many levels of symbolic links)",
    ]
    assert f"note: {src / 'pipe.png'}: skipped, not a regular file (a FIFO)" in err.splitlines()
    assert f"note: {src / 'zero.png'}: skipped, not a regular file (a character device)" in err.splitlines()
    assert "Traceback" not in err and "1 upscaled, 0 skipped, 2 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_a_fifo_or_device_named_explicitly_is_refused_not_read(tiny_model_dir, tmp_path):
    make_png(tmp_path / "good.png", 20, 28)
    os.mkfifo(tmp_path / "pipe.png")
    out = tmp_path / "out"
    proc = edgesr_proc("upscale", tmp_path / "pipe.png", "/dev/zero", tmp_path / "good.png", "-o", out,
                       "-m", tiny_model_dir, "--dtype", "fp32")
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc_errors(proc) == [
        f"error: {tmp_path / 'pipe.png'}: not a regular file (a FIFO)",
        "error: /dev/zero: not a regular file (a character device)",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    proc = edgesr_proc("upscale", tmp_path / "pipe.png", "-o", "-", "-m", tiny_model_dir)  # alone: usage error
    assert proc.returncode == 2 and proc_errors(proc) == [f"error: {tmp_path / 'pipe.png'}: not a regular file (a FIFO)"]
    assert proc.stdout == b""


def test_read_image_refuses_a_fifo_without_blocking(tmp_path):
    from edgesr_cli.io import ImageError

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="symlink loop"):
        (tmp_path / "loop.png").symlink_to("loop.png")
        read_image(tmp_path / "loop.png")


def test_a_missing_input_is_one_failure_among_many(tiny_model_dir, tmp_path):
    make_png(tmp_path / "a.png", 20, 28)
    make_png(tmp_path / "b.png", 20, 28)
    out = tmp_path / "out"
    result = upscale(tiny_model_dir, tmp_path / "a.png", tmp_path / "nope.png", tmp_path / "b.png", "-o", out,
                     "--json", ok_codes=(1,))
    assert error_lines(result) == [f"error: {tmp_path / 'nope.png'}: no such file or folder"]
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_newline_in_a_file_name_stays_on_one_error_line(tiny_model_dir, tmp_path):
    src, out = batch_with(tmp_path, "two\nlines.png", lambda p: p.write_bytes(b"not an image"))
    result = upscale(tiny_model_dir, src, "-o", out, ok_codes=(1,))
    assert error_lines(result) == [f"error: {src}/two\\nlines.png: not an image (cannot identify image file)"]
    assert size_of(out / "good.png") == (4 * 28, 4 * 20)
    result = upscale(tiny_model_dir, tmp_path / "no\nsuch.png", ok_codes=(2,))
    assert result.stderr.splitlines() == [f"error: {tmp_path}/no\\nsuch.png: no such file or folder"]


# ---- 7. SIGTERM and SIGHUP as SIGINT: temp file removed, exit 128 + signal, summary --------------

# In the child: the first output write sends the signal to the process halfway through the file.
SIGNAL_MID_WRITE = """
import io, os, signal, edgesr_cli.imageio.encode as io_
signal.signal(signal.SIGINT, signal.default_int_handler)  # a suite started in the background inherits SIGINT ignored
_plan = io_._plan
def plan(*a, **k):
    emit = _plan(*a, **k)
    def half_then_signal(fp):
        buf = io.BytesIO(); emit(buf); data = buf.getvalue()
        fp.write(data[:len(data) // 2]); fp.flush()
        os.kill(os.getpid(), signal.{sig})
        fp.write(data[len(data) // 2:])
    return half_then_signal
io_._plan = plan
"""


@pytest.mark.parametrize("sig, code, message", [("SIGTERM", 143, "error: terminated (SIGTERM)"),
                                                ("SIGHUP", 129, "error: terminated (SIGHUP)"),
                                                ("SIGINT", 130, "error: interrupted")])
def test_signal_mid_write_removes_the_temp_file_and_prints_the_summary(tiny_model_dir, tmp_path, sig, code,
                                                                        message):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b", "c"):
        make_png(src / f"{name}.png", 20, 28)
    proc = edgesr_proc("upscale", src, "-o", out, "-m", tiny_model_dir, "--dtype", "fp32",
                       pre=SIGNAL_MID_WRITE.format(sig=sig))
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert err.splitlines()[-2:] == [err.splitlines()[-2], message]
    # a.png was upscaled and being written (on the writer thread) when the signal came: the write is finished,
    # whole, and the image being upscaled then (b, if it had started) is dropped; c never starts
    assert re.match(r"[01] upscaled, 0 skipped, 0 failed, [12] not started in ", err.splitlines()[-2]), err
    assert [p.name for p in out.iterdir()] == ["a.png"]  # no partial file, no hidden .a.png.*.tmp
    assert size_of(out / "a.png") == (4 * 28, 4 * 20)
    with Image.open(out / "a.png") as im:
        im.load()  # complete: decodes to the end


def test_interrupted_json_summary_says_so(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    make_png(src / "a.png", 20, 28)
    proc = edgesr_proc("upscale", src, "-o", tmp_path / "out", "-m", tiny_model_dir, "--dtype", "fp32", "--json",
                       pre=SIGNAL_MID_WRITE.format(sig="SIGTERM"))
    assert proc.returncode == 143
    summary = json.loads(proc.stdout)
    assert summary["interrupted"] == "terminated (SIGTERM)" and summary["not_started"] == 0
    # the signal came while a.png was being written: the write finishes, whole, and is recorded ("interrupted"
    # only if the signal beat the record keeping, when the writer thread had just been handed the image)
    (status,) = [r["status"] for r in summary["images"]]
    assert status in ("ok", "interrupted")
    assert summary["done"] == (status == "ok")
    assert size_of(tmp_path / "out" / "a.png") == (4 * 28, 4 * 20)
    assert no_temp_files(tmp_path / "out")


# ---- 8. messages: seed, stdin with -o DIR, closed or full stdout, closed stdin ---------------------


@pytest.mark.parametrize("seed", [str(2 ** 64), str(-(2 ** 63) - 1)])
def test_seed_beyond_64_bits_is_a_usage_error(tiny_model_dir, tmp_path, seed):
    src = make_png(tmp_path / "a.png", 20, 28)
    result = upscale(tiny_model_dir, src, "--seed", seed, ok_codes=(2,))
    assert error_lines(result) == [f"error: --seed {seed}: must fit in 64 bits (-2**63 to 2**64 - 1)"]
    assert not (tmp_path / "a_x4.png").exists()


def test_largest_64_bit_seed_works(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png", 20, 28)
    upscale(tiny_model_dir, src, "--seed", str(2 ** 64 - 1), "-q")
    assert (tmp_path / "a_x4.png").is_file()


@pytest.mark.parametrize("target", ["newdir/", "existing"])
def test_stdin_with_a_folder_output_is_refused_with_a_hint(tiny_model_dir, tmp_path, target):
    (tmp_path / "existing").mkdir()
    png = make_png(tmp_path / "a.png", 20, 28).read_bytes()
    out = f"{tmp_path}/{target}"
    proc = edgesr_proc("upscale", "-", "-o", out, "-m", tiny_model_dir, input=png)
    assert proc.returncode == 2
    (line,) = proc_errors(proc)
    assert line.startswith(f"error: -o {out}: is a folder, but stdin has no file name") and "photo.png" in line
    assert not (tmp_path / "newdir").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "existing"]


def test_stdin_to_a_named_file_still_works(tiny_model_dir, tmp_path):
    png = make_png(tmp_path / "a.png", 20, 28).read_bytes()
    proc = edgesr_proc("upscale", "-", "-o", tmp_path / "new" / "b.png", "-m", tiny_model_dir, input=png)
    assert proc.returncode == 0, proc.stderr.decode()
    assert size_of(tmp_path / "new" / "b.png") == (4 * 28, 4 * 20)


def _shell(cmd: str, tiny_model_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGESR_MODEL": str(tiny_model_dir)}
    env.pop("EDGESR_DEBUG", None)
    edgesr = f"{sys.executable} -c 'from edgesr_cli.cli import main; main()'"
    return subprocess.run(["bash", "-c", cmd.format(edgesr=edgesr)], capture_output=True, timeout=60, env=env,
                          cwd=cwd)


@pytest.mark.parametrize("redirect, code, problem", [
    (">&-", 2, "error: stdout is closed: nowhere to write the image"),
    (">/dev/full", 1, "error: <stdout>: cannot write (No space left on device)"),
])
def test_closed_or_full_stdout_is_one_line(tiny_model_dir, tmp_path, redirect, code, problem):
    make_png(tmp_path / "a.png", 20, 28)
    proc = _shell(f"{{edgesr}} upscale a.png -o - {redirect}", tiny_model_dir, tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [problem]


def test_closed_stdin_is_one_line(tiny_model_dir, tmp_path):
    proc = _shell("{edgesr} upscale - -o out.png <&-", tiny_model_dir, tmp_path)
    assert proc.returncode == 2 and proc.stderr.decode().strip().splitlines() == ["error: - (stdin): stdin is closed"]
    assert list(tmp_path.iterdir()) == []


# ---- 9. minor: a dangling-symlink output, an unwritable output folder found first ------------------


def test_dangling_symlink_output_is_not_replaced_without_overwrite(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png", 20, 28)
    dst = tmp_path / "out.png"
    dst.symlink_to(tmp_path / "elsewhere.png")
    result = upscale(tiny_model_dir, src, "-o", dst, ok_codes=(1,))
    assert error_lines(result) == [f"error: {dst}: exists (a broken symlink) (use --overwrite to replace it or "
                                   "--skip-existing)"]
    assert dst.is_symlink() and not dst.exists()
    upscale(tiny_model_dir, src, "-o", dst, "--skip-existing", "-q")
    assert dst.is_symlink()
    upscale(tiny_model_dir, src, "-o", dst, "--overwrite", "-q")
    assert not dst.is_symlink() and size_of(dst) == (4 * 28, 4 * 20)


def test_unwritable_output_folder_is_found_before_upscaling(tiny_model_dir, tmp_path, monkeypatch):
    import edgesr_cli.runtime.upscale as upscale_module

    calls = []
    monkeypatch.setattr(upscale_module, "upscale_photo", lambda *a, **k: calls.append(a) or a[1])
    src = tmp_path / "in"
    make_png(src / "a.png", 20, 28)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    result = upscale(tiny_model_dir, src, "-o", blocker / "out", ok_codes=(1,))
    assert error_lines(result) == [f"error: {blocker / 'out' / 'a.png'}: cannot write (a parent of "
                                   f"{blocker / 'out'} is a file)"]
    assert calls == []


# ---- 6, 8, 9. config.json and manifest.json validated field by field ------------------------------


def _model_copy(tiny_model_dir: Path, tmp_path: Path, edit) -> Path:
    import shutil

    d = tmp_path / "model"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _set(dotted: str, value):
    def edit(cfg):
        *parents, last = dotted.split(".")
        for key in parents:
            cfg = cfg[key]
        cfg[last] = value
    return edit


BAD_CONFIGS = {
    "scale-string": ("scale", "4", "field scale: expected an integer, got '4'"),
    "float-channels": ("latent_channels", 4.0, "field latent_channels: expected an integer, got 4.0"),
    "zero-timesteps": ("schedule.num_timesteps", 0, "field schedule.num_timesteps: must be an integer >= 1, got 0"),
    "variance-no": ("variance", "no", "field variance: expected true or false, got 'no'"),
    "channels-not-a-list": ("unet.channel_mult", 2, "field unet.channel_mult: expected a list of integers, got 2"),
    "negative-width": ("decoder.channels", [8, -8, 8], "field decoder.channels: must be integers >= 1, got [8, -8, 8]"),
    "sigma-order": ("lr_encoder.sigma_max", 0.0001, "field lr_encoder.sigma_max: must be a number > sigma_min"),
}


@pytest.mark.parametrize("kind", list(BAD_CONFIGS))
def test_bad_config_field_is_one_line_naming_file_field_and_value(tiny_model_dir, tmp_path, kind):
    field_name, value, problem = BAD_CONFIGS[kind]
    model = _model_copy(tiny_model_dir, tmp_path, _set(field_name, value))
    src = make_png(tmp_path / "a.png", 20, 28)
    result = CliRunner().invoke(app, ["upscale", str(src), "-m", str(model), "--dtype", "fp32"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {model / 'config.json'}: ") and problem in line, line
    assert not (tmp_path / "a_x4.png").exists()


def _manifest(tiny_model_dir: Path) -> dict:
    return {"edgesr_export": 1, "format": "onnx", "scale": 4,
            "tile": {"lr": [32, 32], "latent": [32, 32], "hr": [128, 128], "lr_multiple": 1},
            "batch": "dynamic", "graphs": {"fused": {"file": "fused.onnx"}},
            "model": {"config": json.loads((tiny_model_dir / "config.json").read_text())}, "files": {}}


BAD_MANIFESTS = {
    "scale-string": (("scale",), "4", 'field scale must be 2, 4 or 8, got "4"'),
    "tile-float": (("tile", "lr"), [32.5, 32], "field tile.lr must be a list of two integers >= 1, got [32.5, 32]"),
    "batch-zero": (("batch",), 0, 'field batch must be "dynamic" or an integer >= 1, got 0'),
    "config-type": (("model", "config", "latent_channels"), "4",
                    "field model.config.latent_channels: expected an integer, got '4'"),
    "config-range": (("model", "config", "schedule"), {"kind": "cosine", "num_timesteps": 0},
                     "field model.config.schedule.num_timesteps: must be an integer >= 1, got 0"),
}


@pytest.mark.parametrize("kind", list(BAD_MANIFESTS))
def test_bad_manifest_field_is_named(tiny_model_dir, tmp_path, kind):
    from edgesr_cli.export import read_manifest
    from edgesr_cli.model import ModelFileError

    keys, value, problem = BAD_MANIFESTS[kind]
    manifest = _manifest(tiny_model_dir)
    read_manifest_dir = tmp_path / "export"
    read_manifest_dir.mkdir()
    (read_manifest_dir / "manifest.json").write_text(json.dumps(manifest))
    read_manifest(read_manifest_dir, verify=False)  # the base manifest is valid
    target = manifest
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    (read_manifest_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError) as info:
        read_manifest(read_manifest_dir, verify=False)
    assert str(info.value) == f"{read_manifest_dir / 'manifest.json'}: {problem}"


def test_invalid_manifest_json_is_named_not_called_missing(tiny_model_dir, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text('{"format": "onnx", ')
    src = make_png(tmp_path / "a.png", 20, 28)
    result = CliRunner().invoke(app, ["upscale", str(src), "-m", str(export)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {export / 'manifest.json'}: not a readable JSON manifest"), line


def test_image_bytes_are_not_written_to_a_terminal(tiny_model_dir, tmp_path):
    """`edgesr upscale - < photo.png` (or -o -) with stdout on a terminal: a one-line usage error, nothing printed."""
    import pty

    src = tmp_path / "a.png"
    make_png(src, 20, 28)
    master, slave = pty.openpty()
    try:
        for args, stdin in ((["-", "-m", str(tiny_model_dir)], src), ([str(src), "-o", "-", "-m", str(tiny_model_dir)], None)):
            with open(stdin if stdin else os.devnull, "rb") as fin:
                proc = subprocess.run([sys.executable, "-c", "from edgesr_cli.cli import main; main()", "upscale", *args],
                                      stdin=fin, stdout=slave, stderr=subprocess.PIPE, timeout=60,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
            err = proc.stderr.decode().strip().splitlines()
            assert proc.returncode == 2 and len(err) == 1 and "stdout is a terminal" in err[0] and "-o FILE" in err[0], err
        os.set_blocking(master, False)
        try:
            printed = os.read(master, 65536)
        except BlockingIOError:
            printed = b""
        assert b"PNG" not in printed and b"IHDR" not in printed
    finally:
        os.close(master)
        os.close(slave)
