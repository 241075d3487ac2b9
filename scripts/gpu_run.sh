#!/usr/bin/env bash
# GPU session for lorun (see docs/GPU.md); each mode is one step, several may run in one call:
#   bash scripts/gpu_run.sh check      # CUDA tests, training memory (adapt vs block9) and throughput, bench
#   bash scripts/gpu_run.sh train      # the SR base model: share9 (phase 1) then lorun9 (phase 2), then latency
#   bash scripts/gpu_run.sh tests      # tests/test_cuda.py, all of it
#   bash scripts/gpu_run.sh block9     # sr-block9-base at sr-lorun9-base's total steps, scored beside it (Set5)
#   bash scripts/gpu_run.sh estimator  # the kernel estimator fine-tuned end to end through sr-lorun9 (two runs)
# Needs .gpu/ beside the repo root (git-ignored, carried): wheels the GPU image lacks (.gpu/whl), the T91
# training images as lossless PNG (.gpu/t91png), the test sets (.gpu/data/sr/set5, .gpu/data/cs/set11) and,
# for `estimator`, Train400 (.gpu/data/train/bsd400).
# Results go to $OUT (or ./gpu-out); the check's step rates stay in /tmp for the train call.
set -u
MODE=${1:-check}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LORUN_OFFLINE=1 LORUN_CACHE_DIR=/tmp/lorun-cache
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
if [ ! -d /tmp/data/train/t91 ]; then  # T91 back to its BMP names (pixels identical to the data set's)
  python3 - <<'EOF'
from pathlib import Path
from PIL import Image
dst = Path("/tmp/data/train/t91"); dst.mkdir(parents=True)
for p in sorted(Path(".gpu/t91png").glob("*.png")):
    Image.open(p).save(dst / (p.stem + ".bmp"))
for sub in ("sr", "cs", "train"):
    if not Path(".gpu/data", sub).is_dir():
        continue
    Path("/tmp/data", sub).mkdir(exist_ok=True)
    for d in Path(".gpu/data", sub).iterdir():
        (Path("/tmp/data", sub) / d.name).symlink_to(d.resolve())
print("data:", len(list(dst.iterdir())), "T91 images")
EOF
fi
export LORUN_DATA=/tmp/data
# DEVICE=cpu STEPS=3 BATCH=2 PATCH=36 S1_OVERRIDE=3 S2_OVERRIDE=3 SIDE=96 RUNS=2: a dry run of the script on a CPU
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-30} BATCH=${BATCH:-32} PATCH=${PATCH:-96}
L="python3 -m lorun_cli --device $DEVICE"
T() {  # T LIMIT CMD...: run CMD under a time limit, print its wall seconds and exit code
  local s=$1 t0=$SECONDS rc; shift; echo "== $* (limit ${s}s)"; timeout "$s" "$@"; rc=$?
  echo "   $((SECONDS - t0)) s wall, rc=$rc"
}

