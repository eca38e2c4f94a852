"""`edgesr eval` and edgesr_cli.evaluate: pairing, metrics against hand-computed values, NIQE through the
eval path, DISTS in every report (and benchmarks/peers.py's table), reports (CSV, JSON, grid PNG) and clear
errors for bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from edgesr_cli import cli_eval
from edgesr_cli import dists as D
from edgesr_cli import evaluate as E
from edgesr_cli import metrics as M

cli = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    cli_eval.register(app)
    return app


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("EDGESR_DEBUG", raising=False)
    monkeypatch.delenv("EDGESR_NIQE_PARAMS", raising=False)


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(x / 5 + seed), np.cos(y / 7), np.sin((x + y) / 9)], -1) * 0.3 + 0.5
    return (np.clip(base + rng.random((h, w, 3)) * 0.1, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hr")
    for i, (h, w) in enumerate([(104, 112), (106, 110), (104, 108)]):  # (106, 110) is not a multiple of 4
        Image.fromarray(_texture(h, w, i)).save(d / f"im{i}.png")
    return d


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# --------------------------------------------------------------------------- metrics, hand-computed


class OffsetRunner:
    """A fake backend whose fused one-step graph is nearest-neighbour x4 plus a constant: on an HR that
    is itself the nearest x4 of the LR, the output is HR + offset everywhere (through the tiling engine)."""

    scale = 4
    latent_factor = 4
    latent_channels = 1
    lr_multiple = 1
    conditioning = "bidirectional"
    schedule = None

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def fused_one_step(self, lr: np.ndarray, noise: np.ndarray) -> torch.Tensor:
        return F.interpolate(torch.as_tensor(lr), scale_factor=4, mode="nearest") + self.offset

    def encode(self, lr):  # pragma: no cover - the fused graph is used
        raise AssertionError("not used")

    denoise = decode = encode


def test_psnr_ssim_match_hand_computed_values(tmp_path):
    rng = np.random.default_rng(0)
    lr_u8 = rng.integers(60, 180, size=(20, 24, 3), dtype=np.uint8)  # away from 0/255: no clipping
    hr_u8 = np.repeat(np.repeat(lr_u8, 4, 0), 4, 1)
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    Image.fromarray(hr_u8).save(tmp_path / "hr" / "a.png")
    Image.fromarray(lr_u8).save(tmp_path / "lr" / "a.png")
    pairs = E.plan_pairs(tmp_path / "hr", tmp_path / "lr", scale=4)
    setup = E.setup_metrics(4, niqe=False, lpips=False)
    # tile 8 < image: several tiles blended; identical overlapping values blend exactly
    method = E.runner_method(OffsetRunner(2 / 255), name="edgesr", tile=8, batch=3)
    result = E.evaluate(pairs, [E.bicubic_method(4), method], setup)
    got = result.images[0]["methods"]["edgesr"]

    # by hand: +2/255 on R, G and B moves BT.601 Y by (65.481 + 128.553 + 24.966) * 2/255 everywhere
    dy = (65.481 + 128.553 + 24.966) * 2 / 255
    assert got["psnr_y"] == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)
    # SSIM on the Y of the 4-px-cropped images, computed independently with scikit-image
    skm = pytest.importorskip("skimage.metrics")
    y_hr = M.rgb_to_y(hr_u8[4:-4, 4:-4] / 255.0)
    ssim_ref = skm.structural_similarity(y_hr + dy, y_hr, data_range=255, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
    assert got["ssim_y"] == pytest.approx(ssim_ref, abs=1e-6)
    # and the constant-offset closed form: SSIM = mean(1 - dy^2 / (mu^2 + (mu + dy)^2 + C1)) over valid windows
    assert got["ssim_y"] < 1.0
    # the bicubic baseline is always there, scored the same way
    b = result.images[0]["methods"]["bicubic"]
    assert b["psnr_y"] == pytest.approx(M.psnr_y(M.bicubic_upscale(lr_u8, 4), hr_u8, 4))
    assert b["ssim_y"] == pytest.approx(M.ssim_y(M.bicubic_upscale(lr_u8, 4), hr_u8, 4))
    summary = E.summarize(result)
    assert summary["edgesr"]["psnr_y"] == pytest.approx(got["psnr_y"])
    assert summary["edgesr"]["psnr_y_gain_vs_bicubic"] == pytest.approx(got["psnr_y"] - b["psnr_y"])


def _pink(seed: int, n: int = 192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    r = np.hypot(f[:, None], f[None, :])
    r[0, 0] = 1.0
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / r
    x = np.real(np.fft.ifft2(spec))
    return np.clip(0.5 + 0.15 * (x - x.mean()) / x.std(), 0, 1)


@pytest.fixture(scope="module")
def niqe_params_file(tmp_path_factory) -> Path:
    """A NIQE model fitted on synthetic sharp textures: these tests feed synthetic pink-noise images, which the
    published (natural-photo) model does not rank (its reference value is pinned in test_metrics.py)."""
    params = M.fit_niqe_params([_pink(s, 288) for s in range(8)])
    return M.save_niqe_params(params, tmp_path_factory.mktemp("niqe") / "pris.npz")


def test_niqe_through_eval_ranks_blur_worse(tmp_path, niqe_params_file):
    hr = np.repeat(_pink(100)[..., None], 3, axis=2)
    Image.fromarray(np.round(hr * 255).astype(np.uint8)).save(tmp_path / "t.png")
    hr8 = np.round(hr * 255) / 255
    sharp = E.Method("sharp", lambda lr, g: hr8)
    blurred = E.Method("blurred", lambda lr, g: gaussian_filter(hr8, sigma=(1.5, 1.5, 0)))
    setup = E.setup_metrics(4, niqe_params=niqe_params_file, lpips=False)
    assert setup.niqe_off is None
    result = E.evaluate(E.plan_pairs(tmp_path, degrade="bicubic"), [E.bicubic_method(4), sharp, blurred], setup)
    s = E.summarize(result)
    assert s["blurred"]["niqe"] > s["sharp"]["niqe"]
    assert s["bicubic"]["niqe"] > s["sharp"]["niqe"]
    assert s["HR"]["niqe"] == pytest.approx(s["sharp"]["niqe"])  # the reference row is the HR's own NIQE


def test_niqe_off_is_reported_once_with_the_reason(monkeypatch):
    from edgesr_cli import niqe

    monkeypatch.setattr(niqe, "find_published_niqe_params", lambda: None)  # where published_niqe_params looks it up
    setup = E.setup_metrics(4, lpips=False)
    assert setup.niqe_params is None and "niqe_pris_params" in setup.niqe_off
    assert setup.describe()["niqe"].startswith("off: ")


# --------------------------------------------------------------------------- the command


def test_eval_cli_writes_csv_json_and_grid(tmp_path, tiny_model_dir, hr_dir, niqe_params_file):
    out = tmp_path / "report"
    r = cli.invoke(_app(), ["eval", "--hr", str(hr_dir), "--model", str(tiny_model_dir), "--out", str(out), "--tile", "32",
                            "--grid-images", "2", "--grid-crop", "32", "--grid-cell", "64", "--niqe-params",
                            str(niqe_params_file), "--json", "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["images"] == 3 and rec["scale"] == 4 and rec["degrade"] == "bicubic"
    assert set(rec["summary"]) >= {"bicubic", "edgesr"}
    for name in ("bicubic", "edgesr"):
        v = rec["summary"][name]
        assert math.isfinite(v["psnr_y"]) and 0 < v["ssim_y"] <= 1 and v["seconds_per_image"] >= 0
    assert rec["metrics"]["niqe"].startswith("on")
    if D.available():  # DISTS beside LPIPS in the summary, per image and in the CSV
        assert rec["metrics"]["dists"].startswith("on")
        assert all(0 < rec["summary"][n]["dists"] < 1 for n in ("bicubic", "edgesr"))
        assert all(0 < m["dists"] < 1 for i in rec["per_image"] for m in i["methods"].values())
    # the 110x106 HR is cropped to 108x104 (a multiple of the scale) and says so
    im1 = next(i for i in rec["per_image"] if i["image"] == "im1")
    assert im1["hr_size"] == [108, 104] and im1["lr_size"] == [27, 26] and "cropped" in im1["note"]
    assert json.loads((out / "eval.json").read_text())["summary"] == rec["summary"]
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert len(rows) == 3 * 2 and {r["method"] for r in rows} == {"bicubic", "edgesr"}
    assert all(float(r["psnr_y"]) > 0 and r["niqe"] for r in rows)
    assert "dists" in rows[0] and all(bool(r["dists"]) == D.available() for r in rows)
    with Image.open(out / "grid.png") as g:
        # 3 columns (bicubic, edgesr, HR) of 64 px cells, 2 rows: see evaluate.grid_size
        assert g.size == E.grid_size(2, 3, 64) == (8 + 3 * (64 + 8), 24 + 2 * (16 + 64 + 16 + 8) + 8)
        assert g.mode == "RGB"


def test_eval_cli_table_and_lr_folder(tmp_path, tiny_model_dir, hr_dir, monkeypatch):
    monkeypatch.setenv(D.WEIGHTS_ENV, str(tmp_path / "no-dists.pt"))  # DISTS off: a note, never a crash
    lr = tmp_path / "lr"
    lr.mkdir()
    for p in sorted(hr_dir.glob("*.png")):
        im = Image.open(p)
        w, h = im.size
        # LR names with a marker (im0x4.png) pair with im0.png
        im.resize((w // 4, h // 4), Image.BICUBIC).save(lr / f"{p.stem}x4.png")
    out = tmp_path / "rep"
    r = cli.invoke(_app(), ["eval", "--hr", str(hr_dir), "--lr", str(lr), "--model", str(tiny_model_dir), "--out", str(out),
                            "--tile", "32", "--max-images", "2", "--no-niqe", "--save-images"])
    assert r.exit_code == 0, r.output
    assert "bicubic" in r.stdout and "edgesr" in r.stdout and "PSNR" in r.stdout
    assert "NIQE off" in r.stdout
    assert "DISTS" in r.stdout and "DISTS off:" in r.stdout and "DISTS-pytorch==0.1" in r.stdout
    rec = json.loads((out / "eval.json").read_text())
    assert rec["metrics"]["dists"].startswith("off: ") and rec["summary"]["edgesr"]["dists"] is None
    assert (out / "edgesr" / "im0.png").is_file() and (out / "bicubic" / "im1.png").is_file()
    assert not (out / "edgesr" / "im2.png").exists()  # --max-images 2


def test_dists_goes_through_score_summary_and_csv(tmp_path, monkeypatch):
    """The plumbing, without weights: a stand-in DISTS reaches per-image scores, the summary and the CSV;
    --no-dists and a broken weights file are notes in describe(), not crashes."""
    Image.fromarray(_texture(32, 32, 0)).save(tmp_path / "a.png")
    monkeypatch.setattr(M, "dists_distance", lambda a, b: 0.25 if np.allclose(a, b, atol=1e-6) else 0.5)
    monkeypatch.setattr(M, "dists_reference", lambda hr: hr)  # the HR once per image, for every method
    setup = E.setup_metrics(4, niqe=False, lpips=False)
    assert setup.dists_off is None and setup.describe()["dists"].startswith("on")
    hr8 = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32) / 255
    same = E.Method("same", lambda lr, g: hr8)
    result = E.evaluate(E.plan_pairs(tmp_path, degrade="bicubic"), [E.bicubic_method(4), same], setup)
    assert result.images[0]["methods"]["same"]["dists"] == 0.25
    s = E.summarize(result)
    assert s["same"]["dists"] == 0.25 and s["bicubic"]["dists"] == 0.5
    rows = list(csv.DictReader(E.write_csv(result, tmp_path / "r.csv").open()))
    assert [r["dists"] for r in rows] == ["0.5000", "0.2500"]
    assert E.setup_metrics(4, niqe=False, lpips=False, dists=False).describe()["dists"] == "off: disabled (--no-dists)"

    def broken(a, b):
        raise ValueError("weights.pt: not a DISTS weights file torch can read as plain tensors")

    monkeypatch.setattr(M, "dists_distance", broken)
    off = E.setup_metrics(4, niqe=False, lpips=False)
    assert off.dists_off.startswith("ValueError: weights.pt") and off.describe()["dists"].startswith("off: ")
    assert E.score(hr8, hr8, off)["dists"] is None


def _peers_module(monkeypatch):
    import importlib.util

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("peers_under_test", bench / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_peers_table_has_a_dists_column_when_dists_is_on(monkeypatch):
    peers = _peers_module(monkeypatch)
    row = {"psnr_y": 25.0, "ssim_y": 0.7, "niqe": 5.0, "lpips": 0.3, "dists": 0.2, "seconds_per_image": 1.0,
           "label": "x"}
    record = {"dataset": "Set5-x4", "scale": 4, "images": 1, "lr_source": "made by bicubic degradation (seed 0)",
              "metrics": {"psnr_y_ssim_y": "8-bit", "niqe": "on: p", "lpips": "on: LPIPS v0.1 alex",
                          "dists": "on: DISTS"},
              "threads": 2, "machine": {"cpu": "cpu", "usable_cores": 2}, "created": "now",
              "summary": {"bicubic": row, "edgesr-torch": {**row, "dists": 0.125, "psnr_y_gain_vs_bicubic": 1.0},
                          "HR": {"niqe": 3.0}},
              "skipped": [], "files": {"grid": "g.png", "csv": "c.csv"}, "versions": {}}
    md = peers.markdown(record).splitlines()
    head = next(ln for ln in md if ln.startswith("| method"))
    assert "LPIPS ↓ | DISTS ↓" in head
    n = head.count("|")
    table = [ln for ln in md if ln.startswith("|")]
    assert all(ln.count("|") == n for ln in table), table  # every row, the HR one too, has every cell
    assert any(ln.startswith("| **edgesr-torch** |") and "| 0.3000 | 0.1250 |" in ln for ln in table)
    record["metrics"]["dists"] = "off: DISTS alpha/beta (DISTS_pytorch/weights.pt) not found"
    md = peers.markdown(record)
    assert "DISTS ↓" not in md  # the column is absent, the reason is in the header line
    assert "; DISTS off: DISTS alpha/beta (DISTS_pytorch/weights.pt) not found." in md


def test_realesrgan_degradation_is_reproducible(hr_dir):
    pairs = E.plan_pairs(hr_dir, degrade="realesrgan", seed=7, scale=4)
    a = E.load_pair(pairs[0], 4).lr
    b = E.load_pair(pairs[0], 4).lr
    c = E.load_pair(E.plan_pairs(hr_dir, degrade="realesrgan", seed=7, scale=4, max_images=1)[0], 4).lr
    assert np.array_equal(a, b) and np.array_equal(a, c)
    other = E.load_pair(E.plan_pairs(hr_dir, degrade="realesrgan", seed=8, scale=4)[0], 4).lr
    assert not np.array_equal(a, other)
    assert a.shape == (26, 28, 3) and np.allclose(a * 255, np.round(a * 255), atol=1e-4)  # 8-bit levels


def test_bicubic_degradation_is_matlab_imresize(hr_dir):
    lp = E.load_pair(E.plan_pairs(hr_dir, degrade="bicubic", scale=4)[0], 4)
    ref = np.round(np.clip(M.matlab_imresize(lp.hr.astype(np.float64), 0.25), 0, 1) * 255) / 255
    assert np.allclose(lp.lr, ref, atol=1e-6)


# --------------------------------------------------------------------------- bad input


def _err(r) -> str:
    lines = _lines(r.output)
    assert len(lines) == 1, r.output  # one line, no traceback
    assert lines[0].startswith("error:")
    return lines[0]


def test_mismatched_hr_lr_sizes_name_the_file(tmp_path, tiny_model_dir, hr_dir):
    lr = tmp_path / "lr"
    lr.mkdir()
    for i, size in enumerate([(28, 26), (27, 26), (27, 26)]):
        Image.new("RGB", size).save(lr / f"im{i}.png")  # the right sizes
    Image.new("RGB", (20, 20)).save(lr / "im1.png")  # im1 should be 27x26
    r = cli.invoke(_app(), ["eval", "--hr", str(hr_dir), "--lr", str(lr), "--model", str(tiny_model_dir)])
    assert r.exit_code == 2
    msg = _err(r)
    assert "im1.png" in msg and "20x20" in msg and "LR of 27x26" in msg and "108x104" in msg


def test_missing_lr_partner_and_empty_or_missing_folders(tmp_path, tiny_model_dir, hr_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    lr = tmp_path / "lr"
    lr.mkdir()
    Image.new("RGB", (28, 26)).save(lr / "im0.png")
    cases = [
        (["--hr", str(empty)], "no images in this HR folder"),
        (["--hr", str(hr_dir), "--lr", str(empty)], "no images in this LR folder"),
        (["--hr", str(tmp_path / "nope")], "no such folder"),
        (["--hr", str(hr_dir), "--lr", str(lr)], "im1.png: no LR image named im1"),
        (["--hr", str(hr_dir), "--lr", str(lr), "--degrade", "bicubic"], "not both"),
    ]
    for args, want in cases:
        r = cli.invoke(_app(), ["eval", *args, "--model", str(tiny_model_dir)])
        assert r.exit_code == 2, (args, r.output)
        assert want in _err(r), (args, r.output)


def test_too_small_hr_is_a_clear_error(tmp_path, tiny_model_dir):
    Image.new("RGB", (3, 40)).save(tmp_path / "thin.png")
    r = cli.invoke(_app(), ["eval", "--hr", str(tmp_path), "--model", str(tiny_model_dir)])
    assert r.exit_code == 2
    assert "thin.png" in _err(r) and "too small" in r.output


def test_grid_geometry_and_crop_choice():
    assert E.grid_size(1, 1, 10) == (26, 24 + 16 + 10 + 16 + 8 + 8)
    img = np.zeros((100, 120, 3))
    img[60:80, 90:110] = np.random.default_rng(0).random((20, 20, 3))  # the only detail
    y, x, c = E.choose_crop(img, 32)
    assert c == 32 and y <= 60 and y + c >= 80 - 8 and x <= 90 and x + c >= 110 - 8
    rows = [E.GridRow("a", [np.zeros((8, 8, 3))] * 2, ["x", "y"])]
    assert E.make_grid(rows, ["m", "HR"], cell=20).size == E.grid_size(1, 2, 20)
    with pytest.raises(E.EvalError):
        E.make_grid(rows, ["m", "n", "HR"], cell=20)


def test_dataset_label():
    assert E.dataset_label("/data/benchmarks/Set14/x4/HR") == "Set14-x4"
    assert E.dataset_label("/photos/holiday") == "holiday"
