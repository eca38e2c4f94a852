"""`edgesr eval` (quality against HR, beside bicubic) and `edgesr bench` (speed and memory, here or on a
phone). Library logic lives in evaluate.py and bench.py; device, dtype and threads are chosen here."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from .cli_common import UserError, err_console, friendly_errors
from .defaults import DEFAULT_OVERLAP
from .cli_options import (BenchBackendOption, BackendOption, DetailOption, Device, DeviceOption, ModelOption,
                          OverlapOption, Precision, StepsOption, TileOption, check_engine_options)


class Degrade(str, Enum):
    bicubic = "bicubic"
    realesrgan = "realesrgan"
    jpeg = "jpeg"


def _set_threads(threads: int | None) -> int:
    """--threads, or every CPU this process may use (not upscale's idle-CPU default: a measurement must not
    depend on what else ran that moment); torch's pool is set, the count goes to the other backends."""
    import torch

    from .hw import usable_cpus

    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    n = threads if threads is not None else usable_cpus()
    torch.set_num_threads(n)
    return n


def _runner_label(name: str, runner) -> str:
    dev = getattr(runner, "device", None)
    dt = getattr(runner, "dtype", None)
    bits = [name] + ([str(dev)] if dev is not None else []) + ([str(dt).replace("torch.", "")] if dt is not None else [])
    return " ".join(bits)


