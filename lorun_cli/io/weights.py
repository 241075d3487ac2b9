"""Pretrained weights: the manifest, the local cache and a resumable, verified downloader.

The manifest (``lorun_cli/assets/weights_manifest.json``, kept identical to the top-level
``weights_manifest.json`` by ``scripts/sync_manifest.py``) has the schema::

    {"version": 1, "models": [{"name", "task", "strategy", "denoiser", "file", "sha256", "bytes",
                               "urls": [...], "description", "metrics": {...}, "command"}]}

Optional keys: ``ratio`` (CS), ``gamma``, ``backbone`` (adapter sets), ``variant`` (served only when named) and
``kernel: "auto"`` with ``auto_policy`` (SR adapters trained on estimated kernels: ``--kernel auto`` serves them,
see ``restore.default_model_name``).

A model is fetched into the cache directory from, in order: ``$LORUN_WEIGHTS_URL/<file>`` (when set),
each of the entry's ``urls``, and the copy bundled in ``lorun_cli/assets/weights/<file>`` (so a fresh
install works offline). Every file is checked against its sha256 before it is moved into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any

from lorun_cli import __version__
from lorun_cli.errors import LorunError
from lorun_cli.io.paths import cache_dir, sha256_file

try:  # POSIX advisory locks; elsewhere parallel runs are simply not serialised
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MANIFEST_PATH = ASSETS_DIR / "weights_manifest.json"
BUNDLED_DIR = ASSETS_DIR / "weights"
MANIFEST_VERSION = 1

#: Environment variables read by this module (also listed in the man pages).
ENV_VARS: dict[str, str] = {
    "LORUN_CACHE_DIR": "Directory for downloaded weights (default: the per-user cache directory, "
    "e.g. ~/.cache/lorun on Linux).",
    "LORUN_WEIGHTS_URL": "Base URL tried first for every weights file (<base>/<file>), e.g. a local mirror.",
    "LORUN_OFFLINE": "When set to 1, never use the network: only cached or bundled weights are used.",
    "LORUN_MANIFEST": "Use this weights manifest instead of the packaged one; weights files found beside it "
    "(or in a weights/ folder next to it) count as bundled copies.",
}

TIMEOUT_S = 30.0
CHUNK = 1 << 16
ALLOWED_SCHEMES = ("http", "https", "file")
REQUIRED_KEYS = ("name", "file", "sha256")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int | None], None]


class _Interrupted(Exception):
    """A transfer stopped early; the partial file is kept so that the next attempt resumes."""


class _Mismatch(Exception):
    """The downloaded bytes do not hash to the manifest's sha256; the partial file was deleted."""


# --------------------------------------------------------------------------- manifest


def load_manifest(path: str | Path | None = None) -> dict[str, Any]:
    """Read and validate the weights manifest (default: ``$LORUN_MANIFEST``, else the packaged one)."""
    path = Path(path) if path is not None else _manifest_location()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LorunError(f"weights manifest not found: {path}; reinstall lorun") from exc
    except json.JSONDecodeError as exc:
        raise LorunError(f"weights manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        raise LorunError(f"weights manifest {path}: expected an object with \"version\": {MANIFEST_VERSION}")
    models = data.get("models")
    if not isinstance(models, list):
        raise LorunError(f"weights manifest {path}: \"models\" must be a list")
    seen: set[str] = set()
    for i, entry in enumerate(models):
        _validate_entry(entry, f"{path}: models[{i}]")
        if entry["name"] in seen:
            raise LorunError(f"weights manifest {path}: duplicate model name {entry['name']!r}")
        seen.add(entry["name"])
    return data


def _validate_entry(entry: Any, where: str) -> None:
    """Check the keys the downloader relies on."""
    if not isinstance(entry, dict):
        raise LorunError(f"weights manifest {where} is not an object")
    missing = [k for k in REQUIRED_KEYS if not entry.get(k)]
    if missing:
        raise LorunError(f"weights manifest {where} lacks {', '.join(missing)}")
    file = entry["file"]
    if not isinstance(file, str) or Path(file).name != file or file in (".", ".."):
        raise LorunError(f"weights manifest {where}: file must be a plain file name, got {file!r}")
    if not _SHA256_RE.match(str(entry["sha256"]).lower()):
        raise LorunError(f"weights manifest {where}: sha256 must be 64 hex digits")
    if not isinstance(entry.get("urls", []), list):
        raise LorunError(f"weights manifest {where}: urls must be a list")


def model_names(manifest: dict[str, Any] | None = None) -> list[str]:
    """Names of all models in the manifest."""
    manifest = manifest if manifest is not None else load_manifest()
    return [m["name"] for m in manifest["models"]]


