"""Frozen dataclass configs for the model and its presets, with a JSON round trip.

Every checkpoint and model directory stores its `ModelConfig` as JSON (`config.json`); loading never
unpickles. Presets:

- ``edge-sd-sr``: the paper's sizes and cost (UNet ~158M and ~40 G, LR encoder + small decoder ~14M and
  ~102 G for one 128x128 LR tile, in the paper's convention: conv MACs, see docs/paper_cost.md), latent /8, C=8.
- ``edge-tiny``: the shipped default, sized for two CPU cores (latent /4, see weights/MODEL_CARD.md).
- ``test-tiny``: a few-thousand-parameter model for unit tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# Field annotation (a string: `from __future__ import annotations`) -> (check, what it expects).
_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (_is_int, "an integer"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[int, ...]": (lambda v: isinstance(v, (list, tuple)) and all(map(_is_int, v)), "a list of integers"),
}


def _from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a (possibly nested) frozen dataclass from a dict; lists become tuples; unknown keys and
    values of the wrong JSON type fail with the field's dotted name and the value."""
    if not isinstance(data, dict):
        what = f"field {where.rstrip('.')}" if where else cls.__name__
        raise ValueError(f"{what}: expected a JSON object, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(where + u for u in unknown)}")
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None:
            value = _from_dict(sub, value, f"{where}{name}.")
        else:
            check = _TYPES.get(str(known[name].type))
            if check is not None and not check[0](value):
                raise ValueError(f"field {where}{name}: expected {check[1]}, got {value!r}")
            if isinstance(value, list):
                value = tuple(value)
            elif str(known[name].type) == "float":
                value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def _require(ok: bool, field_name: str, rule: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"field {field_name}: must be {rule}, got {value!r}")


def _check_ranges(cfg: "ModelConfig") -> None:
    """Values a model cannot be built from (or that would build a silently useless one)."""
    positive = lambda v: _is_int(v) and v >= 1  # noqa: E731
    _require(positive(cfg.latent_channels), "latent_channels", "an integer >= 1", cfg.latent_channels)
    lists = [("lr_encoder.channels", cfg.lr_encoder.channels, 1), ("lr_encoder.blocks", cfg.lr_encoder.blocks, 0),
             ("autoencoder.enc_channels", cfg.autoencoder.enc_channels, 1),
             ("autoencoder.enc_blocks", cfg.autoencoder.enc_blocks, 0),
             ("autoencoder.dec_channels", cfg.autoencoder.dec_channels, 1),
             ("autoencoder.dec_blocks", cfg.autoencoder.dec_blocks, 0),
             ("decoder.channels", cfg.decoder.channels, 1), ("decoder.blocks", cfg.decoder.blocks, 0),
             ("unet.channel_mult", cfg.unet.channel_mult, 1)]
    for name, values, low in lists:
        _require(all(_is_int(v) and v >= low for v in values), name, f"integers >= {low}", list(values))
    enc = cfg.lr_encoder
    _require(enc.sigma_min > 0 and math.isfinite(enc.sigma_min), "lr_encoder.sigma_min", "a number > 0",
             enc.sigma_min)
    _require(enc.sigma_max > enc.sigma_min and math.isfinite(enc.sigma_max), "lr_encoder.sigma_max",
             f"a number > sigma_min ({enc.sigma_min})", enc.sigma_max)
    u = cfg.unet
    _require(len(u.channel_mult) >= 1, "unet.channel_mult", "a non-empty list", list(u.channel_mult))
    for name in ("base_channels", "head_channels", "ff_mult", "norm_groups", "time_embed_mult"):
        _require(positive(getattr(u, name)), f"unet.{name}", "an integer >= 1", getattr(u, name))
    for name in ("num_res_blocks", "transformer_depth"):
        _require(_is_int(getattr(u, name)) and getattr(u, name) >= 0, f"unet.{name}", "an integer >= 0",
                 getattr(u, name))
    _require(all(_is_int(v) and 0 <= v < len(u.channel_mult) for v in u.attention_levels), "unet.attention_levels",
             f"levels in 0..{len(u.channel_mult) - 1}", list(u.attention_levels))
    _require(positive(cfg.schedule.num_timesteps), "schedule.num_timesteps", "an integer >= 1",
             cfg.schedule.num_timesteps)