if [ "$MODE" = check ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
  python3 -c "import torch, typer; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'typer', typer.__version__)" \
    | tee -a "$OUT/gpu.txt"
  T 110 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 25 | tee "$OUT/check.txt"
  # The paper's memory claim: phase-2 (adapt) training against block9 training, same batch and patch.
  cd /tmp || exit 1
  for run in "pretrain --task sr --strategy share9 --size base --out /tmp/s9.safetensors" \
             "adapt --backbone /tmp/s9.safetensors --gamma 10 --out /tmp/l9.safetensors" \
             "pretrain --task sr --strategy block9 --size base --out /tmp/b9.safetensors"; do
    T 60 $L $run --steps "$STEPS" --batch "$BATCH" --patch "$PATCH" --val-every 1000 --ckpt-every 1000 --force 2>&1 | tail -n 4 \
      | tee -a "$OUT/check.txt"
  done
  python3 - "$OUT" <<'EOF' | tee -a "$OUT/check.txt"
import json, statistics
rates = {}
for name in ("s9", "l9", "b9"):
    try:
        log = [json.loads(x) for x in open(f"/tmp/{name}.safetensors.log.jsonl") if x.strip()]
    except OSError as e:
        print(name, "no log:", e)
        continue
    steps = [r["it_s"] for r in log if r.get("event") == "step" and "it_s" in r][1:]  # past the warm-up
    from lorun_cli.models import read_meta
    end = read_meta(f"/tmp/{name}.safetensors").get("training", {})
    rates[name] = {"it_s": statistics.median(steps) if steps else end.get("it_s", 0.0),
                   **{k: end[k] for k in end if k in ("steps", "peak_gpu_mb", "peak_rss_mb", "it_s", "minutes")}}
    print(name, rates[name])
json.dump(rates, open("/tmp/rates.json", "w"))
EOF
  cp /tmp/*.log.jsonl "$OUT/" 2>/dev/null
  cd - >/dev/null || exit 1
  T 60 $L bench --task sr --scale 3 --kernels K5 --dataset set5 --compare bicubic --precision fp32,bf16,fp16 \
    --no-memory --repeats 1 2>&1 | tail -n 14 | tee -a "$OUT/check.txt"
  T 60 $L bench --task cs --dataset set11 --compare block9 --precision fp32,bf16,fp16 --no-memory --repeats 1 2>&1 \
    | tail -n 12 | tee -a "$OUT/check.txt"
  T 60 $L bench --task sr --scale 3 --speed --precision fp32,bf16,fp16 --repeats 5 2>&1 | tail -n 12 \
    | tee -a "$OUT/check.txt"
fi

if [ "$MODE" = train ]; then
  # Step counts from the check call's measured rates (fallback: conservative guesses), so each cosine
  # schedule ends inside its time budget.
  read -r S1 S2 < <(python3 - <<'EOF'
import json
try:
    r = json.load(open("/tmp/rates.json"))
    s9, l9 = r["s9"]["it_s"], r["l9"]["it_s"]
except Exception:
    s9, l9 = 8.0, 8.0
print(int(s9 * 120 * 0.85) // 50 * 50, int(l9 * 110 * 0.85) // 50 * 50)
EOF
)
  S1=${S1_OVERRIDE:-$S1} S2=${S2_OVERRIDE:-$S2}
  echo "steps: share9 $S1, lorun9 $S2" | tee "$OUT/train.txt"
  T 170 $L pretrain --task sr --strategy share9 --size base --steps "$S1" --batch "$BATCH" --patch "$PATCH" --max-minutes 2.2 \
    --val-every 500 --ckpt-every 100000 --out "$OUT/sr-share9-base.safetensors" --force 2>&1 | tail -n 5 \
    | tee -a "$OUT/train.txt"
  T 160 $L adapt --backbone "$OUT/sr-share9-base.safetensors" --gamma 10 --steps "$S2" --batch "$BATCH" --patch "$PATCH" \
    --max-minutes 2.1 --val-every 500 --ckpt-every 100000 --out "$OUT/sr-lorun9-base.safetensors" --force 2>&1 \
    | tail -n 5 | tee -a "$OUT/train.txt"
  rm -f "$OUT"/*.ckpt
  T 80 python3 scripts/gpu_measure.py --lorun "$OUT/sr-lorun9-base.safetensors" \
    --backbone "$OUT/sr-share9-base.safetensors" --data /tmp/data --out "$OUT/gpu_measure.json" \
    --side "${SIDE:-1536}" --runs "${RUNS:-20}" 2>&1 | tail -n 14 \
    | tee -a "$OUT/train.txt"
fi

if [ "$MODE" = tests ]; then
  T 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 25 | tee "$OUT/tests.txt"
fi

if [ "$MODE" = block9 ]; then
  # Block-9 at the base size with the CPU pair's recipe: its nine denoisers start from the shipped share9 backbone
  # and train as many steps as the adapters did (sr-lorun9-base: 450), so both have 1,200 steps in all.
  W=lorun_cli/assets/weights
  T 120 $L pretrain --task sr --strategy block9 --size base --init $W/sr-share9-base.safetensors --steps "${B9_STEPS:-450}" \
    --batch "$BATCH" --patch "$PATCH" --lr 5e-4 --max-minutes 1.6 --val-every 1000 --ckpt-every 100000 \
    --out /tmp/sr-block9-base.safetensors --force 2>&1 | tail -n 4 | tee "$OUT/block9.txt"
  cp /tmp/sr-block9-base.safetensors.log.jsonl "$OUT/" 2>/dev/null
  for m in /tmp/sr-block9-base.safetensors $W/sr-lorun9-base.safetensors; do
    T 60 $L bench --task sr --scale 3 --kernels K5 --dataset set5 --model "$m" --compare bicubic --no-memory --repeats 1 2>&1 \
      | tail -n 8 | tee -a "$OUT/block9.txt"
    T 90 $L bench --task sr --scale 4 --kernels all --dataset set5 --model "$m" --compare bicubic --no-memory --repeats 1 --json 2>&1 \
      | tail -n 3 | tee -a "$OUT/block9.txt"
  done
fi

if [ "$MODE" = estimator ]; then
  # Two runs side by side on the one GPU (the per-sample kernel rules run on the CPU), each crop's log MSE as the
  # restoration term and batches 8x the CPU runs' (docs/SR_AUTO.md: at batch 8 every CPU run drifted the wrong way).
  E2E="python3 scripts/train_sr_estimator_e2e.py --device $DEVICE --threads 4 --batch ${E_BATCH:-64} --steps 100000"
  E2E="$E2E --max-minutes ${E_MIN:-3.5} --val-every ${E_VAL:-200} --loss log --kernel-weight 0.2"
  timeout 300 $E2E --lr 5e-5 --out "$OUT/est-e2e-g1.safetensors" > "$OUT/est-e2e-g1.txt" 2>&1 &
  timeout 300 $E2E --lr 2e-5 --seed 1 --out "$OUT/est-e2e-g2.safetensors" > "$OUT/est-e2e-g2.txt" 2>&1 &
  wait
  tail -n 4 "$OUT"/est-e2e-*.txt
fi
ls -la "$OUT"
