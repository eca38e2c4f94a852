"""The reference sampler lives in the inference wing, edgesr_cli/runtime/sampler.py; this name stays for the
exporter's calibration (edgesr_cli/exporter/calibration.py imports it)."""

from .runtime.sampler import Denoiser, Schedule, noise_count, sample, timesteps  # noqa: F401
