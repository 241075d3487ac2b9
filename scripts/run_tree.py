"""Run the `lorun` command line from a given source tree (e.g. a `git worktree` of an older commit).

    python scripts/run_tree.py TREE [lorun arguments...]

Paired speed measurements need the old and the new code side by side; `python -m lorun_cli` with PYTHONPATH can
still reach the installed (editable) copy, so this puts TREE first on sys.path and checks that it was used.
"""

from __future__ import annotations

import sys
from pathlib import Path

if len(sys.argv) < 2:
    sys.exit("usage: python scripts/run_tree.py TREE [lorun arguments...]")
tree = str(Path(sys.argv.pop(1)).resolve())
sys.path.insert(0, tree)
sys.argv[0] = "lorun"
import lorun_cli  # noqa: E402
from lorun_cli.cli.app import main  # noqa: E402

if not lorun_cli.__file__.startswith(tree):
    sys.exit(f"lorun_cli came from {lorun_cli.__file__}, not from {tree}")
main()
