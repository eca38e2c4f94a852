"""`edgesr export`: a model directory -> an exported directory that ONNX Runtime, LiteRT/TFLite or
QNN HTP (onnxruntime-qnn) runs, plus what every exported backend shares at load time.

An exported directory holds, for one static LR tile size (batch dynamic where the runtime allows):

- one graph per component: ``encoder`` (LR -> mu, sigma), ``denoise`` (z_t, t [, mu] -> z_h
  prediction) and ``decoder`` (z -> HR), which the shared sampler drives for any number of steps;
- ``fused``: the whole one-step model, ``hr = decode(denoise(mu + sigma * noise, t=1))``, with the
  noise window as an input, so the shared tiling engine still draws (and keeps) the noise;
- ``manifest.json``: format, shapes, scale, tile, quantization, latent geometry, the model config,
  the source model's checksums and the sha256 of every file. Backends verify the checksums on load
  and refuse a file that changed. For an fp32 ONNX export, each graph's ``parameters`` maps its weight
  initializers to the model parameters they hold (checked here: see _parameter_map), which lets ONNX
  Runtime and OpenVINO run the graph at any --detail without torch (backends/exported.py).

Export writes into a hidden temp directory beside the output and renames it into place, so an
interrupted or failed export never leaves a half-written model. Bad requests (a tile size the
architecture cannot take, an unknown SoC, a missing runtime package) fail before anything is written.

Formats:
- ``onnx``: torch.onnx (dynamo exporter), opset 18, batch dynamic. Optional ``--quantize int8``
  (static QDQ, u8 activations / s8 per-channel weights, calibrated) for CPUs with VNNI.
- ``tflite``: litert-torch, batch 1 (the backend loops over a batch). The same .tflite files are what
  an Android app loads with the NNAPI / GPU delegates.
- ``qnn``: W8A16 QDQ ONNX (uint16 activations, int8 per-channel weights; LayerNorm gamma uint8 as
  the HTP requires), calibrated on real LR tiles, batch 1, plus an EP-context binary per graph
  compiled for a named Snapdragon SoC (``--soc SM8650`` = Galaxy S24). The QDQ graphs are kept so
  the same export can be recompiled for another SoC or checked on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__

# what loading an export needs lives with the backends that load one (backends/ never imports this module)
from .backends.checks import PIP_HINT
from .backends.exported import (EXPORT_VERSION, MANIFEST_FILE, ExportedRunner, check_manifest,  # noqa: F401
                                read_manifest, verify_files)
from .diffusion import unet_input
from .model import COMPONENT_FILES, INFERENCE_COMPONENTS, EdgeSR, config_fingerprint, file_sha256
from .models.lr_encoder import resize_to_half_hr

FORMATS = ("onnx", "tflite", "qnn")
ALL_GRAPHS = ("fused", "encoder", "denoise", "decoder")
QUANTIZATIONS = {"onnx": ("none", "int8"), "tflite": ("none",), "qnn": ("w8a16",)}
DEFAULT_QUANTIZATION = {"onnx": "none", "tflite": "none", "qnn": "w8a16"}
DEFAULT_OPSET = 18
DEFAULT_SOC = "SM8650"

# Snapdragon SoCs with an HTP: name -> (QNN soc_model id, HTP arch, VTCM MB, marketing name).
# Source: the QAIRT SoC table (as mirrored in LiteRT's Qualcomm vendor code).
SOCS: dict[str, tuple[int, int, int, str]] = {
    "SM8350": (30, 68, 4, "Snapdragon 888"),
    "SM8450": (36, 69, 8, "Snapdragon 8 Gen 1"),
    "SM8550": (43, 73, 8, "Snapdragon 8 Gen 2 (Galaxy S23)"),
    "SM8650": (57, 75, 8, "Snapdragon 8 Gen 3 (Galaxy S24)"),
    "SM8750": (69, 79, 8, "Snapdragon 8 Elite (Galaxy S25)"),
    "SA8255": (52, 73, 8, "Snapdragon Ride (automotive)"),
    "SA8295": (39, 68, 8, "Snapdragon Cockpit (automotive)"),
}


class ExportError(ValueError):
    """An export request that cannot be carried out; the message says why and what to do."""


# ================================================================================================
# The graphs: thin nn.Module views of an EdgeSR, one per exported graph
# ================================================================================================


def _bicubic_response(k: int) -> tuple[torch.Tensor, int]:
    """PyTorch's own 1D bicubic (align_corners=False) response to an impulse when upsampling by k:
    the taps and the offset of the first one (so the conv form below uses torch's exact coefficients)."""
    n = 9
    x = torch.zeros(1, 1, 1, n)
    x[..., 4] = 1.0
    y = F.interpolate(x, scale_factor=(1.0, float(k)), mode="bicubic", align_corners=False)[0, 0, 0]
    nz = (y != 0).nonzero().flatten()
    lo, hi = int(nz.min()), int(nz.max())
    return y[lo:hi + 1].clone(), lo - 4 * k


class BicubicUpsample(nn.Module):
    """F.interpolate(x, scale_factor=k, mode="bicubic", align_corners=False) for integer k, written as
    replicate padding (slices + concat) and a stride-k transposed convolution with torch's separable
    bicubic kernel. Same result to float rounding, but only ops that mobile delegates run (TFLite
    CONCATENATION / TRANSPOSE_CONV instead of the GATHER_ND that a converted bicubic Resize becomes)."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        taps, self.dmin = _bicubic_response(factor)
        self.k = factor
        self.register_buffer("weight", torch.outer(taps, taps)[None, None].contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k, p = self.k, 2  # the 4-tap kernel reaches 2 pixels past each border (clamped = replicate)
        x = torch.cat([x[..., :1, :], x[..., :1, :], x, x[..., -1:, :], x[..., -1:, :]], dim=-2)
        x = torch.cat([x[..., :1], x[..., :1], x, x[..., -1:], x[..., -1:]], dim=-1)
        y = F.conv_transpose2d(x.reshape(b * c, 1, h + 2 * p, w + 2 * p), self.weight, stride=k)
        o = p * k - self.dmin
        return y[..., o:o + h * k, o:o + w * k].reshape(b, c, h * k, w * k)


def bicubic_matrix(n: int, k: int) -> torch.Tensor:
    """(n*k, n): the linear map of PyTorch's 1D bicubic upsampling by k (align_corners=False, borders
    clamped) on n samples, read off F.interpolate itself by resizing each unit vector."""
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, n, 1)
    cols = F.interpolate(eye, scale_factor=(float(k), 1.0), mode="bicubic", align_corners=False)
    return cols[:, 0, :, 0].T.float().contiguous()


class MatrixBicubicUpsample(nn.Module):
    """F.interpolate(x, scale_factor=k, mode="bicubic", align_corners=False) for a static (h, w), written
    as two MatMuls with the interpolation matrices: A_h @ x @ A_w^T. Same result to float rounding; on
    ONNX Runtime's CPU it takes about 1 ms on a 128 x 128 RGB tile where the cubic Resize op takes ~30."""

    def __init__(self, factor: int, height: int, width: int) -> None:
        super().__init__()
        self.k, self.size = factor, (height, width)
        self.register_buffer("ah", bicubic_matrix(height, factor), persistent=False)
        self.register_buffer("awt", bicubic_matrix(width, factor).T.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"MatrixBicubicUpsample built for {self.size}, got {tuple(x.shape[-2:])}")
        return torch.matmul(self.ah, torch.matmul(x, self.awt))


