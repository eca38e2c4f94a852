"""Start-up, threads, the writer thread and the package layout (issue 17): what the CLI imports before a
command runs, how many threads it picks, that the bytes do not depend on either, and where backends/
installs. Times are measured with benchmarks/whole_process.py, not asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr_cli import hw
from edgesr_cli.backends import base
from edgesr_cli.io import ImageError
from test_upscale_cli import error_lines, make_png, no_temp_files, size_of, upscale

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numpy", "PIL", "onnxruntime", "edgesr_cli.export", "edgesr_cli.io", "edgesr_cli.runtime.upscale")


def _imported_after(argv: list[str], pre: str = "") -> tuple[set[str], subprocess.CompletedProcess]:
    """The heavy modules loaded by `edgesr ARGV` in a fresh interpreter (the CLI's own exit included)."""
    code = (f"{pre}\nimport sys, json, atexit\n"
            f"atexit.register(lambda: sys.__stderr__.write('MODULES ' + json.dumps(sorted(m for m in {HEAVY!r} "
            f"if m in sys.modules)) + '\\n'))\n"
            "from edgesr_cli.cli import main\nmain()")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    line = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("MODULES ")][-1]
    return set(json.loads(line[len("MODULES "):])), proc


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["upscale", "--help"], ["train", "--help"],
                                  ["eval", "--help"]])
def test_cli_start_imports_no_numpy_pillow_or_torch(argv):
    loaded, proc = _imported_after(argv)
    assert proc.returncode == 0, proc.stderr.decode()
    assert loaded == set(), f"`edgesr {' '.join(argv)}` imported {sorted(loaded)}"


def test_version_answers_before_the_command_line_is_imported():
    code = ("import sys; sys.argv = ['edgesr', '--version']\nfrom edgesr_cli.launch import main\nmain()\n"
            "print(sorted(m for m in ('typer', 'rich', 'edgesr_cli.cli') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=ROOT, text=True)
    assert out.returncode == 0, out.stderr
    from edgesr_cli import __version__

    assert out.stdout.splitlines() == [f"edgesr {__version__}", "[]"]
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["edgesr"]
    assert entry == "edgesr_cli.launch:main"


@pytest.mark.parametrize("argv, absent", [(["upscale", "--help"], {"edgesr_cli.cli_train", "edgesr_cli.cli_eval"}),
                                          (["backends", "--json"], {"edgesr_cli.cli_train", "edgesr_cli.cli_upscale"})])
def test_a_command_builds_only_its_own_module(argv, absent):
    code = ("import sys\nfrom edgesr_cli.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n"
            "    sys.stderr.write(f'LOADED {sorted(m for m in sys.modules if m.startswith(\"edgesr_cli.cli_\"))}\\n')\n"
            "    raise")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, timeout=120, cwd=ROOT, text=True)
    assert out.returncode == 0, out.stderr
    loaded = [ln for ln in out.stderr.splitlines() if ln.startswith("LOADED ")][-1]
    assert not any(m in loaded for m in absent), loaded


def test_the_whole_command_line_lists_every_command():
    from typer.testing import CliRunner

    from edgesr_cli.cli import app

    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("upscale", "train", "distill", "finetune-decoder", "export", "backends", "eval", "bench", "info"):
        assert name in res.output, name


def test_backends_listing_needs_no_torch():
    loaded, proc = _imported_after(["backends", "--json"])
    assert proc.returncode == 0, proc.stderr.decode()
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["torch"]["usable"] is True
    assert not loaded & {"torch", "edgesr_cli.export"}, sorted(loaded)


def test_a_missing_runtime_is_one_line_with_the_pip_command(monkeypatch):
    from edgesr_cli.backends import base, checks

    real = checks.find_spec
    monkeypatch.setattr(checks, "find_spec", lambda name: None if name == "torch" else real(name))
    reason = base.availability("torch")
    assert reason is not None and "torch" in reason and "pip install" in reason and "\n" not in reason


