"""EdgeSR: the inference model (LR encoder + UNet + small decoder, plus the HR autoencoder when
training), input validation, and model directories (config.json + one safetensors per component).

Loading never unpickles: weights are safetensors, the config is JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import replacing_folder
from .config import ModelConfig
from .modeldir import (  # noqa: F401 (re-exported: the model directory layout and its error type)
    COMPONENT_FILES, CONFIG_FILE, DETAIL_DIR, DETAIL_FILE, INFERENCE_COMPONENTS, ModelFileError, check_detail,
    default_detail, file_sha256, read_config, shape_mismatch, tensor_shapes)
from .diffusion import Schedule, unet_input
from .models.autoencoder import Autoencoder, Decoder, grow_decoder, small_decoder
from .models.lr_encoder import LREncoder
from .models.unet import UNet

class EdgeSR(nn.Module):
    def __init__(self, cfg: ModelConfig, with_autoencoder: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.lr_encoder = LREncoder(cfg)
        self.unet = UNet(cfg)
        self.decoder: Decoder = small_decoder(cfg)
        self.autoencoder = Autoencoder(cfg) if with_autoencoder else None
        self.schedule = Schedule(cfg.schedule)

    # ---- geometry -----------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        return self.cfg.scale

    @property
    def lr_multiple(self) -> int:
        """LR height and width must be multiples of this (latent grid and UNet downsampling): the config's rule."""
        return self.cfg.lr_multiple()

    def check_lr(self, lr: torch.Tensor) -> None:
        """Raise ValueError naming the problem for input the model cannot take."""
        if not isinstance(lr, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor, got {type(lr).__name__}")
        if lr.dim() != 4:
            raise ValueError(f"expected an LR batch (B, 3, H, W), got shape {tuple(lr.shape)}")
        if lr.shape[1] != 3:
            raise ValueError(f"expected 3 colour channels, got {lr.shape[1]} (shape {tuple(lr.shape)})")
        h, w = lr.shape[-2:]
        m = self.lr_multiple
        if h % m or w % m:
            raise ValueError(
                f"LR size {h}x{w} does not fit the latent grid: height and width must be multiples of {m} "
                f"for {self.cfg.name} at x{self.scale} (the tiling engine pads for you)"
            )
        if not lr.is_floating_point():
            raise ValueError(f"expected a floating-point image in [0, 1], got dtype {lr.dtype}")
        if not torch.isfinite(lr).all():
            raise ValueError("LR input contains NaN or infinite values")

    # ---- the three inference calls that every backend provides ---------------------------------
    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_lr(lr)
        return self.lr_encoder(lr)

    def denoise(self, z: torch.Tensor, t: torch.Tensor, mu: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.conditioning == "unidirectional":
            if mu is None:
                raise ValueError("the unidirectional model needs the LR latent mu to denoise")
            z = unet_input(z, mu, "unidirectional")
        return self.unet(z, t)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    # ---- components ------------------------------------------------------------------------------
    def components(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"lr_encoder": self.lr_encoder, "unet": self.unet, "decoder": self.decoder}
        if self.autoencoder is not None:
            out["autoencoder"] = self.autoencoder
        return out


def with_decoder_blocks(model: EdgeSR, blocks: tuple[int, ...] | list[int]) -> EdgeSR:
    """`model` with `blocks` residual blocks per decoder level (at least as many as it has at each level): the
    new blocks start as identities, so the returned model's output equals `model`'s. The same model when
    `blocks` is what it has; ValueError naming the counts for fewer blocks or another number of levels."""
    import dataclasses

    old = model.cfg.decoder.blocks
    blocks = tuple(int(b) for b in blocks)
    if blocks == tuple(old):
        return model
    if len(blocks) != len(old) or any(b < a for a, b in zip(old, blocks)):
        raise ValueError(f"decoder blocks {list(blocks)}: the model has {list(old)}; give as many levels, "
                         "none with fewer blocks")
    cfg = dataclasses.replace(model.cfg, decoder=dataclasses.replace(model.cfg.decoder, blocks=blocks))
    grown = EdgeSR(cfg, with_autoencoder=model.autoencoder is not None)
    grown.lr_encoder.load_state_dict(model.lr_encoder.state_dict())
    grown.unet.load_state_dict(model.unet.state_dict())
    if model.autoencoder is not None:
        grown.autoencoder.load_state_dict(model.autoencoder.state_dict())
    grow_decoder(model.decoder, grown.decoder)
    return grown.to(next(model.parameters()).device)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_model_dir(model: EdgeSR, out_dir: str | Path, dtype: torch.dtype | None = None, inference_only: bool = True,
                   metadata: dict | None = None) -> Path:
    """Write config.json + one safetensors per component into `out_dir` (created). Written to a temp
    dir first and swapped into place (atomic.replacing_folder), so an interrupted save never leaves a half model."""
    out = Path(out_dir)
    names = INFERENCE_COMPONENTS if inference_only else tuple(model.components())
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    with replacing_folder(out) as tmp:
        model.cfg.save(tmp / CONFIG_FILE)
        for name in names:
            module = model.components()[name]
            state = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).contiguous().cpu()
                     for k, v in module.state_dict().items()}
            save_file(state, str(tmp / COMPONENT_FILES[name]), metadata=meta or None)
    return out


