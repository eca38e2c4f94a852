"""`edgesr export --format tflite` (litert-torch) and the LiteRT interpreter backend, driven by the shared
tiling engine. Needs the tflite extra (litert-torch, ai-edge-litert); skipped cleanly without it."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

from edgesr_cli.backends.base import BackendUnavailable
from edgesr_cli.backends.torch_backend import from_model
from edgesr_cli.export import export_model
from edgesr_cli.model import ModelFileError, file_sha256, save_model_dir
from edgesr_cli.runtime.resolve import load_backend
from edgesr_cli.runtime.tiling import upscale_tensor

from export_common import lr_image, make_model, psnr, upscale_in_clean_process

TILE = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = make_model()
    return model, save_model_dir(model, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    pytest.importorskip("ai_edge_litert.interpreter")
    pytest.importorskip("litert_torch")
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tflite") / "tiny-tflite"
    return export_model(tiny[1], out, "tflite", tile=TILE)


def test_manifest(exported):
    m = exported.manifest
    assert m["format"] == "tflite" and m["batch"] == 1 and m["quantization"] is None
    assert m["encoder_resize"] in ("in_graph", "host")
    assert set(m["graphs"]) == {"fused", "encoder", "denoise", "decoder"}
    assert m["graphs"]["fused"]["inputs"]["noise"] == [1, 4, TILE, TILE]
    assert all(m["graphs"][g]["file"].endswith(".tflite") for g in m["graphs"])
    assert set(m["files"]) == {p.name for p in exported.path.iterdir()} - {"manifest.json"}


def test_parity_through_the_tiling_engine(exported, tiny):
    torch.set_num_threads(1)
    lr = lr_image()
    b = load_backend("tflite", exported.path, threads=1)
    ref_b = from_model(tiny[0], "cpu", "fp32")
    for steps in (1, 2):  # 1: the fused graph; 2: encoder / denoise / decoder through the shared sampler
        ref = upscale_tensor(ref_b, lr, tile=TILE, steps=steps, batch=4, seed=5)
        out = upscale_tensor(b, lr, tile=TILE, steps=steps, batch=4, seed=5)
        diff = float((out - ref).abs().max())
        assert diff < 1e-3, (steps, diff)
        assert psnr(out, ref) > 50, (steps, psnr(out, ref))


def test_checksum_and_corrupted_file(exported, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported.path, d)
    data = bytearray((d / "fused.tflite").read_bytes())
    data[100:140] = b"\0" * 40
    (d / "fused.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_backend("tflite", d)
    (d / "fused.tflite").write_bytes(b"garbage" * 100)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["fused.tflite"]["sha256"] = file_sha256(d / "fused.tflite")
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="fused.tflite: the TFLite interpreter cannot load it"):
        load_backend("tflite", d)


def test_wrong_backend_for_the_export(exported):
    pytest.importorskip("onnxruntime")
    with pytest.raises(ModelFileError, match="is a tflite export; use --backend tflite"):
        load_backend("onnx", exported.path)


def test_missing_interpreter_names_the_pip_command(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[tflite\]'"):
        load_backend("tflite", exported.path)


def test_missing_converter_names_the_pip_command(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[tflite\]'"):
        export_model(tiny[1], tmp_path / "x", "tflite", tile=TILE)
    assert list(tmp_path.iterdir()) == []


def test_round_trip_from_a_clean_process(exported, tiny, tmp_path):
    lr8, got = upscale_in_clean_process("tflite", exported.path, tmp_path, lr_image(24, 32),
                                        ["--tile", str(TILE), "--threads", "1"], timeout=180)
    ref = upscale_tensor(from_model(tiny[0], "cpu", "fp32"), lr8, tile=TILE)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1.0 / 255 + 1e-6


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_as_transpose_conv_matches_torch(factor):
    """The delegate-friendly bicubic in the TFLite encoder equals F.interpolate (needs no litert)."""
    from edgesr_cli.export import BicubicUpsample

    up = BicubicUpsample(factor)
    g = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 16, 16), (1, 3, 5, 7), (1, 3, 1, 2)):
        x = torch.rand(shape, generator=g)
        ref = F.interpolate(x, scale_factor=float(factor), mode="bicubic", align_corners=False)
        assert float((up(x) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_as_phases_matches_torch(factor):
    """The dynamic-size ONNX encoder's bicubic (a grouped convolution giving each output phase, then a pixel
    shuffle) equals F.interpolate at any size, borders included (needs no litert)."""
    from edgesr_cli.exporter.graphs import PhaseBicubicUpsample

    up = PhaseBicubicUpsample(factor)
    g = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 16, 16), (1, 3, 5, 7), (1, 3, 1, 2), (1, 3, 128, 96)):
        x = torch.rand(shape, generator=g)
        ref = F.interpolate(x, scale_factor=float(factor), mode="bicubic", align_corners=False)
        assert up(x).shape == ref.shape
        assert float((up(x) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_as_two_matmuls_matches_torch(factor):
    """The ONNX encoder's bicubic (interpolation matrices for the static tile) equals F.interpolate,
    borders included, and refuses a tile of another size instead of resizing it wrongly."""
    from edgesr_cli.export import MatrixBicubicUpsample

    g = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 16, 16), (1, 3, 5, 7), (1, 3, 1, 2)):
        up = MatrixBicubicUpsample(factor, *shape[-2:])
        x = torch.rand(shape, generator=g)
        ref = F.interpolate(x, scale_factor=float(factor), mode="bicubic", align_corners=False)
        assert up(x).shape == ref.shape
        assert float((up(x) - ref).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="built for"):
        MatrixBicubicUpsample(factor, 16, 16)(torch.rand(1, 3, 8, 16))
