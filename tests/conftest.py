"""Shared test set-up."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["LORUN_NO_FAST_EXIT"] = "1"  # in-process runs of the CLI's main() raise SystemExit (no os._exit)

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny tensors: one thread avoids oversubscription on small CI machines.
torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:  # `import zoo` from the tests
    sys.path.insert(0, str(TESTS_DIR))

#: Variables that would change what a `lorun` subprocess does; dropped from the inherited environment.
LORUN_ENV_KEYS = ("LORUN_MANIFEST", "LORUN_CACHE_DIR", "LORUN_OFFLINE", "LORUN_DATA", "LORUN_DEVICE",
                  "LORUN_WEIGHTS_URL", "LORUN_DEBUG")


@pytest.fixture(scope="session")
def zoo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `lorun` runs against the tiny test zoo: its manifest, a private cache, offline."""
    import zoo

    folder = tmp_path_factory.mktemp("zoo")
    with torch.random.fork_rng():  # the zoo seeds torch; keep the session's RNG untouched
        manifest = zoo.make_zoo(folder)
    env = {k: v for k, v in os.environ.items() if k not in LORUN_ENV_KEYS}
    env.update(LORUN_MANIFEST=str(manifest), LORUN_CACHE_DIR=str(folder / "cache"), LORUN_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])))
    return env


def run_lorun(args: list[str], env: dict[str, str], cwd: str | os.PathLike[str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m lorun_cli ARGS`` in a subprocess; output captured as text."""
    return subprocess.run([sys.executable, "-m", "lorun_cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def make_tiny_data_root(r: Path) -> Path:
    """A tiny training data root under ``r``: smooth gray Train400-like images, two T91-like RGB images, one CS
    validation image (``test_040.png``)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    (r / "train/bsd400").mkdir(parents=True)
    for i in (1, 2, 3, 40):
        a = 128 + 60 * np.sin(xx / (3 + i % 5)) + 40 * np.cos(yy / 4) + rng.normal(0, 3, (48, 48))
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(r / "train/bsd400" / f"test_{i:03d}.png")
    (r / "train/t91").mkdir(parents=True)
    for name in ("t1.bmp", "t2.bmp"):
        Image.fromarray(rng.integers(60, 200, (40, 44, 3), dtype=np.uint8)).save(r / "train/t91" / name)
    return r
