"""Quality evaluation (library level): HR/LR pairs, PSNR/SSIM on Y, NIQE, LPIPS, DISTS, the bicubic baseline,
a comparison grid PNG, and (eval_report.py) the per-image CSV and the JSON summary. No CLI concerns here (see
cli_eval.py).

Protocol (what SR papers report, see metrics.py): images are compared as 8-bit images, PSNR and SSIM on
the BT.601 luma Y with ``scale`` pixels cropped from every border; HR images whose size is not a
multiple of the scale are cropped to one ("modcrop") from the bottom/right, as SR benchmarks do.

LR images come from a folder (paired by file name) or are made from HR:

* ``bicubic``: MATLAB ``imresize(hr, 1/scale, 'bicubic')`` (antialiased), rounded to 8 bits: how the
  classic Set5/Set14/BSD100 LR images were made;
* ``realesrgan``: the Real-ESRGAN second-order degradation of degradations.py, with the random draw of
  image ``i`` (its index in the sorted HR folder) taken from ``torch.Generator().manual_seed(seed + i)``,
  so every number is reproducible and does not depend on ``max_images``;
* ``jpeg``: the ``bicubic`` LR saved as a JPEG at quality 40 (Pillow, 4:2:0) and decoded: a small, heavily
  compressed web photo. Deterministic (no random draw).

Every method (bicubic, edgesr, peers) is a callable ``(lr HxWx3 float32 in [0,1], grayscale) -> HR
HxWx3``; :func:`evaluate` runs all of them on the same pairs and times each call.
"""

from __future__ import annotations

import io as _io
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import metrics as M
from .defaults import DEFAULT_OVERLAP, DEFAULT_TILE
from .eval_report import to_jsonable, write_csv, write_file, write_json  # noqa: F401 (the reports: eval_report.py)
from .io import DEFAULT_MAX_PIXELS, EXTENSIONS, ImageError, Photo, find_images, read_image, write_image

__all__ = [
    "DEGRADATIONS",
    "EvalError",
    "Pair",
    "Method",
    "MetricSetup",
    "EvalResult",
    "plan_pairs",
    "load_pair",
    "make_lr",
    "bicubic_method",
    "runner_method",
    "setup_metrics",
    "score",
    "evaluate",
    "summarize",
    "write_csv",
    "write_json",
    "grid_size",
    "make_grid",
    "choose_crop",
    "dataset_label",
    "to_jsonable",
]

DEGRADATIONS = ("bicubic", "realesrgan", "jpeg")
JPEG_QUALITY = 40  # of the jpeg degradation
DISTS_REFERENCE_MAX_PIXELS = 1 << 20  # HRs up to this size run through DISTS's network once for all methods
_LR_MARKERS = re.compile(r"(?i)([_\-.]?(x\d+|lr|lrbi|lr_?x\d+|bicubic))+$")

MethodFn = Callable[[np.ndarray, bool], np.ndarray]


class EvalError(ValueError):
    """A problem with the evaluation input (pairing, sizes, folders); one line naming the file."""


# ---------------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One HR image and where its LR comes from. Sizes are (width, height) after EXIF orientation."""

    name: str  # relative path below the HR folder (posix), the key of every report row
    index: int  # position in the sorted HR folder (seeds the realesrgan degradation)
    hr_path: Path
    lr_path: Path | None  # None: made from HR with `degrade`
    hr_size: tuple[int, int]  # as stored
    crop_size: tuple[int, int]  # HR size used (a multiple of the scale)
    lr_size: tuple[int, int]
    degrade: str | None = None
    seed: int = 0

    @property
    def note(self) -> str | None:
        if self.crop_size != self.hr_size:
            return (f"HR cropped from {self.hr_size[0]}x{self.hr_size[1]} to "
                    f"{self.crop_size[0]}x{self.crop_size[1]} (a multiple of the scale)")
        return None


