"""Datasets of HR photos -> random HR crops and their LR (bicubic or Real-ESRGAN degraded).

Images are decoded once into memory (uint8). Every random choice (image, crop, flip, LR pipeline,
degradation parameters) of a training step's batch comes from a torch.Generator seeded by (seed, rank, step)
alone (`step_generator`), so a resumed run draws exactly what an uninterrupted one would, and worker
processes can make batches ahead of the training loop (`batch_stream`) without changing a single draw.
The degradation's arithmetic follows the thread count of the process that runs it (workers run one
thread), so a rare pixel can round to another 8-bit level between in-loop and worker-made batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import degradations as deg

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class DataError(ValueError):
    """An unusable data folder; the message names it."""


@dataclass(frozen=True)
class LRPipelineConfig:
    """How LR is made from an HR crop, one pipeline per crop: the Real-ESRGAN second-order degradation with
    probability `realesrgan_prob`, heavy JPEG (`jpeg_prob`), camera noise + mild blur + the camera's JPEG
    (`camera_prob`), clean bicubic otherwise (see degradations.PhotoDegradationConfig)."""

    realesrgan_prob: float = 0.0
    degradation: deg.DegradationConfig = field(default_factory=deg.DegradationConfig)
    jpeg_prob: float = 0.0
    camera_prob: float = 0.0
    photo: deg.PhotoDegradationConfig = field(default_factory=deg.PhotoDegradationConfig)

    def __post_init__(self) -> None:
        probs = {"realesrgan_prob": self.realesrgan_prob, "jpeg_prob": self.jpeg_prob, "camera_prob": self.camera_prob}
        for k, v in probs.items():
            if not 0.0 <= v <= 1.0:
                raise DataError(f"{k} must be in [0, 1], got {v}")
        if sum(probs.values()) > 1.0 + 1e-9:
            raise DataError(f"realesrgan_prob + jpeg_prob + camera_prob must be at most 1, got {sum(probs.values()):g}")

    def to_dict(self) -> dict:
        return {"realesrgan_prob": self.realesrgan_prob, "degradation": self.degradation.to_dict(),
                "jpeg_prob": self.jpeg_prob, "camera_prob": self.camera_prob, "photo": self.photo.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "LRPipelineConfig":
        return cls(realesrgan_prob=float(d.get("realesrgan_prob", 0.0)),
                   degradation=deg.DegradationConfig.from_dict(d.get("degradation", {})),
                   jpeg_prob=float(d.get("jpeg_prob", 0.0)), camera_prob=float(d.get("camera_prob", 0.0)),
                   photo=deg.PhotoDegradationConfig.from_dict(d.get("photo", {})))


def list_images(folder: str | Path) -> list[Path]:
    root = Path(folder)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


def load_images(folders: list[str | Path] | str | Path, min_size: int) -> tuple[list[torch.Tensor], int]:
    """Decode every image under the folders (recursive) to uint8 (3,H,W) tensors.

    Unreadable images and images smaller than `min_size` are skipped with a warning and counted.
    Returns (images, skipped). Raises DataError if nothing usable is found."""
    images, _, skipped = load_images_named(folders, min_size)
    return images, skipped


def load_images_named(folders: list[str | Path] | str | Path,
                      min_size: int) -> tuple[list[torch.Tensor], list[Path], int]:
    """load_images, with the path of every image kept: (images, paths, skipped)."""
    if isinstance(folders, (str, Path)):
        folders = [folders]
    files: list[Path] = []
    for f in folders:
        files += list_images(f)
    if not files:
        raise DataError(f"{', '.join(map(str, folders))}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    images, paths, skipped = [], [], 0
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            log.warning("skipping %s: unreadable (%s)", path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            skipped += 1
            continue
        if min(arr.shape[:2]) < min_size:
            log.warning("skipping %s: %dx%d is smaller than the %d px crop", path, arr.shape[1], arr.shape[0], min_size)
            skipped += 1
            continue
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
        paths.append(path)
    if not images:
        raise DataError(f"{', '.join(map(str, folders))}: none of the {len(files)} image(s) is usable ({skipped} skipped)")
    return images, paths, skipped


@dataclass
class Batch:
    hr: torch.Tensor  # (B,3,crop,crop) float [0,1]
    lr: dict[int, torch.Tensor]  # scale -> (B,3,crop/scale,crop/scale)
    teacher: torch.Tensor | None = None  # (B,3,crop,crop) a teacher's x4 output of lr (teacher triplets only)


class CropDataset:
    """Random HR crops of `crop` px with their LR at each of `scales` (same crop, same degradation)."""

    def __init__(self, images: list[torch.Tensor], crop: int, scales: tuple[int, ...], lr_cfg: LRPipelineConfig) -> None:
        for s in scales:
            if crop % s:
                raise DataError(f"crop {crop} is not divisible by scale {s}")
        self.images, self.crop, self.scales, self.lr_cfg = images, crop, scales, lr_cfg

    def __len__(self) -> int:
        return len(self.images)

    def random_crop(self, g: torch.Generator) -> torch.Tensor:
        return self.random_crop_described(g)[0]

    def random_crop_described(self, g: torch.Generator) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """A random crop (3, crop, crop) float in [0, 1] and where it came from: (image index, y, x, flip k)."""
        i = int(torch.randint(len(self.images), (1,), generator=g))
        img = self.images[i]
        _, h, w = img.shape
        y = int(torch.randint(h - self.crop + 1, (1,), generator=g))
        x = int(torch.randint(w - self.crop + 1, (1,), generator=g))
        c = img[:, y:y + self.crop, x:x + self.crop].float() / 255.0
        k = int(torch.randint(8, (1,), generator=g))  # dihedral augmentation
        if k & 4:
            c = c.flip(-1)
        return torch.rot90(c, k & 3, dims=(-2, -1)), (i, y, x, k)

    def make_lr(self, hr: torch.Tensor, g: torch.Generator) -> dict[int, torch.Tensor]:
        """One HR crop (3,H,W) -> {scale: LR}; all scales share the same degradation draw."""
        return self.make_lr_described(hr, g)[0]

    def make_lr_described(self, hr: torch.Tensor, g: torch.Generator) -> tuple[dict[int, torch.Tensor], str, object]:
        """make_lr, with the pipeline drawn ("realesrgan" | "jpeg" | "camera" | "clean") and its parameters."""
        c = self.lr_cfg
        u = float(torch.rand((), generator=g))  # one draw picks the pipeline (so older configs draw as before)
        if u < c.realesrgan_prob:
            params = deg.sample_params(c.degradation, g)
            return {s: deg.apply_degradation(hr, params, s) for s in self.scales}, "realesrgan", params
        if u < c.realesrgan_prob + c.jpeg_prob + c.camera_prob:
            kind = "jpeg" if u < c.realesrgan_prob + c.jpeg_prob else "camera"
            p = deg.sample_photo_params(kind, c.photo, g)
            return {s: deg.apply_photo_degradation(hr, p, s, c.photo.blur_kernel_size) for s in self.scales}, kind, p
        return {s: deg.bicubic_lr(hr, s) for s in self.scales}, "clean", None

    def sample(self, batch: int, g: torch.Generator) -> Batch:
        hrs, lrs = [], {s: [] for s in self.scales}
        for _ in range(batch):
            hr = self.random_crop(g)
            hrs.append(hr)
            for s, lr in self.make_lr(hr, g).items():
                lrs[s].append(lr)
        return Batch(hr=torch.stack(hrs), lr={s: torch.stack(v) for s, v in lrs.items()})

    def fixed_batch(self, n: int, seed: int) -> Batch:
        """A deterministic batch (for validation): same crops and degradations every call."""
        return self.sample(n, torch.Generator().manual_seed(seed))


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The generator that draws training step `step`'s batch on process `rank`: a function of the three
    numbers only, so a batch does not depend on which worker made it, how many workers there are, or where
    a run was resumed."""
    return torch.Generator().manual_seed(((int(seed) * 1_000_003 + int(rank)) * 1_000_000_007 + int(step)) % (2**63 - 1))


