"""The TFLite writer: litert-torch conversion of each graph (batch 1, keyword signatures), the encoder's
bicubic resize as ops the GPU delegate runs, or moved out of the graph where conversion fails."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..model import EdgeSR
from .common import ExportError, package_version
from .graphs import Geometry, example_inputs, graph_modules


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


def write_tflite(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, say: Callable[[str], None],
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
    extra = {"exporter": f"litert-torch {package_version('litert_torch')}", "batch": 1,
             "encoder_resize_op": "host (bicubic before the interpreter)" if geo.host_resize
             else "replicate pad + TRANSPOSE_CONV (exact bicubic)",
             "android": "load the .tflite files with the LiteRT Interpreter; the NNAPI / GPU delegates apply as usual"}
    return files, extra, geo
