"""End-to-end tests of the `lorun` command line against the tiny test zoo (tests/zoo.py).

The design-card commands, training and benchmarking with peak memory, and the messages printed for a
few typical mistakes run as real subprocesses (`python -m lorun_cli`). The remaining error cases and
restore variants call the same console entry point (``lorun_cli.cli.app.main``) in-process, which skips
~2 s of torch import per case; any exception escaping ``main`` would fail the test outright.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import LORUN_ENV_KEYS, run_lorun
from PIL import Image

from lorun_cli import __version__, models

ASSETS = Path(__file__).resolve().parent.parent / "lorun_cli" / "assets"
SR_SAMPLE = ASSETS / "samples" / "sr" / "bird.png"
CS_SAMPLE = ASSETS / "samples" / "cs" / "house.png"
CASSI_SAMPLE = ASSETS / "samples" / "cassi" / "balloons_256.npz"
T1 = ["--threads", "1"]


# --------------------------------------------------------------------------- helpers and fixtures


def assert_ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr


def assert_error(r: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Exit ``code``, exactly one `lorun: error:` line on stderr (naming ``words``), no traceback."""
    assert r.returncode == code, f"exit {r.returncode}, expected {code}\nstderr:\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lorun: error: "), r.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


def weights_dir(env: dict[str, str]) -> Path:
    return Path(env["LORUN_MANIFEST"]).parent / "weights"


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def crop_png(src: Path, dst: Path, size: int) -> Path:
    Image.open(src).convert("RGB").crop((0, 0, size, size)).save(dst)
    return dst


@pytest.fixture
def lorun(zoo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path):
    """Call the console entry point in-process: ``lorun(*args, cwd=..., env=...)`` -> CompletedProcess."""
    from lorun_cli.cli import app as cli_app

    def call(*args: str | os.PathLike, cwd: Path | None = None, env: dict[str, str] | None = None):
        env = env or zoo_env
        for k in LORUN_ENV_KEYS:
            monkeypatch.delenv(k, raising=False)
        for k in LORUN_ENV_KEYS:
            if k in env:
                monkeypatch.setenv(k, env[k])
        monkeypatch.chdir(cwd or tmp_path)
        argv = ["lorun", *T1, *map(str, args)]
        monkeypatch.setattr(sys, "argv", argv)
        capsys.readouterr()
        with torch.random.fork_rng(), pytest.raises(SystemExit) as exc:
            cli_app.main()
        out = capsys.readouterr()
        code = exc.value.code
        return subprocess.CompletedProcess(argv, 0 if code is None else code, out.out, out.err)

    return call


@pytest.fixture(scope="module")
def adapt_env(zoo_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """A tiny CS data root (Train400 + T91 look-alikes) in LORUN_DATA, and the zoo's CS share9 model as .pt."""
    from lorun_cli.io.datasets import CS_VAL_NAMES

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    (root / "train" / "bsd400").mkdir(parents=True)
    (root / "train" / "t91").mkdir(parents=True)
    for name in ("test_001.png", "test_002.png", CS_VAL_NAMES[0]):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(root / "train" / "bsd400" / name)
    for name in ("a01.bmp", "a02.bmp"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "train" / "t91" / name)
    backbone = root / "b.pt"
    models.save_model(backbone, models.load_model(weights_dir(zoo_env) / "cs-share9-r25.safetensors"))
    return {**zoo_env, "LORUN_DATA": str(root)}, backbone


# --------------------------------------------------------------------------- design-card commands


def test_design_card_restore_sr_verbatim(zoo_env, tmp_path):
    crop_png(SR_SAMPLE, tmp_path / "in.png", 96)  # the command as documented, on a small input
    r = run_lorun([*T1, "restore", "--task", "sr", "--kernel", "K5", "--scale", "3", "in.png"], zoo_env, tmp_path)
    assert_ok(r)
    w, h = Image.open(tmp_path / "in.png").size
    out = Image.open(tmp_path / "in_x3.png")
    assert out.size == (3 * w, 3 * h) and out.mode == "RGB"
    assert "in.png" in r.stderr and "in_x3.png" in r.stderr and "sr-lorun9" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "in_x3.png"]  # no temp files left