def load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None


def load_module_state(module: nn.Module, path: Path) -> None:
    state = load_state(path)
    own = module.state_dict()
    detail = shape_mismatch({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()})
    if detail is not None:
        raise ModelFileError(f"{path}: weights do not match the config ({detail})")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def _interpolate_into(module: nn.Module, fidelity: Path, perceptual: Path, detail: float) -> None:
    """Load (1 - detail) * fidelity + detail * perceptual (float32 arithmetic) into `module`."""
    load_module_state(module, fidelity)
    if detail == 0:
        return
    own = module.state_dict()
    a, b = load_state(fidelity), load_state(perceptual)
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise ModelFileError(f"{perceptual}: not the same network as {fidelity}")
    module.load_state_dict({k: (torch.lerp(a[k].float(), b[k].float(), detail) if a[k].is_floating_point() else b[k])
                            .to(own[k].dtype) for k in a})


def load_model_dir(model_dir: str | Path, device: str | torch.device = "cpu", with_autoencoder: bool = False,
                   scale: int | None = None, detail: float | None = None) -> EdgeSR:
    """Load a model directory. `scale` overrides the config's scale (the architecture is scale-agnostic).
    `detail` (0..1) picks the operating point of a directory with a DETAIL_DIR (default: its default_detail);
    0 is the top-level (fidelity) weights exactly."""
    import dataclasses

    d = Path(model_dir)
    cfg = read_config(d)
    detail = check_detail(d, detail)
    if scale is not None and scale != cfg.scale:
        cfg = dataclasses.replace(cfg, scale=scale)
    names = INFERENCE_COMPONENTS + (("autoencoder",) if with_autoencoder else ())
    for name in names:
        path = d / COMPONENT_FILES[name]
        if not path.is_file():
            raise ModelFileError(f"{path}: missing")
    _check_shapes(cfg, d, names, with_autoencoder)
    model = EdgeSR(cfg, with_autoencoder=with_autoencoder)
    for name in names:
        path = d / COMPONENT_FILES[name]
        if detail is not None and name in INFERENCE_COMPONENTS:
            other = d / DETAIL_DIR / COMPONENT_FILES[name]
            if not other.is_file():
                raise ModelFileError(f"{other}: missing")
            _interpolate_into(model.components()[name], path, other, detail)
        else:
            load_module_state(model.components()[name], path)
    return model.to(device).eval()


def _check_shapes(cfg: ModelConfig, d: Path, names: tuple[str, ...], with_autoencoder: bool) -> None:
    """Compare the tensors the config builds with the files' headers before a byte is allocated: a config.json
    edited to a huge size (base_channels 1000000: a 16 TB model) is a one-line ModelFileError, not an allocation
    failure. The model is built on torch's meta device (shapes only)."""
    with torch.device("meta"):
        shapes = EdgeSR(cfg, with_autoencoder=with_autoencoder).components()
    for name in names:
        path = d / COMPONENT_FILES[name]
        detail = shape_mismatch({k: tuple(v.shape) for k, v in shapes[name].state_dict().items()}, tensor_shapes(path))
        if detail is not None:
            raise ModelFileError(f"{path}: weights do not match the config ({detail})")


def config_fingerprint(cfg: ModelConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.architecture_dict(), sort_keys=True).encode()).hexdigest()[:16]
