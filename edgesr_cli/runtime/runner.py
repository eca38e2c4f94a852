"""The Runner Protocol: what the tiling engine and the sampler need from a backend, and the Backend Protocol that
every registered backend's loader returns (a Runner with a name). Free of torch and numpy at import, so that the
backend registry (backends/base.py) and `edgesr backends` load without them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .sampler import Schedule


class Runner(Protocol):
    """What the engine needs from a backend: the geometry and three calls over float32 numpy arrays (B, C, h, w).
    A runner may also offer `fused_one_step(lr_tiles, noise_window)`, the whole one-step upscale of a batch of
    tiles, which the engine prefers for one step (tiling.upscale_tiles), and say `fixed_tile = None` when it takes
    tiles of any size (multiples of lr_multiple): the engine then cuts an image smaller than a tile at its own size
    instead of padding it to one (tiling.runner_plan). `expect_tile(tile)`, where a runner has it, is told the LR
    tile an image is cut into before its first batch (OpenVINO compiles a dynamic-size graph fixed at it)."""

    scale: int
    latent_factor: int
    latent_channels: int
    lr_multiple: int
    conditioning: str
    schedule: Schedule

    def encode(self, lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def denoise(self, z: np.ndarray, t: np.ndarray, mu: np.ndarray | None) -> np.ndarray: ...
    def decode(self, z: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Backend(Runner, Protocol):
    """A Runner with the name it is registered under (backends/base.py). A backend whose registry entry says
    `fp32_twin` also has `fp32_twin()`: the same loaded model computing in fp32 (None when it does already), for
    16-bit photos."""

    name: str
