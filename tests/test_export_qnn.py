"""`edgesr export --format qnn` (W8A16 QDQ + an EP-context binary for a Snapdragon SoC) and the QNN HTP
backend, run on onnxruntime-qnn's x86_64 HTP emulator (about 100x slower than the CPU, so: the tiny
model, two tiles). Needs the qnn extra (onnxruntime, onnxruntime-qnn, onnx, onnxscript); skipped
cleanly without it."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

from edgesr_cli.backends.base import BackendUnavailable
from edgesr_cli.backends.torch_backend import from_model
from edgesr_cli.export import ExportError, export_model
from edgesr_cli.model import ModelFileError, save_model_dir
from edgesr_cli.runtime.resolve import load_backend
from edgesr_cli.runtime.tiling import upscale_tensor

from export_common import make_model, psnr, upscale_in_clean_process

TILE = 32


def photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as (3,H,W) in [0,1], or a synthetic one without skimage."""
    try:
        from skimage import data

        arr = getattr(data, name)()
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0
    except ImportError:
        g = torch.Generator().manual_seed(abs(hash(name)) % 1000)
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
        return (torch.stack([yy, xx, (yy * xx).sqrt()]) * 0.8 + 0.2 * torch.rand(3, 256, 256, generator=g)).clamp(0, 1)


def lr_image(h: int, w: int) -> torch.Tensor:
    return F.interpolate(photo("astronaut")[None], size=(h, w), mode="area")[0].clamp(0, 1)


@pytest.fixture(scope="module")
def qnn_ready():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxruntime_qnn")
    pytest.importorskip("onnxscript")
    from backends import qnn_backend

    try:
        qnn_backend.check()
    except BackendUnavailable as exc:
        pytest.skip(f"QNN EP not usable here: {exc}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = make_model()
    return model, save_model_dir(model, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Calibration photos as files (other photos than the test image), shrunk like typical LR input."""
    from edgesr_cli.io import Photo, write_image

    d = tmp_path_factory.mktemp("calib")
    for name in ("coffee", "chelsea", "rocket"):
        img = photo(name)
        small = F.interpolate(img[None], scale_factor=0.25, mode="area")[0].clamp(0, 1)
        write_image(d / f"{name}.png", Photo(rgb=small.permute(1, 2, 0).numpy().copy()), fmt="png")
    return d


@pytest.fixture(scope="module")
def exported(qnn_ready, tiny, calib_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("qnn") / "tiny-qnn"
    return export_model(tiny[1], out, "qnn", tile=TILE, soc="SM8650", calibration=calib_dir,
                        calibration_tiles_count=12)


def test_manifest(exported):
    m = exported.manifest
    assert m["format"] == "qnn" and m["batch"] == 1
    q = m["quantization"]
    assert q["scheme"] == "w8a16" and q["activations"].startswith("uint16") and q["weights"].startswith("int8")
    assert q["calibration"]["tiles"] == 12 and "3 image" in q["calibration"]["source"]
    assert m["qnn"]["soc"] == "SM8650" and m["qnn"]["soc_model"] == 57 and m["qnn"]["htp_arch"] == 75
    for g, info in m["graphs"].items():
        assert info["file"] == f"{g}.qdq.onnx" and info["context"] == f"{g}.SM8650.ctx.onnx"
        assert info["file"] in m["files"] and info["context"] in m["files"]


def test_qdq_types_are_w8a16(exported):
    """Activations uint16, weights int8 (LayerNorm gamma uint8, biases int32); no signed int16."""
    import onnx

    m = onnx.load(str(exported.path / "fused.qdq.onnx"))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    T = onnx.TensorProto
    act, weight = set(), set()
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            weight.add(inits[n.input[0]])
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            act.add(inits[n.input[2]])
    assert act == {T.UINT16}
    assert T.INT8 in weight and weight <= {T.INT8, T.UINT8, T.INT32, T.UINT16}
    assert T.INT16 not in act | weight


def test_w8a16_on_the_htp_emulator(exported, tiny):
    """W8A16 on the (emulated) HTP vs PyTorch fp32 on the same tiles, through the shared engine."""
    lr = lr_image(TILE, TILE + 8)  # two tiles
    b = load_backend("qnn", exported.path)
    assert b._sessions["fused"].get_providers()[0] == "QNNExecutionProvider"
    ref_b = from_model(tiny[0], "cpu", "fp32")
    ref = upscale_tensor(ref_b, lr, tile=TILE, seed=3)
    out = upscale_tensor(b, lr, tile=TILE, seed=3)
    p1 = psnr(out, ref)
    ref2 = upscale_tensor(ref_b, lr, tile=TILE, steps=2, seed=3)
    out2 = upscale_tensor(b, lr, tile=TILE, steps=2, seed=3)  # encoder / denoise / decoder graphs
    p2 = psnr(out2, ref2)
    print(f"QNN W8A16 (HTP emulator) vs torch fp32: one step {p1:.1f} dB, two steps {p2:.1f} dB")
    assert p1 > 35 and p2 > 35
    assert float(ref.std()) > 0.1


def test_qdq_graphs_also_run_on_the_cpu(exported, tiny):
    lr = lr_image(TILE, TILE + 8)
    b = load_backend("onnx", exported.path, threads=1)
    ref = upscale_tensor(from_model(tiny[0], "cpu", "fp32"), lr, tile=TILE, seed=3)
    assert psnr(upscale_tensor(b, lr, tile=TILE, seed=3), ref) > 35


def test_unknown_soc_and_missing_calibration(tiny, tmp_path):
    with pytest.raises(ExportError, match=r"unknown SoC 'SM1234'.*SM8650 \(Snapdragon 8 Gen 3"):
        export_model(tiny[1], tmp_path / "x", "qnn", tile=TILE, soc="SM1234")
    with pytest.raises(ExportError, match="--quantize int8 is not available for qnn"):
        export_model(tiny[1], tmp_path / "x", "qnn", tile=TILE, quantize="int8")
    assert list(tmp_path.iterdir()) == []


def test_missing_calibration(qnn_ready, tiny, tmp_path):
    with pytest.raises(ExportError, match="--calibration DIR"):
        export_model(tiny[1], tmp_path / "x", "qnn", tile=TILE)
    assert list(tmp_path.iterdir()) == []


def test_changed_context_binary_is_refused(exported, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported.path, d)
    p = d / "fused.SM8650.ctx.onnx"
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_backend("qnn", d)


def test_missing_qnn_package_names_the_pip_command(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[qnn\]'"):
        load_backend("qnn", tmp_path)
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[qnn\]'"):
        export_model(tiny[1], tmp_path / "x", "qnn", tile=TILE, calibration=torch.rand(2, 3, 40, 40))
    assert list(tmp_path.iterdir()) == []


def test_round_trip_from_a_clean_process(exported, tiny, tmp_path):
    lr8, got = upscale_in_clean_process("qnn", exported.path, tmp_path, lr_image(24, 32),  # one tile
                                        ["--tile", str(TILE)], timeout=300)
    ref = upscale_tensor(from_model(tiny[0], "cpu", "fp32"), lr8, tile=TILE)
    assert got.shape == ref.shape == (3, 96, 128)
    assert psnr(got, ref) > 35
