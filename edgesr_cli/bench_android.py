"""`edgesr bench --device s24` (any Android target): the phone driver. The exported graphs are pushed with adb and
timed by the platform's own tools (LiteRT's benchmark_model, QNN's qnn-net-run and qnn-profile-viewer), whose
output is parsed here, never estimated; `--dry-run` prints the exact commands. Local timing is bench.py's."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


class BenchError(ValueError):
    """A benchmark that cannot run as asked; the message (one line) says what is needed."""


@dataclass(frozen=True)
class AndroidTarget:
    key: str
    name: str
    soc: str  # Qualcomm part number
    hexagon: str | None  # HTP architecture (vNN) of the SoC, for the QNN skel library


_SOCS = {  # Qualcomm part -> (marketing name, Hexagon HTP arch)
    "SM8750": ("Snapdragon 8 Elite", "v79"),
    "SM8650": ("Snapdragon 8 Gen 3", "v75"),
    "SM8550": ("Snapdragon 8 Gen 2", "v73"),
    "SM8475": ("Snapdragon 8+ Gen 1", "v69"),
    "SM8450": ("Snapdragon 8 Gen 1", "v69"),
    "SM7675": ("Snapdragon 7+ Gen 3", "v73"),
}

ANDROID_TARGETS: dict[str, AndroidTarget] = {
    "s25": AndroidTarget("s25", "Samsung Galaxy S25 (Snapdragon 8 Elite for Galaxy)", "SM8750", "v79"),
    "s24": AndroidTarget("s24", "Samsung Galaxy S24 / S24 Ultra, Snapdragon 8 Gen 3 variant", "SM8650", "v75"),
    "s23": AndroidTarget("s23", "Samsung Galaxy S23 (Snapdragon 8 Gen 2 for Galaxy)", "SM8550", "v73"),
    "s22": AndroidTarget("s22", "Samsung Galaxy S22, Snapdragon 8 Gen 1 variant", "SM8450", "v69"),
}
ANDROID_TARGETS.update({soc.lower(): AndroidTarget(soc.lower(), f"{n} ({soc})", soc, h) for soc, (n, h) in _SOCS.items()})
ANDROID_TARGETS["android"] = AndroidTarget("android", "any Android device (SoC read from the phone)", "", None)

LOCAL_DEVICES = ("auto", "cpu", "cuda")


def is_android_target(name: str) -> bool:
    return name.lower() in ANDROID_TARGETS


def resolve_android_target(name: str) -> AndroidTarget:
    t = ANDROID_TARGETS.get(name.lower())
    if t is None:
        known = ", ".join(sorted(k for k in ANDROID_TARGETS if not k.startswith("sm")))
        raise BenchError(f"--device {name}: unknown; use {', '.join(LOCAL_DEVICES)} for this machine, or an "
                         f"Android target: {known} or a Qualcomm SoC ({', '.join(sorted(_SOCS))})")
    return t


def parse_adb_devices(text: str) -> list[tuple[str, str]]:
    """`adb devices` output -> [(serial, state)], state 'device' meaning ready."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0], parts[1]))
    return out


_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def parse_benchmark_model(text: str) -> dict:
    """LiteRT/TFLite `benchmark_model` output -> timings in ms and memory in MB (what the tool measured).

    Uses the last `count=... avg=... std=...` line (the timed runs; the first is the warm-up) and the
    `Inference timings in us:` summary. Raises BenchError when the output holds no timings.
    """
    lines = text.replace("\r", "").splitlines()
    rows = []
    for line in lines:
        if "count=" in line and "avg=" in line:
            kv = dict(re.findall(r"(\w+)=" + _NUM, line))
            rows.append({k: float(v) for k, v in kv.items()})
    summary = re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM +
                        r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, text)
    if not rows and not summary:
        raise BenchError("benchmark_model printed no timings (see its output above)")
    out: dict = {"tool": "benchmark_model"}
    if rows:
        r = rows[-1]
        out["runs"] = int(r.get("count", 0))
        for k in ("avg", "std", "min", "max", "median", "p5", "p95", "first"):
            if k in r:
                out[f"{k}_ms"] = r[k] / 1e3
    if summary:
        init, first, warm, avg = (float(v) for v in summary.groups())
        out.update(init_ms=init / 1e3, first_inference_ms=first / 1e3, warmup_avg_ms=warm / 1e3)
        out.setdefault("avg_ms", avg / 1e3)
    m = re.search(r"Peak memory footprint \(MB\): init=" + _NUM + r" overall=" + _NUM, text)
    if m:
        out["peak_memory_mb"] = float(m.group(2))
    m = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, text)
    if m:
        out["peak_memory_mb"] = float(m.group(1))
    m = re.search(r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUM + r" overall=" + _NUM, text)
    if m:
        out["memory_delta_mb"] = float(m.group(2))
    m = re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate", text)
    if m:
        out["delegated_nodes"] = f"{m.group(1)}/{m.group(2)}"
    if "will not be executed by the delegate" in text or re.search(r"Failed to (apply|create) .*delegate", text):
        out["warning"] = "the delegate declined (part of) the graph: those ops ran on the CPU"
    return out


