#!/usr/bin/env bash
# The onboard GPU path on a lent GPU, proven in one command: parity of ONNX-on-GPU against PyTorch,
# then speed of TensorRT, CUDA and PyTorch fp16 at 1280x720 and 1920x1080, one camera and CAMERAS
# cameras batched, printed as one table (and $OUT/device_bench.json).
#
#   python tools/pack_training_data.py      # here, once: .bench-data/ (git-ignored)
#   device run: bash tools/device_bench.sh  (carry .bench-data)
#   CPU smoke test (no GPU: every GPU cell reports its error): DEVICE=cpu MIN_TIME=0.3 SIZES=256x192 bash tools/device_bench.sh
#
# Parity (exit 1 when it fails): the fp32 export on the CUDA provider against PyTorch fp32 on the
# same device, the issue's criterion (lr and smap equal in >= 99.9 % of values, max difference 1);
# fp16 paths (TensorRT fp16, the --fp16 export on CUDA, PyTorch fp16) are reported as % equal and as
# rebuilt-PSNR difference (the PyTorch fp32 inverse), not held to bit parity.
set -u
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-"1280x720 1920x1080"}
CAMERAS=${CAMERAS:-6}
MIN_TIME=${MIN_TIME:-3}
OUT=${OUT:-runs/device_bench}
PY=${PY:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -z "${REFSCALE_BENCH_PAIRS:-}" ] && [ -d .bench-data/rail_nordland_1080p ]; then
    export REFSCALE_BENCH_PAIRS=$PWD/.bench-data/rail_nordland_1080p
fi
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
    BACKENDS="eager fp16 ort-cuda ort-trt"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    BACKENDS="eager ort"
fi
"$PY" - "$DEVICE" "$OUT/parity.json" <<'EOF'
import json, sys
import numpy as np, torch
sys.path.insert(0, ".")
from benchmarks.bench_downscale import load_frames
from refscale_model.weights import load_model
from refscale_model.backends.onnx_export import export_onnx
from refscale_model.backends.onnx_runtime import CPU, CUDA, OnnxDownscaler, default_providers
from refscale_model.metrics import psnr

device, out = sys.argv[1], sys.argv[2]
model = load_model("x2").eval()
hr, ref = load_frames((720, 1280))
export_onnx(model, "/tmp/device_bench/x2.onnx", model_id="x2")
export_onnx(model, "/tmp/device_bench/x2_fp16.onnx", model_id="x2", fp16=True)

def torch_run(dtype):
    m = load_model("x2").eval().to(device)
    if dtype == torch.float16:  # the half wrapper the fp16 export traces
        from refscale_model.backends.onnx_export import _Downscale
        m = m.to(dtype)
        feat, smap_g, ref_g = (_Downscale(m, g, dtype) for g in ("feat", "smap", "ref"))
        with torch.no_grad():
            x = torch.from_numpy(hr).permute(2, 0, 1)[None].to(device)
            r = torch.from_numpy(ref).permute(2, 0, 1)[None].to(device)
            f = feat(r); s = smap_g(x, f); lr = ref_g(x, f, s)
        return lr[0].permute(1, 2, 0).cpu().numpy(), s[0, 0].cpu().numpy()
    with torch.no_grad():
        enc = m.downscale(torch.from_numpy(hr).permute(2, 0, 1)[None].to(device),
                          torch.from_numpy(ref).permute(2, 0, 1)[None].to(device))
    return enc.lr[0].permute(1, 2, 0).cpu().numpy(), None if enc.smap is None else enc.smap[0, 0].cpu().numpy()

