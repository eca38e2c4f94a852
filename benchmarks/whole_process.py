"""Whole processes, as a user runs them (issue 17): start-up, a tiny upscale, and 512 -> 2048 PNG with edgesr's
defaults against realesr-animevideov3 through ncnn, in alternating runs, idle and with one busy-loop process.

Each run is a fresh process timed from spawn to exit (perf_counter around the child), its peak RSS from
wait4. The peer's process imports ncnn, numpy and Pillow only (as its own command-line tool would have no
torch) and writes its PNG with Pillow at edgesr's default zlib level, so the comparison is the models,
their start-up and their loading, not two PNG encoders. Medians are printed and written as JSON.

    python benchmarks/whole_process.py [--rounds 5] [--threads N] [--json runs/whole_process.json]
                                       [--skip-busy] [--skip-peer] [--light-python VENV/bin/python]
                                       [--python LABEL=VENV/bin/python ...]

--light-python adds the same cases run by another interpreter: a venv with the light install (`pip install .`,
no torch), so that both installs are timed in the same alternating rounds; --python LABEL=PY (repeatable) adds
more, each under its label (say `openvino=...` for a venv with `pip install ".[openvino]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; a failing child stops the benchmark."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024


def peer_run(argv: list[str]) -> None:
    """The peer as its own process: read a PNG, upscale with ncnn, write a PNG."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(HERE))
    from ncnn_peers import NcnnUpscaler

    key, src, dst, threads = argv[0], argv[1], argv[2], int(argv[3])
    lr = np.asarray(Image.open(src).convert("RGB"), dtype=np.float32) / 255.0
    out = NcnnUpscaler(key, threads)(lr, False)
    Image.fromarray((out * 255.0 + 0.5).astype(np.uint8)).save(dst, compress_level=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="ncnn threads (default: the usable CPUs); edgesr "
                    "runs with its own default (the idle usable CPUs) unless --edgesr-threads")
    ap.add_argument("--edgesr-threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-busy", action="store_true")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--light-python", default=None, help="python of a venv with the light install (no torch)")
    ap.add_argument("--python", action="append", default=[], metavar="LABEL=PY",
                    help="another install's python, timed under LABEL (repeatable)")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image
    from skimage import data

    from edgesr_cli.hw import usable_cpus

    threads = args.threads or usable_cpus()
    work = Path(tempfile.mkdtemp(prefix="edgesr-whole-"))
    photo = Image.fromarray(data.astronaut()).resize((512, 512), Image.LANCZOS)
    photo.save(work / "in512.png")
    Image.fromarray(np.asarray(photo)[:16, :16]).save(work / "in16.png")
    edgesr = [sys.executable, "-m", "edgesr_cli"]
    extra = ["--threads", str(args.edgesr_threads)] if args.edgesr_threads else []
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cases = {
        "edgesr --version": edgesr + ["--version"],
        "edgesr backends": edgesr + ["backends"],
        "edgesr upscale 16x16": edgesr + ["upscale", str(work / "in16.png"), "-o", str(work / "o16.png"),
                                          "--overwrite", "-q", *extra],
    }
    big = {"edgesr 512->2048": edgesr + ["upscale", str(work / "in512.png"), "-o", str(work / "o_edgesr.png"),
                                        "--overwrite", "-q", *extra]}
    others = [("light", args.light_python)] if args.light_python else []
    for item in args.python:
        label, sep, py = item.partition("=")
        if not sep or not label or not py:
            raise SystemExit(f"--python {item!r}: expected LABEL=PATH")
        others.append((label, py))
    for label, py in others:
        cmd = [py, "-m", "edgesr_cli"]
        cases[f"{label}: edgesr --version"] = cmd + ["--version"]
        cases[f"{label}: edgesr upscale 16x16"] = cmd + ["upscale", str(work / "in16.png"), "-o",
                                                         str(work / f"{label}16.png"), "--overwrite", "-q", *extra]
        big[f"{label}: edgesr 512->2048"] = cmd + ["upscale", str(work / "in512.png"), "-o",
                                                   str(work / f"o_{label}.png"), "--overwrite", "-q", *extra]
    if not args.skip_peer:
        big["animevideov3 512->2048"] = [sys.executable, __file__, "--peer-run", "animevideov3",
                                         str(work / "in512.png"), str(work / "o_peer.png"), str(threads)]
    results: dict[str, dict] = {}

    def run_rounds(table: dict[str, list[str]], label: str) -> None:
        times: dict[str, list[float]] = {k: [] for k in table}
        rss: dict[str, list[float]] = {k: [] for k in table}
        for _ in range(args.rounds):  # alternating: each round runs every case once
            for name, cmd in table.items():
                w, m = timed(cmd, env)
                times[name].append(w)
                rss[name].append(m)
        for name in table:
            key = f"{name} ({label})"
            results[key] = {"median_s": round(statistics.median(times[name]), 3),
                            "runs_s": [round(t, 3) for t in times[name]],
                            "peak_rss_mb": round(max(rss[name]), 1)}
            print(f"{key:45s} median {results[key]['median_s']:7.3f} s  "
                  f"(runs {', '.join(f'{t:.2f}' for t in times[name])})  peak RSS {results[key]['peak_rss_mb']:.0f} MB",
                  flush=True)

    for cmd in list(cases.values()) + list(big.values()):  # warm the page cache once
        timed(cmd, env)
    run_rounds(cases, "idle")
    run_rounds(big, "idle")
    if not args.skip_busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            run_rounds(big, "one core busy")
        finally:
            busy.kill()
            busy.wait()
    ratios = {}
    p_idle = results.get("animevideov3 512->2048 (idle)", {}).get("median_s")
    for prefix, label in [("", "edgesr")] + [(f"{name}: ", f"{name} edgesr") for name, _ in others]:
        idle = results.get(f"{prefix}edgesr 512->2048 (idle)", {}).get("median_s")
        busy = results.get(f"{prefix}edgesr 512->2048 (one core busy)", {}).get("median_s")
        if idle and p_idle:
            ratios[f"{label} / animevideov3 (idle)"] = round(idle / p_idle, 3)
        if idle and busy:
            ratios[f"{label} busy / idle"] = round(busy / idle, 3)
    for k, v in ratios.items():
        print(f"{k:45s} {v:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads_peer": threads, "rounds": args.rounds, "results": results,
                                         "ratios": ratios, "cpus": usable_cpus()}, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer-run":
        peer_run(sys.argv[2:])
    else:
        main()