RESIZE_OPS = ("op", "conv", "matmul")


def _make_upsample(factor: int, resize: str, tile: int | None) -> nn.Module | None:
    if resize not in RESIZE_OPS:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_OPS)}, got {resize!r}")
    if factor == 1 or resize == "op":
        return None
    if resize == "conv":
        return BicubicUpsample(factor)
    if tile is None:
        raise ValueError("resize='matmul' needs the static LR tile size")
    return MatrixBicubicUpsample(factor, tile, tile)


class EncoderGraph(nn.Module):
    """lr (B,3,T,T) -> mu, sigma (B,C,h,w). With host_resize the input is the LR already bicubic-
    resized to HR/2 (B,3,T*s/2,T*s/2) and the graph holds convolutions only. Otherwise `resize` says how
    the graph writes the bicubic resize: "op" a Resize op, "conv" BicubicUpsample (for mobile delegates),
    "matmul" MatrixBicubicUpsample for the static tile `tile` (fastest on ONNX Runtime's CPU)."""

    def __init__(self, model: EdgeSR, host_resize: bool = False, resize: str = "op", tile: int | None = None) -> None:
        super().__init__()
        self.enc = model.lr_encoder
        self.host_resize = host_resize
        factor = self.enc.scale // 2
        self.upsample = None if host_resize else _make_upsample(factor, resize, tile)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.host_resize:
            x = lr
        elif self.upsample is not None:
            x = self.upsample(lr)
        else:
            x = resize_to_half_hr(lr, self.enc.scale)
        mu, raw = self.enc.net(x * 2.0 - 1.0).chunk(2, dim=1)
        return mu, self.enc.sigma_from_raw(raw)


class DenoiseGraph(nn.Module):
    """(z (B,C,h,w), t (B,)) -> z_h prediction; the unidirectional ablation also takes mu."""

    def __init__(self, model: EdgeSR) -> None:
        super().__init__()
        self.unet = model.unet
        self.conditioning = model.cfg.conditioning

    def forward(self, z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditioning == "unidirectional":
            z = unet_input(z, mu, "unidirectional")
        return self.unet(z, t)


class DecoderGraph(nn.Module):
    def __init__(self, model: EdgeSR) -> None:
        super().__init__()
        self.dec = model.decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)


class FusedGraph(nn.Module):
    """(lr, noise) -> HR: the shared sampler's one step (z_1 = mu + sigma * noise, z_h = Z(z_1, 1))
    followed by the decoder, written out as one graph. Output not clamped (the engine clamps)."""

    def __init__(self, model: EdgeSR, host_resize: bool = False, resize: str = "op", tile: int | None = None) -> None:
        super().__init__()
        self.encoder = EncoderGraph(model, host_resize, resize, tile)
        self.denoiser = DenoiseGraph(model)
        self.decoder = DecoderGraph(model)
        self.conditioning = model.cfg.conditioning

    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mu, sigma = self.encoder(lr)
        t = torch.ones(lr.shape[0], dtype=lr.dtype, device=lr.device)
        if self.conditioning == "unidirectional":  # the sampler's mu = 0, sigma = 1
            zh = self.denoiser(noise, t, mu)
        else:
            zh = self.denoiser(mu + sigma * noise, t)
        return self.decoder(zh)


