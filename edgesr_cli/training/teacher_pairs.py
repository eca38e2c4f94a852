"""Teacher triplets: (degraded LR, teacher x4, HR) crops for distilling a perceptual point from a strong x4 model.

Triplet `i` is a function of (seed, i) and the photo folders alone: a random HR crop (image, position, dihedral
flip) and its LR through one pipeline of the training mix (Real-ESRGAN second order, heavy JPEG, camera noise,
clean bicubic; the draws of `data.CropDataset.make_lr`), all from a torch.Generator seeded by (seed, i). The
teacher sees the 8-bit LR with `context` LR pixels of real image around the kept crop (no padding at the
kept crop's edges); the kept LR, the teacher's output and the HR are its centre. Files:

    OUT/pairs.json                      what every triplet shares: seed, sizes, data folders and file list,
                                        the teacher (name, runtime, file hashes, licence), the LR mix
    OUT/manifest-<i>of<n>.jsonl         one line per finished triplet of shard i/n: index, source photo,
                                        crop box, flip, the degradation drawn, sha256 of the three PNGs
    OUT/{lr,teacher,hr}/<index>.png     8-bit RGB PNGs (LR lr_size, teacher and HR 4 x lr_size)

Shard i/n makes the indices congruent to i mod n; a run resumes where its manifest ends (a triplet's line is
written after its files, each file atomically). LR and HR follow from (seed, index): `regenerate` rebuilds
them from the photos, so only the teacher outputs and the manifest are worth keeping.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from ..atomic import write_bytes_atomic
from ..data import Batch, CropDataset, DataError, LRPipelineConfig, load_images_named

log = logging.getLogger(__name__)
FORMAT = "edgesr-teacher-pairs/1"
SCALE = 4


@dataclass(frozen=True)
class PairsConfig:
    seed: int = 0
    lr_size: int = 64  # the kept LR crop; teacher and HR are 4x
    context: int = 4  # LR pixels around it that the teacher (and the degradation) see, cropped away after
    lr_pipeline: LRPipelineConfig = dataclasses.field(default_factory=lambda: LRPipelineConfig(
        realesrgan_prob=0.5, jpeg_prob=0.2, camera_prob=0.15))

    @property
    def hr_crop(self) -> int:
        return (self.lr_size + 2 * self.context) * SCALE

    def to_dict(self) -> dict:
        return {"seed": self.seed, "lr_size": self.lr_size, "context": self.context,
                "lr_pipeline": self.lr_pipeline.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PairsConfig":
        return cls(seed=int(d["seed"]), lr_size=int(d["lr_size"]), context=int(d["context"]),
                   lr_pipeline=LRPipelineConfig.from_dict(d["lr_pipeline"]))


def triplet_generator(seed: int, index: int) -> torch.Generator:
    """The generator that draws triplet `index`: a function of (seed, index) alone."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 7_919) * 1_000_000_009 + int(index) * 2_654_435_761
                                         & (2**63 - 1))


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):  # a blur kernel: its size and spread, not its values
        k = v.float()
        n = k.shape[-1]
        r = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        var = float((k.sum(0) * r**2).sum() + (k.sum(1) * r**2).sum()) / 2
        return {"size": n, "std_px": round(max(var, 0.0) ** 0.5, 4)}
    if dataclasses.is_dataclass(v):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    return v


