"""Speed and memory measurements on this machine (library level): per-tile latency split into encoder / UNet /
decoder, a whole-image upscale through the tiling engine, peak memory, megapixels/s and achieved GFLOP/s. The
phone (adb and the platform's own benchmark tools) is bench_android.py's.

Every number here is measured on this machine (or read from a tool that measured it on the phone).
FLOP counts come from flops.model_report (torch's counter) and are only ever divided by a measured time.

Timing rules: a batch of one LR tile, `warmup` untimed rounds, then `runs` timed rounds; each round
times encode, denoise and decode as separate backend calls and then the engine's `upscale_tiles` on the
same tile (the per-tile total), interleaved so that all four see the same machine state. Reported:
median, quartiles (IQR), min and max. CUDA work is synchronised before a timer is read.

Memory: the process' resident-set high-water mark (VmHWM) during the whole-image runs, reset just before
them through /proc/self/clear_refs (Linux); it includes the interpreter, libraries and weights, so the
delta over the resident set before the runs is reported too. Where the reset is not possible the
fallback is getrusage's ru_maxrss (the high-water mark since the process started), and the record says
so. On CUDA, torch's peak allocated device memory is reported as well.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .config import ModelConfig
from .runtime.upscale import UpscaleOptions

SCHEMA = "edgesr.bench/1"

__all__ = ["SCHEMA", "BenchSettings", "stats", "machine_info", "versions", "thread_info", "bench_tile", "bench_image",
           "flop_report", "bench_runner"]


# ---------------------------------------------------------------------------------------------------
# Statistics and environment
# ---------------------------------------------------------------------------------------------------


def stats(samples_s: Sequence[float], unit: str = "ms") -> dict:
    """Median, quartiles, min, max of timings given in seconds, expressed in `unit` (ms or s)."""
    if not samples_s:
        raise ValueError("no samples")
    k = {"ms": 1e3, "s": 1.0, "us": 1e6}[unit]
    xs = sorted(float(v) * k for v in samples_s)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    return {f"median_{unit}": statistics.median(xs), f"p25_{unit}": q1, f"p75_{unit}": q3,
            f"min_{unit}": xs[0], f"max_{unit}": xs[-1], "runs": len(xs)}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def machine_info() -> dict:
    """CPU model and cores, memory, OS, accelerator: what a reader needs to compare numbers."""
    cpuinfo = _read("/proc/cpuinfo")
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M) or re.search(r"^Hardware\s*:\s*(.+)$", cpuinfo, re.M)
    cpu = m.group(1).strip() if m else (platform.processor() or platform.machine())
    flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    fl = set(flags.group(1).split()) if flags else set()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    out = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "cpu_features": sorted(f for f in fl if f in {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                                                      "amx_int8", "asimd", "sve"}),
        "memory_gb": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "torch_cpu_capability": _cpu_capability(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return out


def _cpu_capability() -> str | None:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001
        return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    from . import __version__

    out = {"python": platform.python_version(), "edgesr": __version__, "torch": torch.__version__,
           "numpy": np.__version__}
    for dist in ("onnxruntime", "onnxruntime-qnn", "ai-edge-litert", "tflite-runtime"):
        v = _version(dist)
        if v is not None:
            out[dist] = v
    return out


def thread_info(requested: int | None) -> dict:
    return {"requested": requested, "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


# ---------------------------------------------------------------------------------------------------
# Timing a backend
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    """What one backend is measured with: the engine's options (`upscale.tile` is the tile the resolver chose), the
    whole image's LR size, and the rounds."""

    upscale: UpscaleOptions = field(default_factory=UpscaleOptions)
    size: int = 512
    warmup: int = 3
    runs: int = 10
    image_warmup: int = 1
    image_runs: int = 3

    def __post_init__(self) -> None:
        for name, value in (("batch", self.upscale.batch), ("size", self.size), ("runs", self.runs),
                            ("image_runs", self.image_runs)):
            if value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        for name in ("warmup", "image_warmup"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")


def _sync(runner) -> None:
    dev = getattr(runner, "device", None)
    if isinstance(dev, torch.device) and dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(runner, fn: Callable[[], object]) -> tuple[float, object]:
    _sync(runner)
    t0 = time.perf_counter()
    out = fn()
    _sync(runner)
    return time.perf_counter() - t0, out


def _tile_inputs(runner, tile: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random LR tile and its noise window, as numpy arrays: what the tiling engine hands every backend (and, as
    the engine does, the runner told the tile: runner.expect_tile)."""
    if hasattr(runner, "expect_tile"):
        runner.expect_tile(tile)
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(1, 3, tile, tile, generator=g)
    lat = tile * runner.scale // runner.latent_factor
    eps = torch.randn(1, runner.latent_channels, lat, lat, generator=g)
    return lr.numpy(), eps.numpy()


def bench_tile(runner, tile: int, warmup: int = 3, runs: int = 10, seed: int = 0) -> dict:
    """Per-tile latency at batch 1: encoder, UNet, decoder (separate backend calls) and the engine's
    `upscale_tiles` on the same tile (the total, with the sampler; the fused graph when the backend has one).
    `tile`: the LR tile the resolver chose for the runner (runtime/resolve.py)."""
    from .runtime.tiling import upscale_tiles

    lr, eps = _tile_inputs(runner, tile, seed)
    graphs = getattr(runner, "graphs", None)
    if isinstance(graphs, dict) and not {"encoder", "denoise", "decoder"} <= set(graphs):
        return _bench_total_only(runner, lr, eps, tile, warmup, runs,
                                 f"this export has no separate encoder/denoise/decoder graphs ({', '.join(graphs)}); "
                                 "re-export with --graphs all for the split")
    unidirectional = runner.conditioning == "unidirectional"
    t_one = np.ones(1, dtype=np.float32)
    times: dict[str, list[float]] = {"encoder": [], "unet": [], "decoder": [], "total": []}

    def split() -> dict[str, float]:
        dt, (mu, sigma) = _timed(runner, lambda: runner.encode(lr))
        e = eps
        if unidirectional:
            z, cond = e, mu
        else:
            z, cond = mu + sigma * e, None
        dt_u, zh = _timed(runner, lambda: runner.denoise(z, t_one, cond))
        dt_d, _ = _timed(runner, lambda: runner.decode(zh))
        return {"encoder": dt, "unet": dt_u, "decoder": dt_d}

    def total() -> dict[str, float]:
        dt, _ = _timed(runner, lambda: upscale_tiles(runner, lr, [eps], steps=1, eta=0.0))
        return {"total": dt}

    ratios = []
    for i in range(warmup + runs):
        # alternate which comes first, so neither side always runs on a warmer (or colder) machine
        parts = (split(), total()) if i % 2 == 0 else (total(), split())
        got = {**parts[0], **parts[1]}
        if i >= warmup:
            for k, v in got.items():
                times[k].append(v)
            ratios.append((got["encoder"] + got["unet"] + got["decoder"]) / got["total"])
    out = {k: stats(v, "ms") for k, v in times.items()}
    split_sum = sum(out[k]["median_ms"] for k in ("encoder", "unet", "decoder"))
    return {
        "lr": [tile, tile], "hr": [tile * runner.scale] * 2, "batch": 1, "warmup": warmup,
        **out,
        "split_sum_ms": split_sum,
        "split_vs_total": split_sum / out["total"]["median_ms"],
        "split_vs_total_paired": statistics.median(ratios),
        "fused_total": getattr(runner, "fused_one_step", None) is not None,
    }


def bench_batch(runner, tile: int, batch: int, warmup: int = 2, runs: int = 5, seed: int = 0) -> dict:
    """Per-tile time within a batch of `batch` tiles through the engine's `upscale_tiles`, what the tiling engine
    runs (--batch): a backend that runs a batch's tiles side by side (OpenVINO's streams, one thread each) is slower
    than batch 1 on one tile and faster per tile here. Median of `runs` rounds, divided by the batch."""
    lr, eps = _tile_inputs(runner, tile, seed)
    times = _engine_times(runner, np.repeat(lr, batch, 0), np.repeat(eps, batch, 0), warmup, runs)
    return {"batch": batch, "warmup": warmup, **stats([t / batch for t in times], "ms")}


def _engine_times(runner, lr, eps, warmup: int, runs: int) -> list[float]:
    """Seconds of `runs` timed calls of the engine's upscale_tiles on one batch, after `warmup` untimed ones."""
    from .runtime.tiling import upscale_tiles

    times = []
    for i in range(warmup + runs):
        dt, _ = _timed(runner, lambda: upscale_tiles(runner, lr, [eps], steps=1, eta=0.0))
        if i >= warmup:
            times.append(dt)
    return times


def _bench_total_only(runner, lr, eps, tile, warmup, runs, reason) -> dict:
    times = _engine_times(runner, lr, eps, warmup, runs)
    return {"lr": [tile, tile], "hr": [tile * runner.scale] * 2, "batch": 1, "warmup": warmup,
            "encoder": None, "unet": None, "decoder": None, "total": stats(times, "ms"), "split_sum_ms": None,
            "split_vs_total": None, "split_vs_total_paired": None, "split_unavailable": reason,
            "fused_total": getattr(runner, "fused_one_step", None) is not None}


class _PeakRSS:
    """Resident-set high-water mark of this process over a block (see the module docstring)."""

    def __init__(self) -> None:
        self.method = ""
        self.baseline_kb = 0
        self.peak_kb = 0

    @staticmethod
    def _status() -> dict[str, int]:
        text = _read("/proc/self/status")
        return {k: int(v) for k, v in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.M)}

    def __enter__(self):
        gc.collect()
        st = self._status()
        self.baseline_kb = st.get("VmRSS", 0)
        self._reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._reset = "VmHWM" in self._status()
        except OSError:
            self._reset = False
        if not self._reset:
            import resource

            self._ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self._reset:
            self.peak_kb = self._status().get("VmHWM", 0)
            self.method = ("VmHWM of this process during the whole-image runs (reset via /proc/self/clear_refs); "
                           "includes interpreter, libraries and weights")
        else:
            import resource

            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_kb = ru // 1024 if sys.platform == "darwin" else ru
            self.method = ("getrusage ru_maxrss: high-water mark since the process started (could not reset it "
                           "here), so it may include earlier work")


