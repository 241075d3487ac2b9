#!/bin/bash
# CASSI speed, old (`git worktree add /tmp/oldwt 8e8d03e`, the code before the Φ / TV rewrite) vs new (this tree),
# one thread, interleaved, on an idle machine. The run directory holds cassi-share9 / cassi-lorun9 from ~/.cache/lorun.
cd /work/runs/s9/speed && . /work/venv/bin/activate && export LORUN_DATA=/work/shared/data
S=/work/main/lorun_cli/assets/samples/cassi/balloons_256.npz
echo "== start alone (gap_tv 45 it., rank 8, sample), medians of 5"
for i in 1 2 3; do python /work/main/scripts/time_cassi_start.py /tmp/oldwt old; python /work/main/scripts/time_cassi_start.py /work/main new; done
echo "== whole command, /usr/bin/time, -v breakdown"
for i in 1 2 3; do for t in old new; do
  P=/work/main; [ $t = old ] && P=/tmp/oldwt
  /usr/bin/time -f "$t wall %e s, peak RSS %M KB" python /work/main/scripts/run_tree.py $P --threads 1 restore -v --task cassi --simulate $S -o o_$t.tif --force 2>&1 | tail -3
done; done
echo "== training steps (adapt, batch 2, patch 128, 8 steps)"
for t in old new; do
  P=/work/main; [ $t = old ] && P=/tmp/oldwt
  python /work/main/scripts/run_tree.py $P --threads 1 adapt --backbone cassi-share9.safetensors --init cassi-lorun9.safetensors --gamma 14 \
    --steps 8 --batch 2 --patch 128 --val-every 1000 --rgb-share 0.5 --out t_$t.safetensors --force 2>&1 | grep -E "step|saved" | tail -2
done
echo "== bench --speed (new)"
lorun --threads 1 bench --task cassi --speed --repeats 3 2>&1 | tail -12
