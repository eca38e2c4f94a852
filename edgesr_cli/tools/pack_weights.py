"""Pack a trained model directory for shipping: inference components only, fp16 safetensors.

    python -m edgesr_cli.tools.pack_weights RUN/decoder/model weights/edge-tiny
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..model import count_parameters, load_model_dir, save_model_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edgesr_cli.tools.pack_weights MODEL_DIR OUT_DIR", file=sys.stderr)
        return 2
    src, dst = Path(args[0]), Path(args[1])
    model = load_model_dir(src)
    save_model_dir(model, dst, dtype=torch.float16, inference_only=True, metadata={"source": src.name})
    size = sum(p.stat().st_size for p in dst.iterdir())
    print(f"{dst}: {count_parameters(model) / 1e6:.2f}M parameters, {size / 1e6:.2f} MB (fp16)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