def _f(v, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @friendly_errors
    def eval_cmd(
        hr: Annotated[Path, typer.Option("--hr", help="Folder of HR (ground-truth) images.", show_default=False)],
        lr: Annotated[Optional[Path], typer.Option("--lr", help="Folder of LR images, paired with HR by file name.")] = None,
        degrade: Annotated[Optional[Degrade], typer.Option("--degrade", help="Make LR from HR instead: bicubic (MATLAB imresize, as Set5/Set14/BSD100) realesrgan (seeded per image) or jpeg (bicubic, then JPEG quality 40). Default without --lr: bicubic.")] = None,
        seed: Annotated[int, typer.Option(help="Seed: realesrgan degradation (image i uses seed + i) and the noise field.")] = 0,
        model: ModelOption = None,
        backend: BackendOption = "auto",
        device: DeviceOption = Device.auto,
        dtype: Annotated[Precision, typer.Option(help="torch backend precision (auto: as `edgesr upscale`).")] = Precision.auto,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
        tile: TileOption = None,
        overlap: OverlapOption = DEFAULT_OVERLAP,
        batch: Annotated[int, typer.Option(help="Tiles per model call.")] = 4,
        steps: StepsOption = 1,
        detail: DetailOption = None,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: edgesr-eval/<dataset>).")] = None,
        max_images: Annotated[Optional[int], typer.Option("--max-images", help="Evaluate only the first N images (sorted by name).")] = None,
        grid_images: Annotated[int, typer.Option("--grid-images", help="Images shown in the comparison grid.")] = 4,
        grid_crop: Annotated[int, typer.Option("--grid-crop", help="HR crop size in the grid (px).")] = 128,
        grid_cell: Annotated[int, typer.Option("--grid-cell", help="Displayed size of each crop in the grid (px, nearest-neighbour zoom).")] = 256,
        save_images: Annotated[bool, typer.Option("--save-images", help="Also write every output PNG under OUT/<method>/.")] = False,
        niqe_params: Annotated[Optional[Path], typer.Option("--niqe-params", help="NIQE pristine model (.npz, BasicSR layout), e.g. one fitted with metrics.fit_niqe_params.")] = None,
        no_niqe: Annotated[bool, typer.Option("--no-niqe", help="Skip NIQE.")] = False,
        no_lpips: Annotated[bool, typer.Option("--no-lpips", help="Skip LPIPS.")] = False,
        no_dists: Annotated[bool, typer.Option("--no-dists", help="Skip DISTS.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON summary on stdout instead of the table.")] = False,
    ) -> None:
        """Quality on HR/LR pairs: PSNR-Y, SSIM-Y (border = scale), NIQE, LPIPS, DISTS, always beside bicubic; writes a
        per-image CSV, a JSON summary and a comparison grid PNG."""
        from . import evaluate as E
        from .runtime.resolve import load, resolve

        if lr is not None and degrade is not None:
            raise UserError("give --lr DIR or --degrade, not both")
        check_engine_options(batch, steps, tile, overlap, seed)
        if grid_images < 0 or grid_crop < 1 or grid_cell < 1:
            raise UserError("--grid-images must be >= 0, --grid-crop and --grid-cell >= 1")
        how = None if lr is not None else (degrade or Degrade.bicubic).value
        threads = _set_threads(threads)
        r = resolve(model, backend, detail, tile, dtype.value, device.value)
        # sizes first (headers only), so a bad folder fails before the model loads
        pairs = E.plan_pairs(hr, lr, scale=r.scale, degrade=how, seed=seed, max_images=max_images)
        runner = load(r, threads).runner
        scale, tile = r.scale, r.tile
        setup = E.setup_metrics(scale, niqe=not no_niqe, niqe_params=niqe_params, lpips=not no_lpips,
                                dists=not no_dists)
        label = _runner_label(r.backend, runner)
        note = "" if r.detail is None else f", detail {r.detail:g}"
        methods = [E.bicubic_method(scale),
                   E.runner_method(runner, name="edgesr", label=f"edgesr {label} ({r.model.name}, tile {tile}{note})",
                                   tile=tile, overlap=overlap, batch=batch, steps=steps, seed=seed)]
        out_dir = out if out is not None else Path("edgesr-eval") / E.dataset_label(hr)
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out {out_dir}: exists and is not a folder")
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=Console(stderr=True), disable=quiet, transient=True)
        with progress:
            task = progress.add_task("evaluating", total=len(pairs))

            def tick(i: int, n: int, img: str) -> None:
                progress.update(task, completed=i, description=f"evaluating {img}" if img else "evaluating")

            result = E.evaluate(pairs, methods, setup, grid_images=grid_images, grid_crop=grid_crop,
                                save_dir=out_dir if save_images else None, progress=tick)
        summary = E.summarize(result)
        files = {"csv": str(E.write_csv(result, out_dir / "eval.csv"))}
        grid = E.write_grid(result, out_dir / "grid.png", cell=grid_cell)
        if grid is not None:
            files["grid"] = str(grid)
        files["json"] = str(out_dir / "eval.json")
        import torch

        from .bench import machine_info, versions

        record = {
            "schema": "edgesr.eval/1",
            "dataset": E.dataset_label(hr), "hr": str(hr), "lr": str(lr) if lr else None,
            "degrade": how, "seed": seed, "scale": scale, "images": len(pairs),
            "model": str(r.model), "backend": r.backend, "runner": label, "detail": r.detail,
            "tile": tile, "overlap": overlap, "batch": batch, "steps": steps,
            "threads": torch.get_num_threads(),
            "metrics": setup.describe(),
            "summary": summary, "per_image": result.images, "files": files,
            "machine": machine_info(), "versions": versions(),
        }
        E.write_json(record, out_dir / "eval.json")
        if as_json:
            typer.echo(json.dumps(E.to_jsonable(record), indent=2, allow_nan=False))
            return
        if not quiet:
            _print_eval_table(record, setup)

    @app.command("bench")
    @friendly_errors
    def bench_cmd(
        backend: BenchBackendOption = "auto",
        model: ModelOption = None,
        export: Annotated[Optional[list[Path]], typer.Option("--export", help="Exported model dir (repeatable): benched by --backend all, pushed to the phone by --device <android>.")] = None,
        tile: TileOption = None,
        overlap: OverlapOption = DEFAULT_OVERLAP,
        batch: Annotated[int, typer.Option(help="Tiles per model call in the whole-image run (per-tile latency uses 1).")] = 4,
        size: Annotated[int, typer.Option(help="LR size of the whole-image run (size x size -> x4).")] = 512,
        threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda for this machine; or an Android target (s24, s23, s25, s22, a Qualcomm SoC such as sm8650, or android) measured through adb.")] = "auto",
        dtype: Annotated[Precision, typer.Option(help="torch backend precision (auto: as `edgesr upscale`).")] = Precision.auto,
        warmup: Annotated[int, typer.Option(help="Untimed warm-up rounds before the per-tile timings.")] = 3,
        runs: Annotated[int, typer.Option(help="Timed rounds per tile (and runs on the phone).")] = 10,
        image_runs: Annotated[int, typer.Option("--image-runs", help="Timed whole-image runs (after one warm-up).")] = 3,
        seed: Annotated[int, typer.Option(help="Seed of the synthetic input and noise.")] = 0,
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the JSON record to this file.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON record on stdout instead of the table.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Android: print the exact commands and run nothing.")] = False,
        serial: Annotated[Optional[str], typer.Option(help="Android: adb serial when several phones are connected.")] = None,
        qnn_sdk: Annotated[Optional[Path], typer.Option("--qnn-sdk", help="Android HTP: Qualcomm AI Engine Direct SDK root (default: $QNN_SDK_ROOT).")] = None,
        benchmark_tool: Annotated[Optional[Path], typer.Option("--benchmark-tool", help="Android LiteRT: the android_aarch64 benchmark_model binary.")] = None,
        targets: Annotated[str, typer.Option(help="Android: comma list of htp, cpu, gpu, nnapi.")] = "htp,cpu,gpu,nnapi",
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        """Speed and memory: per-tile encoder / UNet / decoder latency, a whole 512 -> 2048 upscale with tiling,
        peak memory, megapixels/s and achieved GFLOP/s, with machine, versions and threads; or on a phone."""
        from . import bench as B
        from . import bench_android as A
        from .defaults import DEFAULT_TILE
        from .runtime.upscale import UpscaleOptions

        exports = list(export or [])
        if A.is_android_target(device):
            _bench_android(B, A, device, exports, model, dry_run, serial, qnn_sdk, benchmark_tool, targets, threads,
                           warmup, runs, out, as_json)
            return
        if device not in A.LOCAL_DEVICES:
            A.resolve_android_target(device)  # raises with the list of names
        if dry_run:
            raise UserError("--dry-run applies to Android targets (--device s24 ...); here nothing needs printing")
        check_engine_options(batch, 1, tile, overlap, seed)
        settings = B.BenchSettings(UpscaleOptions(tile=tile or DEFAULT_TILE, overlap=overlap, batch=batch, seed=seed),
                                   size=size, warmup=warmup, runs=runs, image_runs=image_runs)
        requested, threads = threads, _set_threads(threads)
        jobs = _bench_jobs(backend, model, exports)
        say = (lambda m: err_console.print(escape(m), style="dim", highlight=False)) if not (quiet or as_json) else None
        results = [_bench_one(B, name, mdir, tile, device, dtype, threads, settings, say, strict=backend != "all")
                   for name, mdir in jobs]
        import torch

        record = {
            "schema": B.SCHEMA,
            "created": _now(),
            "machine": B.machine_info(),
            "versions": B.versions(),
            "threads": B.thread_info(requested),
            "settings": {"tile": settings.upscale.tile, "overlap": overlap, "batch": batch, "size": size, "warmup": warmup,
                         "runs": runs, "image_warmup": settings.image_warmup, "image_runs": image_runs, "seed": seed,
                         "device": device, "dtype": dtype.value},
            "results": results,
            "notes": [
                "per-tile times: batch of 1 LR tile; encoder/unet/decoder are separate backend calls, total is the "
                "tiling engine's upscale_tiles on the same tile",
                "image: synthetic LR input through upscale_tensor (tiling, noise, blending included)",
                "achieved GFLOP/s = counted GFLOPs (torch flop counter, 2 x MACs) / measured median time",
            ],
        }
        _write_record(record, out, as_json)
        if not (as_json or quiet):
            _print_bench_table(record, torch.get_num_threads())
        if not any(r["status"] == "ok" for r in results):
            raise typer.Exit(1)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_record(record: dict, out: Path | None, as_json: bool) -> None:
    """bench's JSON record: to --out (atomically), and on stdout with --json."""
    from .eval_report import to_jsonable, write_json

    if out is not None:
        write_json(record, out)
    if as_json:
        typer.echo(json.dumps(to_jsonable(record), indent=2, allow_nan=False))


def _bench_jobs(backend: str, model: Path | None, exports: list[Path]) -> list[tuple[str, Path | None]]:
    """(backend, folder) to measure: the one asked for on --model; or, for all, torch on --model, its bundled export
    on ONNX Runtime (and OpenVINO where installed), and every --export on its own runtime."""
    from .backends.base import availability
    from .modeldir import ModelFileError, bundled_export, default_model_dir
    from .runtime.resolve import detect_model_format

    if backend != "all":
        if exports:
            raise UserError("--export is for --backend all or an Android --device; use --model DIR for one backend")
        return [(backend, model)]
    jobs: list[tuple[str, Path | None]] = []
    try:
        mdir = model if model is not None else default_model_dir()
    except ModelFileError:
        if not exports:
            raise
    else:
        jobs.append(("torch", mdir))
        if bundled_export(mdir) is not None:  # the shipped model's ONNX export: torch vs ONNX (and OpenVINO) in one run
            jobs += [(name, mdir) for name in ("onnx", "openvino") if name == "onnx" or availability(name) is None]
    for d in exports:
        if detect_model_format(d) is None:
            raise UserError(f"--export {d}: not an exported model folder (no manifest.json)")
        jobs.append(("auto", d))
    return jobs


def _bench_one(B, name: str, model: Path | None, tile: int | None, device: str, dtype: Precision,
               threads: int | None, settings, say, strict: bool) -> dict:
    """One backend resolved, loaded and measured; in a run of all, one that cannot is a skipped record."""
    import dataclasses
    import gc

    from .backends.base import BackendUnavailable
    from .runtime.resolve import load, resolve

    try:
        r = resolve(model, name, None, tile, dtype.value, device)
        runner = load(r, threads).runner
    except (BackendUnavailable, ValueError, OSError) as exc:
        if strict:
            raise
        return {"backend": name, "model": str(model), "status": "skipped", "reason": str(exc).splitlines()[0]}
    note = None if r.tile == settings.upscale.tile else \
        f"the exported graphs take a static {r.tile}x{r.tile} tile: measured at that tile"
    settings = dataclasses.replace(settings, upscale=dataclasses.replace(settings.upscale, tile=r.tile))
    try:
        return B.bench_runner(runner, settings, r.config, backend=r.backend, model_dir=r.folder, note=note,
                              progress=say)
    finally:
        del runner
        gc.collect()


def _bench_android(B, A, device: str, exports: list[Path], model: Path | None, dry_run: bool, serial: str | None,
                   qnn_sdk: Path | None, benchmark_tool: Path | None, targets: str, threads: int | None,
                   warmup: int, runs: int, out: Path | None, as_json: bool) -> None:
    target = A.resolve_android_target(device)
    wanted = [t.strip().lower() for t in targets.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ("htp", "cpu", "gpu", "nnapi")]
    if bad or not wanted:
        raise UserError(f"--targets {targets!r}: choose from htp, cpu, gpu, nnapi")
    if model is not None:
        from .runtime.resolve import detect_model_format

        if detect_model_format(model) not in (None, "torch"):
            exports = [model, *exports]
    soc_txt = f" ({target.soc})" if target.soc else ""
    need = (f"bench --device {device}{soc_txt} needs `adb` on PATH (Android platform-tools), a phone connected with "
            "USB debugging enabled (listed as 'device' by `adb devices`) and an exported model (--export DIR from "
            "`edgesr export --format qnn|tflite`); --dry-run prints the commands")
    sdk = str(qnn_sdk) if qnn_sdk else os.environ.get("QNN_SDK_ROOT")
    work = Path("edgesr-bench-android") / device.lower()
    if dry_run:
        plan = A.plan_android(target, exports, targets=wanted, adb="adb", serial=serial, qnn_sdk=sdk,
                              benchmark_tool=str(benchmark_tool) if benchmark_tool else None,
                              threads=threads or 4, warmup=warmup, runs=runs, work_dir=work)
        typer.echo(f"# edgesr bench --device {device}: {target.name}; run nothing, print the commands")
        for n in plan.notes:
            typer.echo(f"# note: {n}")
        for name, data in plan.local_files.items():
            typer.echo(f"# write {work / name}: {data.decode().strip()}")
        for step in plan.steps:
            typer.echo(step.shell() if step.kind != "host" else f"{step.shell()}   # on this machine")
        return
    adb, ser = A.find_adb_device(target, None, serial, need)
    if not exports:
        raise UserError(f"{need}; no exported model given")
    info = A.adb_device_info(adb, ser)
    soc = (info.get("soc") or "").upper()
    if target.soc and soc and soc != target.soc:
        err_console.print("[yellow]warning:[/] " + escape(f"--device {device} means {target.soc}, the connected phone reports {soc}; "
                          "QNN context binaries only load on the SoC they were built for"), highlight=False)
    plan = A.plan_android(target, exports, targets=wanted, adb=adb, serial=ser, qnn_sdk=sdk,
                          benchmark_tool=str(benchmark_tool) if benchmark_tool else None, threads=threads or 4,
                          warmup=warmup, runs=runs, work_dir=work, soc=soc or None)
    if not any(s.kind == "run" for s in plan.steps):
        raise UserError(f"nothing to run on the phone: {'; '.join(plan.notes) or 'no graphs found'}")
    say = None if as_json else (lambda m: err_console.print(escape(f"$ {m}"), style="dim", highlight=False, soft_wrap=True))
    results = A.run_android(plan, adb, work, echo=say)
    record = {"schema": B.SCHEMA, "created": _now(), "device": {"target": device, "name": target.name, **info,
                                                                  "serial": ser},
              "host": B.machine_info(), "versions": B.versions(), "results": results, "notes": plan.notes,
              "settings": {"threads": threads or 4, "warmup": warmup, "runs": runs, "targets": wanted}}
    _write_record(record, out, as_json)
    if not as_json:
        table = Table(title=f"{info.get('model') or device} ({soc or target.soc}): measured on the phone by its own tools")
        for col in ("target", "graph", "avg ms", "min ms", "max ms", "init ms", "status"):
            table.add_column(col, justify="left" if col in ("target", "graph", "status") else "right")
        for r in results:
            table.add_row(r["target"], r["graph"], _f(r.get("avg_ms")), _f(r.get("min_ms")), _f(r.get("max_ms")),
                          _f(r.get("init_ms"), "{:.0f}"), r["status"] if r["status"] == "ok" else r.get("error", "")[:60])
        Console().print(table)
        for n in plan.notes:
            Console().print(escape(n), style="dim", highlight=False)
    if not any(r["status"] == "ok" for r in results):
        raise typer.Exit(1)


def _print_eval_table(record: dict, setup) -> None:
    con = Console()
    s = record["summary"]
    src = f"LR from {record['lr']}" if record["lr"] else f"LR by {record['degrade']} degradation (seed {record['seed']})"
    table = Table(title=f"{record['dataset']}: {record['images']} images, x{record['scale']}, {src}")
    cols = ["method", "PSNR-Y (dB)", "SSIM-Y", "NIQE", "LPIPS", "DISTS", "s/image", "PSNR vs bicubic", "wins"]
    for c in cols:
        table.add_column(c, justify="left" if c == "method" else "right")
    niqe_off = "off" if setup.niqe_off else None
    lpips_off = "off" if setup.lpips_off else None
    dists_off = "off" if setup.dists_off else None
    for name, v in s.items():
        if name == "HR":
            continue
        gain = v.get("psnr_y_gain_vs_bicubic")
        wins = v.get("wins_vs_bicubic")
        table.add_row(name, _f(v["psnr_y"]), _f(v["ssim_y"], "{:.4f}"), niqe_off or _f(v["niqe"]),
                      lpips_off or _f(v["lpips"], "{:.4f}"), dists_off or _f(v.get("dists"), "{:.4f}"),
                      _f(v["seconds_per_image"], "{:.3f}"),
                      "" if gain is None else f"{gain:+.2f}", "" if wins is None else f"{wins}/{v['images']}")
    if "HR" in s:
        table.add_row("[dim]HR (reference)[/]", "", "", _f(s["HR"]["niqe"]), "", "", "", "", "")
    con.print(table)
    con.print(escape(f"PSNR/SSIM: {record['metrics']['psnr_y_ssim_y']}. edgesr: {record['runner']}, tile "
                     f"{record['tile']}, {record['threads']} threads. s/image: wall time of each call."), style="dim",
              highlight=False)
    if setup.niqe_off:
        hint = "" if "--no-niqe" in setup.niqe_off else " (or pass --niqe-params FILE)"
        con.print(escape(f"NIQE off: {setup.niqe_off}{hint}"), style="dim", highlight=False)
    if setup.lpips_off:
        con.print(escape(f"LPIPS off: {setup.lpips_off}"), style="dim", highlight=False)
    if setup.dists_off:
        con.print(escape(f"DISTS off: {setup.dists_off}"), style="dim", highlight=False)
    files = record["files"]
    con.print(escape(f"wrote {files['csv']}, {files['json']}" + (f", {files['grid']}" if "grid" in files else "")),
              highlight=False)


def _spread(st: dict | None, unit: str, fmt: str = "{:.1f}") -> str:
    """median ±half the interquartile range."""
    if st is None:
        return "-"
    half = (st[f"p75_{unit}"] - st[f"p25_{unit}"]) / 2
    return f"{fmt.format(st[f'median_{unit}'])} ±{fmt.format(half)}"


def _short_dtype(dt: str | None) -> str:
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dt or "", dt or "")


