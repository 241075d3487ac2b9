#!/usr/bin/env bash
# Trains the bundled CPU-scale checkpoints (one chain per CPU core). Usage:
#   LORUN_DATA=/path/to/data bash scripts/train_bundled.sh cs|sr|cassi-a|cassi-b|cs-block1 [OUTDIR]
# Every run is resumable (`--resume`); the exact commands are recorded in each model's metadata.
set -euo pipefail
chain=$1
out=${2:-runs}
mkdir -p "$out"
cd "$out"
L="lorun --threads 1"
case "$chain" in
  cs)
    [ -f cs-share9-r25.safetensors ] || $L pretrain --task cs --strategy share9 --ratio 0.25 --steps 1800 --batch 16 \
        --max-minutes 22 --out cs-share9-r25.safetensors
    $L adapt --backbone cs-share9-r25.safetensors --gamma 10 --steps 1100 --batch 16 --max-minutes 12 \
        --out cs-lorun9-r25.safetensors
    $L pretrain --task cs --strategy block9 --ratio 0.25 --steps 2900 --batch 16 --max-minutes 34 \
        --out cs-block9-r25.safetensors
    for r in 10 50 1 4; do
      $L adapt --backbone cs-share9-r25.safetensors --gamma 10 --ratio "0.$(printf %02d "$r")" --steps 600 \
          --batch 16 --max-minutes 6 --out "cs-lorun9-r$r.safetensors"
    done
    ;;
  sr)
    [ -f sr-share9.safetensors ] || $L pretrain --task sr --strategy share9 --steps 1100 --batch 8 --patch 72 \
        --max-minutes 32 --out sr-share9.safetensors
    $L adapt --backbone sr-share9.safetensors --gamma 10 --steps 450 --batch 8 --patch 72 --max-minutes 12 \
        --out sr-lorun9.safetensors
    $L pretrain --task sr --strategy block9 --steps 1550 --batch 8 --patch 72 --max-minutes 44 \
        --out sr-block9.safetensors
    ;;
  cassi-a)
    $L pretrain --task cassi --strategy share9 --steps 800 --batch 4 --patch 64 --max-minutes 14 \
        --out cassi-share9.safetensors
    $L adapt --backbone cassi-share9.safetensors --gamma 10 --steps 450 --batch 4 --patch 64 --max-minutes 8 \
        --out cassi-lorun9.safetensors
    ;;
  cassi-b)
    $L pretrain --task cassi --strategy block9 --steps 1250 --batch 4 --patch 64 --max-minutes 22 \
        --out cassi-block9.safetensors
    ;;
  cs-block1)
    $L pretrain --task cs --strategy block1 --ratio 0.25 --steps 2900 --batch 16 --max-minutes 15 \
        --out cs-block1-r25.safetensors
    ;;
  *) echo "unknown chain $chain" >&2; exit 2 ;;
esac
