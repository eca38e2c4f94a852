"""`edgesr bench`, edgesr_cli.bench and bench_android: the JSON record, the encoder/UNet/decoder split against the engine's
per-tile total, the Android path (no adb, a fake adb, --dry-run) and the parsers of the phone tools' output."""

from __future__ import annotations

import json
import math
import stat
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgesr_cli.backends.torch_backend import load as load_torch
from edgesr_cli import bench as B
from edgesr_cli import bench_android as A
from edgesr_cli import cli_eval

cli = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    cli_eval.register(app)
    return app


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("EDGESR_DEBUG", raising=False)
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)


def _numbers(obj, path=""):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")


STATS = {"median_ms", "p25_ms", "p75_ms", "min_ms", "max_ms", "runs"}


def test_bench_json_has_every_field(tmp_path, tiny_model_dir):
    export = tmp_path / "exported"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({"format": "nosuchformat"}))
    out = tmp_path / "bench.json"
    r = cli.invoke(_app(), ["bench", "--backend", "all", "--model", str(tiny_model_dir), "--export", str(export),
                            "--tile", "32", "--size", "48", "--threads", "1", "--warmup", "1", "--runs", "3",
                            "--image-runs", "2", "--device", "cpu", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert json.loads(out.read_text()) == rec
    assert rec["schema"] == B.SCHEMA
    assert {"cpu", "logical_cores", "usable_cores", "memory_gb", "os"} <= set(rec["machine"])
    assert rec["machine"]["cpu"] and rec["machine"]["logical_cores"] >= 1
    assert {"python", "torch", "numpy", "edgesr"} <= set(rec["versions"])
    assert rec["threads"]["requested"] == 1 and rec["threads"]["torch_intra_op"] == 1
    assert rec["settings"]["tile"] == 32 and rec["settings"]["size"] == 48

    ok, skipped = rec["results"]
    assert skipped["status"] == "skipped" and skipped["reason"]  # the export's backend cannot load: said why
    assert ok["status"] == "ok" and ok["backend"] == "torch" and ok["device"] == "cpu" and ok["dtype"]
    tile, image, flops = ok["tile"], ok["image"], ok["flops"]
    for part in ("encoder", "unet", "decoder", "total"):
        assert set(tile[part]) == STATS and tile[part]["runs"] == 3
        assert tile[part]["min_ms"] <= tile[part]["p25_ms"] <= tile[part]["median_ms"] <= tile[part]["p75_ms"] <= tile[part]["max_ms"]
    assert tile["lr"] == [32, 32] and tile["hr"] == [128, 128] and tile["batch"] == 1
    assert {"split_sum_ms", "split_vs_total", "split_vs_total_paired", "fused_total"} <= set(tile)
    assert image["lr"] == [48, 48] and image["hr"] == [192, 192] and image["tiles"] >= 1 and image["runs"] == 2
    assert {"median_s", "p25_s", "p75_s", "min_s", "max_s", "output_megapixels_per_s", "input_megapixels_per_s"} <= set(image)
    mem = image["memory"]
    assert {"peak_rss_mb", "rss_before_mb", "peak_over_before_mb", "method"} <= set(mem) and mem["method"]
    assert set(flops["gflops_per_tile"]) == {"encoder", "unet", "decoder", "total"}
    assert set(flops["achieved_gflops_per_s"]) == {"encoder", "unet", "decoder", "tile_total", "image"}
    assert flops["config"] == "test-tiny" and "2 x MACs" in flops["convention"]

    for path, v in _numbers(ok):
        assert math.isfinite(v), path
        if not path.endswith("peak_over_before_mb"):  # a run may not grow the resident set at all
            assert v > 0, path
    # achieved GFLOP/s is the counted FLOPs over the measured time, nothing else
    g, t = flops["gflops_per_tile"], tile["unet"]["median_ms"] / 1e3
    assert flops["achieved_gflops_per_s"]["unet"] == pytest.approx(g["unet"] / t)
    assert image["output_megapixels_per_s"] == pytest.approx(192 * 192 / 1e6 / image["median_s"])


def test_bench_table_output(tiny_model_dir):
    r = cli.invoke(_app(), ["bench", "--model", str(tiny_model_dir), "--tile", "32", "--size", "32", "--threads", "1",
                            "--warmup", "0", "--runs", "2", "--image-runs", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    for word in ("encoder ms", "UNet ms", "decoder ms", "tile total", "per tile, batch 4 ms", "megapixels/s",
                 "peak RSS", "GFLOP/s", "torch"):
        assert word in r.stdout, word


def test_per_tile_in_a_batch(tiny_model_dir, monkeypatch):
    """bench_batch times the engine's call on a batch of copies of one tile and divides by the batch: the call gets
    `batch` tiles, and the record says the batch and the rounds."""
    runner = load_torch(tiny_model_dir, device="cpu", dtype="fp32")
    from edgesr_cli.runtime import tiling

    seen = []
    real = tiling.upscale_tiles
    monkeypatch.setattr(tiling, "upscale_tiles", lambda r, lr, noise, **kw: seen.append(lr.shape) or real(r, lr, noise, **kw))
    rec = B.bench_batch(runner, tile=32, batch=3, warmup=1, runs=3)
    assert rec["batch"] == 3 and rec["runs"] == 3 and rec["median_ms"] > 0
    assert seen == [(3, 3, 32, 32)] * 4


def test_split_sums_to_the_engine_total(tiny_model_dir):
    """encoder + UNet + decoder, timed as separate calls, add up to the engine's upscale_tiles on the same
    tile within 15% (medians). The machine may be shared: retry a noisy measurement, up to three times."""
    runner = load_torch(tiny_model_dir, device="cpu", dtype="fp32")
    ratios = []
    for _ in range(3):
        rec = B.bench_tile(runner, tile=32, warmup=3, runs=60)
        ratios.append(rec["split_vs_total"])
        if abs(rec["split_vs_total"] - 1) <= 0.15:
            break
    assert abs(ratios[-1] - 1) <= 0.15, ratios
    assert rec["split_sum_ms"] == pytest.approx(sum(rec[k]["median_ms"] for k in ("encoder", "unet", "decoder")))


def test_stats():
    s = B.stats([0.004, 0.001, 0.003, 0.002, 0.005])
    assert s == {"median_ms": 3.0, "p25_ms": 2.0, "p75_ms": 4.0, "min_ms": 1.0, "max_ms": 5.0, "runs": 5} or \
        all(s[k] == pytest.approx(v) for k, v in {"median_ms": 3.0, "p25_ms": 2.0, "p75_ms": 4.0, "min_ms": 1.0,
                                                   "max_ms": 5.0}.items())
    assert B.stats([2.0], "s")["median_s"] == 2.0
    with pytest.raises(ValueError):
        B.stats([])


def test_bad_local_options(tiny_model_dir):
    r = cli.invoke(_app(), ["bench", "--model", str(tiny_model_dir), "--tile", "33", "--size", "32", "--runs", "1"])
    assert r.exit_code == 2 and "--tile 33" in r.output and len(r.output.strip().splitlines()) == 1
    r = cli.invoke(_app(), ["bench", "--device", "s99"])
    assert r.exit_code == 2 and "s24" in r.output and "error:" in r.output
    r = cli.invoke(_app(), ["bench", "--model", str(tiny_model_dir), "--dry-run"])
    assert r.exit_code == 2 and "Android" in r.output


# --------------------------------------------------------------------------- Android


def test_device_s24_without_adb_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb anywhere
    r = cli.invoke(_app(), ["bench", "--device", "s24"])
    assert r.exit_code != 0
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    for need in ("adb", "PATH", "USB debugging", "exported model", "SM8650", "--dry-run"):
        assert need in lines[0], need


def _fake_adb(tmp_path: Path, devices: str, soc: str = "SM8650") -> Path:
    """An `adb` stand-in: lists `devices`, answers getprop, accepts push/shell, and prints a LiteRT
    benchmark_model report for benchmark runs."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "adb.log"
    script = bindir / "adb"
    script.write_text(f"""#!{sys.executable}
import sys
args = sys.argv[1:]
open({str(log)!r}, "a").write(" ".join(args) + "\\n")
if args == ["devices"]:
    print("List of devices attached")
    print({devices!r}, end="")
    raise SystemExit(0)
cmd = " ".join(args)
if "getprop ro.soc.model" in cmd:
    print({soc!r})
elif "getprop ro.product.model" in cmd:
    print("SM-S928B")
elif "benchmark_model --graph" in cmd:
    gpu = "--use_gpu=true" in cmd
    print("INFO: Initialized session in 45.1ms.")
    print("INFO: count=3 first=90000 curr=52000 min=52000 max=90000 avg=65000 std=17000")
    print("INFO: count=10 first=51000 curr=50500 min=49000 max=56000 avg=%s std=1800 p5=49000 median=50200 p95=56000"
          % ("20400" if gpu else "50900"))
    print("INFO: Inference timings in us: Init: 45100, First inference: 90000, Warmup (avg): 65000, Inference (avg): %s"
          % ("20400" if gpu else "50900"))
    print("INFO: Memory footprint delta from the start of the tool (MB): init=12.5 overall=80.25")
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir


@pytest.fixture
def tflite_export(tmp_path) -> Path:
    d = tmp_path / "export_tflite"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"format": "tflite", "scale": 4, "tile": 128}))
    (d / "fused.tflite").write_bytes(b"TFL3 not a real model")
    return d


def test_device_with_no_phone_connected(tmp_path, monkeypatch, tflite_export):
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "")))
    r = cli.invoke(_app(), ["bench", "--device", "s24", "--export", str(tflite_export)])
    assert r.exit_code != 0 and "lists no device" in r.output and "USB debugging" in r.output
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "R5CX123\tunauthorized\n")))
    r = cli.invoke(_app(), ["bench", "--device", "s24", "--export", str(tflite_export)])
    assert r.exit_code != 0 and "unauthorized" in r.output


