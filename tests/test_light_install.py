"""The light install: `pip install edgesr` without torch upscales with the shipped model through ONNX Runtime
(the export bundled in the model folder), at every --detail, and on OpenVINO where the openvino extra is installed;
commands that need torch say which extra to install, with torch's CPU build.

Each case runs the CLI in a fresh interpreter in which torch (and scipy, onnx, onnxscript, scikit-image, openvino) cannot be
imported, as in a venv that never installed them; .ci/run also builds such a venv for real and upscales in it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr_cli.cli_common import default_model_dir
from edgesr_cli.modeldir import BUNDLED_EXPORT, default_detail, file_sha256

pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")

BLOCKED = ("torch", "torchvision", "scipy", "onnx", "onnxscript", "skimage", "openvino")
PRELUDE = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from edgesr_cli.cli import main
sys.argv = ["edgesr"] + sys.argv[1:]
try:
    main()
finally:
    print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)), file=sys.stderr)
"""


def light(*args: str, cwd: Path, blocked: tuple[str, ...] = BLOCKED) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "200",
           "EDGESR_OPENVINO_CACHE": str(cwd / "ov-cache")}  # never the user's ~/.cache
    env.pop("EDGESR_DEBUG", None)
    return subprocess.run([sys.executable, "-c", PRELUDE.replace("{blocked!r}", repr(blocked)), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("light")
    Image.fromarray(skimage_data.astronaut()[100:244:1, 120:280]).save(d / "photo.png")  # 144 x 160: whole tiles
    return d / "photo.png"


def test_bundled_export_is_the_shipped_model():
    """The export in the wheel is of these weights at the model's default detail, and its files are intact."""
    from edgesr_cli.backends.exported import read_manifest

    d = default_model_dir()
    manifest = read_manifest(d / BUNDLED_EXPORT, expect=("onnx",), verify=True)  # sha256 of every graph file
    assert "fused" in manifest["graphs"] and manifest["quantization"] is None
    assert manifest["detail"] == default_detail(d)
    source = manifest["model"]["source"]["files"]
    assert source and all(file_sha256(d / name) == sha for name, sha in source.items())
    assert manifest["graphs"]["fused"]["parameters"]  # what runs it at other details (tests/test_detail_anywhere.py)


@pytest.fixture(scope="module")
def torch_fp32(photo, tmp_path_factory):
    """The torch backend's fp32 pictures of `photo` at each detail (None: the model's default), made when first asked."""
    from typer.testing import CliRunner

    from edgesr_cli.cli import app

    d, made = tmp_path_factory.mktemp("torch"), {}

    def at(detail: float | None) -> np.ndarray:
        if detail not in made:
            out = d / f"torch-{detail}.png"
            extra = [] if detail is None else ["--detail", str(detail)]
            r = CliRunner().invoke(app, ["upscale", str(photo), "-o", str(out), "--backend", "torch", "--dtype", "fp32",
                                         "--quiet", *extra])
            assert r.exit_code == 0, r.output
            made[detail] = np.asarray(Image.open(out)).astype(int)
        return made[detail]

    return at


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
@pytest.mark.parametrize("detail", [None, 0.0, 0.3, 1.0])
def test_every_detail_without_torch_matches_torch_fp32(photo, tmp_path, torch_fp32, runtime, detail):
    """The bundled export at the model's default detail, and at any other with the model folder's two operating
    points interpolated into its weights (backends/exported.py), on ONNX Runtime (what auto picks without torch
    on a CPU without bf16) and OpenVINO in fp32: the same picture as torch fp32 at that detail, to 1/255 on a few
    pixels."""
    blocked = BLOCKED
    args = ["upscale", str(photo), "-o", str(tmp_path / "light.png"), "--json"]
    if runtime == "openvino":
        if importlib.util.find_spec("openvino") is None:
            pytest.skip("openvino not installed (the openvino extra)")
        blocked = tuple(b for b in BLOCKED if b != "openvino")
        args += ["--backend", "openvino", "--dtype", "fp32"]
    if detail is not None:
        args += ["--detail", str(detail)]
    res = light(*args, cwd=tmp_path, blocked=blocked)
    assert res.returncode == 0, res.stderr
    assert "LOADED=" in res.stderr and not any(  # nothing of torch & co was imported
        m.split(".")[0] in ("torch", "scipy", "onnx", "onnxscript", "skimage")
        for m in res.stderr.strip().rsplit("LOADED=", 1)[1].split(",") if m)
    summary = json.loads(res.stdout)
    assert summary["backend"] == runtime and summary["done"] == 1
    assert summary["detail"] == (default_detail(default_model_dir()) if detail is None else detail)
    a = np.asarray(Image.open(tmp_path / "light.png")).astype(int)
    b = torch_fp32(detail)
    assert a.shape == b.shape == (144 * 4, 160 * 4, 3)
    diff = np.abs(a - b)
    print(f"{runtime} detail {detail}: max {diff.max()}/255, {(diff > 0).mean():.2e} of the values differ")
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # the same noise field, fp32 arithmetic in another order
    if detail in (0.0, 1.0):  # the details are far apart: this compares the right pictures
        assert np.abs(torch_fp32(1.0 - detail) - a).mean() > 1.0


def test_the_x86_64_base_install_upscales_on_openvino_alone(photo, tmp_path, torch_fp32):
    """pip install edgesr on x86-64 brings OpenVINO and not ONNX Runtime (pyproject's markers): auto runs the
    bundled export on OpenVINO, in bf16 where the CPU computes it, close to torch fp32's picture."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino not installed")
    blocked = tuple(b for b in BLOCKED if b != "openvino") + ("onnxruntime",)
    res = light("upscale", str(photo), "-o", str(tmp_path / "ov.png"), "--json", cwd=tmp_path, blocked=blocked)
    assert res.returncode == 0, res.stderr
    assert "onnxruntime" not in res.stderr.rsplit("LOADED=", 1)[1]
    summary = json.loads(res.stdout)
    assert summary["backend"] == "openvino" and summary["done"] == 1
    diff = np.abs(np.asarray(Image.open(tmp_path / "ov.png")).astype(int) - torch_fp32(None))
    print(f"openvino (auto): mean {diff.mean():.3f}/255, max {diff.max()}/255")
    assert diff.mean() < 1.0  # bf16 on CPUs that compute it: about 0.3/255 on average here


@pytest.mark.parametrize("args, needs", [
    (["upscale", "{photo}", "-o", "{tmp}/x.png", "--backend", "torch"], "edgesr[torch]"),
    (["train", "--stage", "autoencoder", "--data", "{tmp}", "--steps", "1", "--out", "{tmp}/run"], "edgesr[torch]"),
    (["export", "-f", "onnx", "-o", "{tmp}/exp"], "edgesr[train]"),
    (["info", "-c", "edge-tiny"], "edgesr[torch]"),
])
def test_commands_that_need_torch_say_which_extra(photo, tmp_path, args, needs):
    args = [a.format(photo=photo, tmp=tmp_path) for a in args]
    res = light(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if not line.startswith("LOADED=")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needs in lines[0], res.stderr
    # the one command that installs torch's CPU build first (PyPI's torch on Linux is the CUDA one)
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install 'edgesr[" in lines[0]
    assert not list(tmp_path.glob("x.png"))


def test_light_cli_start_and_backends(tmp_path):
    res = light("backends", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["onnx"]["usable"] is True
    assert rows["torch"]["usable"] is False and "edgesr[torch]" in rows["torch"]["reason"]
