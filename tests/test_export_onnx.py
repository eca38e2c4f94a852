"""`edgesr export --format onnx` and the ONNX Runtime CPU backend, driven by the shared tiling engine.

Needs the onnx extra (onnx, onnxruntime, onnxscript); skipped cleanly without it. One export of the
test-tiny model (module fixture) serves most tests.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from edgesr_cli.backends.base import BackendUnavailable
from edgesr_cli.backends.torch_backend import from_model
from edgesr_cli.export import ExportError, export_model, read_manifest
from edgesr_cli.model import ModelFileError, file_sha256, save_model_dir
from edgesr_cli.runtime.resolve import load_backend
from edgesr_cli.runtime.tiling import reflect_pad, upscale_tensor, upscale_tiles

from export_common import lr_image, make_model, psnr, run_openvino_check, upscale_in_clean_process

TILE = 16


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = make_model()
    d = save_model_dir(model, tmp_path_factory.mktemp("model") / "tiny")
    return model, d


@pytest.fixture(scope="module")
def exported(ort, tiny, tmp_path_factory):
    pytest.importorskip("onnxscript")
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    res = export_model(tiny[1], out, "onnx", tile=TILE)
    return res


def test_manifest_describes_the_export(exported, tiny):
    m = exported.manifest
    cfg = tiny[0].cfg
    assert m["format"] == "onnx" and m["scale"] == 4 and m["quantization"] is None
    assert m["tile"] == {"lr": [TILE, TILE], "latent": [TILE, TILE], "hr": [4 * TILE, 4 * TILE], "lr_multiple": 2}
    assert m["batch"] == "dynamic" and m["opset"] >= 17
    assert m["encoder_resize"] == "in_graph" and m["encoder_resize_op"].startswith("MatMul")
    assert m["latent"]["channels"] == cfg.latent_channels and m["latent"]["factor"] == cfg.latent_factor
    assert m["model"]["config"] == cfg.to_dict()
    assert set(m["graphs"]) == {"fused", "encoder", "denoise", "decoder"}
    assert m["graphs"]["fused"]["inputs"] == {"lr": ["B", 3, TILE, TILE], "noise": ["B", 4, TILE, TILE]}
    assert m["graphs"]["denoise"]["inputs"] == {"z": ["B", 4, TILE, TILE], "t": ["B"]}
    # every file is checksummed, and the source model's files are recorded
    on_disk = {p.name for p in exported.path.iterdir()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    for name, info in m["files"].items():
        assert info["sha256"] == file_sha256(exported.path / name)
    assert m["model"]["source"]["files"]["unet.safetensors"] == file_sha256(tiny[1] / "unet.safetensors")
    # no temp folder left beside the output
    assert [p.name for p in exported.path.parent.iterdir()] == [exported.path.name]
    assert read_manifest(exported.path, expect=("onnx",))["format"] == "onnx"


def test_parity_through_the_tiling_engine(exported, tiny):
    """fp32 ONNX vs PyTorch fp32 on a real photo: one step (fused graph) and two steps (components)."""
    torch.set_num_threads(1)
    model = tiny[0]
    lr = lr_image()
    onnx_b = load_backend("onnx", exported.path, threads=1)
    assert callable(getattr(onnx_b, "fused_one_step", None))
    ref_b = from_model(model, "cpu", "fp32")
    for steps, batch in ((1, 4), (1, 3), (2, 4)):
        ref = upscale_tensor(ref_b, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        out = upscale_tensor(onnx_b, lr, tile=TILE, steps=steps, batch=batch, seed=7)
        assert out.shape == (3, 160, 192)
        diff = float((out - ref).abs().max())
        assert diff < 1e-3, (steps, batch, diff)
        assert psnr(out, ref) > 50, (steps, batch, psnr(out, ref))
        assert float(ref.std()) > 0.1  # the comparison is over a real range of values


def test_small_image_and_oversized_tile(exported, tiny):
    """An image smaller than a tile (on one axis or both) is padded to one whole tile by the engine for a static
    export: PyTorch told to cut tiles of that one size (fixed_tile) computes the same picture."""
    torch.set_num_threads(1)
    b = load_backend("onnx", exported.path, threads=1)
    assert b.fixed_tile == TILE
    ref_b = from_model(tiny[0], "cpu", "fp32")
    ref_b.fixed_tile = TILE  # torch takes any tile size (None) and would cut these images at their own size
    for h, w in ((10, 6), (12, 2 * TILE)):
        out = upscale_tensor(b, lr_image(h, w), tile=TILE, seed=3)
        ref = upscale_tensor(ref_b, lr_image(h, w), tile=TILE, seed=3)
        assert out.shape == (3, 4 * h, 4 * w) and torch.isfinite(out).all()
        assert float((out - ref).abs().max()) < 1e-3, (h, w)
    with pytest.raises(ValueError, match=f"--tile {TILE}"):
        upscale_tensor(b, lr_image(40, 48), tile=2 * TILE)


def test_tile_smaller_than_the_export_is_padded_like_the_engine_pads_images(exported, tiny):
    """A tile under the static size is reflect-padded (as tiling.pad_image pads images), not replicate-padded:
    the fused graph's output equals PyTorch's on the reflect-padded tile and noise, cropped."""
    torch.set_num_threads(1)
    onnx_b = load_backend("onnx", exported.path, threads=1)
    ref_b = from_model(tiny[0], "cpu", "fp32")
    s, f = ref_b.scale, ref_b.latent_factor
    h, w = 10, 6
    lr = lr_image(h, w)[None]
    noise = torch.randn(1, ref_b.latent_channels, h * s // f, w * s // f, generator=torch.Generator().manual_seed(1))
    out = torch.from_numpy(upscale_tiles(onnx_b, lr, [noise]))
    assert out.shape == (1, 3, h * s, w * s)
    lt = TILE * s // f
    pads = {  # (tensor, target size) -> padded at the bottom and right
        "reflect": lambda x, n: reflect_pad(x, 0, n - x.shape[-2], 0, n - x.shape[-1]),
        "replicate": lambda x, n: torch.nn.functional.pad(x, (0, n - x.shape[-1], 0, n - x.shape[-2]), mode="replicate"),
    }
    refs = {mode: torch.from_numpy(upscale_tiles(ref_b, pad(lr, TILE), [pad(noise, lt)]))[..., :h * s, :w * s]
            for mode, pad in pads.items()}
    assert float((refs["reflect"] - refs["replicate"]).abs().max()) > 1e-2  # the padding shows in the output
    assert float((out - refs["reflect"]).abs().max()) < 1e-3


def test_bad_tile_fails_before_writing(ort, tiny, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ExportError, match="multiples of 2"):
        export_model(tiny[1], out, "onnx", tile=15)
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(tiny[1], out, "coreml", tile=16)
    with pytest.raises(ExportError, match="--soc applies to --format qnn"):
        export_model(tiny[1], out, "onnx", tile=16, soc="SM8650")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_foreign_folder(ort, tiny, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "keep.jpg").write_bytes(b"x")
    with pytest.raises(ExportError, match="not an edgesr export"):
        export_model(tiny[1], out, "onnx", tile=16, graphs="decoder")
    assert [p.name for p in out.iterdir()] == ["keep.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_checksum_catches_a_changed_file(exported, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported.path, d)
    data = bytearray((d / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_backend("onnx", d)


def test_corrupted_onnx_gives_a_clear_error(exported, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported.path, d)
    (d / "fused.onnx").write_bytes(b"not a protobuf" * 50)
    manifest = json.loads((d / "manifest.json").read_text())  # even with a matching checksum...
    manifest["files"]["fused.onnx"]["sha256"] = file_sha256(d / "fused.onnx")
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="fused.onnx: onnxruntime cannot load it"):
        load_backend("onnx", d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="manifest.json: unreadable"):
        load_backend("onnx", d)


def test_missing_onnxruntime_names_the_pip_command(exported, tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[onnxruntime\]'"):
        load_backend("onnx", exported.path)
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[train\]'"):  # the exporter's extra
        export_model(tiny[1], tmp_path / "x", "onnx", tile=16)
    assert list(tmp_path.iterdir()) == []


def test_backends_command_with_onnxruntime_missing(monkeypatch):
    import typer
    from typer.testing import CliRunner

    from edgesr_cli import cli_export

    app = typer.Typer()
    cli_export.register(app)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = CliRunner().invoke(app, ["backends", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["torch"]["usable"] is True
    assert rows["onnx"]["usable"] is False and "pip install 'edgesr[onnxruntime]'" in rows["onnx"]["reason"]
    assert rows["qnn"]["usable"] is False and "pip install 'edgesr[qnn]'" in rows["qnn"]["reason"]
    assert set(rows) >= {"torch", "onnx", "tflite", "qnn"}
    res = CliRunner().invoke(app, ["backends"])
    assert res.exit_code == 0 and "onnx" in res.output and "pip install" in res.output


def test_export_command(ort, tiny, tmp_path):
    import typer
    from typer.testing import CliRunner

    from edgesr_cli import cli_export

    app = typer.Typer()
    cli_export.register(app)
    runner = CliRunner()
    out = tmp_path / "e"
    res = runner.invoke(app, ["export", "-m", str(tiny[1]), "-f", "onnx", "-t", "15", "-o", str(out)])
    assert res.exit_code == 2 and "multiples of 2" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = runner.invoke(app, ["export", "-m", str(tiny[1]), "-f", "onnx", "-t", "16", "--graphs", "decoder",
                              "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert read_manifest(out)["graphs"].keys() == {"decoder"}
    res = runner.invoke(app, ["export", "-m", str(tiny[1]), "-f", "onnx", "-t", "16", "--graphs", "decoder",
                              "-o", str(out), "--quiet"])
    assert res.exit_code == 2 and "--force" in res.output
    res = runner.invoke(app, ["export", "-m", str(tiny[1]), "-f", "onnx", "-t", "16", "--graphs", "encoder",
                              "-o", str(out), "--force", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["graphs"].keys() == {"encoder"}
    assert read_manifest(out)["graphs"].keys() == {"encoder"}


def test_round_trip_from_a_clean_process(exported, tiny, tmp_path):
    """export -> `edgesr upscale --backend onnx --model EXPORTED` in a fresh interpreter."""
    lr8, got = upscale_in_clean_process("onnx", exported.path, tmp_path, lr_image(24, 32),
                                        ["--tile", str(TILE), "--threads", "1"], timeout=120)
    ref = upscale_tensor(from_model(tiny[0], "cpu", "fp32"), lr8, tile=TILE)
    assert got.shape == ref.shape == (3, 96, 128)
    assert float((got - ref).abs().max()) <= 1.0 / 255 + 1e-6


def test_int8_for_the_cpu(ort, tiny, tmp_path):
    """Optional static int8 QDQ (u8 activations, s8 per-channel weights) for the ORT CPU EP."""
    torch.set_num_threads(1)
    calib = [lr_image(64, 64)] + [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    res = export_model(tiny[1], tmp_path / "int8", "onnx", tile=TILE, graphs="fused", quantize="int8",
                       calibration=calib, calibration_tiles_count=8)
    q = res.manifest["quantization"]
    assert q["scheme"] == "int8" and q["calibration"]["tiles"] == 8
    assert set(res.manifest["files"]) == {"fused.int8.onnx"}
    lr = lr_image(24, 32)
    out = upscale_tensor(load_backend("onnx", res.path, threads=1), lr, tile=TILE)
    ref = upscale_tensor(from_model(tiny[0], "cpu", "fp32"), lr, tile=TILE)
    assert psnr(out, ref) > 30
    with pytest.raises(ExportError, match="--calibration DIR"):
        export_model(tiny[1], tmp_path / "int8b", "onnx", tile=TILE, quantize="int8")
    assert not (tmp_path / "int8b").exists()


def test_encoder_resize_on_the_host(ort, tiny, tmp_path):
    """host_resize moves the bicubic resize out of the encoder graph into the backend: same result."""
    res = export_model(tiny[1], tmp_path / "host", "onnx", tile=TILE, graphs="encoder", host_resize=True)
    assert res.manifest["encoder_resize"] == "host"
    assert res.manifest["graphs"]["encoder"]["inputs"]["lr"] == ["B", 3, 2 * TILE, 2 * TILE]
    b = load_backend("onnx", res.path)
    lr = lr_image(TILE, TILE)[None]
    mu, sigma = (torch.from_numpy(v) for v in b.encode(lr))  # backends give numpy arrays
    with torch.no_grad():
        rmu, rsigma = tiny[0].encode(lr)
    assert float((mu - rmu).abs().max()) < 1e-4 and float((sigma - rsigma).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="no fused graph|no denoise graph"):
        b.denoise(mu, torch.ones(1), None)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_dynamic_size_export(ort, tiny, tmp_path, backend):
    """--dynamic-size: graphs of any tile size (its --tile the default cut, not a limit). An image smaller than a
    tile on an axis is cut at its own size there, as PyTorch cuts it, and matches it; so does a larger --tile than
    the export's, and the components (two steps). OpenVINO runs in a child process (tests/openvino_child.py)."""
    pytest.importorskip("onnxscript")
    if backend == "openvino":
        from importlib.util import find_spec

        if find_spec("openvino") is None:
            pytest.skip("openvino not installed")
    torch.set_num_threads(1)
    res = export_model(tiny[1], tmp_path / "dyn", "onnx", tile=TILE, dynamic_size=True)
    m = res.manifest
    assert m["tile"]["dynamic"] is True and m["tile"]["lr"] == [TILE, TILE]
    assert m["encoder_resize_op"].startswith("grouped Conv")
    if backend == "openvino":
        run_openvino_check("dynamic", tiny[1], res.path, tmp_path)
        return
    b = load_backend("onnx", res.path, threads=1)
    assert b.fixed_tile is None
    ref_b = from_model(tiny[0], "cpu", "fp32")
    for (h, w), tile, steps in (((10, 6), TILE, 1), ((12, 2 * TILE + 6), TILE, 1), ((40, 48), 2 * TILE, 1),
                                ((10, 40), TILE, 2)):
        out = upscale_tensor(b, lr_image(h, w), tile=tile, seed=3, steps=steps)
        ref = upscale_tensor(ref_b, lr_image(h, w), tile=tile, seed=3, steps=steps)
        assert out.shape == (3, 4 * h, 4 * w)
        assert float((out - ref).abs().max()) < 1e-3, (h, w, tile)
        assert float(ref.std()) > 0.05


@pytest.mark.parametrize("fmt, quantize", [("onnx", "int8"), ("tflite", None)])
def test_dynamic_size_is_fp32_onnx_only(tiny, tmp_path, fmt, quantize):
    with pytest.raises(ExportError, match="--dynamic-size applies to --format onnx"):
        export_model(tiny[1], tmp_path / "x", fmt, tile=TILE, quantize=quantize, dynamic_size=True)
    assert not (tmp_path / "x").exists()
