"""One validation path for command-line options and ``--config`` values: types, ranges, NaN and outputs.

Every check runs before any model is loaded or any pixel is computed, and fails with a
:class:`~lorun_cli.errors.UsageError` naming the flag (``--steps 0: …``) or the YAML key
(``--config c.yaml: steps: 0 …``) and the fix. No torch import here: the CLI calls this before start-up work.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LorunError, UsageError
from .facts import DEFAULT_NOISE, DEFAULT_RATIO, TASKS

#: Image files `restore` reads (and expands folders to).
IMAGE_READ_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm", ".webp", ".gif")
#: Image files `restore` can write.
IMAGE_WRITE_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
CUBE_WRITE_EXTS = (".tif", ".tiff")
MODEL_EXTS = (".safetensors", ".pt", ".pth")
KERNEL_EXTS = (".npy", ".mat", ".png", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".mat", ".npy", ".tif", ".tiff")


@dataclass(frozen=True)
class Rule:
    """What one option accepts: a type, an optional range or set of choices, and whether None is allowed."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    example: str = ""

    def describe(self) -> str:
        """'an integer ≥ 1', 'a number in (0, 1]', 'one of small, base', ..."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(self.kind, "a value")
        if self.lo is not None and self.hi is not None:
            return f"{noun} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{noun} {'>' if self.lo_open else '≥'} {self.lo:g}"
        if self.hi is not None:
            return f"{noun} ≤ {self.hi:g}"
        return noun


def _int(lo: float | None = None, hi: float | None = None, optional: bool = False, example: str = "") -> Rule:
    return Rule(int, lo, hi, optional=optional, example=example)


def _float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, optional: bool = False,
           example: str = "") -> Rule:
    return Rule(float, lo, hi, lo_open, optional=optional, example=example)


def _choice(*choices: str, optional: bool = False) -> Rule:
    return Rule(str, choices=choices, optional=optional)


#: Options of `lorun pretrain` / `lorun adapt` and the keys of their YAML ``--config`` files.
TRAIN_RULES: dict[str, Rule] = {
    "task": _choice(*TASKS),
    "phase": _choice("denoise", "pretrain", "adapt"),
    "init": Rule(str, optional=True),
    "sigma_max": _float(0, 1, lo_open=True, example="0.2"),
    "strategy": Rule(str),
    "denoiser": _choice("unet", "transformer", "resunet", "spectral", optional=True),
    "size": _choice("small", "base"),
    "algo": _choice("pgd", "hqs", optional=True),
    "ratio": _float(0, 1, lo_open=True, example=f"{DEFAULT_RATIO:g}"),
    "block": _int(4, 256, example="32"),
    "gamma": _float(0, 100, lo_open=True, example="10"),
    "phi": _choice("learn", "lora", "frozen"),
    "stages": _int(1, 64, optional=True, example="9"),
    "backbone": Rule(str, optional=True),
    "data": Rule(str, optional=True),
    "steps": _int(1, example="2000"),
    "batch": _int(1, 4096, example="16"),
    "patch": _int(8, 4096, optional=True, example="64"),
    "lr": _float(0, 1, lo_open=True, example="1e-3"),
    "min_lr": _float(0, 1, example="1e-5"),
    "warmup": _int(0, example="50"),
    "clip": _float(0, example="1.0"),
    "seed": _int(0, 2**63 - 1, example="0"),
    "val_every": _int(1, example="100"),
    "ckpt_every": _int(1, example="100"),
    "log_every": _int(1, example="10"),
    "max_minutes": _float(0, lo_open=True, optional=True, example="30"),
    "out": Rule(str),
    "resume": Rule(bool),
    "device": Rule(str),
    "noise": _float(0, 1, optional=True, example="0.01"),
    "rgb_share": _float(0, 1, example="0.5"),
    "sr_kernel": _choice("true", "auto", "auto-raw"),
    "val_limit": _int(1, optional=True, example="2"),
    "command": Rule(str),
}

#: Options of `lorun restore` and `lorun bench` (and the global ones).
RESTORE_RULES: dict[str, Rule] = {
    "task": _choice(*TASKS),
    "scale": _int(1, 8, example="3"),
    "noise": _float(0, 255, example=f"{DEFAULT_NOISE * 255:g}"),
    "ratio": _float(0, 1, lo_open=True, optional=True, example=f"{DEFAULT_RATIO:g}"),
    "tile": _int(0, example="256"),
    "max_memory": _float(0, lo_open=True, optional=True, example="4"),
    "repeats": _int(1, 10000, example="10"),
    "limit": _int(1, optional=True, example="5"),
    "seed": _int(0, 2**63 - 1, example="0"),
    "precision": _choice("fp32", "bf16", "fp16"),
}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _fail(name: str, value: Any, problem: str, where: str | os.PathLike[str] | None, rule: Rule | None) -> None:
    example = f" (e.g. {rule.example})" if rule is not None and rule.example else ""
    if where is None:
        raise UsageError(f"--{name.replace('_', '-')} {_show(value)} {problem}{example}")
    raise UsageError(f"--config {where}: {name}: {_show(value)} {problem}{example}; fix the file or pass "
                     f"--{name.replace('_', '-')} on the command line")


def check(name: str, value: Any, rule: Rule, where: str | os.PathLike[str] | None = None) -> Any:
    """Return ``value`` converted to the rule's type, or raise a UsageError naming the flag or YAML key.

    ``where`` is None for a command-line flag, else the ``--config`` file the value came from. Numbers in
    YAML may be written as strings (PyYAML reads ``1e-3`` as text); NaN and infinities are always refused.
    """
    if value is None:
        if rule.optional:
            return None
        _fail(name, value, f"must be {rule.describe()}", where, rule)
    if rule.kind is bool:
        if not isinstance(value, bool):
            _fail(name, value, "must be true or false", where, rule)
        return value
    if rule.kind in (int, float):
        num = _number(value, rule.kind)
        if num is None:
            _fail(name, value, f"must be {rule.describe()}", where, rule)
        if not math.isfinite(num):
            _fail(name, value, f"is not a finite number; use {rule.describe()}", where, rule)
        low_bad = rule.lo is not None and (num <= rule.lo if rule.lo_open else num < rule.lo)
        if low_bad or (rule.hi is not None and num > rule.hi):
            _fail(name, value, f"is out of range; use {rule.describe()}", where, rule)
        return num
    if not isinstance(value, str | os.PathLike):
        _fail(name, value, f"must be {rule.describe()}", where, rule)
    if rule.choices and str(value).strip().lower() not in rule.choices:
        _fail(name, value, f"is not {rule.describe()}", where, rule)
    return str(value).strip().lower() if rule.choices else value


def _number(value: Any, kind: type) -> float | int | None:
    """``value`` as an int/float when it is one (or numeric text), else None; bools are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value) if kind is float or any(c in value for c in ".eEn") else int(value)
        except ValueError:
            return None
    if isinstance(value, int):
        return float(value) if kind is float else value
    if isinstance(value, float):
        if kind is float:
            return value
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value if not math.isfinite(value) else None
    return None


