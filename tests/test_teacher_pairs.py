"""Teacher triplets (`edgesr teacher-pairs`) and training on them (`finetune-decoder --teacher-data`): the ncnn
weight reader and the torch RRDBNet it fills, determinism per (seed, index) across shards and resumes, the
manifest, regeneration of LR/HR from the photos, aligned crops, and the teacher losses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from edgesr_cli.cli import app
from edgesr_cli.config import get_preset
from edgesr_cli.data import DataError, LRPipelineConfig
from edgesr_cli.model import EdgeSR, save_model_dir
from edgesr_cli.teachers import Teacher, TeacherError, load_teacher, read_ncnn_convs, rrdbnet
from edgesr_cli.training.common import TrainConfig, TrainError
from edgesr_cli.training.decoder import finetune_decoder
from edgesr_cli.training.teacher_pairs import PairsConfig, TeacherTriplets, make_pairs, manifest_lines, regenerate

from conftest import synthetic_photo

runner = CliRunner()
CFG = PairsConfig(seed=5, lr_size=16, context=2,
                  lr_pipeline=LRPipelineConfig(realesrgan_prob=0.4, jpeg_prob=0.2, camera_prob=0.2))


def nearest_teacher() -> Teacher:
    """A stand-in x4 teacher (nearest upsampling): cheap, and its output shows where each LR pixel went."""
    def run(lr: np.ndarray) -> np.ndarray:
        return lr.repeat(4, axis=1).repeat(4, axis=2)

    return Teacher("nearest", "numpy", {"none": "0"}, "test", run)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pair_photos")
    for i in range(4):
        Image.fromarray(synthetic_photo(96 + 8 * i, 120, i)).save(d / f"p{i}.png")
    Image.fromarray(synthetic_photo(40, 40, 9)).save(d / "small.png")  # under the 80 px HR crop: skipped
    return d


@pytest.fixture(scope="module")
def pairs(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs")
    make_pairs([photos], out, 10, nearest_teacher(), CFG, show_progress=False)
    return out


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_triplets_are_a_function_of_seed_and_index_across_shards_and_resumes(photos, pairs, tmp_path):
    sharded = tmp_path / "sharded"
    make_pairs([photos], sharded, 6, nearest_teacher(), CFG, shard=(1, 2), show_progress=False)  # 1, 3, 5
    r = make_pairs([photos], sharded, 10, nearest_teacher(), CFG, shard=(0, 2), batch=3, show_progress=False)
    assert r["made"] == 5
    again = make_pairs([photos], sharded, 10, nearest_teacher(), CFG, shard=(1, 2), show_progress=False)
    assert again["made"] == 2  # 7 and 9; 1, 3, 5 were done
    assert sorted(d["index"] for d in manifest_lines(sharded)) == list(range(10))
    for i in range(10):
        for sub in ("lr", "teacher", "hr"):
            assert (sharded / sub / f"{i:06d}.png").read_bytes() == (pairs / sub / f"{i:06d}.png").read_bytes(), (i, sub)
    other_seed = tmp_path / "seed6"
    make_pairs([photos], other_seed, 2, nearest_teacher(), dataclasses.replace(CFG, seed=6), show_progress=False)
    assert (other_seed / "hr/000000.png").read_bytes() != (pairs / "hr/000000.png").read_bytes()


def test_manifest_records_teacher_photos_and_each_degradation(photos, pairs):
    header = json.loads((pairs / "pairs.json").read_text())
    assert header["teacher"]["name"] == "nearest" and header["teacher"]["files"] == {"none": "0"}
    assert header["data"]["images"] == 4 and "small.png" not in " ".join(header["data"]["names"])
    lines = list(manifest_lines(pairs))
    assert {d["pipeline"] for d in lines} <= {"realesrgan", "jpeg", "camera", "clean"}
    assert len({d["pipeline"] for d in lines}) >= 2
    import hashlib

    for d in lines:
        assert d["source"].startswith(photos.name + "/p") and (photos / d["source"].split("/", 1)[1]).is_file()
        assert d["box"][2] == CFG.hr_crop and 0 <= d["dihedral"] < 8
        for sub in ("lr", "teacher", "hr"):
            assert hashlib.sha256((pairs / sub / f"{d['index']:06d}.png").read_bytes()).hexdigest() == d[f"{sub}_sha256"]
        if d["pipeline"] == "realesrgan":
            assert {"kernel1", "jpeg1_quality", "noise2"} <= set(d["params"])
    assert read(pairs / "lr/000000.png").shape == (16, 16, 3)
    assert read(pairs / "teacher/000000.png").shape == read(pairs / "hr/000000.png").shape == (64, 64, 3)


def test_teacher_saw_the_lr_with_its_context(pairs):
    """The kept teacher crop is the teacher's output under the kept LR: for nearest x4 exactly the LR repeated."""
    for i in range(3):
        lr, te = read(pairs / f"lr/{i:06d}.png"), read(pairs / f"teacher/{i:06d}.png")
        assert np.array_equal(te, lr.repeat(4, 0).repeat(4, 1))


