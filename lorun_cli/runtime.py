"""Device, threads and seeding, resolved once per command."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

from .errors import Interrupted, OptionError

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
_IMPORTED = time.perf_counter()

#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`tune_process` sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
MALLOC_SETTINGS = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1, _M_TOP_PAD: 64 << 20}
TUNED: dict[str, str] = {}  # what tune_process changed
_tune_done = False  # tune_process applies its settings once


def tune_process() -> dict[str, str]:
    """Process-wide settings for fast inference and training, applied once before torch is imported.

    - ``OMP_WAIT_POLICY=PASSIVE`` (unless set): idle OpenMP threads sleep instead of spinning, so extra
      threads do not collapse when another process holds a core (docs/SPEED.md: measured).
    - glibc malloc keeps the memory it has (no ``mmap`` per large tensor, no trimming): torch's large
      feature maps are otherwise mapped and unmapped at every layer, and the page faults cost as much
      system time as the computation. ``LORUN_MALLOC=system`` keeps glibc's defaults.

    Returns (and records in :data:`TUNED`) what was changed.
    """
    global _tune_done
    if _tune_done:
        return TUNED
    _tune_done = True
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        TUNED["OMP_WAIT_POLICY"] = "PASSIVE"
    if os.environ.get("LORUN_MALLOC", "").strip().lower() != "system":
        TUNED.update(_keep_malloc_memory())
    return TUNED


def _keep_malloc_memory() -> dict[str, str]:
    """mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GB, M_TOP_PAD=64 MB) on glibc; nothing elsewhere."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        ok = all(libc.mallopt(k, v) == 1 for k, v in MALLOC_SETTINGS.items())
    except (OSError, AttributeError):
        return {}
    return {"malloc": "glibc: no mmap, no trim, 64 MB top pad"} if ok else {}


def setup(threads: int | None, seed: int) -> None:
    """Apply --threads and --seed to torch (imported here, never at CLI start-up)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.manual_seed(seed)
    random.seed(seed)


def process_seconds() -> float:
    """Wall seconds since this process started (Linux: its start time in /proc, so Python's own start-up
    counts too; elsewhere since this module was imported)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux: ``VmHWM`` of /proc/self/status. (``ru_maxrss`` is not used there: Linux carries it over fork and
    exec, so a probe started by a large process would report its parent's peak.) Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def resolve_device(spec: str) -> str:
    """``auto`` → cuda if available else cpu; explicit CUDA requests fail clearly when there is none."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OptionError("device", spec, "CUDA is not available on this machine; use --device cpu or auto")
        if ":" in spec:
            idx = spec.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise OptionError("device", spec, f"no such GPU ({torch.cuda.device_count()} visible); use cuda:0")
        return spec
    raise OptionError("device", repr(spec), "not one of auto, cpu, cuda, cuda:N")


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(exit_code=SIGNAL_EXIT.get(signum, 130))


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` (so temporary files are cleaned on the way out)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in SIGNAL_EXIT}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Callable[[], int | None]]:
    """Within the block SIGINT/SIGTERM only raise a flag, polled with the yielded function (it returns the
    exit code once a signal came, else None), so a loop can stop at a consistent point; a second signal
    interrupts at once."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def handler(signum: int, frame: object) -> None:
        if got:
            _raise_interrupted(signum, frame)
        got.append(SIGNAL_EXIT.get(signum, 130))

    old = {s: signal.signal(s, handler) for s in SIGNAL_EXIT}
    try:
        yield lambda: got[0] if got else None
    finally:
        for s, h in old.items():
            signal.signal(s, h)
