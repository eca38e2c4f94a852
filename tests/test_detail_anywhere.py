"""Any --detail on an ONNX export without torch (issue 28): the two operating points interpolated in numpy exactly as
the torch path interpolates them, written into the export's graph bytes through the map its manifest records
(backends/exported.py), and the exporter's check that the map holds (a weight folded into another constant is
caught). The CLI end to end on both runtimes against torch fp32: tests/test_light_install.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgesr_cli.backends.base import BackendUnavailable
from edgesr_cli.backends.exported import graph_bytes, initializer_data, read_manifest, replace_initializers
from edgesr_cli.backends.torch_backend import from_model
from edgesr_cli.cli_common import default_model_dir
from edgesr_cli.model import (DETAIL_DIR, DETAIL_FILE, INFERENCE_COMPONENTS, ModelFileError, load_model_dir,
                              save_model_dir)
from edgesr_cli.modeldir import interpolated_tensors, lerp, read_tensors
from edgesr_cli.runtime.resolve import load_backend, resolve_backend, reweighting_unavailable
from edgesr_cli.runtime.tiling import upscale_tensor

from export_common import lr_image, make_model

TILE = 16


# ---- the numpy interpolation is the torch path's ---------------------------------------------------------------------


@pytest.mark.parametrize("detail", [1e-7, 0.1, 0.3, 0.5, 0.6, 0.77, 0.9999, 1.0])
def test_lerp_is_torch_lerp_bit_for_bit(detail):
    """On the shipped weights (fp16 files, widened to float32 as the torch path's .float() does)."""
    d = default_model_dir()
    a = read_tensors(d / "unet.safetensors")
    b = read_tensors(d / DETAIL_DIR / "unet.safetensors")
    differ = 0
    for k in a:
        ours = lerp(a[k], b[k], detail)
        ref = torch.lerp(torch.from_numpy(a[k]), torch.from_numpy(b[k]), detail).numpy()
        assert ours.dtype == np.float32
        differ += int((ours != ref).sum())
    assert differ == 0


def test_interpolated_tensors_are_the_loaded_torch_model():
    """Every component's every tensor at detail 0.3, 0 and 1 equals what load_model_dir puts in the torch model."""
    d = default_model_dir()
    wanted = {c: set(read_tensors(d / f"{c}.safetensors")) for c in INFERENCE_COMPONENTS}
    for detail in (0.3, 0.0, 1.0):
        ours = interpolated_tensors(d, detail, wanted)
        model = load_model_dir(d, detail=detail)
        for c, mod in model.components().items():
            if c not in wanted:
                continue
            state = mod.state_dict()
            assert set(ours[c]) == set(state)
            for k, v in state.items():
                np.testing.assert_array_equal(ours[c][k], v.numpy(), err_msg=f"{c}.{k} at {detail}")


def test_read_tensors_widens_every_float_type(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=g)
    save_file({"f32": x, "f16": x.half(), "bf16": x.bfloat16(), "i64": torch.arange(4)}, str(tmp_path / "t.safetensors"))
    got = read_tensors(tmp_path / "t.safetensors")
    for name, ref in (("f32", x), ("f16", x.half().float()), ("bf16", x.bfloat16().float())):
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], ref.numpy())
    np.testing.assert_array_equal(got["i64"], np.arange(4))
    assert set(read_tensors(tmp_path / "t.safetensors", {"f16"})) == {"f16"}
    with pytest.raises(ModelFileError, match=r"missing \['nope'\]"):
        read_tensors(tmp_path / "t.safetensors", {"nope"})
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        read_tensors(tmp_path / "bad.safetensors")


# ---- the graph's bytes ---------------------------------------------------------------------------------------------------


def test_initializer_offsets_are_where_onnx_reads_them():
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = default_model_dir() / "onnx" / "fused.onnx"
    buf = path.read_bytes()
    where = initializer_data(buf)
    inits = onnx.load(str(path)).graph.initializer
    assert len(where) == len(inits) > 200
    for init in inits:
        offset, length, dtype = where[init.name]
        a = numpy_helper.to_array(init)
        assert dtype == init.data_type and buf[offset:offset + length] == a.astype(a.dtype.newbyteorder("<")).tobytes()