def parse_qnn_profile(text: str) -> dict:
    """`qnn-profile-viewer` output (of a qnn-net-run --profiling_level basic log) -> timings in ms.

    Reads the 'Execute Stats (Average)' block (NetRun = the whole execute call on the phone, Accelerator
    = time on the HTP), Min/Max when present, Init, HVX threads and inferences per second."""
    t = text.replace("\r", "")

    def block(title: str) -> str | None:
        m = re.search(re.escape(title) + r"(.*?)(?=\n\S[^\n]*Stats[^\n]*:|\Z)", t, re.S)
        return m.group(1) if m else None

    out: dict = {"tool": "qnn-net-run + qnn-profile-viewer"}
    for label, title in (("avg", "Execute Stats (Average):"), ("min", "Execute Stats (Min):"),
                         ("max", "Execute Stats (Max):")):
        b = block(title)
        if b is None:
            continue
        m = re.search(r"NetRun:\s*" + _NUM + r"\s*us", b)
        if m:
            out[f"{label}_ms"] = float(m.group(1)) / 1e3
        m = re.search(r"Backend \(Accelerator \(execute\) time\):\s*" + _NUM + r"\s*us", b)
        if m:
            out[f"accelerator_{label}_ms"] = float(m.group(1)) / 1e3
        m = re.search(r"Backend \(QNN accelerator \(execute\) time\):\s*" + _NUM + r"\s*us", b)
        if m:
            out[f"qnn_accelerator_{label}_ms"] = float(m.group(1)) / 1e3
        m = re.search(r"Number of HVX threads used\):\s*(\d+)", b)
        if m:
            out["hvx_threads"] = int(m.group(1))
    if "avg_ms" not in out:
        raise BenchError("qnn-profile-viewer printed no 'Execute Stats (Average)' NetRun time")
    m = re.search(r"Init Stats:\s*-*\s*NetRun:\s*" + _NUM + r"\s*us", t)
    if m:
        out["init_ms"] = float(m.group(1)) / 1e3
    m = re.search(r"NetRun IPS[^:]*:\s*" + _NUM, t)
    if m:
        out["inferences_per_s"] = float(m.group(1))
    return out


@dataclass
class AndroidStep:
    kind: str  # "host" (runs here), "adb", "run" (timed benchmark on the phone), "prep"/"extract" (Python, here)
    argv: list[str]
    what: str = ""
    parse: str | None = None  # "benchmark_model" | "qnn_profile"
    graph: str = ""
    target: str = ""  # qnn-htp | litert-cpu | litert-gpu | litert-nnapi
    data: dict = field(default_factory=dict)

    def shell(self) -> str:
        if self.kind == "prep":
            return f"# write {self.what} into {self.argv[0]}/ (input_list.txt names {self.data.get('remote')}/in<N>.raw)"
        if self.kind == "extract":
            return f"# extract {self.what} into {self.argv[1]}"
        return " ".join(a if a.startswith("$") else shlex.quote(a) for a in self.argv)


