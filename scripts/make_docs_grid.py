"""Make docs/comparison.png: bicubic / edgesr / HR crops of scikit-image's freely licensed sample
photos (never ../shared images), each degraded x4 by bicubic here.

    python scripts/make_docs_grid.py [--model DIR] [--out docs/comparison.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage import data

from backends.torch_backend import from_model
from edgesr_cli.cli_common import default_model_dir
from edgesr_cli.metrics import bicubic_upscale, psnr_y
from edgesr_cli.model import load_model_dir
from edgesr_cli.tiling import upscale_tensor

# (name, image, HR crop box y0, x0, size)
SAMPLES = [("astronaut", data.astronaut, 30, 140, 256), ("chelsea", data.chelsea, 20, 100, 256),
           ("coffee", data.coffee, 60, 180, 256)]
ZOOM = 96  # side of the zoomed-in crop shown, in HR pixels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/comparison.png"))
    args = ap.parse_args()
    model = load_model_dir(args.model or default_model_dir())
    runner = from_model(model, "cpu", "fp32")
    rows = []
    for name, fn, y0, x0, size in SAMPLES:
        hr = fn()[y0:y0 + size, x0:x0 + size, :3]
        lr = np.array(Image.fromarray(hr).resize((size // 4, size // 4), Image.BICUBIC))
        x = torch.from_numpy(lr).permute(2, 0, 1).float() / 255.0
        sr = upscale_tensor(runner, x, tile=64, seed=0).permute(1, 2, 0).numpy()
        bic = bicubic_upscale(lr, 4)
        hrf = hr.astype(np.float64) / 255.0
        scores = {"bicubic": psnr_y(bic, hrf, 4), "edgesr": psnr_y(sr, hrf, 4)}
        c = (size - ZOOM) // 2
        panels = [(f"bicubic {scores['bicubic']:.2f} dB", bic), (f"edgesr {scores['edgesr']:.2f} dB", sr), ("HR", hrf)]
        row = []
        for label, img in panels:
            crop = (np.clip(img[c:c + ZOOM, c:c + ZOOM], 0, 1) * 255 + 0.5).astype(np.uint8)
            tile = Image.fromarray(crop).resize((ZOOM * 3, ZOOM * 3), Image.NEAREST)
            ImageDraw.Draw(tile).rectangle([0, 0, tile.width, 16], fill=(0, 0, 0))
            ImageDraw.Draw(tile).text((4, 2), f"{name}: {label}", fill=(255, 255, 255))
            row.append(tile)
        rows.append(row)
        print(name, {k: round(v, 2) for k, v in scores.items()})
    w, h = rows[0][0].size
    grid = Image.new("RGB", (w * 3 + 8, h * len(rows) + 4 * (len(rows) - 1)), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            grid.paste(tile, (c * (w + 4), r * (h + 4)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