def test_lr_and_hr_regenerate_from_the_photos(photos, pairs, tmp_path):
    for i in (0, 7):
        lr, hr = regenerate([photos], pairs, i)
        assert np.array_equal(lr, read(pairs / f"lr/{i:06d}.png"))
        assert np.array_equal(hr, read(pairs / f"hr/{i:06d}.png"))
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(synthetic_photo(96, 120, 3)).save(other / "x.png")
    with pytest.raises(DataError, match="not the ones"):
        regenerate([other], pairs, 0)


def test_another_config_or_teacher_is_refused_in_the_same_folder(photos, pairs):
    with pytest.raises(DataError, match="another config"):
        make_pairs([photos], pairs, 10, nearest_teacher(), dataclasses.replace(CFG, seed=1), show_progress=False)
    t = nearest_teacher()
    t.files = {"other": "1"}
    with pytest.raises(DataError, match="another teacher"):
        make_pairs([photos], pairs, 10, t, CFG, show_progress=False)


def test_a_cut_manifest_line_is_redone(photos, pairs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pairs, copy)
    m = copy / "manifest-0of1.jsonl"
    text = m.read_text().splitlines()
    m.write_text("\n".join(text[:-1]) + "\n" + text[-1][:20])  # the last triplet's line cut by a crash
    r = make_pairs([photos], copy, 10, nearest_teacher(), CFG, show_progress=False)
    assert r["made"] == 1 and sorted(d["index"] for d in manifest_lines(copy)) == list(range(10))


def test_triplet_batches_keep_lr_teacher_and_hr_aligned_under_crops_and_flips(pairs):
    ds = TeacherTriplets(pairs, count=8, crop=32)
    assert len(ds) == 8
    b = ds.sample(6, torch.Generator().manual_seed(0))
    assert b.lr[4].shape == (6, 3, 8, 8) and b.teacher.shape == b.hr.shape == (6, 3, 32, 32)
    assert torch.equal(b.teacher, F.interpolate(b.lr[4], scale_factor=4, mode="nearest"))
    b2 = ds.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(b.hr, b2.hr)
    with pytest.raises(DataError, match="not all made"):
        TeacherTriplets(pairs, count=11, crop=32)
    with pytest.raises(DataError, match="multiple of 4"):
        TeacherTriplets(pairs, count=None, crop=30)