def test_loading_an_export_does_not_import_the_exporter():
    """The cycle export.py <-> backends/qnn_backend.py is gone: the backends load exports through
    backends/exported.py, and only the export side imports the backends."""
    code = ("import sys, edgesr_cli.backends.onnx_backend, edgesr_cli.backends.qnn_backend, "
            "edgesr_cli.backends.tflite_backend; print('edgesr_cli.export' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=ROOT, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    from edgesr_cli import export
    from edgesr_cli.backends import exported

    assert export.read_manifest is exported.read_manifest  # one implementation, re-exported for callers


def test_backends_install_inside_the_package_namespace():
    """pyproject installs the source tree's backends/ as edgesr_cli.backends: no top-level `backends`
    module in site-packages to collide with another project's."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "backends" not in cfg["packages"] and "edgesr_cli.backends" in cfg["packages"]
    assert cfg["package-dir"]["edgesr_cli.backends"] == "backends"
    import edgesr_cli.backends.base as base

    assert Path(base.__file__).resolve() == ROOT / "backends" / "base.py"
    assert all(spec.loader.startswith("edgesr_cli.backends.") for spec in base.BUILTIN.values())


# ---- threads --------------------------------------------------------------------------------------


def test_usable_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}}); from edgesr_cli import hw; print(hw.usable_cpus())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT, text=True)
    assert out.stdout.strip() == "1", out.stderr


@pytest.mark.parametrize("files, expect", [
    ({"cpu.max": "150000 100000\n"}, 1.5),  # docker --cpus 1.5 (cgroup v2)
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_cpu_quota(tmp_path, files, expect):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert hw._cpu_quota(tmp_path) == expect


@pytest.mark.parametrize("usable, idle, expect", [(2, 2.0, 2), (2, 1.05, 1), (2, 1.6, 2), (2, 0.0, 1),
                                                  (8, 5.4, 5), (4, None, 4), (1, 0.0, 1)])
def test_default_threads_leave_busy_cores_alone(monkeypatch, usable, idle, expect):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hw, "usable_cpus", lambda: usable)
    monkeypatch.setattr(hw, "idle_cpus", lambda interval=0.05: idle)
    assert hw.default_threads() == expect


@pytest.mark.parametrize("usable, idle", [(2, 1.05), (2, 0.0), (8, 5.4), (4, None)])
def test_streams_backends_default_to_every_usable_cpu(monkeypatch, usable, idle):
    """A backend that runs tiles apart (BackendSpec.streams: OpenVINO) takes every usable CPU whatever the load:
    its threads wait for none, so a busy core slows one stream, not all."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hw, "usable_cpus", lambda: usable)
    monkeypatch.setattr(hw, "idle_cpus", lambda interval=0.05: idle)
    assert hw.default_threads(idle_only=False) == usable
    assert hw.thread_count(None, idle_only=False) == (usable, [])
    assert base.get_spec("openvino").streams and not base.get_spec("onnx").streams
    assert not base.get_spec("torch").streams


def test_omp_num_threads_is_the_default_when_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(hw, "idle_cpus", lambda interval=0.05: pytest.fail("not sampled when the env says"))
    assert hw.default_threads() == 3


def test_idle_cpus_reads_this_machine():
    idle = hw.idle_cpus(0.02)
    if idle is None:
        pytest.skip("no /proc/stat")
    assert 0.0 <= idle <= len(os.sched_getaffinity(0)) + 1e-6


def test_idle_cpus_samples_from_the_start_of_the_process(monkeypatch):
    """After start_idle_sample (the executable calls it first), idle_cpus measures from there: no sleep once the
    interval has passed, the rest of it otherwise, and a full fresh sample once the start is too old."""
    import time

    if hw._cpu_times() is None:
        pytest.skip("no /proc/stat")
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    monkeypatch.setattr(hw, "_SAMPLE_START", None)
    hw.start_idle_sample()
    began, a, own = hw._SAMPLE_START
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setattr(hw, "_SAMPLE_START", (began - 1.0, a, own))  # the imports took a second
    idle = hw.idle_cpus(0.05)
    assert slept == [] and 0.0 <= idle <= cpus + 1e-6
    hw.start_idle_sample()  # just opened: sleeps what is left of the interval
    hw.idle_cpus(0.05)
    assert len(slept) == 1 and 0.0 < slept[0] <= 0.05
    began, a, own = hw._SAMPLE_START
    monkeypatch.setattr(hw, "_SAMPLE_START", (began - hw._SAMPLE_MAX_AGE - 1.0, a, own))  # stale: sampled afresh
    hw.idle_cpus(0.05)
    assert len(slept) == 2 and slept[1] == pytest.approx(0.05, abs=0.01)


def test_idle_cpus_gives_back_this_process_own_cpu_time():
    """Two CPUs over 10 ticks each: one fully idle, one busy 8 ticks of which this process used 6 (a library's
    spinning worker threads): 1 + 0.2 + 0.6 idle; the total never exceeds the CPUs read."""
    a = {0: (100, 1000), 1: (50, 1000), 5: (0, 10)}
    b = {0: (110, 1010), 1: (52, 1010), 5: (0, 10)}
    assert hw._idle_between(a, b, 0, {0, 1}) == pytest.approx(1.2)
    assert hw._idle_between(a, b, 6, {0, 1}) == pytest.approx(1.8)
    assert hw._idle_between(a, b, 50, {0, 1}) == pytest.approx(2.0)
    assert hw._idle_between(a, b, 0, {0, 1, 5}) == pytest.approx(1.2)  # a CPU whose counters did not move


def test_own_spinning_thread_is_not_load():
    """A thread of this process that spins while idle_cpus samples (as OpenBLAS's do after `import numpy`)
    must not take a core off the count; measured against the same samples without it."""
    import threading

    if hw.idle_cpus(0.02) is None or hw._own_ticks() is None:
        pytest.skip("no /proc")
    quiet = max(hw.idle_cpus(0.1) for _ in range(3))
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        spinning = max(hw.idle_cpus(0.1) for _ in range(3))
    finally:
        stop.set()
        t.join()
    assert spinning >= quiet - 0.5, (quiet, spinning)


def test_the_bytes_do_not_depend_on_the_thread_count(tiny_model_dir, tmp_path):
    """The default picks 1 or 2 threads by the load at that moment: the same photo must give the same bytes."""
    from typer.testing import CliRunner

    from edgesr_cli.cli import app

    src = make_png(tmp_path / "a.png", 40, 56)
    outs = []
    for t, dtype in (("1", "fp32"), ("2", "fp32"), ("1", "auto"), ("2", "auto")):  # auto: bf16 on such CPUs
        dst = tmp_path / f"t{t}{dtype}.png"
        res = CliRunner().invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(tiny_model_dir),
                                       "--threads", t, "--dtype", dtype, "--tile", "16", "-q"])
        assert res.exit_code == 0, res.output
        outs.append(dst.read_bytes())
    assert outs[0] == outs[1] and outs[2] == outs[3]