def bench_image(runner, settings: BenchSettings) -> dict:
    """Whole-image upscale (size x size LR) through upscale_tensor, tiling and blending included."""
    from .runtime.tiling import runner_plan, upscale_tensor

    s, o = settings, settings.upscale
    g = torch.Generator().manual_seed(o.seed)
    lr = torch.rand(3, s.size, s.size, generator=g)  # content does not change the work (no data-dependent ops)
    plan = runner_plan(runner, s.size, s.size, o.tile, o.overlap)

    def run() -> None:
        upscale_tensor(runner, lr, **dataclasses.asdict(dataclasses.replace(o, steps=1)))

    for _ in range(s.image_warmup):
        run()
    cuda = isinstance(getattr(runner, "device", None), torch.device) and runner.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(runner.device)
    times = []
    with _PeakRSS() as mem:
        for _ in range(s.image_runs):
            dt, _ = _timed(runner, run)
            times.append(dt)
    st = stats(times, "s")
    out_mp = (s.size * runner.scale) ** 2 / 1e6
    memory = {"peak_rss_mb": mem.peak_kb / 1024, "rss_before_mb": mem.baseline_kb / 1024,
              "peak_over_before_mb": max(0.0, (mem.peak_kb - mem.baseline_kb) / 1024), "method": mem.method}
    if cuda:
        memory["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(runner.device) / 1024**2
    return {
        "lr": [s.size, s.size], "hr": [s.size * runner.scale] * 2, "tiles": len(plan), "tile": o.tile,
        "overlap": o.overlap, "batch": o.batch, "warmup": s.image_warmup, **st,
        "output_megapixels_per_s": out_mp / st["median_s"],
        "input_megapixels_per_s": s.size**2 / 1e6 / st["median_s"],
        "memory": memory,
    }


def flop_report(config: ModelConfig, tile: int) -> dict:
    """Counted GFLOPs of one tile per component (flops.model_report) of the model `config` describes."""
    from .flops import model_report

    rep = model_report(config, tile)
    c = rep["components"]
    return {"convention": rep["flop_convention"], "config": rep["config"],
            "gflops_per_tile": {"encoder": c["lr_encoder"]["gflops"], "unet": c["unet"]["gflops"],
                                "decoder": c["decoder"]["gflops"], "total": c["total"]["gflops"]},
            "params": {"encoder": c["lr_encoder"]["params"], "unet": c["unet"]["params"],
                       "decoder": c["decoder"]["params"], "total": c["total"]["params"]}}


def bench_runner(runner, settings: BenchSettings, config: ModelConfig, *, backend: str,
                 model_dir: Path | None = None, note: str | None = None,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Everything for one loaded backend: tile split, whole image, memory, FLOP throughput. `config`: the model's
    (the resolver's Resolved.config); `note`: a line for the record."""
    say = progress or (lambda _msg: None)
    rec: dict = {"backend": backend, "status": "ok", "model": str(model_dir) if model_dir else None,
                 "scale": runner.scale}
    if note:
        rec["note"] = note
    tile = settings.upscale.tile
    dev = getattr(runner, "device", None)
    dt = getattr(runner, "dtype", None)
    rec["device"] = str(dev) if dev is not None else "cpu"
    if backend == "qnn" and platform.machine() in ("x86_64", "AMD64"):
        rec["device"] = "htp-emulator"
        rec["note"] = ((rec.get("note", "") + "; ") if rec.get("note") else "") + (
            "QNN on x86_64 runs the HTP emulator: these times say nothing about a phone (use --device s24)")
    if dt is not None:
        rec["dtype"] = str(dt).replace("torch.", "")
    else:
        q = (getattr(runner, "manifest", None) or {}).get("quantization")
        rec["dtype"] = str(q.get("scheme")) if isinstance(q, dict) and q.get("scheme") else "float32"
    if hasattr(runner, "describe") and callable(runner.describe):
        try:
            rec["runner"] = str(runner.describe())
        except Exception:  # noqa: BLE001 - a description is optional
            pass
    say(f"{backend}: per-tile latency ({settings.warmup} warm-up + {settings.runs} timed rounds)")
    rec["tile"] = bench_tile(runner, tile, settings.warmup, settings.runs, settings.upscale.seed)
    say(f"{backend}: per tile in a batch of {settings.upscale.batch}")
    rec["tile"]["in_batch"] = bench_batch(runner, tile, settings.upscale.batch, runs=max(3, settings.runs // 2),
                                          seed=settings.upscale.seed)
    say(f"{backend}: {settings.size}x{settings.size} -> {settings.size * runner.scale}x{settings.size * runner.scale} "
        f"({settings.image_warmup} warm-up + {settings.image_runs} timed runs)")
    rec["image"] = bench_image(runner, settings)
    fl = flop_report(dataclasses.replace(config, scale=runner.scale), tile)
    g = fl["gflops_per_tile"]
    t = rec["tile"]
    per = lambda k: None if t.get(k) is None else g[k] / (t[k]["median_ms"] / 1e3)  # noqa: E731
    fl["achieved_gflops_per_s"] = {
        "encoder": per("encoder"), "unet": per("unet"), "decoder": per("decoder"),
        "tile_total": g["total"] / (t["total"]["median_ms"] / 1e3),
        "image": g["total"] * rec["image"]["tiles"] / rec["image"]["median_s"],
    }
    rec["flops"] = fl
    return rec
