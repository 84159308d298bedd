#!/usr/bin/env bash
# Codec-aware fine-tune of the shipped x2 pair (x2 and x2-noref side by side, one thread each, same
# wall budget and settings): real JPEG/WebP of the LR in the forward pass (straight-through gradient),
# decoder-side LR restorer + HR refiner (offboard only) trained from zero, the INN at a low learning rate.
# Usage: BUDGET=1500 OUT=runs/ca [LAMBDA_LR=16] [FROM=x2_lossy] [SEED=0] [EXTRA="--capture-share 0.3"] \
#        bash tools/train_codec_aware.sh
# FROM names the shipped pair to start from (refscale_<FROM>.safetensors and refscale_<FROM>_noref...).
set -euo pipefail
BUDGET=${BUDGET:-1500}
OUT=${OUT:-runs/ca}
PY=${PY:-.venv/bin/python}   # run from the repository root
LAMBDA_LR=${LAMBDA_LR:-}
FROM=${FROM:-x2}
SEED=${SEED:-0}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
COMMON=(--max-seconds "$BUDGET" --steps 1000000 --batch 8 --crop 96 --threads 1 --lr 5e-5
        --codecs jpeg webp --codec-quality 20 95 --lr-restore-hidden 32 --hr-refine-hidden 32
        --decoder-layers 4 --decoder-lr-mult 10 --checkpoint-every 1000000 --seed "$SEED" "${EXTRA_ARGS[@]}")
if [ -n "$LAMBDA_LR" ]; then COMMON+=(--lambda-lr "$LAMBDA_LR"); fi
mkdir -p "$OUT"
for name in "$FROM" "${FROM}_noref"; do
  nice -n 5 "$PY" -m refscale_model.cli train --init "refscale_model/weights/refscale_${name}.safetensors" \
    --out "$OUT/$name" "${COMMON[@]}" > "$OUT/$name.out" 2>&1 &
done
wait
