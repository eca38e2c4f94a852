"""The light install: `pip install edgesr` without torch upscales with the shipped model through ONNX Runtime
(the export bundled in the model folder), and commands that need torch say which extra to install.

Each case runs the CLI in a fresh interpreter in which torch (and scipy, onnx, onnxscript, scikit-image, openvino) cannot be
imported, as in a venv that never installed them; .ci/run also builds such a venv for real and upscales in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr_cli.backends.base import BUNDLED_EXPORT
from edgesr_cli.cli_common import default_model_dir
from edgesr_cli.modeldir import default_detail, file_sha256

pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")

BLOCKED = ("torch", "torchvision", "scipy", "onnx", "onnxscript", "skimage", "openvino")
PRELUDE = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from edgesr_cli.cli import main
sys.argv = ["edgesr"] + sys.argv[1:]
try:
    main()
finally:
    print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)), file=sys.stderr)
"""


def light(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("EDGESR_DEBUG", None)
    return subprocess.run([sys.executable, "-c", PRELUDE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


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


def test_upscale_without_torch_matches_torch_fp32(photo, tmp_path):
    res = light("upscale", str(photo), "-o", str(tmp_path / "light.png"), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().endswith("LOADED=")  # nothing of torch & co was imported
    summary = json.loads(res.stdout)
    assert summary["backend"] == "onnx" and summary["done"] == 1
    from typer.testing import CliRunner

    from edgesr_cli.cli import app

    r = CliRunner().invoke(app, ["upscale", str(photo), "-o", str(tmp_path / "torch.png"), "--backend", "torch",
                                 "--dtype", "fp32", "--quiet"])
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "light.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "torch.png")).astype(int)
    assert a.shape == b.shape == (144 * 4, 160 * 4, 3)
    diff = np.abs(a - b)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # the same noise field, fp32 arithmetic in another order


@pytest.mark.parametrize("args, needs", [
    (["upscale", "{photo}", "-o", "{tmp}/x.png", "--detail", "0.5"], "edgesr[torch]"),
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
    assert not list(tmp_path.glob("x.png"))


def test_light_cli_start_and_backends(tmp_path):
    res = light("backends", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["onnx"]["usable"] is True
    assert rows["torch"]["usable"] is False and "edgesr[torch]" in rows["torch"]["reason"]