def _ncnn_rrdb_files(tmp: Path, feat: int = 8, grow: int = 4, blocks: int = 1, fp16: bool = True):
    """A tiny RRDBNet in ncnn's file format (the layout of Real-ESRGAN's export), random weights."""
    rng = np.random.default_rng(0)
    lines, blobs, convs = [], [], []
    n = [0]

    def blob() -> str:
        n[0] += 1
        return f"b{n[0]}"

    def conv(src: str, cin: int, cout: int, act: bool) -> str:
        w = (rng.standard_normal((cout, cin, 3, 3)) * (0.5 / np.sqrt(cin * 9))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.05).astype(np.float32)
        convs.append((w, b))
        out = blob()
        extra = " 9=2 -23310=1,2.000000e-01" if act else ""
        lines.append(f"Convolution c{len(convs)} 1 1 {src} {out} 0={cout} 1=3 4=1 5=1 6={w.size}{extra}")
        if fp16:
            blobs.append(np.uint32(0x01306B47).tobytes() + w.astype(np.float16).tobytes()
                         + b"\0" * ((-w.size * 2) % 4))
        else:
            blobs.append(np.uint32(0).tobytes() + w.tobytes())
        blobs.append(b.tobytes())
        return out

    def cat(*srcs: str) -> str:
        out = blob()
        lines.append(f"Concat cat{n[0]} {len(srcs)} 1 {' '.join(srcs)} {out}")
        return out

    def add(a: str, b: str, ca: float) -> str:
        out = blob()
        lines.append(f"Eltwise add{n[0]} 2 1 {a} {b} {out} 0=1 -23301=2,{ca:e},1.000000e+00")
        return out

    lines.append("Input in 0 1 data")
    f0 = conv("data", 3, feat, False)
    x = f0
    for _ in range(blocks):
        rrdb_in = x
        for _ in range(3):
            feats = [x]
            for i in range(4):
                feats.append(conv(cat(*feats) if len(feats) > 1 else feats[0], feat + i * grow, grow, True))
            x = add(conv(cat(*feats), feat + 4 * grow, feat, False), x, 0.2)
        x = add(x, rrdb_in, 0.2)
    body = conv(x, feat, feat, False)
    s = blob()
    lines.append(f"BinaryOp addb 2 1 {f0} {body} {s}")
    for _ in range(2):
        u = blob()
        lines.append(f"Interp up{n[0]} 1 1 {s} {u} 0=1 1=2.000000e+00 2=2.000000e+00")
        s = conv(u, feat, feat, True)
    s = conv(s, feat, feat, True)
    out = conv(s, feat, 3, False)
    lines[-1] = lines[-1].replace(f" {out} ", " output ")
    param, binf = tmp / "tiny.param", tmp / "tiny.bin"
    # ncnn needs Split layers for blobs used twice; the reader ignores them, so write them as ncnn would
    param.write_text("7767517\n" + f"{len(lines)} {n[0] + 2}\n" + "\n".join(lines) + "\n")
    binf.write_bytes(b"".join(blobs))
    return param, binf, convs


def test_ncnn_reader_fills_rrdbnet_with_the_files_weights(tmp_path):
    for fp16 in (True, False):
        param, binf, convs = _ncnn_rrdb_files(tmp_path, fp16=fp16)
        got = read_ncnn_convs(param, binf)
        assert len(got) == len(convs) == 6 + 15
        for c, (w, b) in zip(got, convs):
            assert np.allclose(c.weight, w, atol=1e-3 if fp16 else 0) and np.array_equal(c.bias, b)
        net = rrdbnet(got)
        x = torch.rand(1, 3, 6, 5)
        y = net(x)
        assert y.shape == (1, 3, 24, 20)
        # the network by hand for the first conv and the output's shape; the last conv's weights are the file's
        assert torch.allclose(net.conv_last.weight, torch.from_numpy(got[-1].weight))
        assert torch.allclose(net.body[0].rdbs[2].convs[4].weight, torch.from_numpy(got[15].weight))
    binf.write_bytes(binf.read_bytes() + b"\0\0\0\0")
    with pytest.raises(TeacherError, match="bytes left"):
        read_ncnn_convs(param, binf)


def test_torch_rrdbnet_equals_ncnn_on_the_same_files(tmp_path):
    ncnn = pytest.importorskip("ncnn")
    param, binf, _ = _ncnn_rrdb_files(tmp_path, fp16=False)
    # ncnn needs a Split layer wherever a blob feeds two layers: let it check the graph by loading; the reader
    # does not care about Splits. Rewrite the param with splits.
    text = param.read_text().splitlines()
    body = text[2:]
    uses: dict[str, int] = {}
    for line in body:
        p = line.split()
        nin = int(p[2])
        for b in p[4:4 + nin]:
            uses[b] = uses.get(b, 0) + 1
    out_lines, count = [], {}
    for line in body:
        p = line.split()
        nin, nout = int(p[2]), int(p[3])
        ins = p[4:4 + nin]
        new_ins = []
        for b in ins:
            if uses[b] > 1:
                k = count.get(b, 0)
                count[b] = k + 1
                new_ins.append(f"{b}_s{k}")
            else:
                new_ins.append(b)
        out_lines.append(" ".join(p[:4] + new_ins + p[4 + nin:]))
        for b in p[4 + nin:4 + nin + nout]:
            if uses.get(b, 0) > 1:
                outs = " ".join(f"{b}_s{k}" for k in range(uses[b]))
                out_lines.append(f"Split split_{b} 1 {uses[b]} {b} {outs}")
    param.write_text("7767517\n" + f"{len(out_lines)} {len(out_lines) * 4}\n" + "\n".join(out_lines) + "\n")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(binf)) == 0
    x = np.random.default_rng(1).random((3, 7, 9), dtype=np.float32)
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(x))
    ret, out = ex.extract("output")
    assert ret == 0
    ref = np.array(out)
    got = rrdbnet(read_ncnn_convs(param, binf))(torch.from_numpy(x)[None])[0].detach().numpy()
    assert ref.shape == got.shape == (3, 28, 36)
    assert np.abs(ref - got).max() < 1e-4