def rebuilt(lr, smap):
    t = lambda a: torch.from_numpy(a)
    with torch.no_grad():
        out = model.upscale(t(lr).permute(2, 0, 1)[None], None if smap is None else t(smap)[None, None],
                            None if smap is None else t(ref).permute(2, 0, 1)[None], hr.shape[:2])
    return psnr(hr, torch.round(out[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy())

def agree(a, b):
    if a is None or b is None:
        return (1.0, 0) if a is None and b is None else (0.0, 255)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((d == 0).mean()), int(d.max())

want = torch_run(torch.float32)
base_psnr = rebuilt(*want)
cases = {"pytorch fp16": lambda: torch_run(torch.float16)} if device == "cuda" else {}
if device == "cuda":
    cases["ort-cuda fp32"] = lambda: OnnxDownscaler("/tmp/device_bench/x2.onnx", [(CUDA, {"device_id": 0})]).downscale(hr, ref)
    cases["ort-cuda fp16 export"] = lambda: OnnxDownscaler("/tmp/device_bench/x2_fp16.onnx", [(CUDA, {"device_id": 0})]).downscale(hr, ref)
    cases["ort-trt fp16"] = lambda: OnnxDownscaler("/tmp/device_bench/x2.onnx", default_providers("/tmp/device_bench/trt")).downscale(hr, ref)
    cases["ort-trt fp32"] = lambda: OnnxDownscaler("/tmp/device_bench/x2.onnx", default_providers("/tmp/device_bench/trt32", fp16=False)).downscale(hr, ref)
cases["ort-cpu fp32"] = lambda: OnnxDownscaler("/tmp/device_bench/x2.onnx", [CPU]).downscale(hr, ref)
rows, ok = [], True
for name, fn in cases.items():
    try:
        got = fn()
        lr_eq, lr_max = agree(got[0], want[0]); s_eq, s_max = agree(got[1], want[1])
        row = {"path": name, "lr_equal": lr_eq, "lr_max": lr_max, "smap_equal": s_eq, "smap_max": s_max,
               "psnr_delta_db": rebuilt(*got) - base_psnr}
        if "fp32" in name and not (lr_eq >= 0.999 and lr_max <= 1 and s_eq >= 0.999 and s_max <= 1):
            row["fail"] = True
            ok = False
    except Exception as exc:  # noqa: BLE001 - a provider that cannot start is reported, not fatal
        row = {"path": name, "error": str(exc)[:160]}
        if name == "ort-cuda fp32":
            ok = False
    rows.append(row)
print(f"\nParity at 1280x720 against PyTorch fp32 on {device} (rebuilt PSNR {base_psnr:.2f} dB):")
print("| path | lr equal | lr max diff | smap equal | smap max diff | rebuilt PSNR Δ dB |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    if "error" in r:
        print(f"| {r['path']} | error: {r['error']} |||||")
    else:
        print(f"| {r['path']} | {100 * r['lr_equal']:.3f} % | {r['lr_max']} | {100 * r['smap_equal']:.3f} % | "
              f"{r['smap_max']} | {r['psnr_delta_db']:+.3f} |{' FAIL' if r.get('fail') else ''}")
json.dump({"ok": ok, "rows": rows}, open(out, "w"), indent=2)
sys.exit(0 if ok else 1)
EOF
parity=$?
for batch in 1 "$CAMERAS"; do
    # shellcheck disable=SC2086
    "$PY" benchmarks/bench_downscale.py --device "$DEVICE" --sizes $SIZES --backends $BACKENDS \
        --min-time "$MIN_TIME" --batch "$batch" --json "$OUT/speed_b$batch.json" > "$OUT/speed_b$batch.log" 2>&1
    echo "bench_downscale --batch $batch: exit $?"
done
"$PY" - "$OUT" "$CAMERAS" <<'EOF'
import json, sys
from pathlib import Path
out, cams = Path(sys.argv[1]), int(sys.argv[2])
rows = {}
for batch in (1, cams):
    path = out / f"speed_b{batch}.json"
    if not path.exists():
        continue
    for r in json.loads(path.read_text())["rows"]:
        key = (r["size"], r["backend"])
        cell = "error: " + r["error"][:60] if "error" in r else f"{batch * 1e3 / r['median_ms']:.1f}"
        rows.setdefault(key, {})[batch] = cell
print(f"\nOne table: frames/s, x2 with its fallback, matched reference (1 camera; {cams} cameras batched in one run)")
print(f"| size | backend | 1 camera fps | {cams} cameras fps (all frames) |")
print("|---|---|---:|---:|")
for (size, backend), cells in rows.items():
    print(f"| {size} | {backend} | {cells.get(1, '–')} | {cells.get(cams, '–')} |")
json.dump({str(k): v for k, v in rows.items()}, open(out / "device_bench.json", "w"), indent=2)
EOF
exit $parity
