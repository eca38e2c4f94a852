"""Make docs/comparison.png: bicubic / edgesr detail 0 / the model's default detail / detail 1 / Real-ESRGAN
x4plus (the teacher of the perceptual point) / realesr-animevideov3 / HR crops of scikit-image's freely licensed
sample photos (never ../shared images), each made x4 smaller here: once clean (bicubic), once degraded (mild
blur, sensor noise, then JPEG quality 40: a phone photo sent over the web), then a degraded portrait (the
astronaut's whole face: blur, bicubic down, JPEG 30 saved twice, as an old scan shared on the web) and a noisy
crop (strong sensor noise: a night shot, the camera's JPEG 85).
Each panel is labelled with its PSNR-Y and LPIPS-alex against HR (LPIPS when its weights are installed).

    python scripts/make_docs_grid.py [--model DIR] [--out docs/comparison.png] [--details 0,default,1]

The peers run through ncnn when the dev extra is installed (benchmarks/peers.py), else their columns are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from edgesr_cli.backends.torch_backend import from_model  # noqa: E402
from edgesr_cli import metrics as M  # noqa: E402
from edgesr_cli.cli_common import default_model_dir  # noqa: E402
from edgesr_cli.model import load_model_dir  # noqa: E402
from edgesr_cli.runtime.tiling import upscale_tensor  # noqa: E402
from samples import DEGRADED, EXTRA, SAMPLES, make_lr  # noqa: E402  (benchmarks/samples.py, shared with peers.py)

ZOOM = 96  # side of the zoomed-in crop shown, in HR pixels
CELL = 256  # displayed size of a panel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/comparison.png"))
    ap.add_argument("--details", default="0,default,1",
                    help="edgesr operating points shown, comma separated ('default': the model's own)")
    args = ap.parse_args()
    mdir = args.model or default_model_dir()
    from edgesr_cli.modeldir import default_detail

    details = [default_detail(mdir) if d == "default" else float(d) for d in args.details.split(",")]
    runners = {d: from_model(load_model_dir(mdir, detail=d), "cpu", "fp32") for d in details}
    peers = []
    try:
        from peers import NcnnUpscaler, PeerUnavailable

        for key, label in (("x4plus", "Real-ESRGAN x4plus"), ("animevideov3", "realesr-animevideov3")):
            try:
                peers.append((label, NcnnUpscaler(key, threads=torch.get_num_threads(), tile=128)))
            except PeerUnavailable as exc:
                print(f"{label} left out: {exc}")
    except ImportError as exc:
        print(f"the peers are left out: {exc}")
    lpips_on = M.lpips_available("alex")
    rows = []
    samples = [(n, fn, y0, x0, size, ZOOM, "clean", None) for n, fn, y0, x0, size in SAMPLES] + \
              [(n, fn, y0, x0, size, ZOOM, "degraded", DEGRADED) for n, fn, y0, x0, size in SAMPLES] + EXTRA
    for name, fn, y0, x0, size, zoom, kind, degradation in samples:
        hr = fn()[y0:y0 + size, x0:x0 + size, :3]
        lr = make_lr(hr, degradation)
        hrf = hr.astype(np.float64) / 255.0
        x = torch.from_numpy(lr).permute(2, 0, 1).float()
        outs = [("bicubic", M.bicubic_upscale(lr, 4))]
        for d, r in runners.items():
            outs.append((f"edgesr detail {d:g}", upscale_tensor(r, x, tile=64, seed=0).permute(1, 2, 0).numpy()))
        for label, peer in peers:
            outs.append((label, peer(lr.astype(np.float32), False)))
        c = (size - zoom) // 2
        row = []
        scores = {}
        for label, img in outs + [("HR", hrf)]:
            text = label
            if label != "HR":
                p = M.psnr_y(img, hrf, 4)
                lp = M.lpips_distance(np.clip(img, 0, 1), hrf, "alex") if lpips_on else None
                scores[label] = (round(p, 2), None if lp is None else round(lp, 3))
                text += f"  {p:.2f} dB" + ("" if lp is None else f"  LPIPS {lp:.3f}")
            crop = (np.clip(img[c:c + zoom, c:c + zoom], 0, 1) * 255 + 0.5).astype(np.uint8)
            tile = Image.fromarray(crop).resize((CELL, CELL), Image.NEAREST if zoom <= CELL // 2 else Image.LANCZOS)
            draw = ImageDraw.Draw(tile)
            draw.rectangle([0, 0, CELL, 28], fill=(0, 0, 0))
            draw.text((4, 2), f"{name} {kind}", fill=(255, 255, 255))
            draw.text((4, 15), text, fill=(255, 255, 255))
            row.append(tile)
        rows.append(row)
        print(name, kind, scores)
    n = len(rows[0])
    grid = Image.new("RGB", (CELL * n + 4 * (n - 1), CELL * len(rows) + 4 * (len(rows) - 1)), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            grid.paste(tile, (c * (CELL + 4), r * (CELL + 4)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