def test_design_card_adapt_verbatim_starts_training(adapt_env, tmp_path):
    """`lorun adapt --backbone b.pt --gamma 10` as typed (1000 steps): it must start training; then stop it."""
    env, backbone = adapt_env
    shutil.copy(backbone, tmp_path / "b.pt")
    cmd = [sys.executable, "-m", "lorun_cli", *T1, "adapt", "--backbone", "b.pt", "--gamma", "10"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(240, proc.kill)
    killer.start()
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("step "):
                break
        still_running = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: finish the step, checkpoint, say so, exit 130
        rest = proc.stdout.read()
        code = proc.wait(60)
        killer.cancel()
        proc.stdout.close()
    text = "".join(seen)
    assert still_running, text
    assert "Traceback" not in text + rest and "error" not in text.lower()
    assert seen[0].startswith("adapt cs lorun9:") and "steps 0→1000" in seen[0], text
    assert seen[-1].startswith("step 10/1000 loss "), text
    assert not (tmp_path / "b-lorun9-g10.safetensors").exists()  # stopped long before the end
    assert code == 130, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("lorun: interrupted; training state saved to b-lorun9-g10.safetensors.ckpt"), rest
    step = torch.load(tmp_path / "b-lorun9-g10.safetensors.ckpt", weights_only=True)["step"]
    assert step >= 10 and f"at step {step};" in last


def test_adapt_short_run_then_restore_with_the_adapter(adapt_env, tmp_path, lorun):
    env, backbone = adapt_env
    shutil.copy(backbone, tmp_path / "b.pt")
    r = run_lorun([*T1, "adapt", "--backbone", "b.pt", "--gamma", "10", "--steps", "4", "--batch", "2"], env, tmp_path)
    assert_ok(r)
    adapter = tmp_path / "b-lorun9-g10.safetensors"
    assert adapter.is_file() and "saved b-lorun9-g10.safetensors (4 steps" in r.stderr
    meta = models.read_meta(adapter)
    assert meta["kind"] == "adapter" and meta["backbone"] == "b.pt" and meta["config"]["gamma"] == 10
    # the adapter finds b.pt beside it
    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    r = lorun("restore", "--task", "cs", "--model", adapter.name, "house.png", "--json", cwd=tmp_path)
    assert_ok(r)
    rec = json.loads(r.stdout)[0]
    assert rec["model"] == adapter.name and rec["ratio"] == pytest.approx(0.25)
    out = Image.open(tmp_path / "house_cs.png")
    assert out.size == Image.open(CS_SAMPLE).size and out.mode == "L"
    # rerunning into the existing adapter needs --force
    assert_error(lorun("adapt", "--backbone", "b.pt", "--steps", "1", cwd=tmp_path, env=env), 2, "exists", "--force")


def _table_columns(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header cells and, by method, the cells of a Rich table printed with box characters."""
    header = next(ln for ln in text.splitlines() if ln.startswith("┃"))
    cols = [c.strip() for c in header.strip("┃").split("┃")]
    rows = {}
    for ln in text.splitlines():
        if ln.startswith("│"):
            cells = [c.strip() for c in ln.strip("│").split("│")]
            rows[cells[0].rstrip(" *")] = cells
    return cols, rows


def test_design_card_bench_verbatim_with_peak_memory(zoo_env, tmp_path):
    r = run_lorun([*T1, "bench", "--compare", "block9"], zoo_env, tmp_path)
    assert_ok(r)
    cols, rows = _table_columns(r.stdout)
    assert set(rows) == {"cs-lorun9-r25", "cs-block9-r25"}
    assert cols[:3] == ["method", "PSNR", "SSIM"]
    for cells in rows.values():
        peak = cells[cols.index("peak MB")]
        assert peak.replace(",", "").isdigit() and int(peak.replace(",", "")) > 10, cells
        assert float(cells[cols.index("PSNR")]) > 0
    assert "cs-lorun9-r25 *" in r.stdout  # the model under test is marked
    assert "process RSS" in r.stdout and "1 thread(s)" in r.stdout
    assert "bench: cs-block9-r25" in r.stderr


# --------------------------------------------------------------------------- bench views


def test_bench_json_on_stdout_table_on_stderr(lorun):
    r = lorun("bench", "--json", "--compare", "block9", "--repeats", "2", "--no-memory")
    assert_ok(r)
    data = json.loads(r.stdout)
    assert data["task"] == "cs" and data["dataset"] == "bundled samples" and data["threads"] == 1
    assert "8-bit" in data["protocol"] and data["setting"] == {"ratio": 0.25, "block": 32}
    rows = {row["method"]: row for row in data["rows"]}
    assert list(rows) == ["cs-lorun9-r25", "cs-block9-r25"]
    assert rows["cs-lorun9-r25"]["role"] == "model" and rows["cs-block9-r25"]["role"] == "compared"
    for row in rows.values():
        assert 0 < row["psnr"] < 100 and -1 <= row["ssim"] <= 1
        assert isinstance(row["stored"], int) and row["stored"] > 0
        assert row["latency_min_ms"] <= row["latency_ms"] <= row["latency_max_ms"] and row["latency_ms"] > 0
        assert row["peak_mem_mb"] is None
        assert len(row["per_image_psnr"]) == 2
    assert rows["cs-lorun9-r25"]["ratio_to_model"]["stored"] == 1.0
    assert "┃ method" in r.stderr and "cs-block9-r25" in r.stderr and "┃" not in r.stdout


def test_bench_csv_file(lorun, tmp_path):
    out = tmp_path / "rows.csv"
    r = lorun("bench", "--compare", "block9", "--repeats", "2", "--no-memory", "--csv", out)
    assert_ok(r)
    rows = list(csv.reader(out.open()))
    assert len(rows) == 3
    header = rows[0]
    assert header[:4] == ["task", "dataset", "protocol", "method"] and "psnr" in header and "latency_ms" in header
    assert [row[header.index("method")] for row in rows[1:]] == ["cs-lorun9-r25", "cs-block9-r25"]
    assert all(float(row[header.index("psnr")]) > 0 for row in rows[1:])
    assert "cs-block9-r25" in r.stdout  # the table still goes to stdout


def test_bench_sr_with_bicubic(lorun):
    pytest.importorskip("lorun_cli.classical")
    r = lorun("bench", "--task", "sr", "--compare", "block9,bicubic", "--json", "--repeats", "2", "--no-memory")
    assert_ok(r)
    data = json.loads(r.stdout)
    rows = {row["method"]: row for row in data["rows"]}
    assert list(rows) == ["sr-lorun9", "sr-block9", "bicubic"]
    assert rows["bicubic"]["stored"] == 0 and rows["bicubic"]["psnr"] > 15
    assert "Y channel" in data["protocol"] and "border 4" in data["protocol"]
    assert data["setting"] == {"scale": 4, "kernels": "K1"}



def test_bench_sr_auto_scores_the_estimate_raw_and_registered(lorun):
    r = lorun("bench", "--task", "sr", "--scale", "2", "--kernels", "auto:K9,pil-bicubic", "--json", "--limit", "1")
    assert_ok(r)
    data = json.loads(r.stdout)
    fams = data["setting"]["families"]
    assert list(fams) == ["K9", "pil-bicubic"]
    for f in fams.values():
        assert {"oracle", "auto", "auto_registered", "bicubic", "worst_auto_registered_minus_bicubic"} <= set(f)
        assert f["auto_registered_minus_bicubic"] == pytest.approx(f["auto_registered"] - f["bicubic"], abs=2e-3)
    assert [row["strategy"] for row in data["rows"]] == ["oracle", "auto", "auto_registered", "bicubic"]
    assert "auto, reg." in r.stderr and "centre of mass" in data["setting"]["registered"]


# --------------------------------------------------------------------------- restore, every task


def test_restore_sr_simulate_scores_with_protocol(lorun, tmp_path):
    crop_png(SR_SAMPLE, tmp_path / "hr.png", 100)
    r = lorun("restore", "--task", "sr", "--simulate", "--scale", "2", "hr.png", "-o", "sr.png")
    assert_ok(r)
    line = r.stderr.strip()
    assert "PSNR" in line and "dB" in line and "SSIM" in line and "Y channel" in line and "SR protocol" in line
    assert Image.open(tmp_path / "sr.png").size == (100, 100)  # simulate: output at the clean image's size


def test_restore_cs_bundled_sample(lorun, tmp_path):
    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    r = lorun("restore", "--task", "cs", "house.png")
    assert_ok(r)
    out = Image.open(tmp_path / "house_cs.png")
    assert out.size == Image.open(CS_SAMPLE).size and out.mode == "L"
    assert "cs-lorun9-r25" in r.stderr and "PSNR" in r.stderr and "CS protocol" in r.stderr


def test_restore_keeps_16_bit_and_float_inputs(lorun, tmp_path):
    """A 16-bit gray PNG gives a 16-bit PNG, a 16-bit RGB TIFF a 16-bit TIFF and a float TIFF a float TIFF; a 16-bit
    RGB input written as PNG (8-bit only here) says so in a note. An 8-bit input keeps the 8-bit default."""
    g = (np.linspace(0, 65535, 48 * 48).reshape(48, 48) + 0.5).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "rgb16.tif", np.dstack([g, g[::-1], g.T]), photometric="rgb")
    tifffile.imwrite(tmp_path / "f32.tif", (g / 65535.0).astype(np.float32))
    for args, out, check in (
            (["--task", "cs", "g16.png"], "g16_cs.png", lambda p: Image.open(p).mode == "I;16"),
            (["--task", "sr", "--scale", "2", "--kernel", "K1", "rgb16.tif", "-o", "o.tif"], "o.tif",
             lambda p: tifffile.imread(p).dtype == np.uint16),
            (["--task", "cs", "f32.tif", "-o", "f.tif"], "f.tif", lambda p: tifffile.imread(p).dtype == np.float32)):
        r = lorun("restore", *args)
        assert_ok(r)
        assert check(tmp_path / out), out
    r = lorun("restore", "--task", "sr", "--scale", "2", "--kernel", "K1", "rgb16.tif", "-o", "o8.png")
    assert_ok(r)
    assert "rgb16.tif has 16-bit samples and o8.png holds 8; name a .tif output" in r.stderr
    assert Image.open(tmp_path / "o8.png").mode == "RGB"
    Image.fromarray((g >> 8).astype(np.uint8)).save(tmp_path / "g8.png")
    assert_ok(lorun("restore", "--task", "cs", "g8.png"))
    assert Image.open(tmp_path / "g8_cs.png").mode == "L"


def test_restore_sr_outside_the_trained_scales_runs_with_a_note(lorun, tmp_path):
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(tmp_path / "s.png")
    for scale, noted in (("5", True), ("3", False)):
        r = lorun("restore", "--task", "sr", "--scale", scale, "--kernel", "K1", "s.png", "--force")
        assert_ok(r)
        assert ("outside the scales the SR models were trained on (2, 3, 4)" in r.stderr) == noted
        assert Image.open(tmp_path / f"s_x{scale}.png").size == (40 * int(scale),) * 2


def test_restore_cassi_simulate_writes_float_cube_and_preview(lorun, tmp_path):
    import tifffile

    from lorun_cli.io import images

    shutil.copy(CASSI_SAMPLE, tmp_path / "balloons.npz")
    r = lorun("restore", "--task", "cassi", "--simulate", "balloons.npz", "--json")
    assert_ok(r)
    rec = json.loads(r.stdout)[0]
    assert rec["shape"] == [28, 256, 256] and rec["psnr"] > 0 and "CASSI" in rec["protocol"]
    raw = tifffile.imread(tmp_path / "balloons_cube.tif")
    assert raw.dtype == np.float32 and sorted(raw.shape) == [28, 256, 256]
    cube = images.read_cube(tmp_path / "balloons_cube.tif")
    assert tuple(cube.shape) == (28, 256, 256) and 0 <= float(cube.min()) and float(cube.max()) <= 1
    preview = Image.open(tmp_path / "balloons_cube_preview.png")
    assert preview.size == (256, 256) and preview.mode == "RGB"


def test_restore_cassi_from_a_real_measurement(lorun, tmp_path):
    y = np.random.default_rng(1).random((256, 256 + 2 * 27)).astype(np.float32)
    np.save(tmp_path / "meas.npy", y)
    r = lorun("restore", "--task", "cassi", "meas.npy", "--json")
    assert_ok(r)
    rec = json.loads(r.stdout)[0]
    assert rec["task"] == "cassi" and rec["model"] == "cassi-lorun9" and rec["shape"] == [28, 256, 256]
    assert "psnr" not in rec  # nothing to score against
    assert (tmp_path / "meas_cube.tif").is_file() and (tmp_path / "meas_cube_preview.png").is_file()
    # a measurement of the wrong width is refused with the expected size
    np.save(tmp_path / "bad.npy", y[:, :300])
    assert_error(lorun("restore", "--task", "cassi", "bad.npy"), 2, "256×310")


def test_restore_several_inputs_and_a_folder(lorun, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    crop_png(SR_SAMPLE, src / "a.png", 40)
    crop_png(ASSETS / "samples" / "sr" / "butterfly.png", src / "b.png", 32)
    (src / "notes.txt").write_text("not an image")
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    out1.mkdir()
    out2.mkdir()
    r = lorun("restore", "--scale", "2", src / "a.png", src / "b.png", "-o", out1, "--json")
    assert_ok(r)
    assert [rec["output"] for rec in json.loads(r.stdout)] == [str(out1 / "a_x2.png"), str(out1 / "b_x2.png")]
    assert Image.open(out1 / "a_x2.png").size == (80, 80) and Image.open(out1 / "b_x2.png").size == (64, 64)
    r = lorun("restore", "--scale", "2", src, "-o", out2)
    assert_ok(r)
    assert sorted(p.name for p in out2.iterdir()) == ["a_x2.png", "b_x2.png"]
    assert np.array_equal(np.asarray(Image.open(out1 / "a_x2.png")), np.asarray(Image.open(out2 / "a_x2.png")))
    # several inputs into something that is not a folder
    r = lorun("restore", "--scale", "2", src / "a.png", src / "b.png", "-o", tmp_path / "single.png")
    assert_error(r, 2, "folder")
    assert not (tmp_path / "single.png").exists()


def test_restore_sr_tiled_matches_untiled(lorun, tmp_path):
    crop_png(SR_SAMPLE, tmp_path / "lr.png", 100)
    assert_ok(lorun("restore", "--scale", "2", "lr.png", "-o", "whole.png"))
    assert_ok(lorun("restore", "--scale", "2", "--tile", "96", "lr.png", "-o", "tiled.png"))
    whole = np.asarray(Image.open(tmp_path / "whole.png"))
    tiled = np.asarray(Image.open(tmp_path / "tiled.png"))
    assert whole.shape == tiled.shape == (200, 200, 3)
    assert psnr8(whole, tiled) >= 45  # tests/test_tiling.py checks the float outputs of the shipped models


# --------------------------------------------------------------------------- errors


def _fresh_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def test_errors_in_a_real_process(zoo_env, tmp_path):
    """Missing input, corrupt image and an unknown option: messages and exit codes of the real program."""
    out = _fresh_dir(tmp_path)
    r = run_lorun([*T1, "restore", "missing.png", "-o", out / "x.png"], zoo_env, tmp_path)
    assert_error(r, 2, "missing.png", "no such file")
    (tmp_path / "junk.png").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    r = run_lorun([*T1, "restore", "junk.png", "-o", out / "x.png"], zoo_env, tmp_path)
    assert_error(r, 1, "junk.png", "image")
    r = run_lorun([*T1, "restore", "--bogus", "in.png"], zoo_env, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "No such option: --bogus" in r.stderr and "Usage: lorun restore" in r.stderr and r.stdout == ""
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--kernel", "K13"], 2, ["--kernel K13"]),
        (["--scale", "0"], 2, ["--scale 0"]),
        (["--task", "cs", "--ratio", "1.5"], 2, ["--ratio 1.5", "(0, 1]"]),
        (["--model", "no-such-model"], 1, ["no-such-model", "sr-lorun9"]),
        (["--task", "sr", "--model", "{weights}/cs-share9-r25.safetensors"], 2, ["cs model", "--task cs"]),
        (["--task", "nope"], 2, ["--task"]),
        (["--noise", "-1"], 2, ["--noise"]),
    ],
    ids=["unknown-kernel", "scale-0", "ratio-1.5", "unknown-model-name", "model-of-other-task", "bad-task",
         "negative-noise"],
)
def test_restore_usage_errors(lorun, zoo_env, tmp_path, args, code, words):
    shutil.copy(CS_SAMPLE, tmp_path / "in.png")
    out = _fresh_dir(tmp_path)
    args = [a.replace("{weights}", str(weights_dir(zoo_env))) for a in args]
    assert_error(lorun("restore", *args, "in.png", "-o", out / "x.png"), code, *words)
    assert list(out.iterdir()) == []


def test_device_cuda_without_a_gpu(lorun, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    shutil.copy(CS_SAMPLE, tmp_path / "in.png")
    out = _fresh_dir(tmp_path)
    r = lorun("--device", "cuda", "restore", "in.png", "-o", out / "x.png")  # global option before the command
    assert_error(r, 2, "--device cuda", "CUDA is not available")
    assert list(out.iterdir()) == []


def test_existing_output_needs_force(lorun, tmp_path):
    crop_png(SR_SAMPLE, tmp_path / "in.png", 32)
    target = tmp_path / "in_x2.png"
    target.write_bytes(b"precious")
    assert_error(lorun("restore", "--scale", "2", "in.png"), 2, "in_x2.png", "exists", "--force")
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "in_x2.png"]
    assert_ok(lorun("restore", "--scale", "2", "in.png", "--force"))
    assert Image.open(target).size == (64, 64)


def test_existing_cassi_preview_needs_force(lorun, tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((256, 310), np.float32))
    (tmp_path / "m_cube_preview.png").write_bytes(b"keep")
    assert_error(lorun("restore", "--task", "cassi", "m.npy"), 2, "m_cube_preview.png", "exists")
    assert not (tmp_path / "m_cube.tif").exists() and (tmp_path / "m_cube_preview.png").read_bytes() == b"keep"


def test_output_folder_not_writable(lorun, tmp_path):
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    crop_png(SR_SAMPLE, tmp_path / "in.png", 32)
    out = _fresh_dir(tmp_path)
    out.chmod(0o500)
    try:
        assert_error(lorun("restore", "--scale", "2", "in.png", "-o", out / "x.png"), 1, "not writable")
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_output_parent_is_a_regular_file(lorun, tmp_path):
    crop_png(SR_SAMPLE, tmp_path / "in.png", 32)
    (tmp_path / "afile").write_text("x")
    assert_error(lorun("restore", "--scale", "2", "in.png", "-o", "afile/x.png"), 2, "afile", "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.png"]


def test_adapter_on_the_wrong_backbone(lorun, zoo_env, tmp_path):
    wdir = weights_dir(zoo_env)
    other = models.load_model(wdir / "cs-share9-r25.safetensors")
    with torch.no_grad():
        for p in other.denoisers[0].parameters():
            p.add_(0.05)
    models.save_model(tmp_path / "other.safetensors", other)
    shutil.copy(CS_SAMPLE, tmp_path / "in.png")
    r = lorun("restore", "--task", "cs", "--model", wdir / "cs-lorun9-r25.safetensors", "--backbone",
              "other.safetensors", "in.png")
    assert_error(r, 1, "backbone", "other.safetensors")
    assert not (tmp_path / "in_cs.png").exists()


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_object_in_pt_is_refused(lorun, tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _Payload(marker)}, tmp_path / "evil.pt")
    crop_png(SR_SAMPLE, tmp_path / "in.png", 32)
    r = lorun("restore", "--model", "evil.pt", "in.png")
    assert_error(r, 1, "evil.pt", "refusing to unpickle")
    assert not marker.exists() and not (tmp_path / "in_x4.png").exists()


def test_bench_compares_a_manifest_model_by_name(lorun):
    r = lorun("bench", "--json", "--compare", "cs-share9-r25", "--repeats", "1", "--no-memory")
    assert_ok(r)
    rows = json.loads(r.stdout)["rows"]
    assert [(x["method"], x["strategy"]) for x in rows] == [("cs-lorun9-r25", "lorun9"), ("cs-share9-r25", "share9")]


def test_bench_unknown_strategy(lorun):
    assert_error(lorun("bench", "--compare", "foo", "--no-memory", "--repeats", "1"), 2, "--compare foo", "block9")
    assert_error(lorun("bench", "--task", "sr", "--compare", "tv", "--no-memory"), 2, "not a sr baseline")


# --------------------------------------------------------------------------- help, version, start-up


def test_help_version_and_lazy_torch(zoo_env, tmp_path):
    r = run_lorun(["--help"], zoo_env, tmp_path)
    assert_ok(r)
    for cmd in ("restore", "pretrain", "adapt", "bench", "weights"):
        assert cmd in r.stdout
    r = run_lorun(["restore", "--help"], zoo_env, tmp_path)
    assert_ok(r)
    assert "--kernel" in r.stdout and "--scale" in r.stdout and "--tile" in r.stdout
    r = run_lorun(["--version"], zoo_env, tmp_path)
    assert_ok(r)
    assert r.stdout.strip() == f"lorun {__version__}"
    code = ("import sys, lorun_cli.cli.app, lorun_cli.io.weights, lorun_cli.report\n"
            "assert 'torch' not in sys.modules, 'torch imported at start-up'")
    r = subprocess.run([sys.executable, "-c", code], env=zoo_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- weights


def test_weights_list_fetch_verify_path(zoo_env, tmp_path):
    env = {**zoo_env, "LORUN_CACHE_DIR": str(tmp_path / "cache")}  # a private cache: this test corrupts it
    manifest = json.loads(Path(env["LORUN_MANIFEST"]).read_text())
    names = [m["name"] for m in manifest["models"]]
    r = run_lorun(["weights", "list", "--json"], env, tmp_path)
    assert_ok(r)
    listed = json.loads(r.stdout)
    assert [e["name"] for e in listed] == names and "sr-lorun9" in names
    assert all(e["bundled"] and not e["cached"] for e in listed)

    r = run_lorun(["weights", "verify"], env, tmp_path)
    assert_ok(r)
    assert r.stdout.count("not cached") == len(names)

    r = run_lorun(["weights", "fetch"], env, tmp_path)
    assert_ok(r)
    for name in names:
        assert f"{name}: " in r.stdout
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.safetensors")) == sorted(
        m["file"] for m in manifest["models"])
    r = run_lorun(["weights", "verify"], env, tmp_path)
    assert_ok(r)
    assert r.stdout.count(": ok") == len(names)

    r = run_lorun(["weights", "path"], env, tmp_path)
    assert_ok(r)
    assert r.stdout.strip() == str(tmp_path / "cache")
    r = run_lorun(["weights", "path", "sr-lorun9"], env, tmp_path)
    assert_ok(r)
    cached = Path(r.stdout.strip())
    assert cached == tmp_path / "cache" / "sr-lorun9.safetensors" and cached.is_file()

    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    r = run_lorun(["weights", "verify"], env, tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "sr-lorun9: CORRUPT" in r.stdout and r.stdout.count(": ok") == len(names) - 1
    assert r.stderr.startswith("lorun: error: ") and "sr-lorun9" in r.stderr

    assert_error(run_lorun(["weights", "path", "nope"], env, tmp_path), 1, "nope", "sr-lorun9")
    assert_error(run_lorun(["weights", "fetch", "nope"], env, tmp_path), 2, "nope")


def test_bench_defaults_to_the_headline_set_when_the_data_root_has_it(lorun, zoo_env, tmp_path):
    from PIL import Image

    set11 = tmp_path / "root" / "cs" / "set11"
    set11.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(set11 / f"img{i}.png")
    env = {**zoo_env, "LORUN_DATA": str(tmp_path / "root")}
    args = ("bench", "--json", "--compare", "block9", "--repeats", "1", "--no-memory")
    r = lorun(*args, env=env)
    assert_ok(r)
    assert json.loads(r.stdout)["dataset"] == "set11"  # the manifest's metrics are Set11 numbers
    r = lorun(*args, "--dataset", "samples", env=env)
    assert_ok(r)
    assert json.loads(r.stdout)["dataset"] == "bundled samples"
    r = lorun(*args, env={**zoo_env, "LORUN_DATA": str(tmp_path)})  # a root without cs/set11
    assert_ok(r)
    assert json.loads(r.stdout)["dataset"] == "bundled samples"


def test_restore_cassi_with_gap_tv(lorun, tmp_path):
    """--model gap-tv: the classical reconstruction through the same restore pipeline (same outputs, scored)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    spectra = np.linspace(0.2, 0.9, 28)[:, None, None]
    cube = (0.5 + 0.4 * np.sin(2 * np.pi * (xx + 0.5 * yy)))[None] * spectra
    np.save(tmp_path / "cube.npy", cube.astype(np.float32))
    np.save(tmp_path / "mask.npy", (rng.random((64, 64)) > 0.5).astype(np.float32))
    r = lorun("restore", "--task", "cassi", "--model", "gap-tv", "--mask", "mask.npy", "--simulate", "cube.npy",
              "--json")
    assert_ok(r)
    rec = json.loads(r.stdout)[0]
    assert rec["model"] == "gap-tv" and rec["shape"] == [28, 64, 64] and rec["psnr"] > 30
    assert (tmp_path / "cube_cube.tif").is_file()


def test_results_regen_command_is_accepted_by_the_cli(lorun, tmp_path: Path) -> None:
    """The command printed atop docs/RESULTS.md must parse: app options (--threads) go before `bench`."""
    from lorun_cli.results import regen_command

    cmd = regen_command(Path("RESULTS.md"), Path("p.png"), True, threads=2, repeats=10)
    assert cmd.startswith("lorun --threads 2 bench --all")
    r = lorun(*cmd.replace("<root>", str(tmp_path)).split()[1:], "--help")
    assert r.returncode == 0, r.stderr


def test_restore_cassi_warm_start(lorun, tmp_path):
    """--warm-start swaps a CASSI model's x⁰ (a 64×64 cube with its own mask: seconds); a bad spelling, another
    task or the classical model get one usage line."""
    rng = np.random.default_rng(0)
    cube = rng.random((28, 64, 64)).astype(np.float32) * np.linspace(0.2, 0.9, 28)[:, None, None]
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "mask.npy", (rng.random((64, 64)) > 0.5).astype(np.float32))
    base = ("restore", "--task", "cassi", "--mask", "mask.npy", "--simulate", "cube.npy", "--json", "--force")
    recs = []
    for start in ("gap-tv:3:0.16:4", "gap-tv:3:0.16"):
        r = lorun(*base, "--warm-start", start, "-o", f"{start.replace(':', '_')}.tif")
        assert_ok(r)
        recs.append(json.loads(r.stdout)[0])
    assert recs[0]["psnr"] != recs[1]["psnr"]  # the start reached the stages
    assert_error(lorun(*base, "--warm-start", "gap-tv:3:x"), 2, "--warm-start")
    assert_error(lorun(*base, "--warm-start", "gap-tv:0"), 2, "--warm-start")
    assert_error(lorun("restore", "--task", "sr", "--warm-start", "op", "cube.npy"), 2, "CASSI option")
    assert_error(lorun(*base, "--model", "gap-tv", "--warm-start", "op"), 2, "--warm-start")


def test_bench_cassi_warm_start(lorun, tmp_path):
    """bench --warm-start runs the learned CASSI models from another x⁰ (named in the row); other tasks refuse it."""
    r = lorun("bench", "--task", "cassi", "--dataset", "samples", "--compare", "block9", "--repeats", "1",
              "--no-memory", "--warm-start", "gap-tv:2:0.16:4", "--json")
    assert_ok(r)
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 2 and all(row["method"].endswith("(x⁰ gap-tv:2:0.16:4)") and row["psnr"] > 0 for row in rows)
    assert_error(lorun("bench", "--task", "cs", "--warm-start", "op"), 2, "CASSI option")
