"""Weights manifest, cache and downloader, against a real HTTP server on the loopback interface."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from lorun_cli.errors import LorunError
from lorun_cli.io import weights

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = random.Random(1234).randbytes(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    mode: str = "normal"  # normal | drop_first | wrong | missing | ignore_range | slow
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on a per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        st = self.state
        with st.lock:
            st.requests.append((self.path, self.headers.get("Range")))
            first = len(st.requests) == 1
        if st.mode == "missing" or "/missing/" in self.path:
            self.send_error(404, "Not Found")
            return
        body = PAYLOAD if st.mode != "wrong" else PAYLOAD[::-1]
        if st.mode == "slow":
            time.sleep(0.3)
        start = 0
        rng = self.headers.get("Range")
        if rng and st.mode != "ignore_range":
            start = int(rng.split("=")[1].split("-")[0])
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if st.mode == "drop_first" and first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection half way
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated cache, no bundled weights, network allowed, no mirror."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LORUN_CACHE_DIR", str(cache))
    monkeypatch.delenv("LORUN_OFFLINE", raising=False)
    monkeypatch.delenv("LORUN_WEIGHTS_URL", raising=False)
    monkeypatch.delenv("LORUN_MANIFEST", raising=False)
    monkeypatch.setattr(weights, "BUNDLED_DIR", tmp_path / "bundled")
    return cache


def make_entry(url: str | None, name: str = "cs-demo", sha: str = SHA) -> dict[str, Any]:
    return {
        "name": name,
        "task": "cs",
        "strategy": "lorun5",
        "denoiser": "unet",
        "file": f"{name}.safetensors",
        "sha256": sha,
        "bytes": len(PAYLOAD),
        "urls": [url] if url else [],
        "description": "test model",
        "metrics": {},
        "command": "",
    }


def write_manifest(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"version": 1, "models": list(entries)}), encoding="utf-8")
    return path


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


# --------------------------------------------------------------------------- manifest


def test_shipped_manifest_is_in_sync_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORUN_MANIFEST", raising=False)
    top = ROOT / "weights_manifest.json"
    assert top.read_bytes() == weights.MANIFEST_PATH.read_bytes(), "run scripts/sync_manifest.py"
    data = weights.load_manifest()
    assert data["version"] == 1 and isinstance(data["models"], list)


def test_find_entry_lists_available_names(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.json", make_entry(None, "a"), make_entry(None, "b"))
    manifest = weights.load_manifest(path)
    assert weights.find_entry("b", manifest)["file"] == "b.safetensors"
    with pytest.raises(LorunError, match=r"unknown model 'zzz'.*a, b"):
        weights.find_entry("zzz", manifest)


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 2, "models": []},
        {"version": 1, "models": [{**make_entry(None), "file": "../escape.bin"}]},
        {"version": 1, "models": [{**make_entry(None), "sha256": "xyz"}]},
        {"version": 1, "models": [make_entry(None), make_entry(None)]},
    ],
)
def test_invalid_manifest_rejected(tmp_path: Path, bad: dict[str, Any]) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(LorunError):
        weights.load_manifest(path)


# --------------------------------------------------------------------------- cache location


def test_cache_dir_env_override(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.cache_dir() == env
    assert weights.cached_path(make_entry(None)) == env / "cs-demo.safetensors"
    monkeypatch.delenv("LORUN_CACHE_DIR")
    assert weights.cache_dir() == Path(platformdirs.user_cache_dir("lorun"))


# --------------------------------------------------------------------------- downloads


def test_fetch_downloads_verifies_and_reuses_cache(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    seen: list[tuple[int, int | None]] = []
    path = weights.fetch(entry, progress=lambda done, total: seen.append((done, total)))
    assert path == env / entry["file"] and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert weights.verify(entry)
    assert leftovers(env) == [entry["file"]]
    weights.fetch(entry)  # cached and valid: no second request
    assert len(state.requests) == 1
    weights.fetch(entry, force=True)
    assert len(state.requests) == 2


def test_interrupted_download_resumes_with_range(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    state.mode = "drop_first"
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    with pytest.raises(LorunError, match="resume"):
        weights.fetch(entry, retries=0)
    partial = env / (entry["file"] + ".partial")
    assert partial.stat().st_size == len(PAYLOAD) // 2
    assert not (env / entry["file"]).exists()
    path = weights.fetch(entry, retries=0)
    assert state.requests[0][1] is None
    assert state.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert not partial.exists()


def test_interruption_is_retried_within_one_call(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    state.mode = "drop_first"
    path = weights.fetch(make_entry(f"{base}/w/cs-demo.safetensors"))
    assert path.read_bytes() == PAYLOAD
    assert [r[1] is not None for r in state.requests] == [False, True]


def test_full_response_to_range_request_restarts_from_zero(
    server: tuple[str, ServerState], env: Path
) -> None:
    base, state = server
    state.mode = "ignore_range"  # answers 200 with the whole body even when a range is asked for
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    env.mkdir(parents=True)
    (env / (entry["file"] + ".partial")).write_bytes(b"\x00" * 1000)  # a stale, wrong prefix
    path = weights.fetch(entry)
    assert state.requests[0][1] == "bytes=1000-"
    assert path.read_bytes() == PAYLOAD


def test_hash_mismatch_discards_download(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    state.mode = "wrong"
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    with pytest.raises(LorunError, match="sha256 mismatch for cs-demo.safetensors.*discarded"):
        weights.fetch(entry)
    assert leftovers(env) == []
    assert not weights.verify(entry)


def test_http_404_names_url_and_status(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    url = f"{base}/missing/cs-demo.safetensors"
    with pytest.raises(LorunError) as info:
        weights.fetch(make_entry(url))
    assert url in str(info.value) and "404" in str(info.value)
    assert info.value.exit_code == 1
    assert leftovers(env) == []


def test_mirror_env_is_tried_first(
    server: tuple[str, ServerState], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    monkeypatch.setenv("LORUN_WEIGHTS_URL", f"{base}/mirror/")
    weights.fetch(make_entry(f"{base}/missing/cs-demo.safetensors"))
    assert [r[0] for r in state.requests] == ["/mirror/cs-demo.safetensors"]


def test_offline_without_bundled_copy_fails_without_network(
    server: tuple[str, ServerState], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    monkeypatch.setenv("LORUN_OFFLINE", "1")
    monkeypatch.setenv("LORUN_WEIGHTS_URL", base)
    with pytest.raises(LorunError, match="LORUN_OFFLINE"):
        weights.fetch(make_entry(f"{base}/w/cs-demo.safetensors"))
    assert state.requests == []


def test_bundled_copy_is_used_offline_and_after_failed_urls(
    server: tuple[str, ServerState], env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    entry = make_entry(f"{base}/missing/cs-demo.safetensors")
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / entry["file"]).write_bytes(PAYLOAD)
    monkeypatch.setenv("LORUN_OFFLINE", "1")
    path = weights.fetch(entry)
    assert path == env / entry["file"] and path.read_bytes() == PAYLOAD
    assert state.requests == []
    monkeypatch.delenv("LORUN_OFFLINE")
    path.unlink()
    assert weights.fetch(entry).read_bytes() == PAYLOAD  # 404 first, then the bundled copy
    assert len(state.requests) == 1
    assert weights.list_entries({"version": 1, "models": [entry]})[0]["bundled"] is True


def test_corrupt_cache_is_replaced(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    env.mkdir(parents=True)
    (env / entry["file"]).write_bytes(b"x" * len(PAYLOAD))
    assert not weights.verify(entry)
    assert weights.fetch(entry).read_bytes() == PAYLOAD
    assert len(state.requests) == 1


def test_parallel_fetches_download_once(server: tuple[str, ServerState], env: Path) -> None:
    base, state = server
    state.mode = "slow"
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(weights.fetch(entry))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2 and all(p.read_bytes() == PAYLOAD for p in results)
    assert len(state.requests) == 1


def test_list_entries_and_resolve_model(
    server: tuple[str, ServerState], env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    entry = make_entry(f"{base}/w/cs-demo.safetensors")
    monkeypatch.setattr(weights, "MANIFEST_PATH", write_manifest(tmp_path / "m.json", entry))
    rows = weights.list_entries()
    assert [(r["name"], r["cached"]) for r in rows] == [("cs-demo", False)]
    local = tmp_path / "my.safetensors"
    local.write_bytes(b"abc")
    assert weights.resolve_model(str(local)) == local  # an existing file is used as is
    assert weights.resolve_model("cs-demo") == env / entry["file"]
    assert weights.list_entries()[0]["cached"] is True
    with pytest.raises(LorunError, match="neither an existing checkpoint file nor a known model.*cs-demo"):
        weights.resolve_model("nope")


def test_manifest_env_override_and_files_beside_it(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_entry(None, "side")
    mdir = tmp_path / "mirror"
    (mdir / "weights").mkdir(parents=True)
    (mdir / "weights" / entry["file"]).write_bytes(PAYLOAD)
    monkeypatch.setenv("LORUN_MANIFEST", str(write_manifest(mdir / "manifest.json", entry)))
    monkeypatch.setenv("LORUN_OFFLINE", "1")
    assert weights.model_names() == ["side"]
    assert weights.resolve_model("side").read_bytes() == PAYLOAD


def test_unwritable_cache_falls_back_to_bundled_copy(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("LORUN_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    entry = make_entry(None)
    with pytest.raises(LorunError, match="LORUN_CACHE_DIR"):
        weights.fetch(entry)
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / entry["file"]).write_bytes(PAYLOAD)
    assert weights.fetch(entry) == tmp_path / "bundled" / entry["file"]