def test_replace_initializers_writes_in_place_and_refuses_what_does_not_fit():
    path = default_model_dir() / "onnx" / "fused.onnx"
    buf = path.read_bytes()
    name = "decoder.dec.net.7.bias"
    new = replace_initializers(buf, {name: np.array([1.0, 2.0, 3.0], dtype=np.float32)})
    assert len(new) == len(buf)
    offset, length, _ = initializer_data(new)[name]
    assert np.frombuffer(new[offset:offset + length], "<f4").tolist() == [1.0, 2.0, 3.0]
    assert sum(x != y for x, y in zip(new, buf)) <= 12  # nothing else moved
    with pytest.raises(ModelFileError, match="16 bytes of float32 for 12 bytes"):
        replace_initializers(buf, {name: np.zeros(4, np.float32)})
    with pytest.raises(ModelFileError, match="no initializer 'nope'"):
        replace_initializers(buf, {"nope": np.zeros(4, np.float32)})


def test_the_bundled_export_maps_its_weights():
    d = default_model_dir()
    manifest = read_manifest(d / "onnx", verify=False)
    params = manifest["graphs"]["fused"]["parameters"]
    keys = {c: set(read_tensors(d / f"{c}.safetensors")) for c in INFERENCE_COMPONENTS}
    used = {(e[0], e[1]) for e in params.values()}
    assert used == {(c, k) for c, ks in keys.items() for k in ks}  # every weight of the three networks, once
    assert all(len(e) == 2 or e[2] == "T" for e in params.values())


