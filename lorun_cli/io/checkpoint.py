"""Checkpoint files (safetensors, plus weights-only .pt/.pth) and atomic file writing helpers."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lorun_cli.errors import LorunError
from lorun_cli.io.paths import sha256_file

META_KEY = "lorun"
SCALE_SUFFIX = ".int8_scale"  # an int8 tensor ``k`` with per-row scales ``k + SCALE_SUFFIX`` stores weights


def quantize_int8(tensors: dict[str, Tensor], min_numel: int = 4096) -> dict[str, Tensor]:
    """Store large weight tensors as int8 with one float32 scale per output channel (symmetric).

    Small tensors (biases, stage scalars, norms) stay as they are. ``dequantize`` undoes it on load.
    """
    out: dict[str, Tensor] = {}
    for k, v in tensors.items():
        if not v.is_floating_point() or v.ndim < 2 or v.numel() < min_numel:
            out[k] = v
            continue
        rows = v.detach().float().reshape(v.shape[0], -1)
        scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        out[k] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape)
        out[k + SCALE_SUFFIX] = scale
    return out


def dequantize(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Float32 weights from a file written with ``quantize_int8`` (other tensors unchanged)."""
    out = {k: v for k, v in tensors.items() if not k.endswith(SCALE_SUFFIX)}
    for k, scale in tensors.items():
        if k.endswith(SCALE_SUFFIX):
            name = k.removesuffix(SCALE_SUFFIX)
            q = out[name]
            out[name] = (q.float().reshape(q.shape[0], -1) * scale.float()[:, None]).reshape(q.shape)
    return out


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so a rename survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(target: Path) -> int:
    """Permission bits for a new file: the existing target's, else 0o666 minus the process umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _prepare_dir(path: Path) -> Path:
    """Create the parent directory of ``path`` if needed and check it is writable."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LorunError(
            f"cannot create directory {parent}: {e.strerror or e}; choose another output path"
        ) from e
    if not parent.is_dir():
        raise LorunError(f"{parent} is not a directory; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LorunError(
            f"directory {parent} is not writable; choose another output path or fix its permissions"
        )
    return parent


