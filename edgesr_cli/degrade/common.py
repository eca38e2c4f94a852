"""What both degradation pipelines share: the JSON round trip of their frozen configs and its checks, the
random draws (always from an explicit ``torch.Generator``), and the tensor helpers (an image or a batch as
``(B, 3, H, W)`` float, 8-bit rounding, the scale check)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import torch

# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------


class _JsonConfig:
    """to_dict / from_dict of a frozen dataclass config (tuples <-> lists, unknown keys refused)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return {f.name: _to_json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; lists become tuples again, unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**{k: _from_json_value(v) for k, v in data.items()})


def _to_json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json_value(v) for v in value]
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_from_json_value(v) for v in value)
    return value


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_probs(name: str, probs: Sequence[float], length: int | None = None) -> None:
    if length is not None and len(probs) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(probs)}")
    if not probs or any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ValueError(f"{name} must be non-negative and sum to 1, got {tuple(probs)}")


def _check_range(name: str, rng: Sequence[float]) -> None:
    if len(rng) != 2 or not rng[0] <= rng[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {rng!r}")


# ----------------------------------------------------------------------------
# Random draws (always from an explicit generator)
# ----------------------------------------------------------------------------


def _check_generator(generator: Any) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _rand(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g, dtype=torch.float64))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo) + (float(hi) - float(lo)) * _rand(g)


def _choice(g: torch.Generator, options: Sequence[Any], probs: Sequence[float] | None = None) -> Any:
    if probs is None:
        probs = [1.0] * len(options)
    u = _rand(g) * float(sum(probs))
    acc = 0.0
    for option, p in zip(options, probs):
        acc += p
        if u < acc:
            return option
    # floating point edge: fall back to the last option with non-zero weight
    return [o for o, p in zip(options, probs) if p > 0][-1]


def _draw_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=g))


def _draw_quality(g: torch.Generator, jpeg_range: Sequence[float]) -> int:
    return int(round(_uniform(g, *jpeg_range)))


# ----------------------------------------------------------------------------
# Tensor helpers
# ----------------------------------------------------------------------------


def _as_batch(img: Any, name: str = "img", check_range: bool = False) -> tuple[torch.Tensor, bool]:
    """Validate an RGB float tensor and return it as (B, 3, H, W) plus 'was 3D'."""
    if not isinstance(img, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor in [0, 1], got dtype {img.dtype}")
    if img.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (3, H, W) or (B, 3, H, W), got {tuple(img.shape)}")
    squeeze = img.ndim == 3
    x = img.unsqueeze(0) if squeeze else img
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 (RGB) channels, got shape {tuple(img.shape)}")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(img.shape)}")
    if check_range:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name} values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        x = x.clamp(0.0, 1.0)
    return x.float(), squeeze


def _restore(x: torch.Tensor, squeeze: bool) -> torch.Tensor:
    return x.squeeze(0) if squeeze else x


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels: ``round(x * 255) / 255``; any shape."""
    return (img.clamp(0.0, 1.0) * 255.0).round() / 255.0


def _check_scale(scale: Any, h: int, w: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by scale {scale}")
    return scale
