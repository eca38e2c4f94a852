"""`edgesr upscale`: files, folders (mirrored), globs and `-` (stdin/stdout), for shell pipelines.

Rules a photo pipeline can trust: never overwrite without --overwrite; atomic writes; one bad file
is reported on one line and the others are still processed (exit 1 when some failed, 2 for usage
errors); --skip-existing resumes a half-done folder; --shard i/n splits a folder deterministically.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .cli_common import (UserError, err_console, friendly_errors, interruption, parse_shard, print_error, printable,
                         signals_as_interrupts)
from .cli_options import (BackendOption, DetailOption, Device, DeviceOption, ModelOption, OverlapOption, Precision,
                          StepsOption, TileOption, check_engine_options)
from .defaults import DEFAULT_COMPRESS_LEVEL, DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP

# numpy, Pillow (.io) and torch (.runtime, the backends) are imported where they are used: `edgesr --help`
# and `--version` start without them.
if TYPE_CHECKING:
    from .io import ImageError
    from .runtime.resolve import Resolved
    from .runtime.upscale import UpscaleOptions


class Ext(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"
    tif = "tif"


_SOURCE_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "TIFF": "tif"}  # Pillow format -> --ext
_SUFFIX_EXT = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "tif": "tif", "tiff": "tif"}


@dataclass
class Job:
    src: Path | None  # None = stdin
    dst: Path | None  # None = stdout
    label: str


@dataclass
class Plan:
    jobs: list[Job]
    failures: list[ImageError] = field(default_factory=list)  # inputs that cannot be processed
    skipped: list[str] = field(default_factory=list)  # notes: special files met in folders
    found: bool = True  # some input exists (else the run is a usage error)


def in_shard(rel: Path, shard: tuple[int, int] | None) -> bool:
    """Stable across machines and file additions: a hash of the mirrored relative path."""
    if shard is None:
        return True
    h = int.from_bytes(hashlib.sha1(rel.as_posix().encode()).digest()[:8], "big")
    return h % shard[1] == shard[0]


def out_name(rel: Path, ext: str | None, suffix: str, src_fmt_ext: str) -> Path:
    e = ext or src_fmt_ext
    return rel.with_name(f"{rel.stem}{suffix}.{e}")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # a closed or unusual stream is not a terminal
        return False


def plan_jobs(inputs: list[str], out: str | None, ext: str | None, suffix: str | None, scale: int,
              shard: tuple[int, int] | None) -> Plan:
    if not inputs:
        raise UserError("no input: give files, folders, globs or - for stdin")
    if "-" in inputs:
        if len(inputs) > 1:
            raise UserError("- (stdin) cannot be mixed with other inputs")
        if sys.stdin is None:
            raise UserError("- (stdin): stdin is closed")
        if out in (None, "-"):
            return Plan([Job(None, None, "<stdin>")])
        if out.endswith(("/", os.sep)) or _is_dir(Path(out)):
            example = Path(out) / "photo.png"
            raise UserError(f"-o {out}: is a folder, but stdin has no file name to put in it; "
                            f"name the output file (e.g. -o {example}) or use -o - for stdout")
        return Plan([Job(None, Path(out), "<stdin>")])
    from .io import find_inputs

    found = find_inputs(inputs)
    pairs = found.pairs
    plan = Plan([], found.failures, found.skipped, found=bool(pairs))
    single_file = len(inputs) == 1 and not _is_dir(Path(inputs[0])) and not glob.has_magic(inputs[0])
    if out == "-":
        if not single_file:
            raise UserError("-o - (stdout) takes exactly one input image")
        plan.jobs = [Job(f, None, str(f)) for f, r in pairs if in_shard(r, shard)]
        return plan
    jobs: list[tuple[Path, Job]] = []
    for src, rel in pairs:
        src_ext = _SUFFIX_EXT.get(src.suffix.lower().lstrip("."), "png")
        if out is None:
            dst = src.parent / out_name(Path(src.name), ext, suffix if suffix is not None else f"_x{scale}", src_ext)
        elif single_file and Path(out).suffix and not _is_dir(Path(out)):
            dst = Path(out)
        else:
            dst = Path(out) / out_name(rel, ext, suffix or "", src_ext)
        if dst.resolve() == src.resolve():
            raise UserError(f"{src}: output would overwrite the input; choose -o or --suffix")
        jobs.append((rel, Job(src, dst, str(src))))
    # Our own outputs are not inputs: re-running on a folder (outputs beside the inputs, or -o inside
    # the input folder) must not upscale a_x4.png into a_x4_x4.png.
    outputs = {job.dst.resolve() for _, job in jobs}
    jobs = [(rel, job) for rel, job in jobs if job.src.resolve() not in outputs]
    # Two inputs must never share one output (a.jpg + a.jpeg, or a.jpg + a.png with -f png): one
    # would be skipped or silently replaced by the other.
    claimed: dict[Path, Path] = {}
    for _, job in jobs:
        key = job.dst.resolve()
        if key in claimed:
            raise UserError(f"{claimed[key]} and {job.src} would both be written to {job.dst}; "
                            "rename one or use --suffix/--ext")
        claimed[key] = job.src
    plan.jobs = [job for rel, job in jobs if in_shard(rel, shard)]
    return plan


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False where the path cannot even be looked up (a name longer than the file system allows):
    that is reported per image, on one line, when it is read or written."""
    try:
        return path.is_dir()
    except OSError:
        return False


