"""Real-ESRGAN x4plus as a teacher: ncnn (fp32, what benchmarks/peers.py runs) against the same network rebuilt
in torch (edgesr_cli.teachers.rrdbnet, bf16 autocast + channels_last), on the same N degraded LR crops of the
teacher-pairs mix, in one process, alternating crop by crop. Prints medians per crop, the ratio, and how far
the outputs are apart (8-bit levels). `edgesr teacher-pairs` defaults to the faster.

    python benchmarks/teacher_speed.py --data ../shared/data/bsds500/train -n 200 [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--runtimes", default="ncnn,torch-bf16")
    ap.add_argument("--batch", type=int, default=8, help="also time torch in batches of this many crops (0: skip)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()

    from edgesr_cli.teachers import load_teacher
    from edgesr_cli.training.teacher_pairs import PairsConfig, draw_triplet, open_sources

    cfg = PairsConfig()
    ds, names = open_sources(args.data, cfg)
    crops = [draw_triplet(ds, names, cfg, i)[0].astype(np.float32) / 255.0 for i in range(args.n)]
    runtimes = args.runtimes.split(",")
    teachers = {rt: load_teacher(rt, threads=args.threads) for rt in runtimes}
    for t in teachers.values():
        t(crops[0][None])  # warm-up
    times: dict[str, list[float]] = {rt: [] for rt in runtimes}
    outs: dict[str, list[np.ndarray]] = {rt: [] for rt in runtimes}
    for x in crops:
        for rt, t in teachers.items():
            t0 = time.perf_counter()
            y = t(x[None])[0]
            times[rt].append(time.perf_counter() - t0)
            outs[rt].append(np.round(y * 255))
    report: dict = {"crops": args.n, "lr": list(crops[0].shape[:2]), "threads": args.threads, "runtimes": {}}
    for rt in runtimes:
        report["runtimes"][rt] = {"median_s_per_crop": round(statistics.median(times[rt]), 4),
                                  "total_s": round(sum(times[rt]), 1)}
    base = runtimes[0]
    for rt in runtimes[1:]:
        d = np.abs(np.stack(outs[rt]) - np.stack(outs[base]))
        report["runtimes"][rt].update({
            f"speedup_vs_{base}": round(statistics.median(times[base]) / statistics.median(times[rt]), 2),
            f"mean_abs_diff_vs_{base}_8bit": round(float(d.mean()), 3),
            f"p99_abs_diff_vs_{base}_8bit": float(np.percentile(d, 99)),
            f"max_abs_diff_vs_{base}_8bit": float(d.max())})
    if args.batch > 1:
        for rt in (r for r in runtimes if r.startswith("torch")):
            batch_times = []
            for i in range(0, args.n - args.batch + 1, args.batch):
                t0 = time.perf_counter()
                teachers[rt](np.stack(crops[i:i + args.batch]))
                batch_times.append((time.perf_counter() - t0) / args.batch)
            report["runtimes"][rt][f"median_s_per_crop_batch{args.batch}"] = round(statistics.median(batch_times), 4)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
