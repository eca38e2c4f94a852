"""benchmarks/peers.py's sample crops (--samples, the last rows of docs/comparison.png from benchmarks/samples.py):
run after the set by every method, they add rows to the grid and a table of their own to peers.md/peers.json,
and leave the set's numbers as they were; --detail default is the model's own detail. No ../shared, no peers."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgesr_cli import evaluate as E

pytest.importorskip("skimage")  # the sample photos (test extra)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
METRICS = ("psnr_y", "ssim_y", "niqe", "lpips", "dists")


def _peers(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("peers_samples_under_test", BENCH / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(48, 56), (52, 48)]):
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(d / f"im{i}.png")
    return d


def test_samples_add_grid_rows_and_their_own_table_and_leave_the_set_alone(monkeypatch, tiny_set, tmp_path):
    from edgesr_cli.cli_common import default_model_dir
    from edgesr_cli.modeldir import default_detail

    peers = _peers(monkeypatch)
    own = default_detail(default_model_dir())
    if own is None:
        pytest.skip("the shipped model has one operating point")
    cell = 32
    common = ["--hr", str(tiny_set), "--peers", "none", "--no-niqe", "--threads", "1", "--dtype", "fp32",
              "--detail", "0", "--detail", "default", "--grid-cell", str(cell)]
    assert peers.main(common + ["--samples", "none", "--out", str(tmp_path / "set")]) == 0
    assert peers.main(common + ["--samples", "portrait,noisy", "--out", str(tmp_path / "both")]) == 0
    plain = json.loads((tmp_path / "set" / "peers.json").read_text())
    both = json.loads((tmp_path / "both" / "peers.json").read_text())

    names = ["bicubic", "edgesr-torch-detail0", f"edgesr-torch-detail{own:g}"]
    assert list(plain["summary"]) == names == list(both["summary"])
    assert both["summary"][names[2]]["label"].endswith(f"detail {own:g} (the model's default)")
    for name in names:  # the set's numbers do not move (times do)
        assert {k: plain["summary"][name][k] for k in METRICS} == {k: both["summary"][name][k] for k in METRICS}
    assert plain["samples"] is None and both["images"] == plain["images"] == 2

    # two more grid rows, same columns (every method + HR)
    cols = len(names) + 1
    assert Image.open(tmp_path / "set" / "peers_grid.png").size == E.grid_size(2, cols, cell)
    assert Image.open(tmp_path / "both" / "peers_grid.png").size == E.grid_size(4, cols, cell)

    s = both["samples"]
    assert list(s["crops"]) == ["portrait", "noisy"] and s["crops"]["portrait"].startswith("portrait, old scan:")
    assert list(s["scores"]) == names
    for name in names:
        assert list(s["scores"][name]) == ["portrait", "noisy"]
        assert all(isinstance(v["psnr_y"], float) for v in s["scores"][name].values())
    assert s["scores"]["bicubic"]["portrait"]["psnr_y"] != s["scores"][names[1]]["portrait"]["psnr_y"]
    for key in ("portrait", "noisy"):  # the inputs are kept: 256x256 HR, 64x64 LR
        assert Image.open(tmp_path / "both" / "samples" / "HR" / f"{key}.png").size == (256, 256)
        assert Image.open(tmp_path / "both" / "samples" / "LR" / f"{key}.png").size == (64, 64)

    md = (tmp_path / "both" / "peers.md").read_text()
    assert "## Sample crops" not in (tmp_path / "set" / "peers.md").read_text()
    section = md[md.index("## Sample crops"):]
    table = [ln for ln in section.splitlines() if ln.startswith("|")]
    assert table[0].startswith("| method | portrait PSNR-Y (dB) |") and "| noisy PSNR-Y (dB) |" in table[0]
    assert len(table) == 2 + len(names) and all(ln.count("|") == table[0].count("|") for ln in table)
    p = s["scores"][names[2]]["portrait"]["psnr_y"]
    assert any(ln.startswith(f"| **{names[2]}** | {p:.2f} |") for ln in table)
    if s["metrics"]["lpips"].startswith("on"):
        assert "| portrait LPIPS ↓ |" in table[0]
    # the set's own table is the same but for the times and the date
    assert md.split("\n| method")[0].split("Time:")[0] == \
        (tmp_path / "set" / "peers.md").read_text().split("\n| method")[0].split("Time:")[0]


def test_detail_default_is_resolved_and_deduplicated(monkeypatch):
    peers = _peers(monkeypatch)
    from edgesr_cli.cli_common import default_model_dir
    from edgesr_cli.modeldir import default_detail

    mdir = default_model_dir()
    own = default_detail(mdir)
    args = argparse.Namespace(detail=[0.0, "default", own if own is not None else 0.0, 1.0])
    details, got = peers.torch_details(args, mdir)
    assert got == own and details == list(dict.fromkeys([0.0, own, 1.0]))
    assert peers.torch_details(argparse.Namespace(detail=None), mdir) == ([None], own)
    assert peers.detail_arg("default") == "default" and peers.detail_arg("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match="nor 'default'"):
        peers.detail_arg("sharp")
    with pytest.raises(SystemExit):  # an unknown sample is a usage error, before any model loads
        peers.main(["--hr", "nowhere", "--threads", "1", "--samples", "portrait,faces"])