def check_options(batch: int, steps: int, tile: int | None, overlap: float, seed: int, threads: int | None,
                  max_pixels: int, max_output_pixels: int) -> None:
    """Refuse, on one line, option values no image can run with (a usage error, exit 2), before anything loads."""
    check_engine_options(batch, steps, tile, overlap, seed)
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    if max_pixels < 1:
        raise UserError(f"--max-pixels {max_pixels}: must be >= 1")
    if max_output_pixels < 0:
        raise UserError(f"--max-output-pixels {max_output_pixels}: must be >= 0 (0: no limit but memory)")


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def upscale(
        inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive), globs, or - for stdin.", show_default=False)],
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file, folder (mirrored), or - for stdout. Default: beside each input with --suffix.")] = None,
        scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor (the model's).")] = 4,
        model: ModelOption = None,
        tile: TileOption = None,
        overlap: OverlapOption = DEFAULT_OVERLAP,
        batch: Annotated[int, typer.Option(help="Tiles per model call (memory is bounded by this).")] = 4,
        steps: StepsOption = 1,
        detail: DetailOption = None,
        seed: Annotated[int, typer.Option(help="Seed of the noise field (same seed, same bytes).")] = 0,
        backend: BackendOption = "auto",
        device: DeviceOption = Device.auto,
        dtype: Annotated[Precision, typer.Option(help="torch backend precision (auto: bf16 on CPUs with AVX512-BF16 or AMX, and on CUDA; 16-bit inputs always run in fp32, since bf16 keeps only about 8 bits).")] = Precision.auto,
        threads: Annotated[Optional[int], typer.Option(
            help="CPU threads (default: $OMP_NUM_THREADS, else the CPUs this process may use (affinity, cgroup "
                 "quota) that are idle at start; the output is the same for any count).")] = None,
        ext: Annotated[Optional[Ext], typer.Option("--ext", "-f", help="Output format (default: the input's).")] = None,
        quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = 95,
        png_compression: Annotated[int, typer.Option(
            min=0, max=9, help="PNG/TIFF zlib level: 1 is fast, 9 the smallest files (the pixels are the same).")
        ] = DEFAULT_COMPRESS_LEVEL,
        suffix: Annotated[Optional[str], typer.Option(help="Added to output names (default _x4 beside inputs, none with -o DIR).")] = None,
        skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave outputs that exist (resume a folder).")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist.")] = False,
        shard: Annotated[Optional[str], typer.Option(help="i/n: process only this deterministic share of the inputs.")] = None,
        max_pixels: Annotated[int, typer.Option(help="Refuse inputs with more pixels (decompression bombs).")] = DEFAULT_MAX_PIXELS,
        max_output_pixels: Annotated[int, typer.Option(
            help="Refuse an image whose output would have more pixels (0 = no limit but memory).")] = DEFAULT_MAX_OUTPUT_PIXELS,
        memory_check: Annotated[bool, typer.Option(
            "--memory-check/--no-memory-check",
            help="Before each image, estimate the memory it needs and refuse it when the machine (or the "
                 "container) has less available.")] = True,
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    ) -> None:
        """Upscale photos x4 with Edge-SD-SR (one denoising step)."""
        from .backends.base import get_spec
        from .hw import set_threads

        if skip_existing and overwrite:
            raise UserError("--skip-existing and --overwrite exclude each other")
        check_options(batch, steps, tile, overlap, seed, threads, max_pixels, max_output_pixels)
        if as_json and output == "-":
            raise UserError("--json prints on stdout, which -o - uses for the image")
        to_stdout = output == "-" or (output is None and "-" in inputs)
        if sys.stdout is None and (to_stdout or as_json):
            raise UserError("stdout is closed: nowhere to write " + ("the JSON summary" if as_json else "the image"))
        if to_stdout and _is_terminal(sys.stdout):
            raise UserError("stdout is a terminal: image bytes would be printed as text; write to a file with "
                            "-o FILE, or pipe or redirect stdout (... | other-tool, > big.png)")
        started = time.perf_counter()
        jobs: list[Job] = []
        # from the start, not only around the batch: SIGTERM or SIGHUP while the model loads is reported too
        with signals_as_interrupts():
            try:
                sh = parse_shard(shard)
                plan = plan_jobs(inputs, output, ext.value if ext else None, suffix, scale, sh)
                if not plan.found and plan.failures:  # nothing to do at all: a usage error
                    for problem in plan.failures:
                        print_error(str(problem))
                    raise typer.Exit(2)
                jobs = plan.jobs
                resolved = _resolve(model, backend, device, dtype, detail, tile, scale)
                threads, notes = set_threads(threads, idle_only=not get_spec(resolved.backend).streams)
                runner, runner16, opts = _load(resolved, threads, overlap, batch, steps, seed)
            except KeyboardInterrupt as stop:
                _stopped_before_start(stop, len(jobs), started, quiet, as_json)
                raise
            if not quiet:
                for note in [*notes, *plan.skipped]:
                    err_console.print(f"note: {escape(printable(note))}", highlight=False, soft_wrap=True)
            limits = Limits(max_pixels, max_output_pixels, memory_check)
            output_opts = Output(ext.value if ext else None, quality, png_compression)
            summary, stopped = run_jobs(jobs, runner, opts, output_opts, skip_existing, overwrite, limits,
                                        quiet or as_json or any(j.dst is None for j in jobs),
                                        runner16=runner16, failures=plan.failures)
            summary.update(backend=resolved.backend, model=str(resolved.model), detail=resolved.detail)
            if as_json:
                typer.echo(json.dumps(summary, indent=2))
            elif not quiet and (stopped is not None or not any(j.dst is None for j in jobs)):
                late = f", {summary['not_started']} not started" if stopped is not None else ""
                err_console.print(f"{summary['done']} upscaled, {summary['skipped']} skipped, {summary['failed']} failed"
                                  f"{late} in {summary['seconds']:.1f} s ({resolved.backend})")
        if stopped is not None:
            raise stopped
        if summary["failed"]:
            raise typer.Exit(1)