def draw_triplet(ds: CropDataset, names: list[str], cfg: PairsConfig, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(LR with context (h, w, 3) uint8, HR kept crop (4*lr_size, 4*lr_size, 3) uint8, description) of triplet
    `index`. The draws are CropDataset's: image, position, flip, then make_lr's pipeline."""
    g = triplet_generator(cfg.seed, index)
    hr, (i_img, y, x, k) = ds.random_crop_described(g)
    lr, kind, params = ds.make_lr_described(hr, g)
    c, s = cfg.context, cfg.lr_size
    hr_keep = hr[:, c * SCALE:(c + s) * SCALE, c * SCALE:(c + s) * SCALE]
    desc = {"index": index, "source": names[i_img], "box": [y, x, ds.crop], "dihedral": k, "pipeline": kind,
            "params": _jsonable(params)}
    return _to_u8(lr[SCALE]), _to_u8(hr_keep), desc


def _to_u8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def open_sources(folders: list[Path], cfg: PairsConfig) -> tuple[CropDataset, list[str]]:
    """The photos (decoded once, those at least an HR crop large, in sorted order) as a CropDataset, and their
    names (folder name / path inside it) in that order."""
    images, names = [], []
    for root in folders:
        imgs, paths, _ = load_images_named(root, cfg.hr_crop)
        images += imgs
        names += [f"{Path(root).name}/{p.relative_to(root)}" if Path(root).is_dir() else p.name for p in paths]
    return CropDataset(images, cfg.hr_crop, (SCALE,), cfg.lr_pipeline), names


def _names_hash(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def manifest_lines(out: Path) -> Iterator[dict]:
    for f in sorted(Path(out).glob("manifest-*.jsonl")):
        with open(f) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a crash: its triplet is redone
                        continue


def make_pairs(folders: list[Path], out: Path, count: int, teacher, cfg: PairsConfig, shard: tuple[int, int] = (0, 1),
               batch: int = 8, show_progress: bool = True) -> dict:
    """Make the triplets of `shard` among indices 0..count-1 that are not in OUT's manifests yet."""
    out = Path(out)
    for sub in ("lr", "teacher", "hr"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds, names = open_sources(folders, cfg)
    header = {"format": FORMAT, "config": cfg.to_dict(), "teacher": teacher.describe(), "scale": SCALE,
              "data": {"folders": [str(f) for f in folders], "images": len(names), "names_sha256": _names_hash(names),
                       "names": names}}
    hpath = out / "pairs.json"
    if hpath.exists():
        old = json.loads(hpath.read_text())
        for key in ("format", "config", "scale"):
            if old.get(key) != header[key]:
                raise DataError(f"{out}: made with another {key} ({old.get(key)} != {header[key]}); use a new folder")
        if old["data"]["names_sha256"] != header["data"]["names_sha256"]:
            raise DataError(f"{out}: made from other photos ({old['data']['images']} images there, {len(names)} here)")
        if old["teacher"]["files"] != header["teacher"]["files"] or old["teacher"]["name"] != header["teacher"]["name"]:
            raise DataError(f"{out}: made by another teacher ({old['teacher']['name']} {old['teacher']['files']})")
        runtimes = sorted(set(old["teacher"].get("runtimes", [old["teacher"]["runtime"]])) | {teacher.runtime})
        if runtimes != old["teacher"].get("runtimes"):
            old["teacher"]["runtimes"] = runtimes
            write_bytes_atomic(hpath, json.dumps(old, indent=1).encode())
    else:
        header["teacher"]["runtimes"] = [teacher.runtime]
        write_bytes_atomic(hpath, json.dumps(header, indent=1).encode())
    i_shard, n_shard = shard
    done = {int(d["index"]) for d in manifest_lines(out)}
    todo = [i for i in range(i_shard, count, n_shard) if i not in done]
    log.info("%d photos; shard %d/%d: %d of %d triplets to make", len(names), i_shard, n_shard, len(todo),
             len(range(i_shard, count, n_shard)))
    mpath = out / f"manifest-{i_shard}of{n_shard}.jsonl"
    made, t_teacher = 0, 0.0
    with open(mpath, "a") as mf:
        if mpath.stat().st_size and not mpath.read_bytes().endswith(b"\n"):
            mf.write("\n")  # a line cut by a crash ends here; its triplet is made again below
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            drawn = [draw_triplet(ds, names, cfg, i) for i in chunk]
            lr_ctx = np.stack([d[0] for d in drawn]).astype(np.float32) / 255.0
            t1 = time.perf_counter()
            sr = teacher(lr_ctx)
            t_teacher += time.perf_counter() - t1
            c, s = cfg.context, cfg.lr_size
            for (lr_u8, hr_u8, desc), sr_one in zip(drawn, sr):
                i = desc["index"]
                files = {"lr": lr_u8[c:c + s, c:c + s],
                         "teacher": (sr_one[c * SCALE:(c + s) * SCALE, c * SCALE:(c + s) * SCALE] * 255).round().astype(np.uint8),
                         "hr": hr_u8}
                for sub, arr in files.items():
                    data = _png(np.ascontiguousarray(arr))
                    write_bytes_atomic(out / sub / f"{i:06d}.png", data)
                    desc[f"{sub}_sha256"] = hashlib.sha256(data).hexdigest()
                mf.write(json.dumps(desc) + "\n")
            mf.flush()
            os.fsync(mf.fileno())
            made += len(chunk)
            if show_progress and (start // batch) % 10 == 0:
                el = time.perf_counter() - t0
                log.info("%d/%d triplets, %.2f s each (teacher %.2f s)", made, len(todo), el / max(made, 1),
                         t_teacher / made)
    return {"made": made, "total_done": len(done) + made, "seconds": round(time.perf_counter() - t0, 1),
            "teacher_seconds": round(t_teacher, 1)}


def regenerate(folders: list[Path], out: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Triplet `index`'s LR and HR again from the photos (same seed and folders as OUT/pairs.json)."""
    header = json.loads((Path(out) / "pairs.json").read_text())
    cfg = PairsConfig.from_dict(header["config"])
    ds, names = open_sources(folders, cfg)
    if _names_hash(names) != header["data"]["names_sha256"]:
        raise DataError(f"{out}: the photos here are not the ones the triplets were made from")
    lr, hr, _ = draw_triplet(ds, names, cfg, index)
    c, s = cfg.context, cfg.lr_size
    return lr[c:c + s, c:c + s], hr


# --- reading triplets for training ---------------------------------------------------------------------------

class TeacherTriplets:
    """The first `count` triplets of a pairs folder (all of them when None) as training batches: each step draws
    `batch` triplets, an LR crop of crop/4 px at a random position in each (the teacher and HR crops under it)
    and one of the 8 flips, from the step's generator. PNGs are decoded when drawn (a few ms each)."""

    def __init__(self, folder: Path, count: int | None, crop: int) -> None:
        self.folder = Path(folder)
        hpath = self.folder / "pairs.json"
        if not hpath.is_file():
            raise DataError(f"{self.folder}: not a teacher-pairs folder (no pairs.json)")
        self.header = json.loads(hpath.read_text())
        if self.header.get("format") != FORMAT:
            raise DataError(f"{self.folder}: unknown format {self.header.get('format')!r}")
        lr_size = int(self.header["config"]["lr_size"])
        if crop % SCALE or crop // SCALE > lr_size:
            raise DataError(f"crop {crop} must be a multiple of {SCALE} and at most {lr_size * SCALE} (the triplets' HR size)")
        done = sorted({int(d["index"]) for d in manifest_lines(self.folder)})
        if count is not None:
            if len(done) < count or done[count - 1] != count - 1:
                raise DataError(f"{self.folder}: triplets 0..{count - 1} are not all made yet ({len(done)} made)")
            done = done[:count]
        if not done:
            raise DataError(f"{self.folder}: no triplets made yet")
        self.indices, self.crop, self.lr_size = done, crop, lr_size

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, sub: str, index: int) -> torch.Tensor:
        with Image.open(self.folder / sub / f"{index:06d}.png") as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0

    def sample(self, batch: int, g: torch.Generator) -> Batch:
        lrs, hrs, tes = [], [], []
        c = self.crop // SCALE
        for _ in range(batch):
            i = self.indices[int(torch.randint(len(self.indices), (1,), generator=g))]
            y = int(torch.randint(self.lr_size - c + 1, (1,), generator=g))
            x = int(torch.randint(self.lr_size - c + 1, (1,), generator=g))
            k = int(torch.randint(8, (1,), generator=g))
            crops = [self._read("lr", i)[:, y:y + c, x:x + c]]
            for sub in ("teacher", "hr"):
                crops.append(self._read(sub, i)[:, y * SCALE:(y + c) * SCALE, x * SCALE:(x + c) * SCALE])
            if k & 4:
                crops = [t.flip(-1) for t in crops]
            crops = [torch.rot90(t, k & 3, dims=(-2, -1)) for t in crops]
            lrs.append(crops[0])
            tes.append(crops[1])
            hrs.append(crops[2])
        return Batch(hr=torch.stack(hrs), lr={SCALE: torch.stack(lrs)}, teacher=torch.stack(tes))