# ---- output encoding and the writer thread -----------------------------------------------------------


def test_png_compression_changes_the_size_not_the_pixels(tiny_model_dir, tmp_path):
    src = make_png(tmp_path / "a.png", 40, 56)
    sizes, pixels = {}, {}
    for level in ("0", "1", "9"):
        dst = tmp_path / f"l{level}.png"
        upscale(tiny_model_dir, src, "-o", dst, "--png-compression", level, "-q")
        sizes[level] = dst.stat().st_size
        pixels[level] = np.asarray(Image.open(dst))
    assert sizes["0"] > sizes["1"] > sizes["9"]
    assert all(np.array_equal(pixels["1"], p) for p in pixels.values())
    result = upscale(tiny_model_dir, src, "-o", tmp_path / "bad.png", "--png-compression", "10", ok_codes=(2,))
    assert "--png-compression" in result.output and not (tmp_path / "bad.png").exists()


def test_a_batch_writes_every_image_through_the_writer_thread(tiny_model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    sizes = [(20, 28), (16, 16), (24, 12), (8, 40)]
    for i, (h, w) in enumerate(sizes):
        make_png(src / f"img{i}.png", h, w)
    result = upscale(tiny_model_dir, src, "-o", out, "--json")
    summary = json.loads(result.stdout)
    assert summary["done"] == 4 and [r["status"] for r in summary["images"]] == ["ok"] * 4
    assert all(r["seconds"] > 0 for r in summary["images"])
    for i, (h, w) in enumerate(sizes):
        assert size_of(out / f"img{i}.png") == (4 * w, 4 * h)
    assert no_temp_files(out)


def test_a_write_that_fails_on_the_writer_thread_is_one_failure(tiny_model_dir, tmp_path, monkeypatch):
    import edgesr_cli.io as io_

    real = io_.write_image

    def fail_second(path, photo, **kw):
        if Path(path).name == "img1.png":
            raise ImageError(path, "cannot write (No space left on device)")
        return real(path, photo, **kw)

    monkeypatch.setattr(io_, "write_image", fail_second)
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        make_png(src / f"img{i}.png", 12, 12)
    result = upscale(tiny_model_dir, src, "-o", out, "--json", ok_codes=(1,))
    assert error_lines(result) == [f"error: {out / 'img1.png'}: cannot write (No space left on device)"]
    summary = json.loads(result.stdout)
    assert [r["status"] for r in summary["images"]] == ["ok", "failed", "ok"]
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img2.png"]


def test_a_command_module_that_fails_to_load_leaves_a_one_line_error():
    """A broken optional module (here cli_eval raising on register) does not take the CLI down: its commands
    answer with one line, exit non-zero, and `upscale` still registers."""
    code = ("import sys, types\nm = types.ModuleType('edgesr_cli.cli_eval')\n"
            "def register(app): raise RuntimeError('boom')\nm.register = register\n"
            "sys.modules['edgesr_cli.cli_eval'] = m\nfrom edgesr_cli.cli import main\nmain()")
    out = subprocess.run([sys.executable, "-c", code, "bench"], capture_output=True, timeout=120, cwd=ROOT, text=True)
    assert out.returncode != 0
    assert "`edgesr bench` is not implemented yet" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("backend, expect", [("openvino", 2), ("onnx", 1), ("torch", 1)])
def test_upscale_counts_threads_for_the_backend_it_resolved(monkeypatch, tmp_path, backend, expect):
    """With one of two cores busy and no --threads, `edgesr upscale` runs OpenVINO's two streams (they wait for
    none) and the other CPU backends one thread (the idle cores): the count is taken after the backend is known."""
    from importlib.util import find_spec

    from typer.testing import CliRunner

    from edgesr_cli.cli import app
    from edgesr_cli.modeldir import ModelFileError
    from edgesr_cli.runtime import resolve

    need = {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}[backend]
    if find_spec(need) is None:
        pytest.skip(f"{need} not installed")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(hw, "usable_cpus", lambda: 2)
    monkeypatch.setattr(hw, "idle_cpus", lambda interval=0.05: 1.0)
    seen = []

    def load(r, threads=None):
        seen.append((r.backend, threads))
        raise ModelFileError("stopped here by the test")

    monkeypatch.setattr(resolve, "load", load)
    src = make_png(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["upscale", str(src), "-o", str(tmp_path / "b.png"), "--backend", backend])
    assert seen == [(backend, expect)], result.output
    assert result.exit_code != 0 and "stopped here by the test" in result.stderr


def test_built_in_backends_are_found_without_reading_entry_points(monkeypatch):
    """Entry points (importlib.metadata and a scan of the installed packages, about 60 ms) are read only where a
    plugin could be meant: a built-in name, or auto on a model folder, leaves them unread."""
    import importlib.metadata

    from edgesr_cli.runtime import resolve

    def no(**_):
        raise AssertionError("entry points read")

    monkeypatch.setattr(importlib.metadata, "entry_points", no)
    assert base.get_spec("openvino").streams and base.lookup("torch").name == "torch"
    r = resolve.resolve(None, "auto", None, None, None, "cpu", None)
    assert r.backend in ("torch", "openvino", "onnx")
    with pytest.raises(AssertionError, match="entry points read"):
        base.registry()