def _resolve(model: Path | None, backend: str, device: Device, dtype: Precision, detail: float | None,
             tile: int | None, scale: int) -> Resolved:
    """The run's model resolved (backend, folder, detail, tile: runtime/resolve.py); a --device, --dtype, --scale or
    --tile it cannot run with is one line."""
    from .runtime.resolve import resolve

    return resolve(model, backend, detail, tile, dtype.value, device.value, scale)


def _load(r: Resolved, threads: int, overlap: float, batch: int, steps: int,
          seed: int) -> tuple[object, object, UpscaleOptions]:
    """The resolved model's runner and fp32 twin (16-bit photos), and the upscale options."""
    from .runtime.resolve import load
    from .runtime.upscale import UpscaleOptions

    runner, runner16 = load(r, threads)
    return runner, runner16, UpscaleOptions(tile=r.tile, overlap=overlap, batch=batch, steps=steps, seed=seed)


def _stopped_before_start(stop: KeyboardInterrupt, jobs: int, started: float, quiet: bool, as_json: bool) -> None:
    """The summary of a run stopped (Ctrl-C, SIGTERM, SIGHUP) before its first image: nothing done."""
    seconds = round(time.perf_counter() - started, 3)
    if as_json:
        typer.echo(json.dumps({"done": 0, "skipped": 0, "failed": 0, "seconds": seconds, "images": [],
                               "interrupted": interruption(stop)[0], "not_started": jobs}, indent=2))
    elif not quiet:
        err_console.print(f"0 upscaled, 0 skipped, 0 failed, {jobs} not started in {seconds:.1f} s")