@dataclass
class AndroidPlan:
    target: AndroidTarget
    steps: list[AndroidStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    local_files: dict[str, bytes] = field(default_factory=dict)  # files to write in the work dir before running


@dataclass(frozen=True)
class PhoneGraph:
    """One graph to run on the phone: a .tflite (LiteRT) or a QNN context (raw .bin, or the EP-context
    .onnx that `edgesr export --format qnn` writes, with the binary embedded)."""

    name: str  # fused | encoder | denoise | decoder (or the file stem)
    kind: str  # tflite | qnn
    path: Path
    inputs: tuple[tuple[str, tuple[int, ...]], ...] | None = None  # batch 1, from the manifest

    @property
    def stem(self) -> str:
        return f"{self.path.parent.name}_{self.name}".replace(" ", "_")


def _shape(v) -> tuple[int, ...]:
    return tuple(1 if isinstance(x, str) else int(x) for x in v)  # 'B' (dynamic batch) -> 1


def export_graphs(export_dirs: Sequence[Path]) -> list[PhoneGraph]:
    """The phone-runnable graphs of exported folders: from each manifest (`edgesr export`), else by file type."""
    out: list[PhoneGraph] = []
    for d in export_dirs:
        d = Path(d)
        if not d.is_dir():
            raise BenchError(f"{d}: not an exported model folder (from `edgesr export`)")
        man = d / "manifest.json"
        manifest = None
        if man.is_file():
            try:
                manifest = json.loads(man.read_text())
            except (OSError, ValueError) as exc:
                raise BenchError(f"{man}: unreadable manifest ({exc})") from None
        if isinstance(manifest, dict) and isinstance(manifest.get("graphs"), dict):
            fmt = str(manifest.get("format"))
            for name, g in manifest["graphs"].items():
                ins = g.get("inputs")
                inputs = tuple((str(k), _shape(v)) for k, v in ins.items()) if isinstance(ins, dict) else None
                if fmt == "tflite" and g.get("file"):
                    out.append(PhoneGraph(name, "tflite", d / g["file"], inputs))
                elif fmt == "qnn" and (g.get("context") or g.get("file")):
                    out.append(PhoneGraph(name, "qnn", d / (g.get("context") or g["file"]), inputs))
            continue
        out += [PhoneGraph(p.stem, "tflite", p) for p in sorted(d.rglob("*.tflite"))]
        out += [PhoneGraph(p.name.split(".")[0], "qnn", p) for p in sorted(d.rglob("*.bin"))
                if "ctx" in p.name.lower() or "context" in p.name.lower()]
        out += [PhoneGraph(p.name.split(".")[0], "qnn", p) for p in sorted(d.rglob("*.ctx.onnx"))]
    return out


def extract_context_binary(ctx_onnx: Path, out_bin: Path) -> Path:
    """The QNN context binary inside an ONNX Runtime EP-context model (EPContext node, ep_cache_context:
    the bytes with embed_mode 1, a file name beside the model with embed_mode 0) -> out_bin."""
    import onnx

    try:
        model = onnx.load(str(ctx_onnx), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same problem for the user
        raise BenchError(f"{ctx_onnx}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    for node in model.graph.node:
        if node.op_type != "EPContext":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "ep_cache_context" not in attrs:
            continue
        data = attrs["ep_cache_context"].s
        embed = attrs["embed_mode"].i if "embed_mode" in attrs else 1
        if embed == 0:
            src = Path(ctx_onnx).parent / data.decode()
            if not src.is_file():
                raise BenchError(f"{ctx_onnx}: its context binary {src.name} is missing")
            data = src.read_bytes()
        out_bin.parent.mkdir(parents=True, exist_ok=True)
        out_bin.write_bytes(data)
        return out_bin
    raise BenchError(f"{ctx_onnx}: no EPContext node with a context binary (export with --format qnn --soc ...)")


ADB_DIR = "/data/local/tmp/edgesr-bench"


def plan_android(target: AndroidTarget, export_dirs: Sequence[Path], *, targets: Sequence[str] = ("htp", "cpu", "gpu", "nnapi"),
                 adb: str = "adb", serial: str | None = None, qnn_sdk: str | None = None,
                 benchmark_tool: str | None = None, threads: int = 4, warmup: int = 3, runs: int = 20,
                 work_dir: Path = Path("edgesr-bench-android"), soc: str | None = None) -> AndroidPlan:
    """The exact commands: push the runtime and the exported graphs, run the platform's benchmark tool
    per graph and per target, pull/parse its report. Placeholders ($QNN_SDK_ROOT, <...>) appear only where
    the user has not given the path (dry run). Steps of kind "prep"/"extract" run in Python here."""
    plan = AndroidPlan(target)
    base = [adb] + (["-s", serial] if serial else [])
    R = ADB_DIR
    soc = (soc or target.soc or "").upper()
    hexv = target.hexagon or (_SOCS.get(soc, (None, None))[1])
    graphs = export_graphs(export_dirs) if export_dirs else []
    if not export_dirs:
        plan.notes.append("no exported model given (--export DIR): <export>/... below are placeholders; "
                          "make one with `edgesr export --format tflite` and `--format qnn --soc "
                          f"{soc or 'SM8650'}`")
        graphs = [PhoneGraph("fused", "tflite", Path("<export>/fused.tflite")),
                  PhoneGraph("fused", "qnn", Path("<export>/fused.bin"))]
    tfl = [g for g in graphs if g.kind == "tflite"]
    ctx = [g for g in graphs if g.kind == "qnn"]
    sdk = qnn_sdk or "$QNN_SDK_ROOT"
    tool = benchmark_tool or "<android_aarch64_benchmark_model>"
    plan.steps.append(AndroidStep("adb", base + ["shell", "mkdir", "-p", R], "work folder on the phone"))

    lite = [t for t in targets if t in ("cpu", "gpu", "nnapi")]
    if lite and tfl:
        if benchmark_tool is None:
            plan.notes.append("LiteRT: give --benchmark-tool PATH (the android_aarch64 `benchmark_model` binary "
                              "from the LiteRT/TensorFlow Lite releases)")
        plan.steps.append(AndroidStep("adb", base + ["push", tool, f"{R}/benchmark_model"], "LiteRT benchmark tool"))
        plan.steps.append(AndroidStep("adb", base + ["shell", "chmod", "755", f"{R}/benchmark_model"]))
        for g in tfl:
            plan.steps.append(AndroidStep("adb", base + ["push", str(g.path), f"{R}/{g.stem}.tflite"], f"graph {g.name}"))
        for t in lite:
            flag = {"cpu": [], "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"]}[t]
            for g in tfl:
                cmd = (f"{R}/benchmark_model --graph={R}/{g.stem}.tflite --num_threads={threads} "
                       f"--warmup_runs={warmup} --num_runs={runs} " + " ".join(flag)).strip()
                plan.steps.append(AndroidStep("run", base + ["shell", cmd], f"LiteRT {t}: {g.name}",
                                              parse="benchmark_model", graph=g.name, target=f"litert-{t}"))
    elif lite:
        plan.notes.append("LiteRT skipped: no .tflite in the exported folders (export with --format tflite)")
    if "htp" in targets and ctx and not hexv:
        plan.notes.append(f"HTP skipped: unknown Hexagon version for SoC {soc or '?'}")
    elif "htp" in targets and ctx:
        if qnn_sdk is None:
            plan.notes.append("QNN: set QNN_SDK_ROOT or give --qnn-sdk DIR (Qualcomm AI Engine Direct SDK)")
        V = hexv.upper()
        libs = [f"{sdk}/lib/aarch64-android/{n}" for n in
                ("libQnnHtp.so", f"libQnnHtp{V}Stub.so", "libQnnSystem.so", "libQnnHtpNetRunExtensions.so")]
        libs.append(f"{sdk}/lib/hexagon-{hexv}/unsigned/libQnnHtp{V}Skel.so")
        plan.steps.append(AndroidStep("adb", base + ["push", f"{sdk}/bin/aarch64-android/qnn-net-run", f"{R}/"],
                                      "QNN runner"))
        for lib in libs:
            plan.steps.append(AndroidStep("adb", base + ["push", lib, f"{R}/"]))
        plan.steps.append(AndroidStep("adb", base + ["shell", "chmod", "755", f"{R}/qnn-net-run"]))
        ext = {"devices": [{"soc_model": soc, "dsp_arch": hexv,
                            "cores": [{"perf_profile": "burst", "rpc_control_latency": 100}]}]}
        cfg = {"backend_extensions": {"shared_library_path": "libQnnHtpNetRunExtensions.so",
                                      "config_file_path": f"{R}/htp_ext.json"}}
        plan.local_files["htp_ext.json"] = (json.dumps(ext) + "\n").encode()
        plan.local_files["htp_config.json"] = (json.dumps(cfg) + "\n").encode()
        for name in ("htp_ext.json", "htp_config.json"):
            plan.steps.append(AndroidStep("adb", base + ["push", str(work_dir / name), f"{R}/{name}"]))
        for g in ctx:
            stem = g.stem
            binf = g.path
            if g.path.suffix == ".onnx":
                binf = work_dir / f"{stem}.bin"
                plan.steps.append(AndroidStep("extract", [str(g.path), str(binf)],
                                              f"the QNN context binary embedded in {g.path.name} (EPContext node)",
                                              graph=g.name))
            plan.steps.append(AndroidStep("adb", base + ["push", str(binf), f"{R}/{stem}.bin"], f"context binary {g.name}"))
            info = work_dir / f"{stem}_info.json"
            if g.inputs is None:
                plan.steps.append(AndroidStep("host", [f"{sdk}/bin/x86_64-linux-clang/qnn-context-binary-utility",
                                                       "--context_binary", str(binf), "--json_file", str(info)],
                                              f"read the input shapes of {g.name}", graph=g.name))
            inputs_dir = work_dir / f"{stem}_inputs"
            plan.steps.append(AndroidStep("prep", [str(inputs_dir)], f"random float32 inputs for {g.name}, shapes "
                                          + ("from the manifest" if g.inputs else f"from {info.name}"),
                                          graph=g.name, data={"shapes": [list(x) for x in g.inputs] if g.inputs else None,
                                                              "info": str(info), "remote": f"{R}/{stem}_inputs"}))
            plan.steps.append(AndroidStep("adb", base + ["push", str(inputs_dir), f"{R}/"]))
            run = (f"cd {R} && LD_LIBRARY_PATH={R} ADSP_LIBRARY_PATH={R} ./qnn-net-run "
                   f"--retrieve_context {stem}.bin --backend libQnnHtp.so --input_list {stem}_inputs/input_list.txt "
                   f"--output_dir out_{stem} --profiling_level basic --num_inferences {warmup + runs} "
                   f"--config_file htp_config.json")
            plan.steps.append(AndroidStep("adb", base + ["shell", f"rm -rf {R}/out_{stem}"]))
            plan.steps.append(AndroidStep("run", base + ["shell", run], f"QNN HTP: {g.name}", graph=g.name,
                                          target="qnn-htp"))
            log = work_dir / f"{stem}_profile.log"
            plan.steps.append(AndroidStep("adb", base + ["pull", f"{R}/out_{stem}/qnn-profiling-data_0.log", str(log)]))
            plan.steps.append(AndroidStep("host", [f"{sdk}/bin/x86_64-linux-clang/qnn-profile-viewer",
                                                   "--input_log", str(log)], f"QNN profile of {g.name}",
                                          parse="qnn_profile", graph=g.name, target="qnn-htp"))
        plan.notes.append("QNN: the HTP times average every inference of the run, warm-up included "
                          f"({warmup} + {runs}); NetRun is the whole execute call, Accelerator the HTP part")
    elif "htp" in targets:
        plan.notes.append("HTP skipped: no QNN context in the exported folders (export with --format qnn --soc "
                          f"{soc or 'SM8650'})")
    return plan


def _check_tools(plan: AndroidPlan, work_dir: Path) -> None:
    made = {str(Path(st.argv[1])) for st in plan.steps if st.kind == "extract"} | \
        {str(Path(st.argv[0])) for st in plan.steps if st.kind == "prep"} | \
        {str(work_dir / n) for n in plan.local_files}

    def produced(src: str) -> bool:
        return str(Path(src)) in made

    missing = []
    for step in plan.steps:
        if step.kind == "host" and not Path(step.argv[0]).is_file():
            missing.append(step.argv[0])
        if step.kind == "adb" and "push" in step.argv:
            src = step.argv[step.argv.index("push") + 1]
            if src.startswith("<") or "$" in src or not (Path(src).exists() or produced(src)):
                missing.append(src)
    if missing:
        raise BenchError(f"missing on this machine: {', '.join(dict.fromkeys(missing))}")


def _context_inputs(info_json: Path) -> list[tuple[str, list[int]]]:
    """Graph input names and shapes from `qnn-context-binary-utility --json_file` output."""
    try:
        data = json.loads(Path(info_json).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{info_json}: cannot read the context binary description ({exc})") from None
    found: list[tuple[str, list[int]]] = []

    def walk(o) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "graphInputs" and isinstance(v, list) and not found:
                    for item in v:
                        inf = item.get("info", item) if isinstance(item, dict) else {}
                        dims = inf.get("dimensions") or inf.get("currentDimensions")
                        if dims:
                            found.append((str(inf.get("name", f"in{len(found)}")), [int(x) for x in dims]))
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(data)
    if not found:
        raise BenchError(f"{info_json}: no graph inputs found in the context binary description")
    return found


def _write_inputs(step: AndroidStep) -> None:
    shapes = step.data.get("shapes") or _context_inputs(Path(step.data["info"]))
    d = Path(step.argv[0])
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for j, (name, shape) in enumerate(shapes):
        (d / f"in{j}.raw").write_bytes(rng.random(int(np.prod(shape)), dtype=np.float32).tobytes())
        names.append(f"{name}:={step.data['remote']}/in{j}.raw")
    (d / "input_list.txt").write_text(" ".join(names) + "\n")


def run_android(plan: AndroidPlan, adb: str, work_dir: Path, echo: Callable[[str], None] | None = None,
                timeout: float = 900.0) -> list[dict]:
    """Run the plan's commands; return one record per benchmark (tool output parsed, never estimated)."""
    say = echo or (lambda _m: None)
    _check_tools(plan, work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, data in plan.local_files.items():
        (work_dir / name).write_bytes(data)
    results = []
    for step in plan.steps:
        say(step.shell())
        if step.kind == "prep":
            _write_inputs(step)
            continue
        if step.kind == "extract":
            extract_context_binary(Path(step.argv[0]), Path(step.argv[1]))
            continue
        try:
            proc = subprocess.run(step.argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"`{step.shell()}` failed: {exc}") from None
        text = (proc.stdout or "") + (proc.stderr or "")
        if proc.returncode != 0:
            if step.kind == "run" or step.parse:
                results.append({"target": step.target, "graph": step.graph, "status": "failed",
                                "error": text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}",
                                "command": step.shell()})
                continue
            raise BenchError(f"`{step.shell()}` exited {proc.returncode}: "
                             f"{text.strip().splitlines()[-1] if text.strip() else ''}")
        if step.parse:
            try:
                parsed = parse_benchmark_model(text) if step.parse == "benchmark_model" else parse_qnn_profile(text)
                results.append({"target": step.target, "graph": step.graph, "status": "ok", **parsed,
                                "command": step.shell()})
            except BenchError as exc:
                results.append({"target": step.target, "graph": step.graph, "status": "failed", "error": str(exc),
                                "output_tail": text[-2000:], "command": step.shell()})
    return results


def adb_device_info(adb: str, serial: str | None) -> dict:
    base = [adb] + (["-s", serial] if serial else [])
    out = {}
    for key, prop in (("model", "ro.product.model"), ("soc", "ro.soc.model"), ("android", "ro.build.version.release"),
                      ("board", "ro.board.platform")):
        try:
            r = subprocess.run(base + ["shell", "getprop", prop], capture_output=True, text=True, timeout=20)
            out[key] = r.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            out[key] = None
    return out


def find_adb_device(target: AndroidTarget, adb_path: str | None, serial: str | None, need: str) -> tuple[str, str]:
    """(adb, serial) of a ready device, or BenchError with one line saying what is needed."""
    adb = adb_path or shutil.which("adb")
    if not adb:
        raise BenchError(f"{need}; `adb` is not on PATH")
    try:
        r = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{need}; `{adb} devices` failed: {exc}") from None
    devs = parse_adb_devices(r.stdout)
    ready = [s for s, st in devs if st == "device"]
    if serial:
        if serial not in ready:
            state = dict(devs).get(serial, "not connected")
            raise BenchError(f"{need}; device {serial} is {state}")
        return adb, serial
    if not ready:
        if devs:
            states = ", ".join(f"{s} {st}" for s, st in devs)
            raise BenchError(f"{need}; no device ready ({states}: accept the USB debugging prompt on the phone)")
        raise BenchError(f"{need}; `adb devices` lists no device")
    if len(ready) > 1:
        raise BenchError(f"several devices connected ({', '.join(ready)}): choose one with --serial")
    return adb, ready[0]
