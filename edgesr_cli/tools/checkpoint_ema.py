"""A model directory from a finetune-decoder run's checkpoint (its EMA weights), while the run goes on or
after it stopped early: what `OUT/model` would hold if the run ended at the checkpoint's step.

    python -m edgesr_cli.tools.checkpoint_ema RUN/checkpoint BASE_MODEL_DIR OUT_MODEL_DIR [--raw]

BASE_MODEL_DIR is the run's --model (its config and any weights the run did not train). `--raw` takes the
optimizer's current weights instead of the EMA (for short probes, where an EMA of 0.999 is still mostly the
starting weights). Reads safetensors and JSON only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file

from ..model import CONFIG_FILE, load_model_dir, read_config, save_model_dir, with_decoder_blocks


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    raw = "--raw" in args
    args = [a for a in args if a != "--raw"]
    if len(args) != 3:
        print("usage: python -m edgesr_cli.tools.checkpoint_ema RUN/checkpoint BASE_MODEL_DIR OUT_MODEL_DIR [--raw]",
              file=sys.stderr)
        return 2
    ckpt, base, out = (Path(a) for a in args)
    model = load_model_dir(base, detail=0)
    if (ckpt / CONFIG_FILE).is_file():  # the run's network: its decoder may have grown (--decoder-blocks)
        model = with_decoder_blocks(model, read_config(ckpt).decoder.blocks)
    step = json.loads((ckpt / "state.json").read_text())["step"]
    kind = "" if raw else ".ema"
    parts = {f"decoder{kind}.safetensors": {"decoder": model.decoder},
             f"generator{kind}.safetensors": {"lr_encoder": model.lr_encoder, "unet": model.unet}}
    used = []
    for name, modules in parts.items():
        path = ckpt / name
        if not path.is_file():
            continue
        state = load_file(str(path))
        for prefix, module in modules.items():
            sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == prefix} \
                if name.startswith("generator") else state
            own = module.state_dict()
            if set(sub) - set(own):
                raise SystemExit(f"error: {path}: keys not in the {prefix} ({sorted(set(sub) - set(own))[:3]})")
            module.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in sub.items()}})
        used.append(name)
    if not used:
        raise SystemExit(f"error: {ckpt}: no decoder/generator {'' if raw else 'EMA '}weights")
    save_model_dir(model, out, inference_only=True,
                   metadata={"stage": "finetune-decoder", "checkpoint_step": step, "weights": "raw" if raw else "ema"})
    print(f"{out}: {'raw' if raw else 'EMA'} weights of step {step} ({', '.join(used)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