def check_all(values: Mapping[str, Any], rules: Mapping[str, Rule],
              sources: Mapping[str, str | os.PathLike[str] | None] | None = None) -> dict[str, Any]:
    """Check every value that has a rule; ``sources[key]`` names the --config file a value came from."""
    out = dict(values)
    for key, value in values.items():
        if key in rules:
            out[key] = check(key, value, rules[key], (sources or {}).get(key))
    return out


WARM_START_SPELLING = "'op' or 'gap-tv:N[:LAMBDA[:RANK[:INNER]]]'"


def parse_warm_start(text: str) -> dict[str, Any]:
    """The fields of a CASSI start spelled ``op`` or ``gap-tv:N[:LAMBDA[:RANK[:INNER]]]`` (those not spelled are
    left out; N ≥ 1, INNER ≥ 1); ValueError otherwise. Torch-free, so that ``restore`` checks ``--warm-start``
    before loading anything; :class:`lorun_cli.unfold.dun.WarmStart` builds on it."""
    if text == "op":
        return {"method": "op"}
    m = re.fullmatch(r"gap-tv:(\d+)(?::([0-9]*\.?[0-9]+)(?::(\d+)(?::(\d+))?)?)?", text.strip())
    if not m:
        raise ValueError(f"unknown initial estimate {text!r}; use {WARM_START_SPELLING}")
    n, lam, rank, inner = m.groups()
    fields: dict[str, Any] = {"method": "gap-tv", "iters": int(n)}
    for key, value, kind in (("lam", lam, float), ("rank", rank, int), ("inner", inner, int)):
        if value is not None:
            fields[key] = kind(value)
    if fields["iters"] < 1 or fields.get("inner", 1) < 1:
        raise ValueError(f"initial estimate {text!r}: N (iterations) and INNER (TV steps) must be ≥ 1")
    return fields