def test_onnx_teacher_is_pluggable_and_checked_for_x4(tmp_path):
    pytest.importorskip("onnx")

    class Up(torch.nn.Module):
        def __init__(self, s: int) -> None:
            super().__init__()
            self.s = s

        def forward(self, x):
            return F.interpolate(x, scale_factor=self.s, mode="nearest")

    for s in (4, 2):
        torch.onnx.export(Up(s), torch.rand(1, 3, 8, 8), tmp_path / f"up{s}.onnx", input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
    t = load_teacher("onnx", tmp_path / "up4.onnx", threads=1)
    lr = np.random.default_rng(0).random((2, 5, 6, 3), dtype=np.float32)
    assert np.allclose(t(lr), lr.repeat(4, 1).repeat(4, 2), atol=1e-6)
    assert t.describe()["files"]["up4.onnx"] and t.runtime == "onnx"
    with pytest.raises(TeacherError, match="not x4"):
        load_teacher("onnx", tmp_path / "up2.onnx", threads=1)(lr)
    with pytest.raises(TeacherError, match="needs --teacher-model"):
        load_teacher("onnx")


def test_real_x4plus_torch_matches_ncnn_when_installed():
    """Real-ESRGAN x4plus from its package: the torch RRDBNet (fp32) equals ncnn's output."""
    pytest.importorskip("ncnn")
    try:
        t_ncnn, t_torch = load_teacher("ncnn", threads=1), load_teacher("torch-fp32", threads=1)
    except TeacherError as exc:
        pytest.skip(str(exc))
    lr = np.asarray(Image.fromarray(synthetic_photo(20, 20, 2)), dtype=np.float32)[None] / 255.0
    a, b = t_ncnn(lr), t_torch(lr)
    assert a.shape == (1, 80, 80, 3) and np.abs(a - b).max() < 1e-3


@pytest.fixture(scope="module")
def x4_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = dataclasses.replace(get_preset("test-tiny"), scale=4)
    return save_model_dir(EdgeSR(cfg), tmp_path_factory.mktemp("x4") / "model")


def test_finetune_on_teacher_triplets_uses_the_teacher_terms(pairs, photos, x4_model, tmp_path):
    cfg = TrainConfig(stage="decoder", steps=3, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1,
                      val_every=3, ckpt_every=3, val_images=2, finetune_generator=True, teacher_data=str(pairs),
                      teacher_count=8, l1_weight=0.0, teacher_pixel_weight=1.0, perceptual_weight=0.0,
                      gan_weight=0.1, gan_start=1, gan_real="teacher")
    finetune_decoder(cfg, [], photos, tmp_path / "run", x4_model, show_progress=False)
    recs = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert len(train) == 3 and all(r["t_pixel"] > 0 for r in train) and "d_loss" in train[-1]
    saved = json.loads((tmp_path / "run/checkpoint/train_config.json").read_text())
    assert saved["teacher_data"] == str(pairs) and saved["teacher_count"] == 8 and saved["gan_real"] == "teacher"
    with pytest.raises(TrainError, match="need --teacher-data"):
        finetune_decoder(dataclasses.replace(cfg, teacher_data=None), [photos], None, tmp_path / "run2", x4_model,
                         show_progress=False)


def test_cli_teacher_pairs_and_finetune_flags(photos, pairs, x4_model, tmp_path):
    r = runner.invoke(app, ["teacher-pairs", "-d", str(photos), "-o", str(tmp_path / "p"), "--shard", "3/2"])
    assert r.exit_code == 2 and "--shard '3/2': need 0 <= i < n" in r.output
    r = runner.invoke(app, ["finetune-decoder", "-m", str(x4_model), "--teacher-data", str(pairs), "--val", str(photos),
                            "-o", str(tmp_path / "ft"), "--steps", "1", "-b", "1", "--crop", "32", "--precision", "fp32",
                            "--teacher-pixel-weight", "1", "--teacher-perceptual-weight", "0", "--perceptual-weight",
                            "0", "--gan-weight", "0", "--pixel-weight", "0.5", "--finetune-generator", "-q"])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "ft/checkpoint/train_config.json").read_text())
    assert saved["l1_weight"] == 0.5 and saved["teacher_pixel_weight"] == 1.0


