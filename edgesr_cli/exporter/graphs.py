"""The exported graphs: thin nn.Module views of an EdgeSR, one per graph (encoder, denoise, decoder and the
fused one-step model), the bicubic resize written with ops mobile delegates and ONNX Runtime's CPU run fast,
the HTP-friendly LayerNorm, and the static shapes of one export (Geometry, example_inputs)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..diffusion import unet_input
from ..model import EdgeSR
from ..models.lr_encoder import resize_to_half_hr


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


def _phase_taps(k: int) -> torch.Tensor:
    """(k, 5): the weights PyTorch's 1D bicubic upsampling by k (align_corners=False) gives input samples i-2..i+2
    for output sample k*i + r, row r: rows of bicubic_matrix away from the borders."""
    i = 8
    return bicubic_matrix(2 * i, k)[k * i:k * i + k, i - 2:i + 3].contiguous()


class PhaseBicubicUpsample(nn.Module):
    """F.interpolate(x, scale_factor=k, mode="bicubic", align_corners=False) for integer k and any size, written as
    replicate padding, one grouped 5x5 convolution giving the k*k output phases of each channel, and a pixel
    shuffle (DepthToSpace): the same result to float rounding, and on OpenVINO as fast as the static tile's
    matrices (README "Export and backends"), where the cubic Resize op and a transposed convolution are slower."""

    def __init__(self, factor: int, channels: int = 3) -> None:
        super().__init__()
        self.k, self.c = factor, channels
        w = _phase_taps(factor)
        kernel = torch.stack([torch.outer(w[a], w[b]) for a in range(factor) for b in range(factor)])  # (k*k, 5, 5)
        self.register_buffer("weight", kernel[:, None].repeat(channels, 1, 1, 1).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        return F.pixel_shuffle(F.conv2d(x, self.weight, groups=self.c), self.k)


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


RESIZE_OPS = ("op", "conv", "matmul", "phase")


def _make_upsample(factor: int, resize: str, tile: int | None) -> nn.Module | None:
    if resize not in RESIZE_OPS:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_OPS)}, got {resize!r}")
    if factor == 1 or resize == "op":
        return None
    if resize == "conv":
        return BicubicUpsample(factor)
    if resize == "phase":
        return PhaseBicubicUpsample(factor)
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

    from ..models.layers import LayerNorm2d

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
    dynamic_size: bool = False  # height and width free (multiples of size_multiple), the tile a reference size

    @property
    def latent(self) -> int:
        return self.tile * self.scale // self.latent_factor

    @property
    def hr(self) -> int:
        return self.tile * self.scale

    def size_multiple(self, name: str, lr_multiple: int) -> int:
        """What a dynamic-size graph's input `name` must be a multiple of, in height and width: the model's LR
        multiple at LR ("lr"; times scale/2 with host_resize), that at latent size otherwise."""
        if name == "lr":
            return lr_multiple * max(1, self.scale // 2) if self.host_resize else lr_multiple
        return lr_multiple * self.scale // self.latent_factor

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
