"""The inference wing (issue 29): one resolution point (runtime/resolve.py) behind `edgesr upscale`, eval, bench and
the Python API; plugin backends chosen by name; no import circle anywhere in the package; and `edgesr upscale`'s
bytes checked, on every installed runtime, against the same photo run through the low-level pieces by hand."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.defaults import DEFAULT_TILE
from edgesr_cli.modeldir import default_model_dir
from edgesr_cli.runtime.resolve import resolve

ROOT = Path(__file__).resolve().parent.parent


# ---- no import circle -------------------------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    """Every module of the package: edgesr_cli/ and backends/ (installed as edgesr_cli.backends)."""
    out = {}
    for folder, package in ((ROOT / "edgesr_cli", "edgesr_cli"), (ROOT / "backends", "edgesr_cli.backends")):
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports anywhere in its source: at the top, inside functions, under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[:len(name.split(".")) - node.level + (path.name == "__init__.py")]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c`: the longest prefix that is a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_the_package_has_no_import_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circle = path[path.index(n):] + [n]
                pytest.fail("import circle: " + " -> ".join(circle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


# ---- one resolution point ---------------------------------------------------------------------------------------------


def _export(tmp_path: Path, tiny_model_dir: Path, tile: int = 32) -> Path:
    """A manifest-only export of the tiny model (resolve reads manifests; nothing here loads it)."""
    d = tmp_path / "export"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({
        "edgesr_export": 1, "format": "onnx", "scale": 4, "batch": "dynamic", "graphs": {"fused": {"file": "f.onnx"}},
        "tile": {"lr": [tile, tile], "latent": [tile, tile], "hr": [4 * tile, 4 * tile], "lr_multiple": 2},
        "model": {"config": json.loads((tiny_model_dir / "config.json").read_text())}, "files": {}}))
    return d


def test_tile_means_the_same_everywhere(tmp_path, tiny_model_dir):
    export = _export(tmp_path, tiny_model_dir)
    assert resolve(export, "onnx").tile == 32  # an export's own static tile
    assert resolve(export, "onnx", tile=16).tile == 16  # a smaller one is padded up to it
    with pytest.raises(ValueError, match="--tile 64: this exported model runs tiles of at most 32 LR pixels"):
        resolve(export, "onnx", tile=64)
    r = resolve(tiny_model_dir, "torch")
    assert (r.tile, r.scale, r.lr_multiple, r.folder, r.detail) == (DEFAULT_TILE, 4, 2, tiny_model_dir, None)
    with pytest.raises(ValueError, match="--tile 33: must be a multiple of 2 for this model"):
        resolve(tiny_model_dir, "torch", tile=33)
    with pytest.raises(ValueError, match="--scale 2: the model"):
        resolve(tiny_model_dir, "torch", scale=2)


def test_the_config_states_the_models_lr_multiple():
    import dataclasses

    import torch

    from edgesr_cli.config import PRESETS, get_preset
    from edgesr_cli.model import EdgeSR

    with torch.device("meta"):
        for name in PRESETS:
            for scale in (2, 4, 8):
                cfg = dataclasses.replace(get_preset(name), scale=scale)
                assert cfg.lr_multiple() == EdgeSR(cfg).lr_multiple, (name, scale)


def test_bench_keeps_an_explicit_tile(tiny_model_dir):
    r = CliRunner().invoke(app, ["bench", "--model", str(tiny_model_dir), "--tile", "16", "--size", "16", "--threads",
                                 "1", "--warmup", "0", "--runs", "1", "--image-runs", "1", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["settings"]["tile"] == 16 and rec["results"][0]["tile"]["lr"] == [16, 16]


def test_manifest_and_detail_files_are_read_once(tmp_path, monkeypatch):
    """`edgesr upscale` on the shipped model: its export's manifest.json and the model's detail.json are each read
    at most once (by the resolver, which hands them on; a given --detail needs no detail.json: only its default)."""
    reads: list[str] = []
    read_text = Path.read_text

    def counted(self, *args, **kwargs):
        if self.name in ("manifest.json", "detail.json"):
            reads.append(self.name)
        return read_text(self, *args, **kwargs)

    Image.fromarray(np.full((20, 28, 3), 128, np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(Path, "read_text", counted)
    for backend, detail, expect in (("onnx", ["--detail", "0"], ["manifest.json"]), ("onnx", [], ["manifest.json"]),
                                    ("torch", ["--detail", "0.3"], []), ("torch", [], ["detail.json"])):
        reads.clear()
        r = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--overwrite",
                                     "--backend", backend, "--threads", "1", "-q", *detail])
        assert r.exit_code == 0, r.output
        assert sorted(reads) == sorted(expect), (detail, reads)


# ---- plugin backends ---------------------------------------------------------------------------------------------------

PLUGIN = '''
"""A plugin backend for edgesr's tests: nearest-neighbour x scale, registered through the edgesr.backends entry point."""
import numpy as np