def test_device_run_parses_the_phone_tools_output(tmp_path, monkeypatch, tflite_export):
    """With a (fake) phone: the commands run through adb and the numbers come from the tool's output."""
    monkeypatch.setenv("PATH", str(_fake_adb(tmp_path, "R5CX123\tdevice\n")))
    monkeypatch.chdir(tmp_path)
    tool = tmp_path / "android_aarch64_benchmark_model"
    tool.write_bytes(b"\x7fELF")
    r = cli.invoke(_app(), ["bench", "--device", "s24", "--export", str(tflite_export), "--targets", "cpu,gpu",
                            "--benchmark-tool", str(tool), "--runs", "10", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["device"]["soc"] == "SM8650" and rec["device"]["serial"] == "R5CX123"
    res = {x["target"]: x for x in rec["results"]}
    assert set(res) == {"litert-cpu", "litert-gpu"}
    assert res["litert-cpu"]["avg_ms"] == pytest.approx(50.9) and res["litert-gpu"]["avg_ms"] == pytest.approx(20.4)
    assert res["litert-cpu"]["median_ms"] == pytest.approx(50.2) and res["litert-cpu"]["runs"] == 10
    log = (tmp_path / "adb.log").read_text()
    assert f"-s R5CX123 push {tool}" in log and "--use_gpu=true" in log
    assert f"push {tflite_export / 'fused.tflite'}" in log and "--graph=/data/local/tmp/edgesr-bench/export_tflite_fused.tflite" in log


def test_dry_run_prints_the_exact_commands(tmp_path, tflite_export):
    q = tmp_path / "export_qnn"  # the layout `edgesr export --format qnn` writes
    q.mkdir()
    (q / "manifest.json").write_text(json.dumps({"format": "qnn", "scale": 4, "graphs": {"fused": {
        "file": "fused.qdq.onnx", "context": "fused.SM8650.ctx.onnx",
        "inputs": {"lr": [1, 3, 128, 128], "noise": [1, 16, 128, 128]}}}}))
    (q / "fused.SM8650.ctx.onnx").write_bytes(b"ctx")
    r = cli.invoke(_app(), ["bench", "--device", "s24", "--dry-run", "--export", str(tflite_export), "--export", str(q),
                            "--qnn-sdk", "/opt/qairt", "--runs", "20", "--warmup", "5"], env={"PATH": str(tmp_path)})
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "adb shell mkdir -p /data/local/tmp/edgesr-bench" in out
    assert "adb push /opt/qairt/lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so" in out  # S24 = SM8650 = HTP v75
    assert "# extract the QNN context binary embedded in fused.SM8650.ctx.onnx" in out
    assert "qnn-net-run --retrieve_context export_qnn_fused.bin --backend libQnnHtp.so" in out
    assert "--num_inferences 25" in out and "qnn-profile-viewer --input_log" in out
    assert "--graph=/data/local/tmp/edgesr-bench/export_tflite_fused.tflite" in out and "--num_runs=20" in out
    assert "--use_gpu=true" in out and "--use_nnapi=true" in out
    assert "benchmark-tool" in out  # the LiteRT tool path was not given: said so
    assert not (tmp_path / "edgesr-bench-android").exists()  # a dry run writes nothing


def test_context_binary_is_extracted_from_an_ep_context_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    blob = bytes(range(256)) * 4
    node = helper.make_node("EPContext", ["x"], ["y"], domain="com.microsoft", embed_mode=1, ep_cache_context=blob)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "fused.SM8650.ctx.onnx"
    onnx.save(helper.make_model(graph), str(path))
    out = A.extract_context_binary(path, tmp_path / "w" / "fused.bin")
    assert out.read_bytes() == blob
    (tmp_path / "bad.ctx.onnx").write_bytes(b"nope")
    with pytest.raises(A.BenchError):
        A.extract_context_binary(tmp_path / "bad.ctx.onnx", tmp_path / "w" / "bad.bin")


def test_dry_run_without_an_export_uses_placeholders():
    r = cli.invoke(_app(), ["bench", "--device", "s23", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "<export>/fused.tflite" in r.stdout and "libQnnHtpV73Skel.so" in r.stdout and "$QNN_SDK_ROOT" in r.stdout
    assert "placeholders" in r.stdout


def test_android_target_names():
    assert A.resolve_android_target("S24").soc == "SM8650"
    assert A.resolve_android_target("s23").soc == "SM8550"
    assert A.resolve_android_target("sm8650").hexagon == "v75"
    assert not A.is_android_target("cpu")
    with pytest.raises(A.BenchError):
        A.resolve_android_target("iphone")


# --------------------------------------------------------------------------- parsers (sample tool output)


BENCHMARK_MODEL_OUT = """\
INFO: STARTING!
INFO: Graph: [/data/local/tmp/edgesr-bench/fused.tflite]
INFO: Num threads: [4]
INFO: Created TensorFlow Lite delegate for GPU.
INFO: Replacing 212 out of 215 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.
INFO: The input model file size (MB): 3.21
INFO: Initialized session in 812.4ms.
INFO: Running benchmark for at least 3 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 first=61234 curr=40012 min=40012 max=61234 avg=47000.3 std=9800

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=39876 curr=38754 min=37112 max=44567 avg=38901.2 std=1203 p5=37302 median=38650 p95=41234

INFO: Inference timings in us: Init: 812400, First inference: 61234, Warmup (avg): 47000.3, Inference (avg): 38901.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE.
INFO: Memory footprint delta from the start of the tool (MB): init=40.1 overall=95.5
INFO: Overall peak memory footprint (MB) via periodic monitoring: 120.75
"""

QNN_PROFILE_OUT = """\
Input Log File Location: out_fused_ctx/qnn-profiling-data_0.log
Log File Created: Mon Nov 24 10:00:00 2026
Time Scale: 1e-06

Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:
------------------------------------------------------------
Init Stats:
-----------
    NetRun: 251032 us

Compose Graphs Stats:
--------------
    NetRun: 93 us

Finalize Stats:
---------------
Graph 0 (fused):
    NetRun: 12 us

De-Init Stats:
--------------
    NetRun: 20451 us
    Backend (RPC (deinit) time): 1100 us

Execute Stats (Overall):
------------------------
    NetRun IPS (includes IO and misc. time): 41.7731 inf/sec

Execute Stats (Average):
------------------------
Total Inference Time:
---------------------
Graph 0 (fused):
    NetRun: 23412 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 23001 us
    Backend (QNN accelerator (execute) time): 22280 us
    Backend (Accelerator (execute) time): 21950 us

Execute Stats (Min):
------------------------
Total Inference Time:
---------------------
Graph 0 (fused):
    NetRun: 22803 us
    Backend (Accelerator (execute) time): 21604 us

Execute Stats (Max):
------------------------
Total Inference Time:
---------------------
Graph 0 (fused):
    NetRun: 26577 us
    Backend (Accelerator (execute) time): 22890 us
"""


def test_parse_benchmark_model():
    p = A.parse_benchmark_model(BENCHMARK_MODEL_OUT)
    assert p["runs"] == 50  # the timed runs, not the warm-up line
    assert p["avg_ms"] == pytest.approx(38.9012) and p["median_ms"] == pytest.approx(38.65)
    assert p["min_ms"] == pytest.approx(37.112) and p["max_ms"] == pytest.approx(44.567)
    assert p["std_ms"] == pytest.approx(1.203) and p["p95_ms"] == pytest.approx(41.234)
    assert p["init_ms"] == pytest.approx(812.4) and p["first_inference_ms"] == pytest.approx(61.234)
    assert p["peak_memory_mb"] == pytest.approx(120.75) and p["memory_delta_mb"] == pytest.approx(95.5)
    assert p["delegated_nodes"] == "212/215"
    older = "count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798\n" \
            "Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06\n"
    assert A.parse_benchmark_model(older)["avg_ms"] == pytest.approx(2950.34)
    with pytest.raises(A.BenchError):
        A.parse_benchmark_model("ERROR: Could not open 'x.tflite'.\n")


def test_parse_qnn_profile():
    p = A.parse_qnn_profile(QNN_PROFILE_OUT)
    assert p["avg_ms"] == pytest.approx(23.412) and p["min_ms"] == pytest.approx(22.803)
    assert p["max_ms"] == pytest.approx(26.577)
    assert p["accelerator_avg_ms"] == pytest.approx(21.95) and p["qnn_accelerator_avg_ms"] == pytest.approx(22.28)
    assert p["hvx_threads"] == 4 and p["init_ms"] == pytest.approx(251.032)
    assert p["inferences_per_s"] == pytest.approx(41.7731)
    with pytest.raises(A.BenchError):
        A.parse_qnn_profile("qnn-profile-viewer: failed to open log\n")


def test_parse_adb_devices():
    text = "* daemon started successfully\nList of devices attached\nR5CX123\tdevice\nemulator-5554\toffline\n\n"
    assert A.parse_adb_devices(text) == [("R5CX123", "device"), ("emulator-5554", "offline")]
    assert A.parse_adb_devices("List of devices attached\n\n") == []
