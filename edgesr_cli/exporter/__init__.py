"""The parts of `edgesr export` (edgesr_cli/export.py runs them and re-exports their public names):

- ``common``: ExportError and the package-version helper every part shares;
- ``graphs``: the exported graphs as thin nn.Module views of an EdgeSR, their static shapes (Geometry);
- ``calibration``: LR tiles and the per-graph inputs recorded from the model, for quantized exports;
- ``onnx_format``, ``qnn_format``, ``tflite_format``: one writer per format.

Nothing here imports edgesr_cli.export; backends/ imports none of these modules.
"""
