"""The Runner Protocol: what the tiling engine and the sampler need from a backend. Its own module, free of
torch and numpy at import, so that the backend registry (backends/base.py) and `edgesr backends` load
without them; backends/base.py adds the name and the optional fused call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from .diffusion import Schedule


class Runner(Protocol):
    """What the engine needs from a backend (see backends/base.py for the full Protocol)."""

    scale: int
    latent_factor: int
    latent_channels: int
    lr_multiple: int
    conditioning: str
    schedule: Schedule

    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def denoise(self, z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor: ...
    def decode(self, z: torch.Tensor) -> torch.Tensor: ...