class StepBatches(torch.utils.data.Dataset):
    """Map-style view of a CropDataset for a DataLoader: item `step` is that step's whole batch."""

    def __init__(self, ds: CropDataset, batch_size: int, seed: int, rank: int) -> None:
        self.ds, self.batch_size, self.seed, self.rank = ds, batch_size, seed, rank

    def __getitem__(self, step: int) -> Batch:
        return self.ds.sample(self.batch_size, step_generator(self.seed, self.rank, step))


def batch_stream(ds: CropDataset, batch_size: int, seed: int, rank: int, start: int, stop: int,
                 workers: int = 0) -> Iterator[tuple[int, Batch]]:
    """(step, batch) for steps start..stop-1, in order. `workers` > 0 makes them in that many worker
    processes, a few steps ahead of the consumer (what keeps a GPU fed: the Real-ESRGAN degradation runs on
    the CPU); 0 makes each one when asked. Same draws either way; the pixels are bit-identical for any
    number of workers, and to in-loop batches made with one thread."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    src = StepBatches(ds, batch_size, seed, rank)
    steps = range(start, stop)
    if workers == 0:
        for step in steps:
            yield step, src[step]
        return
    # spawn, not fork: a fork of a process whose libraries run threads (OpenMP, JAX) can deadlock in the child
    loader = torch.utils.data.DataLoader(src, batch_size=None, sampler=steps, num_workers=workers, prefetch_factor=4,
                                         multiprocessing_context="spawn")
    yield from zip(steps, loader)