def _pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (possibly another user's)."""
    if pid <= 0:
        return True  # not a real writer id: never treat it as stale
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def sweep_stale_temps(target: Path) -> list[Path]:
    """Remove temporary files of ``target`` left by killed runs (SIGKILL, power loss); returns them.

    Temporary names are ``.<name>.<pid>-<random>.tmp``: a file whose writer process is gone is stale.
    Untagged ones (older lorun versions) are stale after an hour.
    """
    import glob
    import time

    removed = []
    parent = target.parent if str(target.parent) else Path(".")
    for f in parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        tag = f.name[len(target.name) + 2 : -len(".tmp")]
        pid = tag.split("-", 1)[0]
        try:
            stale = (not _pid_alive(int(pid))) if pid.isdigit() and "-" in tag else \
                time.time() - f.stat().st_mtime > 3600
        except OSError:
            continue
        if stale:
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
    return removed


def _write_error(target: Path, e: OSError) -> LorunError:
    """One line for a failed write (disk full, quota, permissions)."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return LorunError(f"cannot write {target}: no space left on the device; free some space or choose another "
                          f"output path (nothing was written)")
    return LorunError(f"cannot write {target}: {e.strerror or e}; choose another output path (nothing was written)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success fsync it and rename it over ``path``.

    On any exception (signals included: the CLI turns them into exceptions) the temporary file is removed
    and the existing target (if any) is left untouched; temporaries of killed runs are swept first. A
    failed write (e.g. a full disk) becomes a one-line LorunError.
    """
    target = Path(path)
    parent = _prepare_dir(target)
    sweep_stale_temps(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=parent)
    except OSError as e:
        raise LorunError(f"cannot write in {parent}: {e.strerror or e}; choose another output path") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise LorunError(f"nothing was written for {target}; the writer produced no file")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, _file_mode(target))
            os.replace(tmp, target)
        except OSError as e:
            raise _write_error(target, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def _json_default(obj: Any) -> Any:
    """JSON fallback for paths, tuples-likes, numpy and torch scalars."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Tensor):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy array
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"checkpoint meta value of type {type(obj).__name__} is not JSON serialisable")


def save_checkpoint(path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any]) -> str:
    """Save ``tensors`` and ``meta`` (JSON under safetensors metadata key "lorun") atomically.

    Returns the sha256 hex digest of the written file.
    """
    from safetensors.torch import save_file

    bad = [k for k, v in tensors.items() if not isinstance(v, Tensor)]
    if bad:
        raise LorunError(f"checkpoint entries {bad[:3]} are not tensors; only tensors can be saved")
    try:
        meta_json = json.dumps(meta, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise LorunError(f"checkpoint metadata is not JSON serialisable ({e}); pass plain values") from e
    # clone: safetensors refuses shared storage and needs contiguous CPU tensors
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata={META_KEY: meta_json})
    return sha256_file(path)


def _load_safetensors(p: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read tensors and metadata from a safetensors file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(p), device="cpu")
        with safe_open(str(p), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
    except Exception as e:  # SafetensorError, OSError, ... -> one clear message
        raise LorunError(
            f"checkpoint {p} is not a valid safetensors file ({type(e).__name__}: {e}); "
            "re-download or re-train it"
        ) from e
    if META_KEY in raw:
        try:
            meta = json.loads(raw[META_KEY])
        except json.JSONDecodeError as e:
            raise LorunError(
                f"checkpoint {p} has corrupt lorun metadata ({e}); re-save the checkpoint"
            ) from e
        if not isinstance(meta, dict):
            raise LorunError(
                f"checkpoint {p} has lorun metadata that is not a JSON object; re-save the checkpoint"
            )
    else:
        meta = dict(raw)
    return _dequantized(tensors, p), meta


def _load_torch(p: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a .pt/.pth file with ``weights_only=True`` (never unpickles arbitrary objects)."""
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Unsupported global" in text or "Unsupported class" in text:
            raise LorunError(
                f"checkpoint {p} contains more than tensors and plain data; refusing to unpickle "
                "arbitrary objects (convert it to .safetensors in a trusted environment)"
            ) from e
        raise LorunError(
            f"checkpoint {p} is corrupt or not a weights-only PyTorch file (refusing to unpickle "
            "arbitrary objects); re-download it or convert it to .safetensors"
        ) from e
    except Exception as e:
        raise LorunError(
            f"checkpoint {p} could not be read as a PyTorch file ({type(e).__name__}: {e}); "
            "check that it is not truncated"
        ) from e
    if not isinstance(obj, dict):
        raise LorunError(
            f"checkpoint {p} holds a {type(obj).__name__}, expected a dict of tensors; re-save it"
        )
    meta: Any = {}
    state: Any = obj
    for key in ("state_dict", "model"):
        if key in obj and isinstance(obj[key], dict):
            state = obj[key]
            meta = obj.get("meta", {})
            break
    if not isinstance(meta, dict):
        raise LorunError(f"checkpoint {p} has a 'meta' entry that is not a dict; re-save it")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise LorunError(
            f"checkpoint {p} has non-tensor entries {bad[:3]}; expected {{'state_dict': ..., 'meta': ...}} "
            "or a flat state dict"
        )
    return {str(k): v for k, v in state.items()}, dict(meta)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load ``(tensors, meta)`` from a .safetensors file or a weights-only .pt/.pth file (on CPU)."""
    p = Path(path)
    if not p.is_file():
        raise LorunError(f"checkpoint {p} not found; check the path or train a model first")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return _load_safetensors(p)
    if suffix in (".pt", ".pth"):
        return _load_torch(p)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise LorunError(f"cannot read checkpoint {p}: {e.strerror or e}; check its permissions") from e
    if head[:2] == b"PK":  # zip container written by torch.save
        return _load_torch(p)
    return _load_safetensors(p)


def _dequantized(tensors: dict[str, Tensor], p: Path) -> dict[str, Tensor]:
    """A safetensors file's tensors with int8 weights (``quantize_int8``) turned back into float32."""
    scales = [k for k in tensors if k.endswith(SCALE_SUFFIX)]
    bad = [k for k in scales if tensors.get(k.removesuffix(SCALE_SUFFIX)) is None
           or tensors[k.removesuffix(SCALE_SUFFIX)].dtype != torch.int8]
    if bad:
        raise LorunError(f"checkpoint {p} has int8 scales without their int8 weights ({bad[0]}); re-download it")
    return dequantize(tensors) if scales else tensors