def _print_bench_table(record: dict, threads: int) -> None:
    """Metrics as rows, backends as columns (fits a terminal for a few backends)."""
    con = Console()
    m = record["machine"]
    st = record["settings"]
    ok = [r for r in record["results"] if r["status"] == "ok"]
    scale = ok[0]["scale"] if ok else 4
    S, H = st["size"], st["size"] * scale
    table = Table(title=f"edgesr bench: {m['cpu']}, {m['usable_cores']} cores, {threads} threads"
                  + (f", {m['cuda_device']}" if m.get("cuda_device") and st["device"] != "cpu" else ""))
    table.add_column("median ±half IQR", justify="left")
    for r in ok:
        table.add_column(r["backend"], justify="right")

    def row(label: str, fn) -> None:
        table.add_row(label, *[fn(r) for r in ok])

    row("device, dtype", lambda r: f"{r['device']} {_short_dtype(r['dtype'])}".strip())
    row(f"encoder ms ({st['tile']}² tile)", lambda r: _spread(r["tile"]["encoder"], "ms"))
    row("UNet ms", lambda r: _spread(r["tile"]["unet"], "ms"))
    row("decoder ms", lambda r: _spread(r["tile"]["decoder"], "ms"))
    row("enc+UNet+dec ms", lambda r: _f(r["tile"]["split_sum_ms"], "{:.1f}"))
    row("tile total ms (engine)", lambda r: _spread(r["tile"]["total"], "ms"))
    row(f"  per tile, batch {st['batch']} ms", lambda r: _spread(r["tile"]["in_batch"], "ms")
        if r["tile"].get("in_batch") else "-")
    row(f"{S}² -> {H}² s", lambda r: _spread(r["image"], "s", "{:.2f}"))
    row("  tiles", lambda r: str(r["image"]["tiles"]))
    row("  megapixels/s (output)", lambda r: f"{r['image']['output_megapixels_per_s']:.3f}")
    row("  peak RSS MB", lambda r: f"{r['image']['memory']['peak_rss_mb']:.0f}")
    def achieved(key: str):
        return lambda r: _f((r.get("flops") or {}).get("achieved_gflops_per_s", {}).get(key), "{:.1f}")

    row("counted GFLOPs / tile", lambda r: _f((r.get("flops") or {}).get("gflops_per_tile", {}).get("total")))
    row("achieved GFLOP/s, tile", achieved("tile_total"))
    row("achieved GFLOP/s, UNet", achieved("unet"))
    row("achieved GFLOP/s, image", achieved("image"))
    if ok:
        con.print(table)
    for r in record["results"]:
        if r["status"] != "ok":
            con.print(escape(f"{r['backend']}: {r['status']}: {r.get('reason', '')}"), style="yellow", highlight=False)
    con.print(escape(
        f"Per tile: batch 1, {st['runs']} timed rounds after {st['warmup']} warm-up; encoder/UNet/decoder are separate "
        f"backend calls, the tile total is the engine's upscale_tiles on the same tile; per tile in a batch: the "
        f"engine's call on {st['batch']} tiles / {st['batch']} (what a photo runs). {S}² -> {H}²: "
        f"{st['image_runs']} runs after {st['image_warmup']} warm-up through the tiling engine (overlap {st['overlap']}, "
        f"batch {st['batch']}). Achieved GFLOP/s = counted FLOPs (2 x MACs, torch counter) / median time."),
        style="dim", highlight=False)
    for r in ok:
        t, im, fl = r["tile"], r["image"], r.get("flops")
        split = (f"enc+UNet+dec = {t['split_vs_total'] * 100:.0f}% of the tile total"
                 f"{' (the total runs the fused graph)' if t['fused_total'] else ''}"
                 if t.get("split_vs_total") is not None else f"no split: {t.get('split_unavailable')}")
        lines = [f"{r['backend']}: {split}; image min {im['min_s']:.2f} s, max {im['max_s']:.2f} s"]
        if r.get("note"):
            lines.append(f"  note: {r['note']}")
        if fl:
            g = fl["gflops_per_tile"]
            lines.append(f"  counted GFLOPs per tile ({fl['config']}): encoder {g['encoder']:.2f}, UNet {g['unet']:.2f}, "
                         f"decoder {g['decoder']:.2f}")
        else:
            lines.append(f"  GFLOP/s: {r.get('flops_unavailable', 'unknown')}")
        lines.append(f"  memory: {im['memory']['method']}; {im['memory']['rss_before_mb']:.0f} MB before the runs")
        for line in lines:
            con.print(escape(line), style="dim", highlight=False)