class ChannelLayerNorm(nn.Module):
    """LayerNorm2d (per-pixel LayerNorm over channels) written as NHWC `layer_norm`, so the ONNX graph
    has a LayerNormalization node instead of ReduceMean / Sqrt / Reciprocal. Same math; the HTP runs
    LayerNormalization natively, while its uint16 Sqrt -> Reciprocal loses the UNet (28 dB vs 55 dB
    for the same QDQ graph on the CPU, measured on the test model)."""

    def __init__(self, src: nn.Module) -> None:
        super().__init__()
        self.weight = src.weight
        self.bias = src.bias
        self.eps = src.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def htp_friendly(model: EdgeSR) -> EdgeSR:
    """A copy of `model` with every LayerNorm2d replaced by ChannelLayerNorm (the original is untouched)."""
    import copy

    from .models.layers import LayerNorm2d

    new = copy.deepcopy(model)

    def swap(mod: nn.Module) -> None:
        for name, child in mod.named_children():
            if isinstance(child, LayerNorm2d):
                setattr(mod, name, ChannelLayerNorm(child))
            else:
                swap(child)

    swap(new)
    return new.eval()


def graph_modules(model: EdgeSR, host_resize: bool, resize: str = "op", tile: int | None = None) -> dict[str, nn.Module]:
    """The exported graphs as modules; `resize` and `tile` as EncoderGraph takes them."""
    return {"fused": FusedGraph(model, host_resize, resize, tile).eval(),
            "encoder": EncoderGraph(model, host_resize, resize, tile).eval(),
            "denoise": DenoiseGraph(model).eval(), "decoder": DecoderGraph(model).eval()}


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Static shapes of one export (batch excluded)."""

    tile: int  # LR tile (square)
    scale: int
    latent_factor: int
    latent_channels: int
    conditioning: str
    host_resize: bool

    @property
    def latent(self) -> int:
        return self.tile * self.scale // self.latent_factor

    @property
    def hr(self) -> int:
        return self.tile * self.scale

    @property
    def encoder_in(self) -> int:
        return self.tile * max(1, self.scale // 2) if self.host_resize else self.tile

    def io(self, graph: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """{input name: shape without batch}, {output name: shape without batch} for a graph."""
        c, h, r, e = self.latent_channels, self.latent, self.hr, self.encoder_in
        lat = [c, h, h]
        if graph == "encoder":
            return {"lr": [3, e, e]}, {"mu": lat, "sigma": lat}
        if graph == "denoise":
            ins = {"z": lat, "t": []}
            if self.conditioning == "unidirectional":
                ins["mu"] = lat
            return ins, {"zh": lat}
        if graph == "decoder":
            return {"z": lat}, {"hr": [3, r, r]}
        if graph == "fused":
            return {"lr": [3, e, e], "noise": lat}, {"hr": [3, r, r]}
        raise ValueError(f"unknown graph {graph!r}")


def example_inputs(geo: Geometry, graph: str, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ins, _ = geo.io(graph)
    out = {}
    for name, shape in ins.items():
        if name == "t":
            out[name] = torch.ones(batch)
        elif name == "lr":
            out[name] = torch.rand(batch, *shape, generator=g)
        else:
            out[name] = torch.randn(batch, *shape, generator=g)
    return out


# ================================================================================================
# Validation (before anything is written)
# ================================================================================================


def check_tile(model: EdgeSR, tile: int) -> None:
    m = model.lr_multiple
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < m or tile % m:
        lower = (tile // m) * m if isinstance(tile, int) and tile > 0 else 0
        hint = f"{lower} or {lower + m}" if lower >= m else f"{m}"
        raise ExportError(
            f"tile {tile} cannot be exported for {model.cfg.name} at x{model.scale}: LR tiles must be positive "
            f"multiples of {m} (latent grid and UNet downsampling); try --tile {hint}. Nothing was written")


def resolve_soc(soc: str | None) -> dict[str, Any]:
    name = (soc or DEFAULT_SOC).strip().upper()
    if name not in SOCS:
        known = ", ".join(f"{k} ({v[3]})" for k, v in SOCS.items())
        raise ExportError(f"unknown SoC {soc!r} for QNN HTP; known: {known}")
    model_id, arch, vtcm, label = SOCS[name]
    return {"soc": name, "soc_model": model_id, "htp_arch": arch, "vtcm_mb": vtcm, "name": label}


def check_packages(fmt: str) -> None:
    """Raise BackendUnavailable naming the pip command if the packages that export `fmt` are missing."""
    from .backends.base import BackendUnavailable

    need = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "tflite": ("litert_torch",),
            "qnn": ("onnx", "onnxruntime", "onnxscript", "onnxruntime_qnn")}[fmt]
    missing = []
    for mod in need:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
        except Exception as exc:  # a broken install: say so rather than crash
            missing.append(f"{mod} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    if missing:
        hint = "pip install 'edgesr[train]'" if fmt == "onnx" else PIP_HINT[fmt]  # the exporter, not the runtime
        raise BackendUnavailable(f"exporting to {fmt} needs {', '.join(missing)}: {hint}")


def parse_graphs(graphs: str | Sequence[str] | None) -> tuple[str, ...]:
    if graphs is None or graphs == "all":
        return ALL_GRAPHS
    items = [g.strip() for g in (graphs.split(",") if isinstance(graphs, str) else graphs) if g.strip()]
    if "all" in items:
        return ALL_GRAPHS
    bad = [g for g in items if g not in ALL_GRAPHS]
    if bad or not items:
        raise ExportError(f"unknown graph(s) {bad or items}; choose from {', '.join(ALL_GRAPHS)} or all")
    return tuple(g for g in ALL_GRAPHS if g in items)


# ================================================================================================
# Calibration data (QNN W8A16, ONNX int8)
# ================================================================================================


def calibration_tiles(source: str | Path | torch.Tensor | Sequence[torch.Tensor] | None, tile: int, count: int = 64,
                      seed: int = 0) -> tuple[torch.Tensor, str]:
    """LR tiles (N,3,tile,tile) in [0,1] for calibration, and a description of where they came from.

    source: a folder (or file) of photos, cut into random tile crops (the photos are LR input, as a
    user would pass to `edgesr upscale`); or tensors: (N,3,H,W) / a list of (3,H,W) images."""
    if source is None:
        raise ExportError("quantized export needs calibration images: pass --calibration DIR "
                          "(a folder of typical input photos; 20-100 is plenty)")
    g = torch.Generator().manual_seed(seed)
    if isinstance(source, (str, Path)):
        from .data import load_images

        images, _ = load_images(source, min_size=tile)
        images = [im.float() / 255.0 for im in images]
        label = f"{Path(source).name or source} ({len(images)} image(s))"
    elif isinstance(source, torch.Tensor):
        images = list(source) if source.dim() == 4 else [source]
        label = f"{len(images)} tensor image(s)"
    else:
        images = list(source)
        label = f"{len(images)} tensor image(s)"
    images = [im for im in images if im.shape[-1] >= tile and im.shape[-2] >= tile]
    if not images:
        raise ExportError(f"no calibration image is at least {tile}x{tile} (the export tile)")
    per = max(1, math.ceil(count / len(images)))
    tiles = []
    for im in images:
        h, w = im.shape[-2:]
        for _ in range(per):
            y = int(torch.randint(0, h - tile + 1, (1,), generator=g))
            x = int(torch.randint(0, w - tile + 1, (1,), generator=g))
            tiles.append(im[:3, y:y + tile, x:x + tile].float().clamp(0, 1))
    idx = torch.randperm(len(tiles), generator=g)[:count]
    return torch.stack([tiles[int(i)] for i in idx]), label


@torch.no_grad()
def calibration_feeds(model: EdgeSR, geo: Geometry, lr_tiles: torch.Tensor, graphs: Iterable[str],
                      seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per-graph input batches (batch 1) recorded from the PyTorch model on the calibration tiles:
    the fused graph and encoder see the LR tiles, the denoiser sees the sampler's z_t for 1, 2 and 4
    steps (t = 1, .75, .5, .25), the decoder sees the denoiser's predictions."""
    from .sampler import sample

    g = torch.Generator().manual_seed(seed)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in graphs}
    enc_graph = EncoderGraph(model, geo.host_resize).eval()
    uni = geo.conditioning == "unidirectional"
    for i in range(lr_tiles.shape[0]):
        lr = lr_tiles[i:i + 1].float()
        enc_in = resize_to_half_hr(lr, geo.scale) if geo.host_resize else lr
        noise = torch.randn(1, geo.latent_channels, geo.latent, geo.latent, generator=g)
        mu, sigma = enc_graph(enc_in)
        if "encoder" in feeds:
            feeds["encoder"].append({"lr": enc_in.numpy()})
        if "fused" in feeds:
            feeds["fused"].append({"lr": enc_in.numpy(), "noise": noise.numpy()})
        steps = (1, 2, 4)[i % 3] if "denoise" in feeds else 1
        extra = [torch.randn(1, *mu.shape[1:], generator=g) for _ in range(steps)]
        start_mu, start_sigma = (torch.zeros_like(mu), torch.ones_like(sigma)) if uni else (mu, sigma)

        def denoiser(z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor = mu) -> torch.Tensor:
            item = {"z": z.numpy().copy(), "t": t.float().numpy().copy()}
            if uni:
                item["mu"] = mu.numpy()
            if "denoise" in feeds:
                feeds["denoise"].append(item)
            return model.denoise(z, t, mu if uni else None)

        zh = sample(denoiser, start_mu, start_sigma, [noise] + extra, model.schedule, steps=steps, eta=0.0)
        if "decoder" in feeds:
            feeds["decoder"].append({"z": zh.numpy()})
    return feeds