@dataclass(frozen=True)
class Limits:
    """What one image may cost: input pixels (read_image refuses before decoding), output pixels, and the
    memory estimate checked against what the machine has available."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_output_pixels: int = 0  # 0: none
    memory_check: bool = True


def check_limits(label: str, height: int, width: int, runner, opts: UpscaleOptions, stored, channels: int,
                 alpha: bool, limits: Limits, fmt: str = "png") -> None:
    """Refuse, with one line naming the image, an output over --max-output-pixels or one whose estimated
    memory (upscale.estimate_peak_bytes) exceeds what is available now."""
    from .io import ImageError

    s = runner.scale
    out_h, out_w = height * s, width * s
    if limits.max_output_pixels and out_h * out_w > limits.max_output_pixels:
        raise ImageError(label, f"its x{s} output would be {out_w}x{out_h} = {out_h * out_w:,} pixels, over "
                                f"--max-output-pixels {limits.max_output_pixels:,}")
    if not limits.memory_check:
        return
    from .hw import available_memory
    from .runtime.upscale import PROCESS_BYTES, estimate_peak_bytes

    avail = available_memory()  # an output still being written (the writer thread) is already resident
    need = estimate_peak_bytes(height, width, s, opts, stored, channels, alpha, fmt)
    if avail is not None and need - PROCESS_BYTES > avail:  # the process itself is already resident
        raise ImageError(label, f"needs about {need / 2**30:.1f} GiB of memory for its {out_w}x{out_h} output, "
                                f"{avail / 2**30:.1f} GiB available (--no-memory-check to try anyway)")


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(m in str(exc) for m in ("can't allocate memory", "out of memory")))


def _fail(rec: dict, label: str, exc: BaseException) -> None:
    """Record and print, on one line, an exception that fails this image only (the batch goes on): a bad
    file, a bad value, running out of memory while upscaling. Anything else is a bug and is raised."""
    from .io import ImageError

    if isinstance(exc, ImageError):
        msg = str(exc)
    elif isinstance(exc, ValueError):
        msg = f"{label}: {exc}"
    elif _out_of_memory(exc):
        msg = f"{label}: out of memory while upscaling (try a smaller --batch or --tile)"
    else:
        raise exc
    rec.update(status="failed", error=msg)
    print_error(msg)


@dataclass(frozen=True)
class Output:
    """How outputs are encoded: JPEG/WebP quality, PNG/TIFF zlib level (the same pixels at every level)."""

    ext: str | None = None  # None: the input's format
    quality: int = 95
    compress_level: int = DEFAULT_COMPRESS_LEVEL


class _Writer:
    """Encodes and writes finished images on one background thread, so that the next image's upscaling
    does not wait for a PNG encode; at most one image is pending (its pixels are already in memory).
    Each write is atomic (io.write_image); its record becomes "ok" or "failed" when it completes."""

    def __init__(self) -> None:
        self._pool = None
        self._pending: tuple[dict, str, object] | None = None

    def submit(self, rec: dict, label: str, write: Callable[[], None]) -> None:
        self.wait()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="edgesr-write")
        self._pending = (rec, label, self._pool.submit(write))

    def wait(self) -> None:
        """Finish the pending write and record how it went. A signal while waiting (SIGINT, SIGTERM) does
        not cut the write short: it completes (a whole file, never a partial one), is recorded, and then
        the interruption goes on."""
        if self._pending is None:
            return
        rec, label, future = self._pending
        self._pending = None
        t0 = rec.pop("_t0")
        stopped: KeyboardInterrupt | None = None
        while True:
            try:
                exc = future.exception()
                break
            except KeyboardInterrupt as interrupt:
                stopped = stopped or interrupt
        if exc is None:
            rec.update(status="ok", seconds=round(time.perf_counter() - t0, 3))
        else:
            _fail(rec, label, exc)
        if stopped is not None:
            raise stopped

    def close(self) -> None:
        self.wait()
        if self._pool is not None:
            self._pool.shutdown()


def run_jobs(jobs: list[Job], runner, opts: UpscaleOptions, output: Output, skip_existing: bool,
             overwrite: bool, limits: Limits, quiet: bool, runner16=None,
             failures: list = ()) -> tuple[dict, KeyboardInterrupt | None]:
    """Run every job; one failure is one record and one line. Returns the summary, and the
    interruption (SIGINT, SIGTERM, SIGHUP) that stopped the run early, if one did (the image being
    written then is finished; the one being upscaled is dropped)."""
    from .io import ImageError

    results = []
    for problem in failures:
        results.append({"input": problem.path, "output": None, "status": "failed", "error": str(problem)})
        print_error(str(problem))
    t0 = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=quiet, transient=True)
    stopped: KeyboardInterrupt | None = None
    started = 0
    writer = _Writer()
    with progress:
        overall = progress.add_task("images", total=len(jobs))
        try:
            try:
                for job in jobs:
                    rec = {"input": job.label, "output": str(job.dst) if job.dst else "-", "status": "interrupted"}
                    results.append(rec)
                    started += 1
                    try:
                        fields, write = _run_one(job, runner, runner16, opts, output, skip_existing, overwrite,
                                                 limits, progress)
                        rec.update(fields)
                        if write is not None:
                            writer.submit(rec, job.label, write)
                    except (ImageError, ValueError, MemoryError, RuntimeError) as exc:
                        _fail(rec, job.label, exc)
                    progress.advance(overall)
            finally:
                writer.close()
        except KeyboardInterrupt as exc:  # Terminated too: the output in progress was cleaned up
            stopped = exc
    count = lambda s: sum(r["status"] == s for r in results)  # noqa: E731
    summary = {"done": count("ok"), "skipped": count("skipped"), "failed": count("failed"),
               "seconds": round(time.perf_counter() - t0, 3), "images": results}
    if stopped is not None:
        summary.update(interrupted=interruption(stopped)[0], not_started=len(jobs) - started)
    return summary, stopped


def _run_one(job: Job, runner, runner16, opts: UpscaleOptions, output: Output, skip_existing: bool,
             overwrite: bool, limits: Limits, progress: Progress) -> tuple[dict, Callable[[], None] | None]:
    """One job: the fields of its record, and the write still to do (None when done or skipped). The image is
    refused by its header (size, output size, memory) before a pixel is decoded."""
    from .io import ImageError, check_writable, encode_image, read_image, stored_dtype, write_image
    from .runtime.upscale import upscale_photo

    if job.dst is not None and _lexists(job.dst):
        if skip_existing:
            return {"status": "skipped"}, None
        if not overwrite:
            what = "exists" if os.path.exists(job.dst) else "exists (a broken symlink)"
            raise ImageError(job.dst, f"{what} (use --overwrite to replace it or --skip-existing)")
    if job.dst is not None:
        check_writable(job.dst)  # before the upscaling, not after it
    chosen: dict = {}

    def check(info) -> None:  # from the header, before decoding
        fmt = output.ext or _fmt_for(job, info.format)
        stored = stored_dtype(fmt, info.bit_depth)  # an unknown format is refused here, before the upscaling
        check_limits(job.label, info.height, info.width, runner, opts, stored, 1 if info.grayscale else 3,
                     info.alpha, limits, fmt)
        chosen["fmt"] = fmt

    photo = read_image(_stdin() if job.src is None else job.src, name=job.label, max_pixels=limits.max_pixels,
                       check=check)
    fmt = chosen["fmt"]
    stored = stored_dtype(fmt, photo.bit_depth)
    tiles = progress.add_task(f"  {printable(Path(job.label).name)}", total=None)
    t1 = time.perf_counter()
    use = runner16 if runner16 is not None and photo.bit_depth > 8 else runner
    out = upscale_photo(use, photo, opts, progress=lambda d, n: progress.update(tiles, completed=d, total=n),
                        quantize=stored)
    del photo  # the input's float pixels are not needed while the output is encoded
    progress.remove_task(tiles)
    fields = {"size": [out.width, out.height]}
    if job.dst is None:  # stdout: one image, written now
        _write_stdout(encode_image(out, fmt, output.quality, compress_level=output.compress_level))
        return {"status": "ok", "seconds": round(time.perf_counter() - t1, 3), **fields}, None
    dst = job.dst
    return {"_t0": t1, **fields}, lambda: write_image(dst, out, fmt=fmt, quality=output.quality,
                                                     compress_level=output.compress_level)


def _lexists(path: Path) -> bool:
    """Whether something (a file, a link, even a broken one) is at `path`; a path that cannot be looked up
    (a name longer than the file system allows) is this image's failure, on one line."""
    from .io import ImageError

    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise ImageError(path, f"cannot write ({exc.strerror or exc})") from exc
    return True


