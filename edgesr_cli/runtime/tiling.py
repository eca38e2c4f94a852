"""The one tiling engine, shared by every backend.

An LR image is reflect-padded, cut into overlapping tiles (DEFAULT_TILE px, DEFAULT_OVERLAP of a tile shared), each
tile is encoded, sampled with the shared sampler and decoded by a backend, and the HR tiles are
blended with a linear-ramp window and normalised weights (diffusers' tiled-VAE blending). One noise
field covers the whole image's latent grid, drawn from the seed; each tile reads its window, so
overlapping tiles agree and the result does not depend on tile or batch size beyond float tolerance.
The field is drawn row band by row band as the tiles move down (noise.NoiseRows: the same values as drawing
it whole), so it is never held whole. Memory for the model is bounded by the batch of tiles, not the image;
`upscale_bands` hands finished HR rows to the caller band by band, so the engine's own float state is a few
tile rows, not the output.

The engine works on numpy arrays (float32, CPU) and hands backends numpy arrays: the same code drives ONNX
Runtime in the light install (no torch) and the torch backend (which converts at its edge). Torch tensors
given to the public functions are taken as arrays (upscale_tensor gives a tensor back for a tensor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..defaults import DEFAULT_OVERLAP, DEFAULT_TILE
from .noise import NoiseRows
from .runner import Runner
from .sampler import noise_count, sample


def as_array(x: Any) -> np.ndarray:
    """A float32 numpy array of `x` (a numpy array, or a torch tensor on any device: torch is not imported here)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_image(x: Any) -> np.ndarray:
    """`x` as a float32 array without a copy where it is one already, whatever its strides (a photo's (H, W, 3)
    pixels seen as (3, H, W)): tiles are copied out of it one batch at a time."""
    if hasattr(x, "detach"):
        return as_array(x)
    return np.asarray(x, dtype=np.float32)


def _all_finite(x: np.ndarray, rows: int = 256) -> bool:
    """np.isfinite(x).all() for (C, H, W), a band of rows at a time (no boolean copy of the whole image)."""
    return all(np.isfinite(x[:, r:r + rows]).all() for r in range(0, x.shape[1], rows))


def _span_rows(positions: Sequence[tuple[int, int]], batch: int, tile_h: int) -> int:
    """The most LR rows the engine's float sums hold at once: from the first row not finished yet to the bottom of
    the lowest tile of a batch (one tile row, or two where a batch spans a row's end), as upscale_bands flushes."""
    lo = most = 0
    for i in range(0, len(positions), batch):
        chunk = positions[i:i + batch]
        most = max(most, max(y + tile_h for y, _ in chunk) - lo)
        if i + batch < len(positions):
            lo = max(lo, positions[i + batch][0])
    return most


def _shift_up(a: np.ndarray, n: int) -> None:
    """Move the rows of (C, R, W) `a` up by `n` in place and zero the `n` freed at the bottom: copied in chunks no
    taller than `n`, so that a chunk's source and destination never overlap (no temporary copy of the rows)."""
    keep = a.shape[1] - n
    for r in range(0, max(keep, 0), max(n, 1)):
        k = min(n, keep - r)
        a[:, r:r + k] = a[:, n + r:n + r + k]
    a[:, max(keep, 0):] = 0


