#!/bin/bash
# fp32 single-image restores on the Intel Xeon, "today" (`git worktree add /tmp/todaywt 2f528b0`, the code before the
# speed work, with its own models and cache) against this code, one thread, interleaved, /usr/bin/time wall.
cd /work/runs/s11/fp32 && . /work/venv/bin/activate && export LORUN_DATA=/work/shared/data
for i in 1 2 3; do for t in today now; do
  P=/work/main; C=/work/runs/s11/fp32/cache_now; [ $t = today ] && P=/tmp/todaywt && C=/work/runs/s11/fp32/cache_today
  LORUN_CACHE_DIR=$C /usr/bin/time -f "$t cs wall %e s peak %M KB" python /work/main/scripts/run_tree.py $P --threads 1 restore --task cs cs1024.png -o cs_$t.png --force --json > cs_$t.json 2> cs_$t.err; tail -1 cs_$t.err
  LORUN_CACHE_DIR=$C /usr/bin/time -f "$t sr wall %e s peak %M KB" python /work/main/scripts/run_tree.py $P --threads 1 restore --task sr --scale 3 --kernel K1 --simulate sr1536.png -o sr_$t.png --force --json > sr_$t.json 2> sr_$t.err; tail -1 sr_$t.err
done; done
python - <<'PY'
import json
for task in ("cs", "sr"):
    for t in ("today", "now"):
        r = json.load(open(f"{task}_{t}.json"))[0]
        print(task, t, "PSNR", round(r.get("psnr", float("nan")), 4))
PY