# ================================================================================================
# Export
# ================================================================================================


@dataclasses.dataclass
class ExportResult:
    path: Path
    manifest: dict
    seconds: float


def export_model(
    model: EdgeSR | str | Path,
    out_dir: str | Path,
    fmt: str,
    *,
    tile: int = 128,
    quantize: str | None = None,
    soc: str | None = None,
    calibration: str | Path | torch.Tensor | Sequence[torch.Tensor] | None = None,
    calibration_tiles_count: int = 64,
    graphs: str | Sequence[str] | None = None,
    scale: int | None = None,
    opset: int = DEFAULT_OPSET,
    host_resize: bool | None = None,
    overwrite: bool = True,
    log: Callable[[str], None] | None = None,
    detail: float | None = None,
) -> ExportResult:
    """Export `model` (an EdgeSR or a model directory) to `out_dir` in `fmt` (onnx | tflite | qnn)."""
    t_start = time.perf_counter()
    say = log or (lambda _m: None)
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    quant = (quantize or DEFAULT_QUANTIZATION[fmt]).lower()
    if quant not in QUANTIZATIONS[fmt]:
        raise ExportError(f"--quantize {quant} is not available for {fmt}; choose {', '.join(QUANTIZATIONS[fmt])}")
    soc_info = resolve_soc(soc) if fmt == "qnn" else None
    if soc is not None and fmt != "qnn":
        raise ExportError("--soc applies to --format qnn only")
    wanted = parse_graphs(graphs)
    out = Path(out_dir)
    _check_output(out, overwrite)

    source: dict[str, Any]
    if isinstance(model, (str, Path)):
        from .model import DETAIL_DIR, check_detail, load_model_dir

        mdir = Path(model)
        detail_used = check_detail(mdir, detail)
        model = load_model_dir(mdir, scale=scale, detail=detail_used)
        source = {"dir": str(mdir.resolve()), "files": {
            COMPONENT_FILES[c]: file_sha256(mdir / COMPONENT_FILES[c]) for c in INFERENCE_COMPONENTS}}
        source["files"]["config.json"] = file_sha256(mdir / "config.json")
        if detail_used is not None:
            source["detail"] = detail_used
            source["files"].update({f"{DETAIL_DIR}/{COMPONENT_FILES[c]}": file_sha256(mdir / DETAIL_DIR / COMPONENT_FILES[c])
                                    for c in INFERENCE_COMPONENTS})
    else:
        import copy

        if detail is not None:
            raise ExportError("detail applies to a model directory (an EdgeSR module has its weights already)")
        detail_used = None
        model = copy.deepcopy(model).cpu().float().eval()  # the caller's model stays as it was
        if scale is not None and scale != model.cfg.scale:
            model = _rescaled(model, scale)
        source = {"dir": None, "weights_sha256": _weights_sha256(model)}
    model = model.float().eval()
    check_tile(model, tile)
    if fmt in ("tflite", "qnn") or quant != "none":
        check_packages(fmt)
    else:
        check_packages("onnx")
    if quant != "none":
        calib_tiles, calib_label = calibration_tiles(calibration, tile, calibration_tiles_count)
    cfg = model.cfg
    geo = Geometry(tile=tile, scale=cfg.scale, latent_factor=cfg.latent_factor, latent_channels=cfg.latent_channels,
                   conditioning=cfg.conditioning, host_resize=bool(host_resize))

    _remove_stale_temps(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        extra: dict[str, Any] = {}
        quant_info: dict[str, Any] | None = None
        with _quiet_exporters():
            if fmt == "onnx":
                graph_files, extra = _write_onnx(model, geo, wanted, tmp, opset, say)
                if quant == "int8":
                    feeds = calibration_feeds(model, geo, calib_tiles, wanted)
                    graph_files, quant_info = _quantize_onnx_int8(tmp, graph_files, feeds, say)
            elif fmt == "tflite":
                graph_files, extra, geo = _write_tflite(model, geo, wanted, tmp, say, host_resize)
            else:
                feeds = calibration_feeds(model, geo, calib_tiles, wanted)
                graph_files, extra, quant_info = _write_qnn(model, geo, wanted, tmp, opset, feeds, soc_info, say)
        if quant_info is not None:
            quant_info["calibration"] = {"source": calib_label, "tiles": int(calib_tiles.shape[0])}
        if detail_used is not None:
            extra["detail"] = detail_used
        manifest = _manifest(fmt, model, geo, wanted, graph_files, quant_info, source, extra, tmp)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _fsync_dir(tmp)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, manifest, time.perf_counter() - t_start)