def test_grown_decoder_computes_the_same_and_its_new_blocks_learn(x4_model):
    from edgesr_cli.model import load_model_dir, with_decoder_blocks

    model = load_model_dir(x4_model).eval()
    grown = with_decoder_blocks(model, [1, 1, 2]).eval()
    assert grown.cfg.decoder.blocks == (1, 1, 2) and model.cfg.decoder.blocks == (1, 0, 0)
    z = torch.randn(2, model.cfg.latent_channels, 8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(grown.decoder(z), model.decoder(z))
    assert with_decoder_blocks(model, (1, 0, 0)) is model
    grown.decoder(z).square().mean().backward()
    from edgesr_cli.models.layers import ConvBlock

    new_last = [m.conv[-1] for m in grown.decoder.net if isinstance(m, ConvBlock)][1:]
    assert len(new_last) == 3 and all(c.weight.grad.abs().sum() > 0 for c in new_last)
    for bad in ([0, 0, 0], [1, 1]):
        with pytest.raises(ValueError, match="decoder blocks"):
            with_decoder_blocks(model, bad)


def test_finetune_grows_the_decoder_and_trains_on_dists_to_the_teacher(pairs, photos, x4_model, tmp_path):
    from edgesr_cli import dists
    from edgesr_cli.model import load_model_dir, read_config

    cfg = TrainConfig(stage="decoder", steps=2, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1,
                      val_every=2, ckpt_every=2, val_images=2, finetune_generator=True, teacher_data=str(pairs),
                      teacher_count=8, l1_weight=0.0, teacher_pixel_weight=1.0, perceptual_weight=0.0, gan_weight=0.0,
                      decoder_blocks=[1, 1, 0], teacher_dists_weight=1.0 if dists.available() else 0.0)
    out = finetune_decoder(cfg, [], photos, tmp_path / "run", x4_model, show_progress=False)
    assert read_config(out).decoder.blocks == (1, 1, 0)
    assert load_model_dir(out).decoder.net[5].conv[-1].weight.abs().sum() > 0  # the new block moved off identity
    from edgesr_cli.tools import checkpoint_ema  # a checkpoint of the grown run loads over the ungrown base model

    assert checkpoint_ema.main([str(tmp_path / "run/checkpoint"), str(x4_model), str(tmp_path / "ema")]) == 0
    assert read_config(tmp_path / "ema").decoder.blocks == (1, 1, 0)
    train = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    if dists.available():
        assert all(r["t_dists"] > 0 for r in train)
    with pytest.raises(TrainError, match="--decoder-blocks"):
        finetune_decoder(dataclasses.replace(cfg, decoder_blocks=[0, 0, 0], teacher_dists_weight=0.0), [], photos,
                         tmp_path / "run2", x4_model, show_progress=False)
    with pytest.raises(TrainError, match="--teacher-dists-weight needs --teacher-data"):
        finetune_decoder(dataclasses.replace(cfg, teacher_data=None, teacher_pixel_weight=0.0, decoder_blocks=None,
                                             teacher_dists_weight=1.0), [photos], None, tmp_path / "run3", x4_model,
                         show_progress=False)


def test_finetune_trains_on_lpips_alex_to_the_teacher(pairs, photos, x4_model, tmp_path):
    from edgesr_cli.metrics import lpips_available

    cfg = TrainConfig(stage="decoder", steps=2, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1,
                      val_every=2, ckpt_every=2, val_images=2, finetune_generator=True, teacher_data=str(pairs),
                      teacher_count=8, l1_weight=0.0, perceptual_weight=0.0, gan_weight=0.0, teacher_alex_weight=1.0)
    with pytest.raises(TrainError, match="--teacher-alex-weight needs --teacher-data"):
        finetune_decoder(dataclasses.replace(cfg, teacher_data=None), [photos], None, tmp_path / "run0", x4_model,
                         show_progress=False)
    if not lpips_available("alex"):
        pytest.skip("LPIPS-alex weights not installed")
    finetune_decoder(cfg, [], photos, tmp_path / "run", x4_model, show_progress=False)
    train = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert train and all(r["t_alex"] > 0 and "t_lpips" not in r for r in train)
    assert TrainConfig.from_dict(json.loads((tmp_path / "run/checkpoint/train_config.json").read_text())).teacher_alex_weight == 1.0


def test_feature_matching_compares_the_discriminators_hidden_features():
    import torch

    from edgesr_cli.training.decoder import PatchDiscriminator, feature_matching

    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        feats = disc.features(x)
    assert len(feats) == 3 and feats[0].shape == (2, 8, 16, 16)
    assert float(feature_matching(disc, x, x)[0].detach()) == 0.0
    sr = y.clone().requires_grad_(True)
    loss, logits = feature_matching(disc, sr, x)
    with torch.no_grad():
        assert torch.equal(logits, disc(y))  # the same forward's verdict, for the GAN term
    with torch.no_grad():
        want = sum(float((a - b).abs().mean()) for a, b in zip(disc.features(y), feats)) / 3
    assert abs(float(loss.detach()) - want) < 1e-6 and float(loss.detach()) > 0
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_finetune_trains_on_feature_matching_to_the_teacher(pairs, photos, x4_model, tmp_path):
    cfg = TrainConfig(stage="decoder", steps=3, batch_size=2, crop=32, lr=1e-3, precision="fp32", log_every=1,
                      val_every=3, ckpt_every=3, val_images=2, finetune_generator=True, teacher_data=str(pairs),
                      teacher_count=8, l1_weight=0.0, perceptual_weight=0.0, gan_weight=0.0, gan_start=1,
                      teacher_pixel_weight=0.1, teacher_fm_weight=1.0)
    with pytest.raises(TrainError, match="--teacher-fm-weight needs --teacher-data"):
        finetune_decoder(dataclasses.replace(cfg, teacher_data=None, teacher_pixel_weight=0.0), [photos], None,
                         tmp_path / "run0", x4_model, show_progress=False)
    finetune_decoder(cfg, [], photos, tmp_path / "run", x4_model, show_progress=False)
    train = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert [("t_fm" in r) for r in train] == [False, True, True]  # from --gan-start
    # the discriminator trains for feature matching though the GAN term is off
    assert all(r["t_fm"] > 0 and "d_loss" in r and "gan_w" not in r for r in train[1:])
    assert TrainConfig.from_dict(json.loads((tmp_path / "run/checkpoint/train_config.json").read_text())).teacher_fm_weight == 1.0
    # with the GAN term on too, it reads the discriminator's verdict from feature matching's forward
    finetune_decoder(dataclasses.replace(cfg, gan_weight=0.1), [], photos, tmp_path / "gan", x4_model, show_progress=False)
    train = [json.loads(line) for line in (tmp_path / "gan/log.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert all(r["t_fm"] > 0 and r["gan_w"] > 0 and "d_loss" in r for r in train[1:])


def test_cli_decoder_blocks_must_be_counts(pairs, photos, x4_model, tmp_path):
    for bad in ("1,x", "", "1,-1"):
        r = runner.invoke(app, ["finetune-decoder", "-m", str(x4_model), "--teacher-data", str(pairs), "--val",
                                str(photos), "-o", str(tmp_path / "ft"), "--decoder-blocks", bad, "-q"])
        assert r.exit_code == 2 and "--decoder-blocks" in r.output, r.output
        assert not (tmp_path / "ft").exists()


def test_pack_weights_grows_the_fidelity_point_to_the_perceptual_decoder(x4_model, tmp_path):
    from edgesr_cli.model import load_model_dir, with_decoder_blocks
    from edgesr_cli.tools import pack_weights

    base = load_model_dir(x4_model).eval()
    perc = with_decoder_blocks(base, [1, 1, 0])
    with torch.no_grad():
        for p in perc.decoder.parameters():
            p.add_(0.01)
    perc_dir = save_model_dir(perc, tmp_path / "perc")
    assert pack_weights.main([str(x4_model), str(tmp_path / "packed"), "--perceptual", str(perc_dir),
                              "--default-detail", "0.5"]) == 0
    packed0 = load_model_dir(tmp_path / "packed", detail=0).eval()
    assert packed0.cfg.decoder.blocks == (1, 1, 0)
    z = torch.randn(1, base.cfg.latent_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # fp16 packing: the same function up to its rounding
        assert (packed0.decoder(z) - base.decoder(z)).abs().max() < 2e-2
        assert (load_model_dir(tmp_path / "packed", detail=1).decoder(z) - perc.decoder(z)).abs().max() < 2e-2