@dataclass
class LoadedPair:
    pair: Pair
    hr: np.ndarray  # (H, W, 3) float32 in [0, 1]
    lr: np.ndarray  # (h, w, 3) float32 in [0, 1]
    grayscale: bool


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) as read_image will return it (EXIF orientations 5-8 swap the axes)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1))
            except Exception:  # noqa: BLE001 - unreadable EXIF: read_image ignores it too
                orientation = 1
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(path, f"not a readable image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _list_folder(folder: Path, what: str) -> dict[str, Path]:
    """{relative path without suffix (posix): file} for the images below `folder` (recursive)."""
    if not folder.exists():
        raise EvalError(f"{folder}: no such folder ({what})")
    if not folder.is_dir():
        raise EvalError(f"{folder}: not a folder ({what} must be a folder of images)")
    try:
        pairs = find_images([str(folder)])
    except ImageError as exc:
        raise EvalError(f"{folder}: no images in this {what} folder (looking for .{', .'.join(sorted(EXTENSIONS))})") from exc
    out: dict[str, Path] = {}
    for file, rel in pairs:
        key = rel.with_suffix("").as_posix()
        if key in out:
            raise EvalError(f"{file}: two images named {key} in {folder} ({out[key].name} and {file.name}); "
                            "pairs are matched by name")
        out[key] = file
    return out


def _lr_key(key: str, scale: int) -> str:
    """LR names often carry a marker (baby_LRBI_x4, img_001x4, 0801x4): strip it for matching."""
    stripped = _LR_MARKERS.sub("", key)
    return stripped or key


def _modcrop(size: tuple[int, int], scale: int) -> tuple[int, int]:
    return (size[0] - size[0] % scale, size[1] - size[1] % scale)


def plan_pairs(hr_dir: str | os.PathLike, lr_dir: str | os.PathLike | None = None, *, scale: int = 4,
               degrade: str | None = None, seed: int = 0, max_images: int | None = None,
               min_lr: int = 1) -> list[Pair]:
    """Pair the images of `hr_dir` with `lr_dir` (by name) or with `degrade`, and check every size first,
    reading headers only, so that a mismatch is reported before any model time is spent.

    Raises EvalError (naming the file) for: missing/empty folders, an HR without an LR, an LR whose
    size is not HR / scale, an HR smaller than `min_lr` * scale.
    """
    if (lr_dir is None) == (degrade is None):
        raise EvalError("give either an LR folder or a degradation (bicubic or realesrgan), not both")
    if degrade is not None and degrade not in DEGRADATIONS:
        raise EvalError(f"unknown degradation {degrade!r}; choose one of {', '.join(DEGRADATIONS)}")
    if scale < 1:
        raise EvalError(f"scale must be >= 1, got {scale}")
    if max_images is not None and max_images < 1:
        raise EvalError(f"max_images must be >= 1, got {max_images}")
    hr_files = _list_folder(Path(hr_dir), "HR")
    lr_files: dict[str, Path] = {}
    if lr_dir is not None:
        raw = _list_folder(Path(lr_dir), "LR")
        for key, path in raw.items():
            for k in dict.fromkeys((key, _lr_key(key, scale))):
                lr_files.setdefault(k, path)
    pairs: list[Pair] = []
    for index, key in enumerate(sorted(hr_files)):
        if max_images is not None and len(pairs) >= max_images:
            break
        hr_path = hr_files[key]
        hr_size = _image_size(hr_path)
        if lr_dir is not None:
            lr_path = lr_files.get(key)
            if lr_path is None:
                raise EvalError(f"{hr_path}: no LR image named {Path(key).name}.* in {lr_dir} (pairs are matched by name)")
            lr_size = _image_size(lr_path)
            want = (lr_size[0] * scale, lr_size[1] * scale)
            if _modcrop(hr_size, scale) != want:
                need = (hr_size[0] // scale, hr_size[1] // scale)
                raise EvalError(
                    f"{hr_path}: HR is {hr_size[0]}x{hr_size[1]} but its LR {lr_path.name} is {lr_size[0]}x{lr_size[1]}; "
                    f"at x{scale} this HR needs an LR of {need[0]}x{need[1]} (HR cropped to "
                    f"{need[0] * scale}x{need[1] * scale}), or that LR an HR of {want[0]}x{want[1]}")
            crop = want
        else:
            lr_path = None
            crop = _modcrop(hr_size, scale)
            lr_size = (crop[0] // scale, crop[1] // scale)
        if min(lr_size) < min_lr:
            raise EvalError(f"{hr_path}: HR {hr_size[0]}x{hr_size[1]} is too small to evaluate at x{scale} "
                            f"(the LR would be {lr_size[0]}x{lr_size[1]}, need at least {min_lr}x{min_lr})")
        pairs.append(Pair(name=key, index=index, hr_path=hr_path, lr_path=lr_path, hr_size=hr_size,
                          crop_size=crop, lr_size=lr_size, degrade=degrade, seed=seed))
    return pairs


def make_lr(hr: np.ndarray, how: str, scale: int, seed: int = 0) -> np.ndarray:
    """LR (h, w, 3) float32 on 8-bit levels from an HR (H, W, 3) float in [0, 1] (H, W multiples of scale)."""
    if how in ("bicubic", "jpeg"):
        lr = M.matlab_imresize(np.asarray(hr, dtype=np.float64), 1.0 / scale, antialiasing=True)
        lr = (np.round(np.clip(lr, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
        if how == "bicubic":
            return lr
        import torch

        from .degradations import jpeg_compress

        out = jpeg_compress(torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))), JPEG_QUALITY)
        return np.ascontiguousarray(out.numpy().transpose(1, 2, 0), dtype=np.float32)
    if how == "realesrgan":
        import torch

        from .degradations import apply_degradation, sample_params

        g = torch.Generator().manual_seed(int(seed))
        params = sample_params(None, g)
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(hr, dtype=np.float32).transpose(2, 0, 1)))
        out = apply_degradation(t.clamp(0, 1), params, scale)
        return np.ascontiguousarray(out.numpy().transpose(1, 2, 0), dtype=np.float32)
    raise EvalError(f"unknown degradation {how!r}; choose one of {', '.join(DEGRADATIONS)}")


def load_pair(pair: Pair, scale: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedPair:
    """Decode one pair: HR cropped to the planned size; LR read or made from it."""
    hr_photo = read_image(pair.hr_path, max_pixels=max_pixels)
    w, h = pair.crop_size
    hr = np.ascontiguousarray(hr_photo.rgb[:h, :w])
    if pair.lr_path is not None:
        lr_photo = read_image(pair.lr_path, max_pixels=max_pixels)
        lr = lr_photo.rgb
        if (lr.shape[1], lr.shape[0]) != pair.lr_size:  # file changed since planning
            raise EvalError(f"{pair.lr_path}: size changed while evaluating")
        gray = hr_photo.grayscale and lr_photo.grayscale
    else:
        lr = make_lr(hr, pair.degrade or "bicubic", scale, pair.seed + pair.index)
        gray = hr_photo.grayscale
    return LoadedPair(pair, hr, np.ascontiguousarray(lr, dtype=np.float32), gray)


# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------


@dataclass
class Method:
    """Something that upscales: `fn(lr, grayscale) -> hr` (HxWx3 float in [0, 1])."""

    name: str
    fn: MethodFn
    label: str = ""  # longer description for reports (backend, device, dtype, runtime)
    warmup: Callable[[], None] | None = None  # run once before timing (compile, allocate, load)


def bicubic_method(scale: int) -> Method:
    def fn(lr: np.ndarray, gray: bool) -> np.ndarray:
        return M.bicubic_upscale(lr, scale)

    return Method("bicubic", fn, f"PIL bicubic x{scale} of the 8-bit LR (metrics.bicubic_upscale)")


def runner_method(runner, *, name: str = "edgesr", label: str = "", tile: int = DEFAULT_TILE,
                  overlap: float = DEFAULT_OVERLAP, batch: int = 4, steps: int = 1, seed: int = 0,
                  warmup_size: int | None = None) -> Method:
    """edgesr through the shared tiling engine (upscale_photo: grayscale in, grayscale out, as the CLI does)."""
    from .runtime.upscale import UpscaleOptions, upscale_photo

    opts = UpscaleOptions(tile=tile, overlap=overlap, batch=batch, steps=steps, seed=seed)

    def fn(lr: np.ndarray, gray: bool) -> np.ndarray:
        photo = Photo(rgb=np.ascontiguousarray(lr, dtype=np.float32), grayscale=gray)
        return upscale_photo(runner, photo, opts).rgb

    def warm() -> None:
        s = warmup_size or min(tile, 64)
        fn(np.full((s, s, 3), 0.5, dtype=np.float32), False)

    return Method(name, fn, label, warm)


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------


@dataclass
class MetricSetup:
    scale: int
    crop_border: int
    niqe_params: M.NiqeParams | None = None
    niqe_source: str | None = None  # where the params came from
    niqe_off: str | None = None  # reason when off
    lpips_off: str | None = None  # reason when off
    lpips_net: str = "alex"
    dists_off: str | None = None  # reason when off

    def describe(self) -> dict:
        return {
            "psnr_y_ssim_y": f"8-bit images, BT.601 Y, {self.crop_border} px border cropped (BasicSR protocol)",
            "niqe": f"on: {self.niqe_source} (Y, {self.crop_border} px border cropped, BasicSR float32)"
            if self.niqe_off is None else f"off: {self.niqe_off}",
            "lpips": f"on: LPIPS v0.1 {self.lpips_net}" if self.lpips_off is None else f"off: {self.lpips_off}",
            "dists": "on: DISTS (Ding, Ma, Wang, Simoncelli, TPAMI 2020; DISTS-pytorch alpha/beta, torchvision VGG16)"
            if self.dists_off is None else f"off: {self.dists_off}",
        }


def _strip_off(msg: str, prefix: str) -> str:
    msg = str(msg).splitlines()[0] if str(msg) else prefix
    return msg[len(prefix):].lstrip(" :") if msg.lower().startswith(prefix.lower()) else msg


def setup_metrics(scale: int, *, niqe: bool = True, niqe_params: str | os.PathLike | M.NiqeParams | None = None,
                  lpips: bool = True, lpips_net: str = "alex", dists: bool = True) -> MetricSetup:
    """Decide once which optional metrics run here, and why not when they don't (never downloads)."""
    s = MetricSetup(scale=scale, crop_border=scale, lpips_net=lpips_net)
    if not niqe:
        s.niqe_off = "disabled (--no-niqe)"
    elif niqe_params is not None:
        if isinstance(niqe_params, M.NiqeParams):
            s.niqe_params, s.niqe_source = niqe_params, niqe_params.source or "given parameters"
        else:
            p = Path(niqe_params)
            if not p.is_file():
                raise EvalError(f"{p}: no such NIQE parameter file (.npz in BasicSR's niqe_pris_params layout)")
            s.niqe_params, s.niqe_source = M.load_niqe_params(p), f"parameters from {p}"
    else:
        try:
            s.niqe_params = M.published_niqe_params()
            s.niqe_source = f"published pristine parameters ({M.find_published_niqe_params()})"
        except M.MetricUnavailable as exc:
            s.niqe_off = _strip_off(str(exc), "NIQE off")
    if not lpips:
        s.lpips_off = "disabled (--no-lpips)"
    elif not M.lpips_available(lpips_net):
        try:
            probe = np.zeros((8, 8, 3))
            M.lpips_distance(probe, probe, lpips_net)
        except M.MetricUnavailable as exc:
            s.lpips_off = _strip_off(str(exc), "LPIPS off")
        except Exception as exc:  # noqa: BLE001 - a broken optional install must not stop the evaluation
            s.lpips_off = f"{type(exc).__name__}: {exc}"
    if not dists:
        s.dists_off = "disabled (--no-dists)"
    else:
        try:  # loads the network once, so a broken weights file is one note here, not a crash later
            probe = np.zeros((8, 8, 3))
            M.dists_distance(probe, probe)
        except M.MetricUnavailable as exc:
            s.dists_off = _strip_off(str(exc), "DISTS off")
        except Exception as exc:  # noqa: BLE001 - a broken optional install must not stop the evaluation
            s.dists_off = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return s


def score(sr: np.ndarray, hr: np.ndarray, setup: MetricSetup, dists_ref=None) -> dict:
    """{psnr_y, ssim_y, niqe, lpips, dists} for one output; None where a metric is off or the image too small
    for it (the reason goes in 'notes'). `dists_ref`: M.dists_reference(hr), to run the HR through DISTS's
    network once for all methods."""
    if sr.shape != hr.shape:
        raise EvalError(f"output shape {sr.shape} differs from HR {hr.shape}")
    b = setup.crop_border
    out: dict = {"psnr_y": M.psnr_y(sr, hr, b), "ssim_y": None, "niqe": None, "lpips": None, "dists": None}
    notes = []
    try:
        out["ssim_y"] = M.ssim_y(sr, hr, b)
    except ValueError as exc:
        notes.append(f"SSIM: {exc}")
    if setup.niqe_params is not None:
        try:
            out["niqe"] = M.niqe(sr, setup.niqe_params, crop_border=b)
        except ValueError as exc:
            notes.append(f"NIQE: {exc}")
    if setup.lpips_off is None:
        try:
            out["lpips"] = M.lpips_distance(sr, hr, setup.lpips_net)
        except M.MetricUnavailable as exc:
            setup.lpips_off = _strip_off(str(exc), "LPIPS off")
    if setup.dists_off is None:
        try:
            out["dists"] = M.dists_distance(sr, hr if dists_ref is None else dists_ref)
        except M.MetricUnavailable as exc:
            setup.dists_off = _strip_off(str(exc), "DISTS off")
    if notes:
        out["notes"] = notes
    return out


# ---------------------------------------------------------------------------------------------------
# The evaluation loop
# ---------------------------------------------------------------------------------------------------


@dataclass
class GridRow:
    title: str
    crops: list[np.ndarray]  # one per column, (c, c, 3) float in [0, 1]
    captions: list[str]


@dataclass
class EvalResult:
    methods: list[Method]
    setup: MetricSetup
    images: list[dict] = field(default_factory=list)  # one per image: sizes, hr_niqe, per-method scores
    grid_rows: list[GridRow] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Long format: one row per (image, method)."""
        out = []
        for img in self.images:
            for m in self.methods:
                r = img["methods"][m.name]
                out.append({"image": img["image"], "method": m.name, **{k: r.get(k) for k in
                            ("psnr_y", "ssim_y", "niqe", "lpips", "dists", "seconds")},
                            "hr_width": img["hr_size"][0], "hr_height": img["hr_size"][1],
                            "lr_width": img["lr_size"][0], "lr_height": img["lr_size"][1]})
        return out


def choose_crop(hr: np.ndarray, size: int) -> tuple[int, int, int]:
    """(y, x, c): the c x c window (c = min(size, H, W)) with the most luma detail, on a coarse grid, so the
    grid shows texture rather than sky. Deterministic."""
    h, w = hr.shape[:2]
    c = max(1, min(size, h, w))
    y = M.rgb_to_y(np.clip(hr, 0, 1))
    g = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
    ii = np.pad(g, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image of (h-1, w-1)
    step = max(1, c // 4)
    best, pos = -1.0, (0, 0)
    gh, gw = g.shape
    cc = min(c, gh, gw)
    for yy in list(range(0, max(1, h - c + 1), step)) + [h - c]:
        for xx in list(range(0, max(1, w - c + 1), step)) + [w - c]:
            y1, x1 = min(yy + cc, gh), min(xx + cc, gw)
            e = ii[y1, x1] - ii[yy, x1] - ii[y1, xx] + ii[yy, xx]
            if e > best:
                best, pos = e, (yy, xx)
    return pos[0], pos[1], c


def evaluate(pairs: Sequence[Pair], methods: Sequence[Method], setup: MetricSetup, *,
             grid_images: int = 4, grid_crop: int = 128, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             save_dir: Path | None = None, progress: Callable[[int, int, str], None] | None = None,
             hr_niqe: bool = True,
             grid_box: Callable[[Pair, np.ndarray], tuple[int, int, int]] | None = None) -> EvalResult:
    """Run every method on every pair, score it against the HR, time it, keep grid crops for the first
    `grid_images` pairs, and (with `save_dir`) write each method's output as PNG under save_dir/<method>/.
    `grid_box(pair, hr) -> (y, x, c)` places a pair's grid crop (default: the `grid_crop` window with the
    most detail, choose_crop)."""
    if not pairs:
        raise EvalError("nothing to evaluate (no image pairs)")
    if not methods:
        raise EvalError("nothing to evaluate (no methods)")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise EvalError(f"method names must be unique, got {names}")
    scale = setup.scale
    for m in methods:
        if m.warmup is not None:
            m.warmup()
    result = EvalResult(list(methods), setup)
    for i, pair in enumerate(pairs):
        if progress is not None:
            progress(i, len(pairs), pair.name)
        lp = load_pair(pair, scale, max_pixels)
        rec: dict = {"image": pair.name, "hr": str(pair.hr_path), "lr": str(pair.lr_path) if pair.lr_path else None,
                     "hr_size": list(pair.crop_size), "lr_size": list(pair.lr_size), "methods": {}}
        if pair.note:
            rec["note"] = pair.note
        if hr_niqe and setup.niqe_params is not None:
            try:
                rec["hr_niqe"] = M.niqe(lp.hr, setup.niqe_params, crop_border=setup.crop_border)
            except ValueError:
                rec["hr_niqe"] = None
        outputs = {}
        dists_ref = _dists_reference(lp.hr, setup)
        for m in methods:
            t0 = time.perf_counter()
            sr = np.asarray(m.fn(lp.lr, lp.grayscale))
            seconds = time.perf_counter() - t0
            want = (lp.lr.shape[0] * scale, lp.lr.shape[1] * scale, 3)
            if sr.shape != want:
                raise EvalError(f"{pair.hr_path}: method {m.name} returned {sr.shape}, expected {want}")
            sr = np.clip(sr, 0.0, 1.0)
            rec["methods"][m.name] = {**score(sr, lp.hr, setup, dists_ref), "seconds": seconds}
            if save_dir is not None:
                dst = Path(save_dir) / m.name / Path(pair.name).with_suffix(".png")
                write_image(dst, Photo(rgb=sr.astype(np.float32), grayscale=lp.grayscale), fmt="png")
            if i < grid_images:
                outputs[m.name] = sr
        if i < grid_images:
            y, x, c = choose_crop(lp.hr, grid_crop) if grid_box is None else grid_box(pair, lp.hr)
            crops, caps = [], []
            for m in methods:
                crops.append(outputs[m.name][y:y + c, x:x + c])
                r = rec["methods"][m.name]
                ssim = f" / SSIM {r['ssim_y']:.3f}" if r["ssim_y"] is not None else ""
                caps.append(f"{_fmt_psnr(r['psnr_y'])} dB{ssim}")
            crops.append(lp.hr[y:y + c, x:x + c])
            caps.append("ground truth")
            result.grid_rows.append(GridRow(f"{pair.name}: HR crop {c}x{c} at x={x}, y={y} (scores: whole image)",
                                            crops, caps))
        result.images.append(rec)
        del dists_ref
    if progress is not None:
        progress(len(pairs), len(pairs), "")
    return result


def _dists_reference(hr: np.ndarray, setup: MetricSetup):
    """The HR's DISTS features (about 500 bytes a pixel), shared by every method's score; None when DISTS is
    off or the HR is over a megapixel (then each score runs it again, stage by stage, in less memory)."""
    if setup.dists_off is not None or hr.shape[0] * hr.shape[1] > DISTS_REFERENCE_MAX_PIXELS:
        return None
    try:
        return M.dists_reference(hr)
    except M.MetricUnavailable as exc:
        setup.dists_off = _strip_off(str(exc), "DISTS off")
        return None


def _fmt_psnr(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.2f}"


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(result: EvalResult, baseline: str = "bicubic") -> dict:
    """Per method: mean PSNR-Y / SSIM-Y / NIQE / LPIPS / DISTS, seconds per image, gain over the baseline and the
    number of images where it beats the baseline in PSNR. Infinite PSNRs (identical images) are left out
    of the means and counted. An 'HR' entry holds the ground truth's own NIQE, for reference."""
    out: dict = {}
    per = {m.name: [img["methods"][m.name] for img in result.images] for m in result.methods}
    for m in result.methods:
        rs = per[m.name]
        s = {
            "label": m.label,
            "psnr_y": _mean(r["psnr_y"] for r in rs),
            "ssim_y": _mean(r["ssim_y"] for r in rs),
            "niqe": _mean(r["niqe"] for r in rs),
            "lpips": _mean(r["lpips"] for r in rs),
            "dists": _mean(r.get("dists") for r in rs),
            "seconds_per_image": _mean(r["seconds"] for r in rs),
            "seconds_total": float(sum(r["seconds"] for r in rs)),
            "images": len(rs),
        }
        n_inf = sum(1 for r in rs if r["psnr_y"] is not None and math.isinf(r["psnr_y"]))
        if n_inf:
            s["psnr_y_infinite"] = n_inf
        out[m.name] = s
    if baseline in per:
        b = out[baseline]
        for name, s in out.items():
            if name == baseline:
                continue
            for k in ("psnr_y", "ssim_y"):
                s[f"{k}_gain_vs_{baseline}"] = None if s[k] is None or b[k] is None else s[k] - b[k]
            s[f"wins_vs_{baseline}"] = sum(1 for r, q in zip(per[name], per[baseline]) if r["psnr_y"] > q["psnr_y"])
    hr_niqe = [img.get("hr_niqe") for img in result.images]
    if any(v is not None for v in hr_niqe):
        out["HR"] = {"label": "ground truth (NIQE reference)", "niqe": _mean(hr_niqe), "images": len(hr_niqe)}
    return out


# ---------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------

# Grid geometry, in pixels (see grid_size)
GRID_PAD = 8
GRID_HEADER = 24
GRID_TITLE = 16
GRID_CAPTION = 16


def grid_size(rows: int, cols: int, cell: int) -> tuple[int, int]:
    """(width, height) of a comparison grid: a header line of column names, then per row a title line,
    the crops (cell x cell each) and a caption line under each crop."""
    width = GRID_PAD + cols * (cell + GRID_PAD)
    height = GRID_HEADER + rows * (GRID_TITLE + cell + GRID_CAPTION + GRID_PAD) + GRID_PAD
    return width, height


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def make_grid(rows: Sequence[GridRow], columns: Sequence[str], cell: int = 256) -> Image.Image:
    """Rows of same-place crops, one column per method plus HR, scaled to `cell` px with nearest
    neighbour (pixels stay pixels), labelled with PIL's default font."""
    if not rows:
        raise EvalError("no images for the comparison grid")
    cols = len(columns)
    W, H = grid_size(len(rows), cols, cell)
    im = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    for j, name in enumerate(columns):
        x = GRID_PAD + j * (cell + GRID_PAD)
        draw.text((x, 6), _fit_text(draw, name, font, cell), fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows):
        if len(row.crops) != cols:
            raise EvalError(f"grid row {row.title!r} has {len(row.crops)} crops for {cols} columns")
        y0 = GRID_HEADER + i * (GRID_TITLE + cell + GRID_CAPTION + GRID_PAD)
        draw.text((GRID_PAD, y0 + 2), _fit_text(draw, row.title, font, W - 2 * GRID_PAD), fill=(60, 60, 60), font=font)
        for j, (crop, cap) in enumerate(zip(row.crops, row.captions)):
            x = GRID_PAD + j * (cell + GRID_PAD)
            u8 = np.round(np.clip(np.asarray(crop, dtype=np.float64), 0, 1) * 255).astype(np.uint8)
            tile = Image.fromarray(u8).resize((cell, cell), Image.NEAREST)
            im.paste(tile, (x, y0 + GRID_TITLE))
            draw.text((x, y0 + GRID_TITLE + cell + 2), _fit_text(draw, cap, font, cell), fill=(0, 0, 0), font=font)
    return im


def write_grid(result: EvalResult, path: str | os.PathLike, cell: int = 256) -> Path | None:
    if not result.grid_rows:
        return None
    im = make_grid(result.grid_rows, [m.name for m in result.methods] + ["HR"], cell)
    buf = _io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return write_file(Path(path), buf.getvalue())


def dataset_label(hr_dir: str | os.PathLike) -> str:
    """A short name for reports: 'Set14-x4' for .../Set14/x4/HR, else the folder name."""
    p = Path(hr_dir).resolve()
    parts = [p.name]
    q = p
    while parts[0].lower() in {"hr", "gt", "x2", "x3", "x4", "x8", "hr_images", "original"} and q.parent != q:
        q = q.parent
        parts.insert(0, q.name)
        if len(parts) >= 3:
            break
    keep = [s for s in parts if s.lower() not in {"hr", "gt", "hr_images", "original"}] or parts
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(keep)) or "images"
