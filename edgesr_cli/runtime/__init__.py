"""The inference wing: everything between a model on disk and the upscaled pixels, for every backend.

  resolve.py   the one resolution point: model folder or export, backend, detail, tile, dtype, device -> Resolved,
               and loading it (the backend registry's loaders, backends/)
  upscaler.py  the public Python API on top of it: edgesr_cli.load(...).upscale(image)
  upscale.py   a Photo through the engine: alpha, grayscale, 8/16-bit quantization, the memory estimate
  tiling.py    the one tiling engine: plan, noise window, blend, band by band
  sampler.py   the one reference sampler (DDIM over a denoiser callable)
  schedule.py  the noise schedule's (a_t, s_t) without torch
  noise.py     the global noise field, bit for bit torch.randn's, band by band
  runner.py    the Runner and Backend Protocols the engine drives

Nothing here is imported by `import edgesr_cli` (edgesr_cli.load is a lazy attribute) or by `edgesr --help`.
"""
