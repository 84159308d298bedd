#!/usr/bin/env bash
# Train the shipped models (and a few measured variants) side by side on one lent GPU.
#
# Each pair (RefScale and its no-reference INN) gets the same budget in steps and batch: STEPS_X2
# for the 2x runs, STEPS_X4 for the 4x runs. BUDGET (seconds) caps every run so the command ends
# inside a lent GPU's fixed minutes; a run stopped by the cap has fewer steps than its pair (each
# run's final.json says how many it reached). Runs share the GPU through CUDA MPS when it starts,
# so their small kernels overlap instead of taking turns. Everything lands in $OUT: runs.tar.gz
# (weights, configs, logs; no optimizer state) and a summary.
#
#   python tools/pack_training_data.py     # here, once: .train-data/ and .bench-data/ (git-ignored)
#   device run: bash tools/device_train.sh    (carry .train-data .bench-data)
#   CPU smoke test: DEVICE=cpu BUDGET=20 STEPS_X2=30 STEPS_X4=20 RUNS="x2 x2-noref" bash tools/device_train.sh
#   continue finished runs: INIT_FROM=runs/gpu1/runs LR=1e-4 BUDGET=150 ...
#
# Run names: a preset (x2, x2-noref, x4, x4-noref) or a variant below, optionally followed by
# -seed1 (seed 1 instead of 0: the seed-to-seed spread) and/or -tf32 (TF32 convolutions allowed).
set -u
BUDGET=${BUDGET:-420}
STEPS_X2=${STEPS_X2:-10000000}
STEPS_X4=${STEPS_X4:-10000000}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.train-data}
WORKERS=${WORKERS:-2}
BATCH=${BATCH:-16}
OUT=${OUT:-runs/device}
PY=${PY:-python3}
RUNS=${RUNS:-"x2 x2-noref x4 x4-noref x2-seed1 x2-noref-seed1 x2-noref-tf32"}
LR=${LR:-2e-4}
INIT_FROM=${INIT_FROM:-}
BENCH=${BENCH:-0}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
mkdir -p "$OUT/runs"

args_of() {  # run name -> refscale train arguments
    local name=$1 extra=""
    case $name in *-tf32) extra="$extra --tf32"; name=${name%-tf32} ;; esac
    case $name in *-seed1) extra="$extra --seed 1"; name=${name%-seed1} ;; esac
    case $name in
        x2 | x2-noref | x4 | x4-noref) echo "--preset $name$extra" ;;
        x2-h64) echo "--preset x2 --hidden 64$extra" ;;
        x2-noref-h64) echo "--preset x2-noref --hidden 64$extra" ;;
        x2-tv) echo "--preset x2 --smap-tv 0.01$extra" ;;
        x4-tv) echo "--preset x4 --smap-tv 0.01$extra" ;;
        *) echo "unknown run $1" >&2; return 1 ;;
    esac
}

steps_of() {  # run name -> its pair's step budget
    case $1 in x4*) echo "$STEPS_X4" ;; *) echo "$STEPS_X2" ;; esac
}

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
    if [ "${MPS:-1}" = 1 ] && timeout 20 nvidia-cuda-mps-control -d; then
        if timeout 60 "$PY" -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
            echo "MPS on" | tee -a "$OUT/gpu.txt"
        else
            echo quit | timeout 20 nvidia-cuda-mps-control
            echo "MPS failed its check; runs take turns on the GPU" | tee -a "$OUT/gpu.txt"
        fi
    fi
fi

for run in $RUNS; do
    run_args=$(args_of "$run") || continue
    if [ -n "$INIT_FROM" ]; then
        run_args="$run_args --init $INIT_FROM/$run/final.safetensors"
    fi
    # shellcheck disable=SC2086  # the arguments are words on purpose
    timeout $((BUDGET + 120)) "$PY" -m refscale_model.cli train $run_args --out "$OUT/runs/$run" \
        --device "$DEVICE" --data "$DATA" --steps "$(steps_of "$run")" --max-seconds "$BUDGET" --workers "$WORKERS" \
        --batch "$BATCH" --lr "$LR" --threads 1 --checkpoint-every 100000000 >"$OUT/runs/$run.log" 2>&1 &
done
wait

"$PY" - "$OUT/runs" $RUNS <<'PYEOF' | tee "$OUT/summary.txt"
import csv, json, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"{'run':14} {'steps':>8} {'seconds':>8} {'loss':>9} {'hr':>9} {'lr':>9}")
for run in sys.argv[2:]:
    final = root / run / "final.json"
    if not final.exists():
        log = root / f"{run}.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else ["not started"]
        print(f"{run:14} FAILED: {' | '.join(tail)}")
        continue
    meta = json.loads(final.read_text())
    rows = list(csv.DictReader(open(root / run / "log.csv", newline="")))
    mean = {k: sum(float(r[k]) for r in rows[-20:]) / len(rows[-20:]) for k in ("total", "hr", "lr")}
    print(f"{run:14} {meta['steps']:8d} {meta['wall_seconds']:8.0f} {mean['total']:9.5f} {mean['hr']:9.5f} {mean['lr']:9.5f}")
PYEOF
rm -rf "$OUT"/runs/*/checkpoints
tar czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"

if [ "$BENCH" = 1 ] && [ "$DEVICE" = cuda ] && [ -d .bench-data/nordland_1080p ]; then
    # GPU speed of the shipped architecture and the wider variant (weights do not change speed)
    REFSCALE_BENCH_PAIRS=.bench-data/nordland_1080p timeout ${BENCH_SECONDS:-100} "$PY" benchmarks/bench_downscale.py \
        --weights x2 --device cuda --sizes 1920x1080 --backends eager fp16 --min-time 2 \
        --config '{"hidden": 64}' --variant-sizes 1920x1080 \
        --variant-backends eager fp16 2>&1 | tee "$OUT/bench_gpu.txt"
fi
ls -la "$OUT"