@dataclass(frozen=True)
class TilePlan:
    """Tiles over the padded LR image. All coordinates are LR pixels of the padded image."""

    height: int  # original LR size
    width: int
    pad_top: int
    pad_left: int
    base_height: int  # original + borders, aligned: the grid the noise field is drawn on
    base_width: int
    padded_height: int  # base, grown to one tile for images smaller than a tile (reflect padding)
    padded_width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def positions(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _axis_positions(length: int, tile: int, overlap: int, align: int) -> tuple[int, ...]:
    """Evenly spaced tile starts covering [0, length), each a multiple of `align`, stride <= tile - overlap."""
    if length <= tile:
        return (0,)
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    last = length - tile
    return tuple(sorted({int(round(i * last / (n - 1) / align)) * align for i in range(n)}))


def check_tile(tile: int, multiple: int) -> None:
    """The one rule for an LR tile: a positive multiple of the model's LR multiple (its latent grid and UNet levels
    line up), else a one-line ValueError that names --tile, as every command takes it."""
    if tile < multiple or tile % multiple:
        raise ValueError(f"--tile {tile}: must be a multiple of {multiple} for this model")


DEFAULT_BORDER = 0  # the paper's counts (512x512 -> 25 tiles, 1000x750 -> 88) use no margin


def plan_tiles(height: int, width: int, tile: int = DEFAULT_TILE, overlap: float = DEFAULT_OVERLAP,
               multiple: int = 1, align: int = 1, border: int = DEFAULT_BORDER, fit: bool = False) -> TilePlan:
    """Plan tiles for an LR image of height x width.

    tile: LR tile size (a multiple of `multiple`, the model's LR size granularity); overlap: a fraction
    of the tile in [0, 0.5); align: tile starts are multiples of this (so each tile maps onto whole
    latent pixels); border: reflect margin added on every side, so border pixels get context like
    interior ones. It does not depend on the tile size, so neither does the noise grid. An image
    smaller than a tile along an axis is reflect-padded to one whole tile there: what a static-tile export
    (TFLite, QNN, a static ONNX export) must run. With `fit` (a runner that takes any tile size: torch, a
    dynamic-size ONNX export on ONNX Runtime or OpenVINO) it is padded only to the next multiple of `multiple`
    there, and that axis's one tile is that size: a 16 x 16 photo computes a 16 x 16 tile, not 128 x 128.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    check_tile(tile, multiple)
    if not 0.0 <= overlap < 0.5:
        raise ValueError(f"overlap must be a fraction in [0, 0.5), got {overlap}")
    ov = int(round(tile * overlap))
    border = _round_up(border, align)

    def axis(length: int) -> tuple[int, int, int]:
        base = _round_up(length + 2 * border, align)
        if fit and base < tile:
            one = _round_up(base, multiple)
            return base, one, one
        return base, max(base, tile), tile

    bh, ph, th = axis(height)
    bw, pw, tw = axis(width)
    return TilePlan(
        height=height, width=width, pad_top=border, pad_left=border, base_height=bh, base_width=bw,
        padded_height=ph, padded_width=pw, tile_h=th, tile_w=tw,
        ys=_axis_positions(ph, th, ov, align), xs=_axis_positions(pw, tw, ov, align),
    )


def runner_plan(runner: Runner, height: int, width: int, tile: int = DEFAULT_TILE,
                overlap: float = DEFAULT_OVERLAP) -> TilePlan:
    """The tiles the engine runs `runner` on for an LR image of height x width: multiples of its LR multiple,
    starting on whole latent pixels; an axis shorter than a tile fits the image where the runner says it takes any
    tile size (`fixed_tile` None: torch, dynamic-size exports), else it is padded to the tile (a runner without the
    attribute, as a third-party backend written before it, keeps the padded plan)."""
    f = runner.latent_factor
    fit = hasattr(runner, "fixed_tile") and runner.fixed_tile is None
    return plan_tiles(height, width, tile, overlap, runner.lr_multiple, f // math.gcd(f, runner.scale), fit=fit)


def reflect_pad(x: Any, top: int, bottom: int, left: int, right: int) -> Any:
    """(..., H, W) -> (..., H+top+bottom, W+left+right): reflect padding, grown in rounds where the pad is
    wider than the image can mirror, and replicate once only a single row or column is left to mirror.
    Content-like borders: the model sees long constant (replicate) borders as structure and its output
    near them changes (BSD100 x4 degraded: up to 4 dB on one image padded from 80x120 to a 128 tile).
    A numpy array comes back as one, a torch tensor as one (the values are copies either way: no arithmetic)."""
    if hasattr(x, "detach"):
        import torch

        return torch.from_numpy(reflect_pad(x.detach().cpu().numpy(), top, bottom, left, right)).to(x.device)
    lead = [(0, 0)] * (x.ndim - 2)
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        l, r = min(left, w - 1), min(right, w - 1)
        if t == b == l == r == 0:
            return np.pad(x, lead + [(top, bottom), (left, right)], mode="edge")
        x = np.pad(x, lead + [(t, b), (l, r)], mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


def pad_image(img: np.ndarray, plan: TilePlan) -> np.ndarray:
    """(C,H,W) -> (C,padded_h,padded_w): reflect padding (replicate where the image is too small to reflect)."""
    top, left = plan.pad_top, plan.pad_left
    return reflect_pad(img, top, plan.padded_height - plan.height - top, left, plan.padded_width - plan.width - left)


def ramp_window(size: int, ramp: int) -> np.ndarray:
    """1D blending weights (float32): linear ramps of length `ramp` at both ends, 1 inside, strictly positive."""
    if ramp <= 0:
        return np.ones(size, dtype=np.float32)
    i = np.arange(size, dtype=np.float32)
    up = (i + np.float32(0.5)) / np.float32(ramp)
    down = (np.float32(size) - i - np.float32(0.5)) / np.float32(ramp)
    return np.clip(np.minimum(up, down), np.float32(1e-3), np.float32(1.0))


Emit = Callable[[int, np.ndarray], None]
_EMIT_ROWS = 32  # HR rows handed to `emit` at a time: its float temporaries stay a few MB wide


def upscale_bands(
    runner: Runner,
    lr: Any,
    emit: Emit,
    *,
    tile: int = DEFAULT_TILE,
    overlap: float = DEFAULT_OVERLAP,
    batch: int = 4,
    steps: int = 1,
    eta: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Upscale one LR image (3,H,W) float in [0,1] band by band; returns the HR size (H*s, W*s).

    `emit(row, band)` receives the finished HR rows in order, top to bottom, each band (3, n, W*s) float32
    numpy array in [0,1] starting at HR row `row`; together they are the whole image. Only the rows that
    tiles still in flight overlap are kept as float sums, so the engine's own memory is a few tile rows
    of the output, not the output: the caller decides what to keep (an 8- or 16-bit buffer, a file).
    Tiles run in the same order and batches whatever the caller keeps, so the pixels are exactly those of
    a whole-image blend."""
    lr = _as_image(lr)
    if lr.ndim != 3 or lr.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W), got shape {tuple(lr.shape)}")
    if not _all_finite(lr):
        raise ValueError("image contains NaN or infinite values")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    s, f = runner.scale, runner.latent_factor
    plan = runner_plan(runner, lr.shape[1], lr.shape[2], tile, overlap)
    expect = getattr(runner, "expect_tile", None)
    if expect is not None:  # the runner may prepare for whole tiles of this size (OpenVINO fixes its graph's shape)
        expect(tile)
    img = pad_image(lr, plan)
    lat = lambda v: v * s // f  # noqa: E731  LR px -> latent px
    k = noise_count(steps, eta)
    # the global noise field, drawn as the tiles move down (edge-grown to the padded size)
    noise = NoiseRows((k, runner.latent_channels, lat(plan.base_height), lat(plan.base_width)), seed,
                      lat(plan.padded_width))

    out_w = plan.padded_width * s
    ramp = int(round(tile * overlap)) * s
    win = ramp_window(plan.tile_h * s, ramp)[:, None] * ramp_window(plan.tile_w * s, ramp)[None, :]
    th, tw = plan.tile_h, plan.tile_w
    top, left = plan.pad_top * s, plan.pad_left * s
    height, width = plan.height * s, plan.width * s
    positions = plan.positions
    # the float sums of padded HR rows [lo, lo + span): allocated once, as tall as a batch ever reaches below the
    # first row not finished yet, and shifted up in place as rows finish
    lo = 0
    span = _span_rows(positions, batch, th) * s
    canvas = np.zeros((3, span, out_w), dtype=np.float32)
    weight = np.zeros((1, span, out_w), dtype=np.float32)
    sent = 0  # HR rows of the image (unpadded) emitted so far

    def flush(upto: int) -> None:
        """Emit the padded rows [lo, upto): no tile still to come touches them. They are divided, clipped and
        handed out a few rows at a time (the same values as all at once, without a float copy of the band)."""
        nonlocal lo, sent
        n = min(upto, lo + span) - lo
        if n <= 0:
            return
        a, b = max(lo, top), min(lo + n, top + height)  # the image's rows among them
        for r in range(a, b, _EMIT_ROWS):
            rows = slice(r - lo, min(r + _EMIT_ROWS, b) - lo)
            band = canvas[:, rows, left:left + width] / weight[:, rows, left:left + width]
            emit(sent, np.clip(band, np.float32(0), np.float32(1), out=band))
            sent += band.shape[1]
        _shift_up(canvas, n)
        _shift_up(weight, n)
        lo += n

    def inputs(chunk: list[tuple[int, int]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """A batch's LR tiles and noise windows."""
        lr_tiles = np.stack([img[:, y:y + th, x:x + tw] for y, x in chunk])
        top_row = lat(chunk[0][0])
        rows = noise.rows(top_row, lat(chunk[-1][0] + th))
        eps = [np.stack([rows[j, :, lat(y) - top_row:lat(y + th) - top_row, lat(x):lat(x + tw)] for y, x in chunk])
               for j in range(k)]
        return lr_tiles, eps

    def blend(chunk: list[tuple[int, int]], hr: np.ndarray) -> None:
        nonlocal done
        for (y, x), t in zip(chunk, hr):
            r = y * s - lo
            canvas[:, r:r + th * s, x * s:(x + tw) * s] += t * win
            weight[:, r:r + th * s, x * s:(x + tw) * s] += win
        done += len(chunk)
        flush(positions[done][0] * s if done < len(positions) else lo + span)
        if progress is not None:
            progress(done, len(positions))

    # The model runs a batch in a worker thread while this one draws the next batch's noise and blends the last
    # batch's tiles (backends release the GIL while they compute): the host's share of the work no longer leaves
    # the model's threads idle. Batches are blended in order, as before: the same bytes, and at most two batches
    # of inputs and one of outputs in flight.
    done = 0
    chunks = [positions[i:i + batch] for i in range(0, len(positions), batch)]
    if len(chunks) == 1:
        blend(chunks[0], upscale_tiles(runner, *inputs(chunks[0]), steps=steps, eta=eta))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="edgesr-model") as pool:
            pending = None
            try:
                for chunk in chunks:
                    future = pool.submit(upscale_tiles, runner, *inputs(chunk), steps=steps, eta=eta)
                    if pending is not None:
                        blend(pending[0], pending[1].result())
                    pending = (chunk, future)
                blend(pending[0], pending[1].result())
            except BaseException:  # an error or Ctrl-C: the batch not started yet is dropped, the one running ends
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    if sent != height:
        raise RuntimeError(f"tiling engine emitted {sent} of {height} rows")
    return height, width


def upscale_tensor(runner: Runner, lr: Any, **options: Any) -> Any:
    """Upscale one LR image (3,H,W) float in [0,1] -> (3,H*s,W*s) float32 in [0,1], a numpy array for an array,
    a CPU torch tensor for a tensor: `upscale_bands` (its keyword options: tile, overlap, batch, steps, eta, seed,
    progress) into one float image; for an 8- or 16-bit result use upscale.upscale_photo."""
    out: list[np.ndarray] = []
    upscale_bands(runner, lr, lambda _row, band: out.append(band.copy()), **options)
    hr = np.concatenate(out, 1)
    if hasattr(lr, "detach"):
        import torch

        return torch.from_numpy(hr)
    return hr


def upscale_tiles(runner: Runner, lr_tiles: Any, noise: Sequence[Any], steps: int = 1,
                  eta: float = 0.0) -> np.ndarray:
    """A batch of LR tiles (B,3,h,w) + noise windows -> HR tiles (B,3,h*s,w*s) float32 numpy.

    Uses the backend's fused one-step graph when it has one (noise window as an input), otherwise the
    shared sampler over the backend's encode / denoise / decode. The backend gets numpy arrays."""
    lr_tiles = as_array(lr_tiles)
    noise = [as_array(n) for n in noise]
    fused = getattr(runner, "fused_one_step", None)
    if steps == 1 and fused is not None:
        return as_array(fused(lr_tiles, noise[0]))
    mu, sigma = (as_array(v) for v in runner.encode(lr_tiles))
    if runner.conditioning == "unidirectional":
        cond = mu
        mu, sigma = np.zeros_like(mu), np.ones_like(sigma)
        denoiser = lambda z, t: as_array(runner.denoise(z, t, cond))  # noqa: E731
    else:
        denoiser = lambda z, t: as_array(runner.denoise(z, t, None))  # noqa: E731
    zh = sample(denoiser, mu, sigma, noise, runner.schedule, steps=steps, eta=eta)
    return as_array(runner.decode(zh))
