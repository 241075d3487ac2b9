"""One `lorun restore` command with the CASSI start x⁰ timed inside it (the share of the start in a whole restore).

    python scripts/time_cassi_share.py [lorun arguments...]   # prints "start S s" to stderr, then lorun's output
"""

import sys
import time

from lorun_cli.unfold import dun

_gap_tv = dun.gap_tv


def timed_gap_tv(*args, **kwargs):
    t = time.perf_counter()
    out = _gap_tv(*args, **kwargs)
    print(f"start {time.perf_counter() - t:.3f} s", file=sys.stderr, flush=True)
    return out


dun.gap_tv = timed_gap_tv
sys.argv[0] = "lorun"
from lorun_cli.cli.app import main  # noqa: E402

main()
