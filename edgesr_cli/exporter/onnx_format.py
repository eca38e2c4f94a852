"""The ONNX writer: torch.onnx (dynamo) export of each graph with the map of its weight initializers to the
model's parameters (so ONNX Runtime and OpenVINO run it at any --detail), and the optional static int8
quantization (QDQ) for CPUs. The QNN writer reuses the export and the calibration reader."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..model import EdgeSR
from .graphs import Geometry, example_inputs, graph_modules


def torch_onnx_export(module: nn.Module, inputs: dict[str, torch.Tensor], output_names: list[str], path: Path,
                       opset: int, dynamic_batch: bool, size_multiples: dict[str, int] | None = None) -> None:
    """torch.onnx dynamo export with named inputs/outputs; batch dynamic or fixed by the example. `size_multiples`
    ({input: m}) makes those inputs' height and width dynamic too, each any multiple of its m (one pair of sizes
    shared by every input, in proportion)."""
    names = list(inputs)
    kwargs: dict[str, Any] = {}
    if dynamic_batch or size_multiples:
        batch = torch.export.Dim("batch", min=1, max=1024)
        shapes: dict[str, dict[int, Any]] = {n: ({0: batch} if dynamic_batch else {}) for n in names}
        if size_multiples:
            base = min(size_multiples.values())
            h, w = torch.export.Dim("h", min=1, max=4096 // base), torch.export.Dim("w", min=1, max=4096 // base)
            for n, m in size_multiples.items():
                shapes[n].update({2: m * h, 3: m * w})
        kwargs["dynamic_shapes"] = {n: (v or None) for n, v in shapes.items()}
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    torch.onnx.export(module, tuple(inputs.values()), str(path), dynamo=True, opset_version=opset,
                      input_names=names, output_names=output_names, external_data=nbytes > 1_500_000_000,
                      optimize=True, verbose=False, **kwargs)


def write_onnx(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, opset: int,
                say: Callable[[str], None]) -> tuple[dict[str, dict], dict]:
    """Each graph to out/NAME.onnx, batch dynamic, and with geo.dynamic_size height and width too: the encoder's
    bicubic resize is then a grouped 5x5 convolution and a pixel shuffle (exporter.graphs.PhaseBicubicUpsample),
    which take any size, instead of the static tile's matrices. Measured on the fused graph at a 128 px tile, in one
    process each: OpenVINO bf16, 2 streams, batch 1, 39.5 ms per tile against 39.4 with the matrices (ONNX's cubic
    Resize 41.6); ONNX Runtime fp32, batch 4, 152.0 against 143.7 (Resize 158.0)."""
    import onnx

    files: dict[str, dict] = {}
    resize = "phase" if geo.dynamic_size else "matmul"
    for name in wanted:
        say(f"exporting {name} graph to ONNX")
        ins, outs = geo.io(name)
        path = out / f"{name}.onnx"
        sizes = {n: geo.size_multiple(n, model.lr_multiple) for n, shape in ins.items() if len(shape) == 3} \
            if geo.dynamic_size else None
        mapping, why = _export_mapped(
            model, lambda m, name=name: graph_modules(m, geo.host_resize, resize=resize, tile=geo.tile)[name],
            example_inputs(geo, name, batch=2), list(outs), path, opset, sizes)
        onnx.checker.check_model(str(path))
        files[name] = {"file": path.name}
        if mapping is not None:
            files[name]["parameters"] = mapping
        else:
            say(f"note: the {name} graph runs at the exported detail only ({why})")
    extra = {"exporter": f"torch.onnx (dynamo) {torch.__version__}", "opset": opset, "batch": "dynamic"}
    if not geo.host_resize and geo.scale // 2 > 1:
        extra["encoder_resize_op"] = ("grouped Conv 5x5 + DepthToSpace with torch's bicubic phases (exact)"
                                      if geo.dynamic_size else
                                      "MatMul with the bicubic interpolation matrices of the static tile (exact)")
    return files, extra


def _export_mapped(model: nn.Module, make_graph: Callable[[nn.Module], nn.Module], inputs: dict[str, torch.Tensor],
                   output_names: list[str], path: Path, opset: int,
                   sizes: dict[str, int] | None = None) -> tuple[dict[str, list[str]] | None, str]:
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

    from ..backends.exported import replace_initializers

    probe = copy.deepcopy(model).float().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(0.05 * (p.abs().mean() + 1e-3) * torch.randn(p.shape, generator=g))
    torch_onnx_export(make_graph(probe), inputs, output_names, path, opset, dynamic_batch=True, size_multiples=sizes)
    mapping, why = _parameter_map(probe, make_graph(probe), path)
    if mapping is not None:
        own = {(c, k): v.detach().cpu().float().numpy() for c, mod in model.components().items()
               for k, v in mod.named_parameters()}
        path.write_bytes(replace_initializers(path.read_bytes(), {
            name: own[(e[0], e[1])].T if len(e) == 3 else own[(e[0], e[1])] for name, e in mapping.items()}))
        why = _map_check(make_graph(model), make_graph(probe), {k: v[:1] for k, v in inputs.items()}, path)
        if not why:
            return mapping, ""
    torch_onnx_export(make_graph(model), inputs, output_names, path, opset, dynamic_batch=True, size_multiples=sizes)
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
    from ..backends.onnx_backend import open_session, session_options

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


def rename_initializers(model_proto) -> None:
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


def calibration_reader(feeds: list[dict[str, np.ndarray]]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_FeedReader, CalibrationDataReader):
        pass

    return Reader(feeds)


def quantize_onnx_int8(out: Path, files: dict[str, dict], feeds: dict[str, list[dict[str, np.ndarray]]],
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
            rename_initializers(m)
            staged = Path(work) / f"{name}.onnx"
            onnx.save(m, str(staged))
            dst = out / f"{name}.int8.onnx"
            quantize_static(str(staged), str(dst), calibration_reader(float32_feeds(feeds[name])),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            src.unlink()
            new[name] = {"file": dst.name}
    return new, {"scheme": "int8", "format": "QDQ", "activations": "uint8 (asymmetric, per-tensor)",
                 "weights": "int8 (symmetric, per-channel)", "runtime": "onnxruntime CPU"}


def float32_feeds(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in f.items()} for f in feeds]