def _stdin():
    """stdin as a binary stream, which read_image reads only as far as the image's declared size allows."""
    from .io import ImageError

    if sys.stdin is None:
        raise ImageError("<stdin>", "cannot read (stdin is closed)")
    return sys.stdin.buffer


def _write_stdout(data: bytes) -> None:
    """Write the image to stdout; a closed, full or broken stdout is one line, not a traceback (and
    stdout is then pointed at /dev/null so that Python's own flush at exit stays quiet too)."""
    from .io import ImageError

    try:
        if sys.stdout is None:
            raise OSError(errno.EBADF, "stdout is closed")
        out = sys.stdout.buffer
        view = memoryview(data)
        while view:  # an unbuffered stdout (PYTHONUNBUFFERED=1) may take part of it and report the rest's fate later
            n = out.write(view)
            if not n:
                raise OSError(errno.EIO, "stdout took no more bytes")
            view = view[n:]
        out.flush()
    except (OSError, ValueError) as exc:
        _silence_stdout()
        raise ImageError("<stdout>", f"cannot write ({getattr(exc, 'strerror', None) or exc})") from exc


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _fmt_for(job: Job, source_format: str) -> str:
    """The output format: the output file's suffix, else the input's format (Pillow's name), else PNG."""
    if job.dst is not None and job.dst.suffix:
        return job.dst.suffix.lstrip(".").lower()
    return _SOURCE_EXT.get(source_format, "png")
