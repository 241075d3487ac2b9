#!/bin/bash
# CASSI speed, old (`git worktree add /tmp/oldwt 2353a49`, the code before the SSIM filter and TV band-group changes)
# vs new (this tree), one thread, interleaved, on an idle machine.
mkdir -p /work/runs/s11/speed && cd /work/runs/s11/speed && . /work/venv/bin/activate && export LORUN_DATA=/work/shared/data
S=/work/main/lorun_cli/assets/samples/cassi/balloons_256.npz
echo "== start alone (gap_tv 45 it., rank 8, sample), medians of 5"
for i in 1 2 3; do python /work/main/scripts/time_cassi_start.py /tmp/oldwt old; python /work/main/scripts/time_cassi_start.py /work/main new; done
python -c "import torch; a, b = torch.load('/tmp/start_old.pt'), torch.load('/tmp/start_new.pt'); print('start max abs diff', (a - b).abs().max().item())"
echo "== whole command, /usr/bin/time, -v breakdown"
for i in 1 2 3; do for t in old new; do
  P=/work/main; [ $t = old ] && P=/tmp/oldwt
  /usr/bin/time -f "$t wall %e s, peak RSS %M KB" python /work/main/scripts/run_tree.py $P --threads 1 restore -v --task cassi --simulate $S -o o_$t.tif --force 2>&1 | tail -3
done; done
python -c "import tifffile, numpy as np; a, b = tifffile.imread('o_old.tif'), tifffile.imread('o_new.tif'); print('output max abs diff', float(np.abs(a.astype(np.float64) - b).max()))"
echo "== bench --speed (new)"
lorun --threads 1 bench --task cassi --speed --repeats 3 2>&1 | tail -12