def find_entry(name: str, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest entry called ``name``; LorunError listing the available names otherwise."""
    manifest = manifest if manifest is not None else load_manifest()
    for entry in manifest["models"]:
        if entry["name"] == name:
            return entry
    names = model_names(manifest)
    available = ", ".join(names) if names else "(none)"
    raise LorunError(f"unknown model {name!r}; available models: {available} (see `lorun weights list`)")


# --------------------------------------------------------------------------- cache


def cached_path(entry: dict[str, Any]) -> Path:
    """Path of the entry's file in the cache (it may not exist yet)."""
    return cache_dir() / entry["file"]


def _manifest_location() -> Path:
    """``$LORUN_MANIFEST`` when set, else the manifest shipped in the package."""
    env = os.environ.get("LORUN_MANIFEST", "").strip()
    return Path(env).expanduser() if env else MANIFEST_PATH


def bundled_path(entry: dict[str, Any]) -> Path:
    """The local copy: in the package, or beside a ``$LORUN_MANIFEST`` manifest (it may not exist)."""
    own = BUNDLED_DIR / entry["file"]
    if os.environ.get("LORUN_MANIFEST", "").strip():  # files beside another manifest come first
        base = _manifest_location().parent
        for cand in (base / "weights" / entry["file"], base / entry["file"]):
            if cand.is_file():
                return cand
    return own


def _matches(path: Path, entry: dict[str, Any]) -> bool:
    """True when ``path`` exists, has the expected size (if known) and hash."""
    if not path.is_file():
        return False
    size = entry.get("bytes")
    if size and path.stat().st_size != int(size):
        return False
    return sha256_file(path) == str(entry["sha256"]).lower()


def verify(entry: dict[str, Any]) -> bool:
    """True when the cached file is present and matches the manifest's sha256."""
    return _matches(cached_path(entry), entry)


def list_entries(manifest: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Manifest entries, each copied with ``cached`` (bool), ``bundled`` (bool) and ``path`` added."""
    manifest = manifest if manifest is not None else load_manifest()
    out = []
    for entry in manifest["models"]:
        row = dict(entry)
        path = cached_path(entry)
        row["cached"] = verify(entry)
        row["bundled"] = bundled_path(entry).is_file()
        row["path"] = str(path)
        out.append(row)
    return out


def offline() -> bool:
    """True when ``LORUN_OFFLINE`` asks for no network access."""
    return os.environ.get("LORUN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- download


def sources(entry: dict[str, Any]) -> list[str]:
    """Candidate sources in the order they are tried: mirror, manifest URLs, then the bundled copy.

    Network URLs are left out when ``LORUN_OFFLINE`` is set; the bundled copy is given as a path.
    """
    out: list[str] = []
    if not offline():
        base = os.environ.get("LORUN_WEIGHTS_URL", "").strip()
        if base:
            out.append(base.rstrip("/") + "/" + urllib.parse.quote(entry["file"]))
        out.extend(str(u) for u in entry.get("urls", []) or [])
    bundled = bundled_path(entry)
    if bundled.is_file():
        out.append(str(bundled))
    return out


def fetch(
    entry: dict[str, Any],
    force: bool = False,
    progress: Progress | None = None,
    timeout: float = TIMEOUT_S,
    retries: int = 2,
) -> Path:
    """Make the entry's file available in the cache and return its path.

    A verified cached copy is returned as is (unless ``force``). Otherwise each source is tried in
    turn; HTTP transfers go to ``<file>.partial`` and resume with a Range request after an
    interruption (up to ``retries`` times per source, and again on the next call). The file is moved
    into place only once its sha256 matches. ``progress(done, total)`` is called as bytes arrive.
    """
    dest = cached_path(entry)
    partial = dest.with_name(dest.name + ".partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only home: a verified bundled copy is still usable in place
        bundled = bundled_path(entry)
        if _matches(bundled, entry):
            return bundled
        raise LorunError(
            f"cannot create the weights cache {dest.parent} ({exc}); set LORUN_CACHE_DIR"
        ) from exc
    try:
        with _locked(dest.with_name(dest.name + ".lock")):
            if not force and _matches(dest, entry):
                return dest
            if force:
                partial.unlink(missing_ok=True)
            srcs = sources(entry)
            if not srcs:
                if offline():
                    raise LorunError(
                        f"model {entry['name']!r} is not cached and LORUN_OFFLINE is set; "
                        f"unset LORUN_OFFLINE or put {entry['file']} in {dest.parent}"
                    )
                raise LorunError(f"model {entry['name']!r} has no download URL and no bundled copy")
            failures: list[str] = []
            for src in srcs:
                try:
                    if _is_url(src):
                        _download_with_retries(src, partial, entry, progress, timeout, retries)
                    else:
                        shutil.copyfile(src, partial)
                        _check_partial(partial, entry, src)
                except _Mismatch as exc:
                    failures.append(str(exc))
                    continue
                except _Interrupted as exc:
                    failures.append(f"{src}: {exc}; run again to resume")
                    continue
                except OSError as exc:
                    failures.append(f"{src}: {exc.strerror or exc}")
                    if not _is_url(src) or exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        partial.unlink(missing_ok=True)  # a local copy restarts anyway; a full disk needs the room
                    continue
                try:
                    os.replace(partial, dest)
                except OSError as exc:
                    partial.unlink(missing_ok=True)
                    failures.append(f"{dest}: {exc.strerror or exc}")
                    break
                return dest
            bundled = bundled_path(entry)
            if _matches(bundled, entry):  # the cache is unusable (full disk, ...): use the verified bundled copy
                return bundled
            if len(failures) == 1:
                raise LorunError(f"could not fetch {entry['file']}: {failures[0]}")
            raise LorunError(f"could not fetch {entry['file']} from any source: " + " | ".join(failures))
    except OSError as exc:  # e.g. no room for the lock file: a verified bundled copy is still usable in place
        bundled = bundled_path(entry)
        if _matches(bundled, entry):
            return bundled
        raise LorunError(f"cannot use the weights cache {dest.parent} ({exc.strerror or exc}); free some space "
                         f"or set LORUN_CACHE_DIR") from None


def _is_url(src: str) -> bool:
    """True for ``scheme://...`` sources (the bundled copy is a plain path)."""
    return "://" in src


def _check_partial(partial: Path, entry: dict[str, Any], src: str) -> None:
    """Raise _Mismatch (deleting the partial) unless it hashes to the manifest's sha256."""
    digest = sha256_file(partial)
    if digest != str(entry["sha256"]).lower():
        partial.unlink(missing_ok=True)
        raise _Mismatch(
            f"sha256 mismatch for {entry['file']} from {src} (expected {entry['sha256']}, got {digest}); "
            "the download was discarded"
        )


def _download_with_retries(
    url: str, partial: Path, entry: dict[str, Any], progress: Progress | None, timeout: float, retries: int
) -> None:
    """Download, resuming after interruptions that made progress, at most ``retries`` extra times."""
    attempt = 0
    while True:
        before = partial.stat().st_size if partial.exists() else 0
        try:
            _download(url, partial, entry, progress, timeout)
        except _Interrupted:
            after = partial.stat().st_size if partial.exists() else 0
            if attempt >= retries or after <= before:
                raise
            attempt += 1
            continue
        _check_partial(partial, entry, url)
        return


def _download(
    url: str, partial: Path, entry: dict[str, Any], progress: Progress | None, timeout: float
) -> None:
    """One HTTP(S)/file transfer into ``partial``, resuming from its current size when possible."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise OSError(f"unsupported URL scheme {scheme!r}")
    total = int(entry["bytes"]) if entry.get("bytes") else None
    have = partial.stat().st_size if partial.exists() else 0
    if total is not None and have > total:
        partial.unlink()
        have = 0
    if total is not None and have == total:
        return  # complete from an earlier run; the caller verifies the hash
    headers = {"User-Agent": f"lorun/{__version__}", "Accept-Encoding": "identity"}
    if have and scheme != "file":
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial is not a prefix the server recognises: start over
            partial.unlink(missing_ok=True)
            return _download(url, partial, entry, progress, timeout)
        raise OSError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise OSError(f"cannot connect: {exc.reason}") from exc
    except TimeoutError as exc:
        raise OSError(f"timed out after {timeout:g} s") from exc
    with resp:
        status = getattr(resp, "status", None) or 200
        if status == 206:
            if not have or _content_range_start(resp.headers.get("Content-Range")) != have:
                if not have:
                    raise OSError("server sent a partial response (206) to a request without a range")
                resp.close()
                partial.unlink(missing_ok=True)  # not the range asked for: start over
                return _download(url, partial, entry, progress, timeout)
            mode, done = "ab", have  # resume: append the rest
        elif status == 200:
            mode, done = "wb", 0  # a full body, even if a range was asked for: restart from zero
        else:
            raise OSError(f"unexpected HTTP status {status}")
        if progress is not None:
            progress(done, total)
        try:
            with open(partial, mode) as out:
                while block := resp.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                out.flush()
                os.fsync(out.fileno())
        except (HTTPException, ConnectionError, TimeoutError) as exc:
            raise _Interrupted(f"transfer interrupted after {done} bytes ({exc.__class__.__name__})") from exc
    if total is not None and done < total:
        raise _Interrupted(f"transfer ended after {done} of {total} bytes")


def _content_range_start(value: str | None) -> int | None:
    """First byte of a ``Content-Range: bytes a-b/n`` header, or None."""
    if not value:
        return None
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*$", value)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- resolution


def resolve_model(name_or_path: str | os.PathLike[str], progress: Progress | None = None) -> Path:
    """An existing checkpoint path as is; otherwise the cached file of the manifest model so named."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    manifest = load_manifest()
    if name not in model_names(manifest):
        names = ", ".join(model_names(manifest)) or "(none)"
        raise LorunError(
            f"{name!r} is neither an existing checkpoint file nor a known model; available models: {names}"
        )
    return fetch(find_entry(name, manifest), progress=progress)
