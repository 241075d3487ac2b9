"""Device, threads and seeding, resolved once per command."""

from __future__ import annotations

import os
import random

from .errors import UsageError


def setup(threads: int | None, seed: int) -> None:
    """Apply --threads and --seed to torch (imported here, never at CLI start-up)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.manual_seed(seed)
    random.seed(seed)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
            raise UsageError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        if ":" in spec:
            idx = spec.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise UsageError(f"--device {spec}: no such GPU ({torch.cuda.device_count()} visible); use cuda:0")
        return spec
    raise UsageError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N")
