"""Issue 16, defect 4: memory bounded by the tile, not the photo. The engine hands finished HR rows to the
caller band by band (bit-identical to a whole-image blend); upscale_photo quantizes them straight into the
8- or 16-bit values the writer stores (the same bytes as the float route); the CLI refuses, per image and in
one line, an output over --max-output-pixels or one that will not fit in the memory available, and an image
that runs out of memory anyway is one failure, not the end of the batch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli import hw
from edgesr_cli.cli import app
from edgesr_cli.defaults import DEFAULT_OVERLAP, DEFAULT_TILE
from edgesr_cli.io import Photo, encode_image, read_image, stored_dtype
from edgesr_cli.runtime.noise import noise_field
from edgesr_cli.runtime.tiling import pad_image, plan_tiles, ramp_window, upscale_bands, upscale_tensor, \
    upscale_tiles
from edgesr_cli.runtime.upscale import UpscaleOptions, estimate_peak_bytes, upscale_photo

from test_tiling import LocalRunner, LocalRunner8, natural

runner = CliRunner()


def whole_image_reference(r, lr, *, tile, overlap=DEFAULT_OVERLAP, batch=4, seed=0):
    """The engine as it was before bands: one float canvas and weight map of the whole padded output."""
    s, f = r.scale, r.latent_factor
    plan = plan_tiles(lr.shape[1], lr.shape[2], tile, overlap, r.lr_multiple, f // math.gcd(f, s))
    img = torch.from_numpy(pad_image(lr.float().numpy(), plan))
    lat = lambda v: v * s // f  # noqa: E731
    noise = torch.from_numpy(noise_field((1, r.latent_channels, lat(plan.base_height), lat(plan.base_width)), seed))
    grow = (0, lat(plan.padded_width - plan.base_width), 0, lat(plan.padded_height - plan.base_height))
    if any(grow):
        noise = torch.nn.functional.pad(noise, grow, mode="replicate")
    canvas = torch.zeros(3, plan.padded_height * s, plan.padded_width * s)
    weight = torch.zeros(1, *canvas.shape[1:])
    ramp = int(round(tile * overlap)) * s
    win = torch.from_numpy(ramp_window(plan.tile_h * s, ramp)[:, None] * ramp_window(plan.tile_w * s, ramp)[None, :])
    th, tw, pos = plan.tile_h, plan.tile_w, plan.positions
    for i in range(0, len(pos), batch):
        chunk = pos[i:i + batch]
        tiles = torch.stack([img[:, y:y + th, x:x + tw] for y, x in chunk])
        eps = [torch.stack([noise[0, :, lat(y):lat(y + th), lat(x):lat(x + tw)] for y, x in chunk])]
        for (y, x), t in zip(chunk, torch.from_numpy(upscale_tiles(r, tiles, eps))):
            canvas[:, y * s:(y + th) * s, x * s:(x + tw) * s] += t * win
            weight[:, y * s:(y + th) * s, x * s:(x + tw) * s] += win
    out = canvas / weight
    top, left = plan.pad_top * s, plan.pad_left * s
    return out[:, top:top + plan.height * s, left:left + plan.width * s].clamp_(0.0, 1.0)


@pytest.mark.parametrize("runner_cls", [LocalRunner, LocalRunner8])
@pytest.mark.parametrize("h, w, tile, batch", [(70, 90, 32, 3), (40, 23, 16, 1), (20, 20, 64, 4), (52, 17, 8, 7)])
def test_bands_are_the_whole_image_blend_bit_for_bit(runner_cls, h, w, tile, batch):
    r = runner_cls()
    lr = natural("astronaut", h, w)
    ref = whole_image_reference(r, lr, tile=tile, batch=batch, seed=3)
    bands = []
    size = upscale_bands(r, lr, lambda row, band: bands.append((row, torch.from_numpy(band.copy()))), tile=tile,
                         batch=batch, seed=3)
    assert size == (h * 4, w * 4)
    rows = [row for row, _ in bands]
    assert rows[0] == 0 and rows == sorted(rows)
    assert all(a + b.shape[1] == c for (a, b), c in zip(bands, rows[1:] + [h * 4]))  # contiguous, complete
    assert torch.equal(torch.cat([b for _, b in bands], 1), ref)
    assert torch.equal(upscale_tensor(r, lr, tile=tile, batch=batch, seed=3), ref)


def test_engine_keeps_a_few_tile_rows_not_the_image():
    """A tall image in many tile rows: every band the engine hands out is at most one tile row step of
    the output, so its float state never approaches the image (here 40 tile rows)."""
    r = LocalRunner()
    lr = torch.rand(3, 16 * 40, 48)
    heights = []
    upscale_bands(r, lr, lambda row, band: heights.append(band.shape[1]), tile=16, batch=4)
    assert len(heights) >= 40 and sum(heights) == 16 * 40 * 4
    assert max(heights) <= 16 * 4  # a tile's height of output at a time


def _photo(h, w, *, gray=False, alpha=False, bit_depth=8, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.random((h, w, 3), dtype=np.float32)
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    return Photo(rgb=rgb, grayscale=gray, bit_depth=bit_depth,
                 alpha=rng.random((h, w), dtype=np.float32) if alpha else None, format="PNG")


@pytest.mark.parametrize("kind", ["rgb", "gray", "alpha", "16bit", "16bit-gray", "16bit-to-jpeg"])
def test_quantized_upscale_writes_the_same_bytes_as_the_float_route(kind):
    r = LocalRunner()
    photo = _photo(37, 29, gray="gray" in kind, alpha=kind == "alpha", bit_depth=16 if "16bit" in kind else 8)
    fmt = "jpg" if kind.endswith("jpeg") else "png"
    stored = stored_dtype(fmt, photo.bit_depth)
    opts = UpscaleOptions(tile=16, batch=3, seed=1)
    as_float = upscale_photo(r, photo, opts)
    quantized = upscale_photo(r, photo, opts, quantize=stored)
    assert quantized.rgb.dtype == stored and as_float.rgb.dtype == np.float32
    assert quantized.rgb.shape == (148, 116, 1 if photo.grayscale else 3)
    assert encode_image(quantized, fmt) == encode_image(as_float, fmt)
    back = read_image(encode_image(quantized, fmt))
    assert back.bit_depth == (16 if stored == np.uint16 else 8) and back.grayscale == photo.grayscale


def test_stored_dtype_follows_the_format():
    assert stored_dtype("png", 16) == np.uint16 and stored_dtype("tif", 16) == np.uint16
    assert stored_dtype("jpg", 16) == np.uint8 and stored_dtype("webp", 16) == np.uint8
    assert stored_dtype("png", 8) == np.uint8
    with pytest.raises(Exception, match="unknown output format"):
        stored_dtype("xyz", 8)


def test_estimate_grows_with_the_output_and_covers_it():
    opts = UpscaleOptions()
    small = estimate_peak_bytes(64, 64, 4, opts, np.uint8)
    photo = estimate_peak_bytes(1500, 2000, 4, opts, np.uint8)
    deep = estimate_peak_bytes(1500, 2000, 4, opts, np.uint16)
    out = 8000 * 6000 * 3
    assert small < 600 * 2**20 < photo
    assert photo > out and deep - photo >= out  # the output, written in place by the PNG writer
    assert estimate_peak_bytes(1500, 2000, 4, opts, np.uint8, fmt="jpg") - photo >= 8000 * 6000 * 4  # Pillow's copy
    assert estimate_peak_bytes(1500, 2000, 4, opts, np.uint8, alpha=True) > photo + 8000 * 6000 * 8


# ---------------------------------------------------------------- the CLI -----------------------------------

def _pngs(folder: Path, sizes) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _run(tiny_model_dir, *args):
    return runner.invoke(app, ["upscale", *args, "-m", str(tiny_model_dir), "--dtype", "fp32", "-q"])


def test_max_output_pixels_refuses_one_image_and_the_batch_goes_on(tiny_model_dir, tmp_path):
    src = _pngs(tmp_path / "in", [(20, 20), (8, 8)])
    r = _run(tiny_model_dir, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--max-output-pixels", "5000")
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert lines == [f"error: {src[0]}: its x4 output would be 80x80 = 6,400 pixels, over --max-output-pixels 5,000"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img1.png"]


def test_memory_check_refuses_what_does_not_fit_and_can_be_overridden(tiny_model_dir, tmp_path, monkeypatch):
    src = _pngs(tmp_path / "in", [(40, 40), (8, 8)])
    need = estimate_peak_bytes(40, 40, 4, UpscaleOptions(tile=DEFAULT_TILE), np.uint8)
    small = estimate_peak_bytes(8, 8, 4, UpscaleOptions(tile=DEFAULT_TILE), np.uint8)
    # room for the small image's estimate beyond the resident process, not for the larger one's
    monkeypatch.setattr(hw, "available_memory", lambda: (need + small) // 2 - cli_upscale_process_bytes())
    r = _run(tiny_model_dir, str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {src[0]}: needs about ")
    assert "of memory for its 160x160 output" in lines[0] and lines[0].endswith("(--no-memory-check to try anyway)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img1.png"]
    r = _run(tiny_model_dir, str(src[0]), "-o", str(tmp_path / "forced.png"), "--no-memory-check")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "forced.png").size == (160, 160)


def cli_upscale_process_bytes() -> int:
    from edgesr_cli.runtime.upscale import PROCESS_BYTES

    return PROCESS_BYTES


def test_running_out_of_memory_is_one_failure_not_the_end_of_the_batch(tiny_model_dir, tmp_path, monkeypatch):
    src = _pngs(tmp_path / "in", [(12, 12), (8, 8)])
    from edgesr_cli.runtime import upscale as upscale_module

    real = upscale_module.upscale_photo

    def oom_on_first(run, photo, opts, progress=None, quantize=None):
        if photo.width == 12:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 9216000000 bytes")
        return real(run, photo, opts, progress=progress, quantize=quantize)

    monkeypatch.setattr(upscale_module, "upscale_photo", oom_on_first)
    r = _run(tiny_model_dir, str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert lines == [f"error: {src[0]}: out of memory while upscaling (try a smaller --batch or --tile)"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img1.png"]  # no partial or temp file


def test_available_memory_reads_this_linux_machine():
    avail = hw.available_memory()
    if not Path("/proc/meminfo").exists():
        pytest.skip("not Linux")
    assert avail is not None and 0 < avail < 1 << 50
