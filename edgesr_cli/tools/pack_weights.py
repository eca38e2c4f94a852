"""Pack a trained model directory for shipping: inference components only, fp16 safetensors.

    python -m edgesr_cli.tools.pack_weights RUN/decoder/model weights/edge-tiny
    python -m edgesr_cli.tools.pack_weights FIDELITY/model weights/edge-tiny --perceptual PERCEPTUAL/model \\
        --default-detail 1.0

With --perceptual the second model (finetuned from the first: the same network) becomes the directory's
detail point (OUT/detail/), and `--default-detail` the detail `edgesr upscale` uses without --detail. A
perceptual point whose decoder gained blocks (`finetune-decoder --decoder-blocks`) is packed with the fidelity
point grown the same way: its new blocks are identities, so detail 0 gives the same pixels as before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..model import (DETAIL_DIR, DETAIL_FILE, count_parameters, load_model_dir, read_config, save_model_dir,
                     with_decoder_blocks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgesr_cli.tools.pack_weights")
    ap.add_argument("model_dir", type=Path, help="the fidelity (detail 0) model directory")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--perceptual", type=Path, help="the perceptual (detail 1) model directory, same network")
    ap.add_argument("--default-detail", type=float, default=1.0)
    args = ap.parse_args(argv)
    if not 0.0 <= args.default_detail <= 1.0:
        ap.error(f"--default-detail must be in [0, 1], got {args.default_detail}")
    model = load_model_dir(args.model_dir, detail=0)
    if args.perceptual is not None:
        perc_cfg = read_config(args.perceptual)
        try:  # a perceptual point trained with --decoder-blocks: the fidelity point gets the same blocks as identities
            model = with_decoder_blocks(model, perc_cfg.decoder.blocks)
        except ValueError:
            pass
        if perc_cfg.architecture_dict() != model.cfg.architecture_dict():
            ap.error(f"{args.perceptual}: not the same network as {args.model_dir}")
    dst = save_model_dir(model, args.out_dir, dtype=torch.float16, inference_only=True,
                         metadata={"source": args.model_dir.name})
    if args.perceptual is not None:
        perc = load_model_dir(args.perceptual, detail=0)
        sub = save_model_dir(perc, dst / DETAIL_DIR, dtype=torch.float16, inference_only=True,
                             metadata={"source": args.perceptual.name})
        (sub / DETAIL_FILE).write_text(json.dumps({"default_detail": args.default_detail}, indent=2) + "\n")
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"{dst}: {count_parameters(model) / 1e6:.2f}M parameters, {size / 1e6:.2f} MB (fp16)"
          + (f", detail point from {args.perceptual}, default detail {args.default_detail:g}" if args.perceptual else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