def _rescaled(model: EdgeSR, scale: int) -> EdgeSR:
    new = EdgeSR(dataclasses.replace(model.cfg, scale=scale))
    new.load_state_dict(model.state_dict(), strict=False)
    return new.eval()


def _weights_sha256(model: EdgeSR) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in INFERENCE_COMPONENTS:
        for k, v in sorted(model.components()[name].state_dict().items()):
            h.update(f"{name}.{k}".encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a folder; choose another -o")
        contents = list(out.iterdir())
        if contents and not (out / MANIFEST_FILE).is_file():
            raise ExportError(f"{out}: exists and is not an edgesr export; choose another -o (nothing was written)")
        if contents and not overwrite:
            raise ExportError(f"{out}: an export is already there (pass --force to replace it)")
    parent = out.resolve().parent
    if not parent.exists():
        raise ExportError(f"{parent}: no such folder")
    if not os.access(parent, os.W_OK):
        raise ExportError(f"{parent}: not writable")


def _remove_stale_temps(out: Path) -> None:
    """Temp / old folders of exports to `out` whose process died (killed mid-export)."""
    for p in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = p.name.rpartition("-")
        if not kind.endswith((".tmp", ".old")) or not pid.isdigit() or not p.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (another export to the same place)
        except ProcessLookupError:
            if kind.endswith(".old") and not out.exists():
                p.rename(out)  # died between the two renames: the previous export is still good
            else:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _fsync_dir(d: Path) -> None:
    for p in d.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


@contextmanager
def _quiet_exporters():
    """The exporters are chatty (warnings, progress bars); keep the CLI's output readable."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow / LiteRT C++ logging
    import logging

    loggers = [logging.getLogger(n) for n in ("", "torch.onnx", "torch.export", "onnxscript", "torch._dynamo",
                                               "torch.fx.experimental.symbolic_shapes", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


# ---- ONNX --------------------------------------------------------------------------------------


def _torch_onnx_export(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: list[str], path: Path,
                       opset: int, dynamic_batch: bool) -> None:
    """torch.onnx dynamo export with named inputs/outputs; batch dynamic or fixed by the example."""
    names = list(inputs)
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        kwargs["dynamic_shapes"] = {n: {0: batch} for n in names}
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    torch.onnx.export(module, tuple(inputs.values()), str(path), dynamo=True, opset_version=opset,
                      input_names=names, output_names=output_names, external_data=nbytes > 1_500_000_000,
                      optimize=True, verbose=False, **kwargs)


def _write_onnx(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, opset: int,
                say: Callable[[str], None]) -> tuple[dict[str, dict], dict]:
    import onnx

    files: dict[str, dict] = {}
    for name in wanted:
        say(f"exporting {name} graph to ONNX")
        _, outs = geo.io(name)
        path = out / f"{name}.onnx"
        mapping, why = _export_mapped(
            model, lambda m, name=name: graph_modules(m, geo.host_resize, resize="matmul", tile=geo.tile)[name],
            example_inputs(geo, name, batch=2), list(outs), path, opset)
        onnx.checker.check_model(str(path))
        files[name] = {"file": path.name}
        if mapping is not None:
            files[name]["parameters"] = mapping
        else:
            say(f"note: the {name} graph runs at the exported detail only ({why})")
    extra = {"exporter": f"torch.onnx (dynamo) {torch.__version__}", "opset": opset, "batch": "dynamic"}
    if not geo.host_resize and geo.scale // 2 > 1:
        extra["encoder_resize_op"] = "MatMul with the bicubic interpolation matrices of the static tile (exact)"
    return files, extra


def _export_mapped(model: nn.Module, make_graph: Callable[[nn.Module], nn.Module], inputs: dict[str, torch.Tensor],
                   output_names: list[str], path: Path, opset: int) -> tuple[dict[str, list[str]] | None, str]:
    """Export the graph `make_graph(model)` to `path` (batch dynamic) with the map of its weight initializers to the
    model's parameters (`model.components()`): ({initializer: [component, key] or [component, key, "T"]}, "") or,
    where no map holds, (None, why) and the graph exported as it is (runs at its own weights only).

    How: the graph is exported from a probe, a copy of the model with every weight moved by a little noise, so that
    no two weights are equal (the exporter merges equal initializers into one: untrained LayerNorms, say) and each
    initializer is found by name or by value ("T": stored transposed, as a Linear weight for MatMul); the model's
    own weights are then written into the initializers through the map (exported.replace_initializers, what the
    light install does at another --detail), and ONNX Runtime must compute from that file what torch computes with
    the model. A weight the exporter folded into another constant (a product of two parameters, say) does not
    follow the map, and then the model itself is exported instead, without a map."""
    import copy

    from .backends.exported import replace_initializers

    probe = copy.deepcopy(model).float().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(0.05 * (p.abs().mean() + 1e-3) * torch.randn(p.shape, generator=g))
    _torch_onnx_export(make_graph(probe), inputs, output_names, path, opset, dynamic_batch=True)
    mapping, why = _parameter_map(probe, make_graph(probe), path)
    if mapping is not None:
        own = {(c, k): v.detach().cpu().float().numpy() for c, mod in model.components().items()
               for k, v in mod.named_parameters()}
        path.write_bytes(replace_initializers(path.read_bytes(), {
            name: own[(e[0], e[1])].T if len(e) == 3 else own[(e[0], e[1])] for name, e in mapping.items()}))
        why = _map_check(make_graph(model), make_graph(probe), {k: v[:1] for k, v in inputs.items()}, path)
        if not why:
            return mapping, ""
    _torch_onnx_export(make_graph(model), inputs, output_names, path, opset, dynamic_batch=True)
    return None, why


def _parameter_map(model: nn.Module, module: nn.Module, path: Path) -> tuple[dict[str, list[str]] | None, str]:
    """The map of the exported graph at `path` (made from `module`, whose weights are `model`'s) as _export_mapped
    describes it, or (None, why) where an initializer equals more than one parameter."""
    import onnx
    from onnx import numpy_helper

    owner = {id(p): (c, k) for c, mod in model.components().items() for k, p in mod.named_parameters()}
    params = {n: p for n, p in module.named_parameters() if id(p) in owner}
    values = {n: p.detach().cpu().float().numpy() for n, p in params.items()}
    proto = onnx.load(str(path), load_external_data=False)
    mapping: dict[str, list[str]] = {}
    for init in proto.graph.initializer:
        if init.name in params:
            mapping[init.name] = list(owner[id(params[init.name])])
            continue
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) == 0:
            continue
        a = numpy_helper.to_array(init)
        hits = [[*owner[id(params[n])]] for n, v in values.items() if v.shape == a.shape and np.array_equal(v, a)]
        hits += [[*owner[id(params[n])], "T"] for n, v in values.items()
                 if v.ndim == 2 and v.T.shape == a.shape and np.array_equal(v.T, a)]
        if len(hits) > 1:
            return None, f"initializer {init.name} equals {len(hits)} parameters"
        if hits:
            mapping[init.name] = hits[0]
    return (mapping, "") if mapping else (None, "no weight initializers")


def _map_check(module: nn.Module, probe: nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> str:
    """"" when ONNX Runtime computes from the graph file at `path` what torch computes with `module` (to float
    rounding), where `probe`'s other weights would move the output far more; else why not."""
    from .backends.onnx_backend import open_session, session_options

    with torch.no_grad():
        ref = module(*inputs.values())
        moved_to = probe(*inputs.values())
    refs = ref if isinstance(ref, tuple) else (ref,)
    probes = moved_to if isinstance(moved_to, tuple) else (moved_to,)
    outs = open_session(path, session_options(), providers=["CPUExecutionProvider"]).run(
        None, {k: v.numpy() for k, v in inputs.items()})
    for r, q, o in zip(refs, probes, outs):
        err = float(np.abs(o - r.numpy()).max())
        moved = float(np.abs(q.numpy() - r.numpy()).max())
        if not err <= 1e-3 * max(1.0, float(np.abs(r.numpy()).max())) or not moved > 10 * err:
            return (f"with its weights written in, the graph is {err:.2g} from torch (other weights move the output "
                    f"by {moved:.2g}): a weight was folded into a constant the map does not rebuild")
    return ""


def _rename_initializers(model_proto) -> None:
    """Give every initializer a unique, descriptive name. The QDQ quantizer derives new tensor names
    from initializer names and can collide with the dynamo exporter's plain `val_N` names."""
    import re

    used = {o for n in model_proto.graph.node for o in n.output} | {i.name for i in model_proto.graph.input}
    ren: dict[str, str] = {}
    for i, init in enumerate(model_proto.graph.initializer):
        base = re.sub(r"[^A-Za-z0-9_]", "_", init.name)
        new = f"w{i:04d}_{base}"
        while new in used:
            new += "_"
        ren[init.name] = new
        init.name = new
    for node in model_proto.graph.node:
        for k, x in enumerate(node.input):
            if x in ren:
                node.input[k] = ren[x]
    for vi in model_proto.graph.value_info:
        if vi.name in ren:
            vi.name = ren[vi.name]
    for o in model_proto.graph.output:
        if o.name in ren:  # an output that is a constant (rare): keep it wired
            o.name = ren[o.name]


class _FeedReader:
    """onnxruntime CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


def _reader(feeds: list[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_FeedReader, CalibrationDataReader):
        pass

    return Reader(feeds)


def _quantize_onnx_int8(out: Path, files: dict[str, dict], feeds: dict[str, list[dict[str, np.ndarray]]],
                        say: Callable[[str], None]) -> tuple[dict[str, dict], dict]:
    """Static QDQ int8 for the ORT CPU EP (u8 activations, s8 per-channel weights), calibrated."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    new: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgesr-int8-") as work:
        for name, info in files.items():
            say(f"quantizing {name} graph to int8")
            src = out / info["file"]
            m = onnx.load(str(src))
            _rename_initializers(m)
            staged = Path(work) / f"{name}.onnx"
            onnx.save(m, str(staged))
            dst = out / f"{name}.int8.onnx"
            quantize_static(str(staged), str(dst), _reader(_batch1(feeds[name])), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            src.unlink()
            new[name] = {"file": dst.name}
    return new, {"scheme": "int8", "format": "QDQ", "activations": "uint8 (asymmetric, per-tensor)",
                 "weights": "int8 (symmetric, per-channel)", "runtime": "onnxruntime CPU"}


def _batch1(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in f.items()} for f in feeds]


# ---- QNN ---------------------------------------------------------------------------------------


def _write_qnn(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, opset: int,
               feeds: dict[str, list[dict[str, np.ndarray]]], soc: dict[str, Any], say: Callable[[str], None]):
    import onnx
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    mods = graph_modules(htp_friendly(model), geo.host_resize)
    files: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgesr-qnn-") as work:
        for name in wanted:
            say(f"exporting {name} graph (batch 1) for QNN")
            _, outs = geo.io(name)
            fp32 = Path(work) / f"{name}.fp32.onnx"
            _torch_onnx_export(mods[name], example_inputs(geo, name, batch=1), list(outs), fp32, opset,
                               dynamic_batch=False)
            m = onnx.load(str(fp32))
            _rename_initializers(m)
            staged = Path(work) / f"{name}.renamed.onnx"
            onnx.save(m, str(staged))
            # HTP LayerNorm takes its gamma as unsigned 8-bit only (signed int8 fails validation)
            overrides = {n.input[1]: [{"quant_type": QuantType.QUInt8, "symmetric": False}]
                         for n in m.graph.node if n.op_type == "LayerNormalization" and len(n.input) > 1}
            say(f"quantizing {name} graph to W8A16 on {len(feeds[name])} calibration input(s)")
            qcfg = get_qnn_qdq_config(str(staged), _reader(_batch1(feeds[name])), activation_type=QuantType.QUInt16,
                                      weight_type=QuantType.QInt8, per_channel=True, init_overrides=overrides or None)
            qdq = out / f"{name}.qdq.onnx"
            quantize(str(staged), str(qdq), qcfg)
            say(f"compiling {name} graph for {soc['soc']} (HTP v{soc['htp_arch']})")
            ctx = out / f"{name}.{soc['soc']}.ctx.onnx"
            compile_qnn_context(qdq, ctx, soc)
            files[name] = {"file": qdq.name, "context": ctx.name}
    extra = {"exporter": f"torch.onnx (dynamo) {torch.__version__}", "opset": opset, "batch": 1,
             "qnn": {**soc, "context_embed_mode": 1, "onnxruntime_qnn": _version("onnxruntime_qnn")}}
    quant = {"scheme": "w8a16", "format": "QDQ", "activations": "uint16 (asymmetric, per-tensor)",
             "weights": "int8 (symmetric, per-channel); LayerNorm gamma uint8", "runtime": "QNN HTP"}
    return files, extra, quant


def compile_qnn_context(qdq: Path, ctx: Path, soc: dict[str, Any]) -> None:
    """Compile a QDQ model into an EP-context model (the HTP context binary embedded) for `soc`."""
    import onnxruntime as ort

    from .backends.qnn_backend import qnn_devices, qnn_provider_options

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    so.add_session_config_entry("ep.context_enable", "1")
    so.add_session_config_entry("ep.context_embed_mode", "1")
    so.add_session_config_entry("ep.context_file_path", str(ctx))
    opts = qnn_provider_options(soc)
    opts["htp_graph_finalization_optimization_mode"] = "3"
    so.add_provider_for_devices(qnn_devices(), opts)
    try:
        sess = ort.InferenceSession(str(qdq), sess_options=so)
    except Exception as exc:
        raise ExportError(f"QNN could not compile {qdq.name} for {soc['soc']}: {str(exc).splitlines()[0]}") from None
    del sess
    if not ctx.is_file():
        raise ExportError(f"QNN did not write a context model for {qdq.name}")


# ---- TFLite ------------------------------------------------------------------------------------


class _EncoderKw(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, sigma = self.inner(lr)
        return {"mu": mu, "sigma": sigma}


def _tflite_module(mod: nn.Module, graph: str, conditioning: str) -> nn.Module:
    # explicit signatures (litert-torch traces keyword arguments by name)
    if graph == "encoder":
        return _EncoderKw(mod).eval()

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mod

    if graph == "denoise" and conditioning == "unidirectional":
        class W(Wrap):
            def forward(self, z, t, mu):
                return {"zh": self.inner(z, t, mu)}
    elif graph == "denoise":
        class W(Wrap):
            def forward(self, z, t):
                return {"zh": self.inner(z, t)}
    elif graph == "decoder":
        class W(Wrap):
            def forward(self, z):
                return {"hr": self.inner(z)}
    else:
        class W(Wrap):
            def forward(self, lr, noise):
                return {"hr": self.inner(lr, noise)}
    return W().eval()


def _write_tflite(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, say: Callable[[str], None],
                  host_resize: bool | None):
    """litert-torch conversion, batch 1. The encoder's bicubic resize is written as BicubicUpsample
    (a converted bicubic Resize becomes GATHER_ND, which the GPU delegate does not run). Should a graph
    still fail to convert, retry with the resize moved out of the graph (the backend does it)."""
    import litert_torch

    def convert_all(g: Geometry) -> dict[str, dict]:
        mods = graph_modules(model, g.host_resize, resize="conv")
        files = {}
        for name in wanted:
            say(f"converting {name} graph to TFLite (litert-torch)")
            sample = example_inputs(g, name, batch=1)
            edge = litert_torch.convert(_tflite_module(mods[name], name, g.conditioning), sample_kwargs=sample)
            path = out / f"{name}.tflite"
            edge.export(str(path))
            files[name] = {"file": path.name, "signature": "serving_default"}
        return files

    try:
        files = convert_all(geo)
    except Exception as exc:
        if host_resize is not None or geo.host_resize:
            raise ExportError(f"litert-torch could not convert the model: {str(exc).splitlines()[0]}") from None
        say(f"conversion failed ({str(exc).splitlines()[0][:120]}); retrying with the bicubic resize outside the graph")
        for p in out.glob("*.tflite"):
            p.unlink()
        geo = dataclasses.replace(geo, host_resize=True)
        try:
            files = convert_all(geo)
        except Exception as exc2:
            raise ExportError(f"litert-torch could not convert the model: {str(exc2).splitlines()[0]}") from None
    extra = {"exporter": f"litert-torch {_version('litert_torch')}", "batch": 1,
             "encoder_resize_op": "host (bicubic before the interpreter)" if geo.host_resize
             else "replicate pad + TRANSPOSE_CONV (exact bicubic)",
             "android": "load the .tflite files with the LiteRT Interpreter; the NNAPI / GPU delegates apply as usual"}
    return files, extra, geo


# ---- manifest ----------------------------------------------------------------------------------


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:
        return None


def _manifest(fmt: str, model: EdgeSR, geo: Geometry, wanted: Sequence[str], graph_files: dict[str, dict],
              quant: dict | None, source: dict, extra: dict, folder: Path) -> dict:
    cfg = model.cfg
    batch = extra.pop("batch", "dynamic")
    graphs = {}
    for name in wanted:
        ins, outs = geo.io(name)
        b = batch if batch != "dynamic" else "B"
        graphs[name] = {**graph_files[name],
                        "inputs": {k: [b, *v] for k, v in ins.items()},
                        "outputs": {k: [b, *v] for k, v in outs.items()}}
    files = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    return {
        "edgesr_export": EXPORT_VERSION,
        "format": fmt,
        "created_by": f"edgesr {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scale": cfg.scale,
        "tile": {"lr": [geo.tile, geo.tile], "latent": [geo.latent, geo.latent], "hr": [geo.hr, geo.hr],
                 "lr_multiple": model.lr_multiple},
        "batch": batch,
        "latent": {"channels": cfg.latent_channels, "factor": cfg.latent_factor, "conditioning": cfg.conditioning,
                   "schedule": cfg.schedule.to_dict()},
        "encoder_resize": "host" if geo.host_resize else "in_graph",
        "quantization": quant,
        "graphs": graphs,
        "model": {"name": cfg.name, "config": cfg.to_dict(), "fingerprint": config_fingerprint(cfg), "source": source},
        **extra,
        "files": files,
    }