# --------------------------------------------------------------------------- global options


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int | None:
    """--threads must be between 1 and the number of CPUs (thousands of threads stall torch's pool)."""
    if threads is None:
        return None
    n = cpu_count()
    if not 1 <= threads <= n:
        raise UsageError(f"--threads {threads}: this machine has {n} CPU(s); use a value from 1 to {n}")
    return threads


# --------------------------------------------------------------------------- files


def check_input_file(path: str | os.PathLike[str], flag: str, exts: Iterable[str], what: str) -> Path:
    """An existing regular file with one of ``exts``; UsageError naming ``flag`` otherwise."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p} is a folder; pass a {what} file ({', '.join(exts)})")
    if not p.exists():
        raise UsageError(f"{flag} {p}: no such file; check the path")
    if p.suffix.lower() not in tuple(exts):
        raise UsageError(f"{flag} {p}: {p.suffix or 'no extension'} is not a {what} format; "
                         f"use {', '.join(exts)}")
    return p


def check_writable_folder(folder: Path, flag: str, target: Path) -> None:
    """The folder exists, is a folder and accepts a new file (probed, so it also holds for root)."""
    folder = folder if str(folder) else Path(".")
    if not folder.exists():
        raise UsageError(f"{flag} {target}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise UsageError(f"{flag} {target}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lorun-probe-", dir=folder)
    except OSError as e:
        raise LorunError(f"{flag} {target}: folder {folder} is not writable ({e.strerror or e}); choose another "
                         f"output folder or fix its permissions") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_file(path: str | os.PathLike[str], flag: str, exts: Iterable[str], force: bool,
                      what: str = "output") -> Path:
    """An output path: a known extension, a writable existing folder, and no existing file unless ``force``."""
    p = Path(path)
    exts = tuple(exts)
    if p.suffix.lower() not in exts:
        raise UsageError(f"{flag} {p}: cannot write {what} as {p.suffix or 'a file without extension'}; "
                         f"use {', '.join(exts)}")
    if p.is_dir():
        raise UsageError(f"{flag} {p} is a folder; give a file name ending in {', '.join(exts)}")
    check_writable_folder(p.parent, flag, p)
    if p.exists() and not force:
        raise UsageError(f"{p} exists; pass --force to overwrite or choose another {flag}")
    return p


def check_collisions(pairs: Iterable[tuple[Path, Path]], flag: str = "-o") -> None:
    """No two inputs may write the same output, and no output may be an input."""
    pairs = list(pairs)
    seen: dict[Path, Path] = {}
    ins = {_key(i) for i, _ in pairs}
    for inp, out in pairs:
        k = _key(out)
        if k in seen:
            raise UsageError(f"inputs {seen[k]} and {inp} would both be written to {out}; rename one of them or "
                             f"restore them separately with {flag}")
        if k in ins:
            raise UsageError(f"output {out} would overwrite the input {out}; choose another {flag}")
        seen[k] = inp


def _key(p: Path) -> Path:
    return Path(os.path.abspath(p))