from edgesr_cli.backends.base import BackendSpec
from edgesr_cli.modeldir import read_config
from edgesr_cli.runtime.schedule import SamplingSchedule

CALLS = []


class Nearest:
    name = "nearest-test"

    def __init__(self, cfg):
        self.scale, self.latent_factor, self.latent_channels = cfg.scale, cfg.latent_factor, cfg.latent_channels
        self.lr_multiple, self.conditioning = cfg.lr_multiple(), cfg.conditioning
        self.schedule = SamplingSchedule(cfg.schedule)

    def fused_one_step(self, lr, noise):
        CALLS.append(lr.shape)
        return np.repeat(np.repeat(lr, self.scale, axis=2), self.scale, axis=3)

    def encode(self, lr):
        raise NotImplementedError

    denoise = decode = encode


def spec():
    return BackendSpec("nearest-test", "edgesr_test_plugin:load", "", "test plugin: nearest neighbour", 50)


def load(folder, detail=None, **options):
    return Nearest(read_config(folder))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A test package installed on sys.path with a dist-info whose entry point registers the `nearest-test` backend."""
    site = tmp_path / "site"
    info = site / "edgesr_test_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "edgesr_test_plugin.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgesr-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[edgesr.backends]\nnearest-test = edgesr_test_plugin:spec\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("edgesr_test_plugin", None)


def test_a_plugin_backend_is_chosen_by_name_and_runs_the_tiling_engine(plugin, tiny_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    pixels = (rng.random((40, 300, 3)) * 255).astype(np.uint8)  # wider than a tile: several tiles, blended
    Image.fromarray(pixels).save(tmp_path / "a.png")
    r = CliRunner().invoke(app, ["backends", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["nearest-test"]["usable"] is True
    r = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-m",
                                 str(tiny_model_dir), "--backend", "nearest-test", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["backend"] == "nearest-test"
    calls = sys.modules["edgesr_test_plugin"].CALLS
    assert sum(shape[0] for shape in calls) == 3 and all(shape[-2:] == (DEFAULT_TILE, DEFAULT_TILE) for shape in calls)  # its tiles
    out = np.asarray(Image.open(tmp_path / "b.png")).astype(int)
    nearest = np.repeat(np.repeat(pixels, 4, axis=0), 4, axis=1).astype(int)
    assert out.shape == nearest.shape and np.abs(out - nearest).max() <= 1
    r = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "--backend", "nope-test"])
    assert r.exit_code == 2 and "--backend" in r.output and "nearest-test" in r.output


# ---- the Python API -----------------------------------------------------------------------------------------------------


def test_import_edgesr_cli_stays_light():
    code = ("import sys, edgesr_cli\nheavy = lambda: sorted(m for m in ('numpy', 'PIL', 'torch', 'typer') "
            "if m in sys.modules)\nprint(heavy())\nedgesr_cli.load\nprint('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True"]


def test_api_images_and_arrays(tiny_model_dir):
    import edgesr_cli

    up = edgesr_cli.load(tiny_model_dir, backend="torch", dtype="fp32", threads=1)
    assert up.resolved.backend == "torch" and up.scale == 4
    rng = np.random.default_rng(1)
    rgba = (rng.random((20, 24, 4)) * 255).astype(np.uint8)
    for mode, image in (("RGB", rgba[..., :3]), ("RGBA", rgba), ("L", rgba[..., 0]), ("LA", rgba[..., :2])):
        out = up.upscale(Image.fromarray(image))
        assert out.mode == mode and out.size == (96, 80), mode
        arr = up.upscale(image)
        assert arr.dtype == np.uint8 and arr.shape == (80, 96, *image.shape[2:]), mode
        assert np.array_equal(np.asarray(out), arr), mode
    alpha = up.upscale(rgba)[..., 3]
    assert alpha.min() < 64 and alpha.max() > 192  # the alpha plane, upscaled (bicubic), kept
    deep = up.upscale((rng.random((20, 24)) * 65535).astype(np.uint16))
    assert deep.dtype == np.uint16 and deep.shape == (80, 96) and len(np.unique(deep)) > 256
    f = up.upscale(rgba[..., :3] / np.float32(255))
    assert f.dtype == np.float32 and f.shape == (80, 96, 3) and 0 <= f.min() and f.max() <= 1
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        up.upscale(rgba.astype(np.int32))


# ---- the CLI's bytes against the low-level pieces, on every installed runtime -------------------------------------------

REFERENCE = r'''
import hashlib, json, sys
from pathlib import Path

import numpy as np
from PIL import Image

import edgesr_cli
from edgesr_cli.defaults import DEFAULT_COMPRESS_LEVEL
from edgesr_cli.io import encode_image, read_image, stored_dtype
from edgesr_cli.modeldir import default_model_dir
from edgesr_cli.runtime.upscale import UpscaleOptions, upscale_photo

backend, src, details = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
model = default_model_dir()


def runner(detail, deep):
    """The backend's own loader on the folder, as `edgesr upscale --backend B` ran it before the resolver: the model
    folder (torch) or its bundled export, fp32 for 16-bit photos (the CLI's fp32 twin)."""
    if backend == "torch":
        from edgesr_cli.backends.torch_backend import load
        return load(model, device="cpu", dtype="fp32" if deep else None, detail=detail, threads=1)
    if backend == "onnx":
        from edgesr_cli.backends.onnx_backend import load
        return load(model / "onnx", detail=detail, graphs=graphs(detail), threads=1)
    from edgesr_cli.backends.openvino_backend import load
    return load(model / "onnx", dtype="fp32" if deep else None, detail=detail, graphs=graphs(detail), threads=1)


def graphs(detail):
    """The bundled export's graphs with the weights at `detail` where it is not the export's own (None: the files), as
    the resolver hands them to the loader."""
    from edgesr_cli.backends.exported import graphs_at, read_manifest
    manifest = read_manifest(model / "onnx")
    return None if detail is None or detail == manifest["detail"] else graphs_at(model / "onnx", manifest, detail)


out = {}
for detail in details:
    runners = {}
    for path in sorted(src.iterdir()):
        photo = read_image(path)
        deep = photo.bit_depth > 8
        if deep not in runners:
            runners[deep] = runner(detail, deep)
        hr = upscale_photo(runners[deep], photo, UpscaleOptions(), quantize=stored_dtype("png", photo.bit_depth))
        data = encode_image(hr, "png", 95, compress_level=DEFAULT_COMPRESS_LEVEL)
        out[f"{detail}/{path.name}"] = hashlib.sha256(data).hexdigest()
    up = edgesr_cli.load(backend=backend, detail=detail, threads=1)
    for path in sorted(src.iterdir()):
        a = np.asarray(up.upscale(Image.open(path)))
        out[f"api {detail}/{path.name}"] = hashlib.sha256(a.tobytes() + str((a.shape, a.dtype.str)).encode()).hexdigest()
print(json.dumps(out))
'''


def _photos(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir()
    y, x = np.mgrid[0:150, 0:136]
    smooth = np.stack([x / 136, y / 150, 0.5 + 0.5 * np.sin(x / 5 + y / 7)], -1)
    rgba = np.dstack([np.clip(smooth + rng.normal(0, 0.05, smooth.shape), 0, 1) * 255, x * 255 / 135])
    Image.fromarray(rgba.round().astype(np.uint8), "RGBA").save(folder / "rgba.png")  # several tiles, alpha
    Image.fromarray(rgba[:40, :56, :3].round().astype(np.uint8)).save(folder / "rgb.png")  # padded to one tile
    Image.fromarray((smooth[:36, :44, 2] * 65535).round().astype(np.uint16)).save(folder / "gray16.png")  # 16-bit
    return folder


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_cli_bytes_are_the_low_level_pieces_bytes(tmp_path, backend):
    """`edgesr upscale --backend B` (default detail; --detail 0 too on ONNX Runtime, its weights replaced) writes the
    bytes of read_image -> the backend's own loader -> upscale_photo -> encode_image, and the Python API returns the
    same samples. Both sides run on this CPU, so the check holds on any machine; OpenVINO only in child processes."""
    if find_spec({"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}[backend]) is None:
        pytest.skip(f"{backend} is not installed")
    src = _photos(tmp_path / "in")
    details = [None, 0.0] if backend == "onnx" else [None]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGESR_OPENVINO_CACHE": ""}
    child = subprocess.run([sys.executable, "-c", REFERENCE, backend, str(src), json.dumps(details)],
                           capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert child.returncode == 0, child.stderr
    reference = json.loads(child.stdout)
    for detail in details:
        out = tmp_path / f"out-{detail}"
        extra = [] if detail is None else ["--detail", f"{detail:g}"]
        proc = subprocess.run([sys.executable, "-m", "edgesr_cli", "upscale", str(src), "-o", str(out), "--backend",
                               backend, "--threads", "1", "-q", *extra], capture_output=True, text=True, timeout=600,
                              cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr
        for path in sorted(src.iterdir()):
            data = (out / path.name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == reference[f"{detail}/{path.name}"], (detail, path.name)
            a = np.asarray(Image.open(out / path.name))
            api = hashlib.sha256(a.tobytes() + str((a.shape, a.dtype.str)).encode()).hexdigest()
            assert api == reference[f"api {detail}/{path.name}"], ("api", detail, path.name)


def test_resolve_describes_the_shipped_model():
    d = default_model_dir()
    r = resolve(d, "onnx", 0.3)
    assert (r.backend, r.folder, r.detail, r.load_detail, r.tile, r.fp32_twin) == ("onnx", d / "onnx", 0.3, 0.3, DEFAULT_TILE,
                                                                                    False)
    r = resolve(d, "onnx")
    assert (r.detail, r.load_detail) == (0.6, None)  # the bundled export's own detail, its graph as it is
