"""The OpenVINO CPU backend on an ONNX export, driven by the shared tiling engine; skipped cleanly without
openvino (the `openvino` extra) or the exporter (the `train` extra). What loads OpenVINO runs in a child
process (tests/openvino_child.py); this process only exports and checks the choices around it."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from edgesr_cli.backends import base, openvino_backend
from edgesr_cli.backends.base import BackendUnavailable
from edgesr_cli.modeldir import BUNDLED_EXPORT
from edgesr_cli.runtime.resolve import load_backend, resolve_backend
from edgesr_cli.model import save_model_dir

from export_common import make_model, openvino_env, run_openvino_check


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model folder, its ONNX export) of the test-tiny model; made here, run on OpenVINO in a child process
    (tests/openvino_child.py says why)."""
    if find_spec("openvino") is None:
        pytest.skip("openvino not installed (the openvino extra)")
    pytest.importorskip("onnxscript")
    from edgesr_cli.export import export_model

    torch.set_num_threads(1)
    d = save_model_dir(make_model(), tmp_path_factory.mktemp("model") / "tiny")
    return d, export_model(d, tmp_path_factory.mktemp("onnx") / "tiny-onnx", "onnx", tile=16).path


@pytest.mark.parametrize("check", ["fp32_parity", "bf16", "twin", "cache", "cache_settings", "streams"])
def test_on_the_tiny_model(exported, tmp_path, check):
    """fp32 matches torch fp32 through the tiling engine; bf16 is as close to it as torch's bf16; 16-bit photos
    get an fp32 twin compiled when first used; the compiled model is cached and read back, a blob per precision and
    stream count."""
    run_openvino_check(check, exported[0], exported[1], tmp_path)


def test_cache_folder_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESR_OPENVINO_CACHE", "")
    assert openvino_backend.cache_dir() is None
    monkeypatch.setenv("EDGESR_OPENVINO_CACHE", str(tmp_path / "a" / "b"))
    assert openvino_backend.cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EDGESR_OPENVINO_CACHE", str(tmp_path / "file" / "sub"))  # cannot be made: no cache
    assert openvino_backend.cache_dir() is None
    monkeypatch.delenv("EDGESR_OPENVINO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert openvino_backend.cache_dir() == tmp_path / "xdg" / "edgesr" / "openvino"


def test_precision_choice(monkeypatch):
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: True)
    assert openvino_backend.resolve_precision(None) == "bf16"
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda: False)
    assert openvino_backend.resolve_precision("auto") == "f32"
    assert openvino_backend.resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="--dtype fp16: the openvino backend runs fp32 or bf16"):
        openvino_backend.resolve_precision("fp16")


def test_missing_openvino_names_the_extra(monkeypatch, tmp_path):
    from edgesr_cli.backends import checks

    monkeypatch.setattr(checks, "_found", lambda m: m != "openvino")
    with pytest.raises(BackendUnavailable, match=r"pip install 'edgesr\[openvino\]'"):
        load_backend("openvino", tmp_path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # found but does not import
    with pytest.raises(BackendUnavailable, match=r"openvino is not installed .*edgesr\[openvino\]"):
        checks.openvino_import()


def test_openvino_loads_without_its_model_converter():
    """openvino_import leaves OpenVINO's model converter (ovc) unimported, and importable afterwards."""
    if find_spec("openvino") is None:
        pytest.skip("openvino not installed")
    code = ("import sys; from edgesr_cli.backends.checks import openvino_import; ov = openvino_import(); "
            "print(ov.Core is not None, 'openvino.tools.ovc' in sys.modules, 'openvino.tools.ovc' in sys.modules "
            "and sys.modules['openvino.tools.ovc'] is None); import openvino.tools.ovc as o; print(callable(o.convert_model))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False", "False", "True"]


@pytest.mark.parametrize("torch_ok, ov_ok, ort_ok, bf16, expect", [
    (True, True, True, True, "torch"),  # torch first where installed (every --detail; as fast, README "Backends")
    (False, True, True, True, "openvino"),
    (False, True, True, False, "onnx"),  # OpenVINO's fp32 is no faster than ONNX Runtime's
    (False, False, True, True, "onnx"),  # the base install off x86-64
    (False, True, False, False, "openvino"),  # the base install on x86-64: OpenVINO alone, bf16 or not
    (False, True, False, True, "openvino"),
])
def test_auto_on_the_shipped_model_folder(monkeypatch, torch_ok, ov_ok, ort_ok, bf16, expect):
    from edgesr_cli import hw
    from edgesr_cli.cli_common import default_model_dir

    usable = {"torch": torch_ok, "openvino": ov_ok, "onnx": ort_ok}
    monkeypatch.setattr(base, "availability", lambda name: None if usable.get(name) else f"{name} missing")
    monkeypatch.setattr(hw, "cpu_has_native_bf16", lambda: bf16)
    d = default_model_dir()
    name, where = resolve_backend(d, "auto")
    assert name == expect
    assert where == (d if expect == "torch" else d / BUNDLED_EXPORT)
    assert resolve_backend(d, "openvino") == ("openvino", d / BUNDLED_EXPORT)  # asked for by name


def test_auto_with_no_runtime_names_the_install(monkeypatch):
    from edgesr_cli.cli_common import default_model_dir
    from edgesr_cli.backends.base import BackendUnavailable

    monkeypatch.setattr(base, "availability", lambda name: f"{name} missing")
    with pytest.raises(BackendUnavailable, match=r"none of torch, OpenVINO and ONNX Runtime .*pip install edgesr "):
        resolve_backend(default_model_dir(), "auto")


def test_upscale_command_on_the_shipped_model(tmp_path):
    if find_spec("openvino") is None:
        pytest.skip("openvino not installed (the openvino extra)")
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    edgesr = [sys.executable, "-m", "edgesr_cli", "upscale", str(tmp_path / "in.png"), "--backend", "openvino"]
    res = subprocess.run(edgesr + ["-o", str(tmp_path / "out.png"), "--threads", "1", "--json"],
                         env=openvino_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["backend"] == "openvino"
    assert Image.open(tmp_path / "out.png").size == (224, 160)
    res = subprocess.run(edgesr + ["-o", str(tmp_path / "x.png"), "--dtype", "fp16"],
                         env=openvino_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and res.stderr.strip() == "error: --dtype fp16: the openvino backend runs fp32 or bf16"
    assert not (tmp_path / "x.png").exists()
