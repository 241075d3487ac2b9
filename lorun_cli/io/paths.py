"""Where lorun keeps its cache, and the file hash every download and checkpoint check uses (no torch import)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lorun_cli.errors import LorunError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Cache folder (downloaded weights, interpolated CAVE cubes): ``$LORUN_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get("LORUN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lorun"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks; LorunError when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as e:
        raise LorunError(f"cannot read {path}: {e.strerror or e}; check the path") from e
    return h.hexdigest()
