"""The QNN writer: W8A16 QDQ ONNX graphs (batch 1, calibrated) plus an EP-context binary per graph compiled for
a named Snapdragon SoC's HTP, and the table of SoCs it knows."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import EdgeSR
from .common import ExportError, package_version
from .graphs import Geometry, example_inputs, graph_modules, htp_friendly
from .onnx_format import calibration_reader, float32_feeds, rename_initializers, torch_onnx_export

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


def resolve_soc(soc: str | None) -> dict[str, Any]:
    name = (soc or DEFAULT_SOC).strip().upper()
    if name not in SOCS:
        known = ", ".join(f"{k} ({v[3]})" for k, v in SOCS.items())
        raise ExportError(f"unknown SoC {soc!r} for QNN HTP; known: {known}")
    model_id, arch, vtcm, label = SOCS[name]
    return {"soc": name, "soc_model": model_id, "htp_arch": arch, "vtcm_mb": vtcm, "name": label}


def write_qnn(model: EdgeSR, geo: Geometry, wanted: Sequence[str], out: Path, opset: int,
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
            torch_onnx_export(mods[name], example_inputs(geo, name, batch=1), list(outs), fp32, opset,
                               dynamic_batch=False)
            m = onnx.load(str(fp32))
            rename_initializers(m)
            staged = Path(work) / f"{name}.renamed.onnx"
            onnx.save(m, str(staged))
            # HTP LayerNorm takes its gamma as unsigned 8-bit only (signed int8 fails validation)
            overrides = {n.input[1]: [{"quant_type": QuantType.QUInt8, "symmetric": False}]
                         for n in m.graph.node if n.op_type == "LayerNormalization" and len(n.input) > 1}
            say(f"quantizing {name} graph to W8A16 on {len(feeds[name])} calibration input(s)")
            qcfg = get_qnn_qdq_config(str(staged), calibration_reader(float32_feeds(feeds[name])),
                                      activation_type=QuantType.QUInt16, weight_type=QuantType.QInt8, per_channel=True,
                                      init_overrides=overrides or None)
            qdq = out / f"{name}.qdq.onnx"
            quantize(str(staged), str(qdq), qcfg)
            say(f"compiling {name} graph for {soc['soc']} (HTP v{soc['htp_arch']})")
            ctx = out / f"{name}.{soc['soc']}.ctx.onnx"
            compile_qnn_context(qdq, ctx, soc)
            files[name] = {"file": qdq.name, "context": ctx.name}
    extra = {"exporter": f"torch.onnx (dynamo) {torch.__version__}", "opset": opset, "batch": 1,
             "qnn": {**soc, "context_embed_mode": 1, "onnxruntime_qnn": package_version("onnxruntime_qnn")}}
    quant = {"scheme": "w8a16", "format": "QDQ", "activations": "uint16 (asymmetric, per-tensor)",
             "weights": "int8 (symmetric, per-channel); LayerNorm gamma uint8", "runtime": "QNN HTP"}
    return files, extra, quant


def compile_qnn_context(qdq: Path, ctx: Path, soc: dict[str, Any]) -> None:
    """Compile a QDQ model into an EP-context model (the HTP context binary embedded) for `soc`."""
    import onnxruntime as ort

    from ..backends.qnn_backend import qnn_devices, qnn_provider_options

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