# ---- a tiny two-point model and its export ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_points(tmp_path_factory):
    """(model folder with a detail/ point, its ONNX export inside it as MODEL/onnx, every graph)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from edgesr_cli.export import export_model

    torch.set_num_threads(1)
    d = save_model_dir(make_model(0), tmp_path_factory.mktemp("model") / "tiny")
    save_model_dir(make_model(1), d / DETAIL_DIR)
    (d / DETAIL_DIR / DETAIL_FILE).write_text(json.dumps({"default_detail": 0.6}))
    res = export_model(d, d / "onnx", "onnx", tile=TILE)
    return d, res.path


def test_export_maps_every_graph(two_points):
    manifest = read_manifest(two_points[1])
    assert set(manifest["graphs"]) == {"fused", "encoder", "denoise", "decoder"}
    assert all(manifest["graphs"][g]["parameters"] for g in manifest["graphs"])


@pytest.mark.parametrize("detail", [0.0, 0.3, 1.0])
def test_onnx_runtime_at_any_detail_is_torch_at_that_detail(two_points, detail):
    """One step (the fused graph) and two (the component graphs) through the tiling engine."""
    d, export = two_points
    assert resolve_backend(d, "onnx", detail) == ("onnx", export)
    runner = load_backend("onnx", export, threads=1, detail=detail)
    assert runner.detail == detail and f"detail {detail:g}" in runner.describe()
    ref_runner = from_model(load_model_dir(d, detail=detail), "cpu", "fp32")
    baked = load_backend("onnx", export, threads=1)
    assert baked.detail is None
    lr = lr_image()
    for steps in (1, 2):
        ref = upscale_tensor(ref_runner, lr, tile=TILE, steps=steps, seed=7)
        out = upscale_tensor(runner, lr, tile=TILE, steps=steps, seed=7)
        assert float((out - ref).abs().max()) < 1e-4, steps
        assert float((upscale_tensor(baked, lr, tile=TILE, steps=steps, seed=7) - ref).abs().max()) > 1e-2  # moved


def test_openvino_caches_the_operating_points_only(two_points, tmp_path):
    """OpenVINO keeps the compiled graph of --detail 0 and 1 (the model folder's two points) and of the export's own
    detail, not of any other (a blob each would pile up); run in a child (tests/openvino_child.py says why)."""
    from importlib.util import find_spec

    from export_common import run_openvino_check

    if find_spec("openvino") is None:
        pytest.skip("openvino not installed")
    run_openvino_check("cache_points", two_points[0], two_points[1], tmp_path)


def test_the_export_own_detail_reads_the_file_as_it_is(two_points):
    runner = load_backend("onnx", two_points[1], threads=1, detail=0.6)
    assert runner.detail is None and isinstance(runner.graph_source("fused"), Path)


def test_refused_where_the_weights_are_not_the_exported_ones(two_points, tmp_path):
    d, export = two_points
    alone = shutil.copytree(export, tmp_path / "alone")  # an export away from its model folder
    with pytest.raises(BackendUnavailable, match=r"runs at the detail it was exported with \(0.6\): the model "
                                                 r"folder it was made from is not beside it"):
        load_backend("onnx", alone, detail=0.3)
    load_backend("onnx", alone, detail=0.6)  # its own detail still runs
    assert reweighting_unavailable(export, "tflite") == "the tflite backend runs an export's own weights only"
    assert reweighting_unavailable(export, "openvino") is None

    changed = shutil.copytree(d, tmp_path / "changed")  # another detail/ point beside the same export
    save_model_dir(make_model(2), changed / DETAIL_DIR)
    with pytest.raises(ModelFileError, match=r"runs at the detail it was exported with only: .*detail/lr_encoder.safetensors is not the file it was exported from"):
        load_backend("onnx", changed / "onnx", detail=0.3)

    old = shutil.copytree(d, tmp_path / "old")  # an export made before the map was recorded
    manifest = json.loads((old / "onnx" / "manifest.json").read_text())
    for g in manifest["graphs"].values():
        del g["parameters"]
    (old / "onnx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match=r"maps no weights to the graph \(made by an older edgesr: "
                                                 r"export it again\)"):
        resolve_backend(old, "onnx", 0.3)


def test_graph_bytes_checks_the_graph_file(two_points, tmp_path):
    d = shutil.copytree(two_points[0], tmp_path / "m")
    manifest = read_manifest(d / "onnx")
    path = d / "onnx" / "fused.onnx"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        graph_bytes(d / "onnx", manifest, "fused", 0.3)


# ---- the walk of --detail from the CLI to the weights ----------------------------------------------------------------


def _edgesr_modules() -> list[str]:
    """The edgesr modules on the caller's call stack, outermost first, from the first frame in cli_upscale.py (what
    sits above it, edgesr_cli/cli.py's app dispatcher and cli_common's error wrapper, only dispatches the command)
    down, each run of frames in one module counted once: e.g. ["edgesr_cli/cli_upscale.py", ...]."""
    import sys

    import edgesr_cli
    import edgesr_cli.backends

    roots = {Path(edgesr_cli.__file__).resolve().parent: "edgesr_cli", Path(edgesr_cli.backends.__file__).resolve().parent:
             "backends"}
    frames = []
    f = sys._getframe(2)  # above this helper and the hook that calls it
    while f is not None:
        frames.append(Path(f.f_code.co_filename).resolve())
        f = f.f_back
    walk: list[str] = []
    for path in reversed(frames):
        label = next((f"{name}/{path.relative_to(root).as_posix()}" for root, name in roots.items()
                      if path.is_relative_to(root)), None)
        if label is None:
            continue
        if not walk and label != "edgesr_cli/cli_upscale.py":
            continue
        if not walk or walk[-1] != label:
            walk.append(label)
    return walk


@pytest.mark.parametrize("backend", ["torch", "onnx", "openvino"])
def test_the_walk_of_detail_from_the_cli_to_the_weights(two_points, tmp_path, monkeypatch, backend):
    """`edgesr upscale --detail 0.3` (an 8-bit and a 16-bit photo: OpenVINO's fp32 twin too) on a two-point model:
    wherever the detail/ point's weights are read from disk (modeldir.read_tensors, numpy, for an export's graph;
    safetensors' load_file as model.py calls it, for torch), the call stack holds at most four edgesr modules from
    edgesr_cli/cli_upscale.py down (frames under edgesr_cli/ or backends/; edgesr_cli/cli.py's typer dispatcher and
    cli_common.friendly_errors, above the command, are left out), each appearing once (one run of frames)."""
    from PIL import Image
    from typer.testing import CliRunner

    import edgesr_cli.model
    import edgesr_cli.modeldir
    from edgesr_cli.backends.base import availability
    from edgesr_cli.cli import app

    why = availability(backend)
    if why is not None:
        pytest.skip(why)
    walks: list[list[str]] = []

    def watch(fn, path_arg):
        def hook(*args, **kwargs):
            if Path(path_arg(*args, **kwargs)).parent.name == DETAIL_DIR:
                walks.append(_edgesr_modules())
            return fn(*args, **kwargs)
        return hook

    monkeypatch.setattr(edgesr_cli.modeldir, "read_tensors",
                        watch(edgesr_cli.modeldir.read_tensors, lambda path, *a, **k: path))
    monkeypatch.setattr(edgesr_cli.model, "load_file", watch(edgesr_cli.model.load_file, lambda path, *a, **k: path))
    monkeypatch.setenv("EDGESR_OPENVINO_CACHE", "")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray((rng.random((16, 16)) * 65535).astype(np.uint16)).save(tmp_path / "gray16.png")
    d = two_points[0]
    r = CliRunner().invoke(app, ["upscale", str(tmp_path / "rgb.png"), str(tmp_path / "gray16.png"), "-o",
                                 str(tmp_path / "out"), "-m", str(d), "--backend", backend, "--detail", "0.3",
                                 "--tile", str(TILE), "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["done"] == 2
    assert walks, "the detail/ weights were not read where this test watches"
    for walk in walks:
        print(backend, " -> ".join(walk))
        assert walk and walk[0] == "edgesr_cli/cli_upscale.py", walk
        assert len(walk) <= 4 and len(set(walk)) == len(walk), walk


def test_an_export_runner_reads_the_graphs_it_is_given(two_points):
    """The export loaders never turn a detail into weights: a detail other than the export's own comes with the
    graphs at that detail (exported.graphs_at, what the resolver hands them), read instead of the files."""
    from edgesr_cli.backends.exported import graphs_at
    from edgesr_cli.backends.onnx_backend import load

    export = two_points[1]
    with pytest.raises(ValueError, match="graphs_at"):
        load(export, detail=0.3, threads=1)
    graphs = graphs_at(export, read_manifest(export), 0.3)
    assert set(graphs) == {"fused", "encoder", "denoise", "decoder"}
    runner = load(export, detail=0.3, graphs=graphs, threads=1)
    assert runner.detail == 0.3 and runner.graph_source("fused") is graphs["fused"]
    assert isinstance(load(export, detail=0.6, graphs=graphs, threads=1).graph_source("fused"), Path)  # its own


# ---- the exporter's check of its map ------------------------------------------------------------------------------------


class _Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(16, 16, generator=g))
        self.b = nn.Parameter(torch.randn(16, 16, generator=g))
        self.lin = nn.Linear(16, 8)


class _Kept(nn.Module):  # each weight its own initializer (the Linear's stored transposed)
    def __init__(self, inner: _Inner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.lin((x @ self.inner.a) * 2 + x @ self.inner.b)


class _Folded(_Kept):  # the exporter folds a * b into one constant
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.lin(x @ (self.inner.a * self.inner.b))


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.unet = _Inner()

    def components(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}


@pytest.mark.parametrize("graph, maps", [(_Kept, True), (_Folded, False)])
def test_the_exporter_keeps_a_map_only_where_it_holds(tmp_path, graph, maps):
    """A map where every weight is an initializer of its own; none where the exporter folded two weights into one
    constant, and then the graph is exported with the model's own weights as before."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from edgesr_cli.exporter.onnx_format import _export_mapped

    toy = _Toy()
    with torch.no_grad():
        toy.unet.lin.bias.fill_(0.5)  # equal values, as an untrained LayerNorm's: the probe keeps them apart
    inputs = {"x": torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(1))}
    path = tmp_path / "g.onnx"
    mapping, why = _export_mapped(toy, lambda t: graph(t.unet).eval(), inputs, ["y"], path, 18)
    if maps:
        assert why == "" and sorted(map(tuple, mapping.values())) == [
            ("unet", "a"), ("unet", "b"), ("unet", "lin.bias"), ("unet", "lin.weight", "T")]
    else:
        assert mapping is None and "folded into a constant" in why
    with torch.no_grad():
        ref = graph(toy.unet)(inputs["x"]).numpy()
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": inputs["x"].numpy()})[0]
    np.testing.assert_allclose(out, ref, atol=1e-5)  # the model's own weights in the file either way