class JsonConfig:
    """Mixin: `to_dict`, `to_json`, `from_dict`, `from_json`, `save`, `load`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = ""):
        """`where`: the dotted prefix naming this object in its file, for messages."""
        return _from_dict(cls, data, where)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path):
        try:
            return cls.from_json(Path(path).read_text())
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid {cls.__name__} ({exc})") from None


@dataclass(frozen=True)
class LREncoderConfig(JsonConfig):
    """Asymmetric LR encoder: LR resized (bicubic) to HR/2, then `log2(latent_factor/2)` stride-2 stages."""

    channels: tuple[int, ...] = (64, 128, 256)  # stem width, then one entry per stride-2 stage
    blocks: tuple[int, ...] = (1, 1, 2)  # plain conv blocks after the stem / each stage
    sigma_min: float = 1e-3
    sigma_max: float = 10.0


@dataclass(frozen=True)
class AutoencoderConfig(JsonConfig):
    """HR autoencoder (stage 0, frozen later): encoder /latent_factor and a decoder back to HR.

    Encoder: stem at full resolution, then one stride-2 stage per entry after the first.
    Decoder: `dec_channels[0]` at the latent grid, then one nearest-x2 stage per further entry.
    """

    enc_channels: tuple[int, ...] = (64, 128, 256, 256)
    enc_blocks: tuple[int, ...] = (1, 1, 1, 1)
    dec_channels: tuple[int, ...] = (512, 512, 256, 128)
    dec_blocks: tuple[int, ...] = (4, 4, 2, 2)


@dataclass(frozen=True)
class DecoderConfig(JsonConfig):
    """The small decoder that inference uses (same block structure as the autoencoder's decoder).

    Defaults (the paper preset): the autoencoder decoder's blocks halved, its latent-grid width (512, SD's)
    kept, where a 3x3 conv holds 2.4M parameters for 9.7 G MACs, and its widths above quartered, where the
    same MACs buy 4-64x fewer parameters: 10.8M parameters and 78 G conv MACs from a 64x64 latent to
    512x512 (docs/paper_cost.md).
    """

    channels: tuple[int, ...] = (512, 128, 64, 32)  # latent grid, then one per nearest-x2 stage
    blocks: tuple[int, ...] = (2, 2, 1, 1)


@dataclass(frozen=True)
class UNetConfig(JsonConfig):
    """SD-1.5-style UNet without text cross-attention; attention only at the listed (low-res) levels.

    Defaults (the paper preset, sec. 3.5): SD's base channels halved (160), FFN expansion halved, and
    the transformer blocks only at the lowest level and the middle; the width sits at the two lowest
    levels so that ~158M parameters cost ~40 G conv MACs on a 64x64 latent (docs/paper_cost.md).
    """

    base_channels: int = 160
    channel_mult: tuple[int, ...] = (1, 1, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (3,)
    mid_attention: bool = True
    transformer_depth: int = 1
    head_channels: int = 64
    ff_mult: int = 2
    norm: str = "group"  # "group" (SD) | "layer" (per-pixel, tile-invariant) | "none"
    norm_groups: int = 32
    time_embed_mult: int = 4


@dataclass(frozen=True)
class ScheduleConfig(JsonConfig):
    """Zero-terminal-SNR noise schedule over `num_timesteps` discrete steps t = k/T, k = 1..T."""

    kind: str = "cosine"  # "cosine": a_t = cos(pi t / 2); "sd-zsnr": SD's scaled-linear rescaled to zero SNR
    num_timesteps: int = 1000


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    name: str = "edge-sd-sr"
    scale: int = 4
    latent_channels: int = 8
    latent_factor: int = 8
    conditioning: str = "bidirectional"  # "bidirectional" (eq. 5) | "unidirectional" (concat, N(0, I) start)
    variance: bool = True  # False: the mean-only ablation (eq. 7, sigma = 1)
    lr_encoder: LREncoderConfig = field(default_factory=LREncoderConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def __post_init__(self) -> None:
        f = self.latent_factor
        if not _is_int(f) or f < 2 or f & (f - 1):
            raise ValueError(f"latent_factor must be a power of two >= 2, got {f!r}")
        if not _is_int(self.scale) or self.scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {self.scale!r}")
        _check_ranges(self)
        if self.conditioning not in ("bidirectional", "unidirectional"):
            raise ValueError(f"conditioning must be 'bidirectional' or 'unidirectional', got {self.conditioning!r}")
        stages = int(math.log2(f))
        if len(self.lr_encoder.channels) != stages or len(self.lr_encoder.blocks) != stages:
            raise ValueError(
                f"lr_encoder needs {stages} channel/block entries for latent_factor {f} "
                f"(stem + {stages - 1} stride-2 stages), got {len(self.lr_encoder.channels)}"
            )
        ae = self.autoencoder
        for label, chans, blocks in (
            ("autoencoder.enc", ae.enc_channels, ae.enc_blocks),
            ("autoencoder.dec", ae.dec_channels, ae.dec_blocks),
            ("decoder", self.decoder.channels, self.decoder.blocks),
        ):
            if len(chans) != stages + 1 or len(blocks) != stages + 1:
                raise ValueError(f"{label} needs {stages + 1} channel/block entries for latent_factor {f}")
        if self.unet.norm not in ("group", "layer", "none"):
            raise ValueError(f"unet.norm must be group, layer or none, got {self.unet.norm!r}")
        if self.schedule.kind not in ("cosine", "sd-zsnr"):
            raise ValueError(f"schedule.kind must be cosine or sd-zsnr, got {self.schedule.kind!r}")

    @property
    def unet_in_channels(self) -> int:
        c = self.latent_channels
        return 2 * c if self.conditioning == "unidirectional" else c

    def lr_multiple(self, scale: int | None = None) -> int:
        """LR height/width must be a multiple of this: LR * scale must divide by the latent factor times the UNet's
        downsampling (2 ** (levels - 1)), so that the latent grid is whole and the UNet's levels line up. Read from
        the config alone (no torch): what the resolver checks --tile against before a model loads."""
        s = self.scale if scale is None else scale
        need = self.latent_factor * 2 ** (len(self.unet.channel_mult) - 1)
        return need // math.gcd(need, s)

    def architecture_dict(self) -> dict[str, Any]:
        """Everything that decides parameter shapes (what a checkpoint must match to be loaded)."""
        d = self.to_dict()
        for k in ("name", "scale", "schedule"):
            d.pop(k)
        return d


_NESTED: dict[tuple[str, str], type] = {
    ("ModelConfig", "lr_encoder"): LREncoderConfig,
    ("ModelConfig", "autoencoder"): AutoencoderConfig,
    ("ModelConfig", "decoder"): DecoderConfig,
    ("ModelConfig", "unet"): UNetConfig,
    ("ModelConfig", "schedule"): ScheduleConfig,
}


def _edge_sd_sr() -> ModelConfig:
    # The class defaults are the paper's model: sized to its parameters (UNet ~158M, LR encoder + decoder
    # ~14M) and its cost in its own convention (conv MACs: UNet ~40 G, LR encoder + decoder ~102 G for one
    # 128x128 LR tile at x4); `edgesr info -c edge-sd-sr` measures both, docs/paper_cost.md explains.
    return ModelConfig(name="edge-sd-sr")


def _edge_tiny() -> ModelConfig:
    # Sized for two CPU cores (see weights/MODEL_CARD.md): latent /4 with 16 channels (the /8 latent
    # caps PSNR below bicubic at this size), UNet of three levels with attention at the lowest, and a
    # decoder that works at the latent grid and upsamples late.
    return ModelConfig(
        name="edge-tiny",
        latent_channels=16,
        latent_factor=4,
        lr_encoder=LREncoderConfig(channels=(32, 48), blocks=(0, 1)),
        autoencoder=AutoencoderConfig(
            enc_channels=(32, 48, 64), enc_blocks=(0, 1, 1), dec_channels=(64, 24, 12), dec_blocks=(1, 0, 0)
        ),
        decoder=DecoderConfig(channels=(64, 24, 12), blocks=(1, 0, 0)),
        unet=UNetConfig(
            base_channels=32,
            channel_mult=(1, 2, 4),
            num_res_blocks=1,
            attention_levels=(2,),
            mid_attention=True,
            head_channels=32,
            ff_mult=2,
            norm="layer",
        ),
    )


def _test_tiny() -> ModelConfig:
    return ModelConfig(
        name="test-tiny",
        latent_channels=4,
        latent_factor=4,
        lr_encoder=LREncoderConfig(channels=(8, 8), blocks=(0, 1)),
        autoencoder=AutoencoderConfig(enc_channels=(8, 8, 8), enc_blocks=(0, 1, 1), dec_channels=(8, 8, 8), dec_blocks=(1, 1, 0)),
        decoder=DecoderConfig(channels=(8, 8, 8), blocks=(1, 0, 0)),
        unet=UNetConfig(
            base_channels=8,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_levels=(1,),
            mid_attention=True,
            head_channels=8,
            ff_mult=2,
            norm="layer",
            norm_groups=4,
        ),
    )


PRESETS = {"edge-sd-sr": _edge_sd_sr, "edge-tiny": _edge_tiny, "test-tiny": _test_tiny}
DEFAULT_PRESET = "edge-tiny"


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}") from None
