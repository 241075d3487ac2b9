"""Speed work that must not change results: cached SR data-step terms, channels-last, bf16, float32 scores,
batch folders (issue 15). No timing here: the speed figures come from `lorun bench --speed` (docs/SPEED.md)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from test_cli import CS_SAMPLE, assert_error, assert_ok, lorun  # noqa: F401 - lorun is a fixture

from lorun_cli.physics.base import Operator
from lorun_cli.physics.cs import BlockCS
from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.unfold import DUN


def _sr_net() -> DUN:
    torch.manual_seed(0)
    net = DUN(3, "lorun3", denoiser="unet", algo="hqs", denoiser_kwargs={"widths": [8, 16]})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.prepare_inference()


def test_sr_per_forward_terms_are_exact() -> None:
    """hqs_step inside per_forward (terms of y computed once) equals the step computed afresh at every stage."""
    net = _sr_net()
    op = SRBlur(load_kernels()["K3"], 3)
    y = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        cached = net(y, op, return_stages=True)
        op.per_forward = Operator.per_forward.__get__(op)  # the base scope: every stage recomputes the terms
        fresh = net(y, op, return_stages=True)
    for a, b in zip(cached, fresh, strict=True):
        assert torch.equal(a, b)


def test_sr_per_forward_is_per_measurement() -> None:
    """A different y inside the same scope is not served the first y's terms."""
    op = SRBlur(load_kernels()["K1"], 2)
    y1, y2, x = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    with op.per_forward(y1):
        op.hqs_step(x, y1, 0.1)
        inside = op.hqs_step(x, y2, 0.1)
    assert torch.equal(inside, op.hqs_step(x, y2, 0.1))


def test_tune_process_sets_passive_wait_unless_the_user_chose(tmp_path) -> None:
    """The CLI's process settings: PASSIVE OpenMP waiting unless OMP_WAIT_POLICY is set; malloc kept on glibc."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; from lorun_cli import runtime; t = runtime.tune_process(); "
            "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules, sorted(t))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LORUN_MALLOC")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("PASSIVE False")
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert "malloc" in out
    env.update(OMP_WAIT_POLICY="ACTIVE", LORUN_MALLOC="system")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "ACTIVE" and "malloc" not in out


def _cs_net() -> DUN:
    torch.manual_seed(1)
    net = DUN(1, "lorun3", denoiser="unet", op=BlockCS(0.25), denoiser_kwargs={"widths": [8, 16, 32]})
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net


def test_channels_last_inference_matches_the_plain_layout() -> None:
    """channels_last merged inference gives the contiguous-layout result to float rounding (≤ 1e-5)."""
    net = _cs_net()
    x = torch.rand(2, 1, 64, 96)
    y = net.op.measure(x)
    plain = copy.deepcopy(net).prepare_inference(channels_last=False)
    fast = copy.deepcopy(net).prepare_inference()
    assert fast.denoisers[0].head.conv1.base.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        a, b = plain(y), fast(y)
    assert b.is_contiguous() and b.dtype == torch.float32
    assert (a - b).abs().max() <= 1e-5


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no bf16 in oneDNN on this CPU")
def test_bf16_inference_is_close_and_float32_out() -> None:
    """bf16 autocast of the denoisers: a float32 result close to fp32 (the data steps stay float32)."""
    net = _cs_net()
    y = net.op.measure(torch.rand(1, 1, 64, 64))
    with torch.no_grad():
        a = copy.deepcopy(net).prepare_inference()(y)
        b = copy.deepcopy(net).prepare_inference(precision="bf16")(y)
    assert b.dtype == torch.float32
    err = (a - b).abs()
    assert 0 < float(err.max()) < 0.05 and float(err.mean()) < 5e-3


def test_precision_option_end_to_end(lorun, tmp_path: Path) -> None:  # noqa: F811
    """--precision: fp16 needs CUDA (one line, exit 2, nothing written); bf16 restores and scores."""
    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    assert_error(lorun("restore", "--task", "cs", "house.png", "--precision", "fp16"), 2, "--precision", "CUDA")
    assert not (tmp_path / "house_cs.png").exists()
    assert_error(lorun("restore", "--task", "cs", "house.png", "--precision", "fp8"), 2, "--precision")
    r = lorun("restore", "--task", "cs", "house.png", "--precision", "bf16", "--json")
    assert_ok(r)
    assert (tmp_path / "house_cs.png").is_file()


@pytest.mark.parametrize("protocol", ["gray8", "y", "bands"])
def test_float32_scores_match_float64(protocol: str) -> None:
    """restore's float32 scores (SSIM maps in float32, centred) agree with the float64 reference."""
    import numpy as np
    from skimage.metrics import structural_similarity
    from test_metrics import _noisy, _structured

    from lorun_cli import metrics

    c = 1 if protocol == "gray8" else 3
    ref = torch.from_numpy(_structured(c, 160, 200, 5))
    est = torch.from_numpy(_noisy(ref.numpy(), 0.03, 6))
    a = metrics.score(est, ref, protocol, border=2)
    b = metrics.score(est.float(), ref.float(), protocol, border=2, dtype=torch.float32)
    assert abs(a["psnr"] - b["psnr"]) < 1e-4 and abs(a["ssim"] - b["ssim"]) < 1e-5
    if protocol == "bands":  # and against scikit-image, per band
        sk = np.mean([structural_similarity(est[i, 2:-2, 2:-2].numpy(), ref[i, 2:-2, 2:-2].numpy(), data_range=1.0,
                                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                      for i in range(c)])
        assert abs(b["ssim"] - sk) < 1e-4


def test_no_score_skips_scoring(lorun, tmp_path: Path) -> None:  # noqa: F811
    """--no-score: no PSNR/SSIM in the record; with --ref it is a usage error (exit 2, nothing written)."""
    import json

    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    r = lorun("restore", "--task", "cs", "house.png", "--no-score", "--json")
    assert_ok(r)
    rec = json.loads(r.stdout)[0]
    assert "psnr" not in rec and "ssim" not in rec and (tmp_path / "house_cs.png").is_file()
    r = lorun("restore", "--task", "cs", "house.png", "-o", "x.png", "--no-score", "--ref", "house.png")
    assert_error(r, 2, "--no-score")
    assert not (tmp_path / "x.png").exists()


def test_folder_mode_writes_every_file_in_one_process(lorun, tmp_path: Path) -> None:  # noqa: F811
    """A folder of inputs: one record and one output per input (same pixels as one-by-one runs), timings,
    the whole command's seconds and the peak memory on the last record."""
    import json

    import numpy as np
    from PIL import Image
    from test_cli import SR_SAMPLE, crop_png

    src, out = tmp_path / "in", tmp_path / "out"  # -o names a new folder: it is made
    src.mkdir()
    for i in range(5):
        crop_png(SR_SAMPLE, src / f"im{i}.png", 24 + 4 * i)
    r = lorun("restore", "--scale", "2", "--kernel", "K2", src, "-o", out, "--json")
    assert_ok(r)
    recs = json.loads(r.stdout)
    assert [Path(x["output"]).name for x in recs] == [f"im{i}_x2.png" for i in range(5)]
    assert sorted(p.name for p in out.iterdir()) == [f"im{i}_x2.png" for i in range(5)]  # no temporaries
    assert all(set(x["timings"]) >= {"read", "compute", "score", "write"} for x in recs)
    assert recs[-1]["command_seconds"] > 0 and recs[-1]["peak_rss_mb"] > 0
    one = lorun("restore", "--scale", "2", "--kernel", "K2", src / "im3.png", "-o", tmp_path / "one.png")
    assert_ok(one)
    assert np.array_equal(np.asarray(Image.open(out / "im3_x2.png")), np.asarray(Image.open(tmp_path / "one.png")))


def test_folder_mode_stops_on_a_bad_input_without_partial_files(lorun, tmp_path: Path) -> None:  # noqa: F811
    """An unreadable file in the middle: one error line, exit 1; outputs are whole files or absent."""
    from test_cli import SR_SAMPLE, crop_png

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for i in (0, 1, 3, 4):
        crop_png(SR_SAMPLE, src / f"im{i}.png", 24)
    (src / "im2.png").write_bytes(b"not a png")
    r = lorun("-q", "restore", "--scale", "2", "--kernel", "K2", src, "-o", out)
    assert_error(r, 1, "im2.png")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["im0_x2.png", "im1_x2.png"]  # the inputs before the bad one are done, nothing after
    from PIL import Image

    for n in names:
        Image.open(out / n).verify()  # whole files only


def test_verbose_breaks_the_time_down(lorun, tmp_path: Path) -> None:  # noqa: F811
    """--verbose: the per-input breakdown and the command total (start-up, model load, compute, peak RSS)."""
    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    r = lorun("restore", "--task", "cs", "house.png", "-v")
    assert_ok(r)
    assert "compute" in r.stderr and "write" in r.stderr and "total" in r.stderr and "peak RSS" in r.stderr


def test_bench_speed_reports_peaks_and_forward_rate(lorun, tmp_path: Path) -> None:  # noqa: F811
    """bench --speed --json: machine peaks, and per method latency; learned rows carry GFLOP and GFLOP/s."""
    import json

    r = lorun("bench", "--task", "sr", "--speed", "--repeats", "1", "--json")
    assert_ok(r)
    res = json.loads(r.stdout)
    assert res["peaks"]["fp32"]["matmul_gflops"] > 0 and res["peaks"]["fp32"]["conv_gflops"] > 0
    names = [row["method"] for row in res["rows"]]
    assert names[0] == "sr-lorun9" and "sr-block9" in names and names[-1] == "bicubic"
    first = res["rows"][0]
    assert first["gflop"] > 0 and first["gflops"] > 0 and 0 < first["of_conv_peak"]
    assert all(row["latency_ms"] > 0 for row in res["rows"])
    # the start x⁰ is timed alone; the stages' rate divides by the forward time without it
    assert 0 < first["start_ms"] < first["latency_ms"]
    assert first["stages_gflops"] == pytest.approx(first["gflop"] * 1000 / (first["latency_ms"] - first["start_ms"]),
                                                   rel=1e-2)
    assert first["stages_of_conv_peak"] >= first["of_conv_peak"]
    assert "start_ms" not in res["rows"][-1]  # the classical baseline has no start of its own


def test_default_cpu_budget_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Default budget: half the available memory, at most 1 GB on a CPU (a 4K SR is tiled by default)."""
    from lorun_cli import memory

    monkeypatch.delenv("LORUN_MAX_MEMORY", raising=False)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 40 * memory.GB)
    budget, how = memory.budget_bytes(None)
    assert budget == memory.DEFAULT_CAP and "default" in how
    assert memory.budget_bytes(8.0)[0] == 8 * memory.GB  # --max-memory still allows more
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": memory.GB)
    assert memory.budget_bytes(None)[0] == memory.GB // 2
    p = memory.plan_tiles(16, 3, 1, (2160, 3840), 0, memory.DEFAULT_CAP, "default", min_tile=96)
    assert 0 < p.tile < 2160 and "tiling automatically" in p.note


def test_fast_exit_flushes_everything(zoo_env: dict[str, str], tmp_path: Path) -> None:
    """The real process ends with os._exit after flushing: complete JSON on a pipe, the file, exit 0; and an
    error still gives its one line and exit code."""
    import json

    from conftest import run_lorun

    env = {k: v for k, v in zoo_env.items() if k != "LORUN_NO_FAST_EXIT"}
    shutil.copy(CS_SAMPLE, tmp_path / "house.png")
    r = run_lorun(["--threads", "1", "restore", "--task", "cs", "house.png", "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["psnr"] > 0 and (tmp_path / "house_cs.png").is_file()
    r = run_lorun(["--threads", "1", "restore", "--task", "cs", "house.png"], env, tmp_path)
    assert r.returncode == 2 and r.stderr.strip().startswith("lorun: error:") and "--force" in r.stderr


def test_native_bf16_means_the_bf16_units_not_onednn_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """On x86 with AVX-512, bf16 counts as native only with AVX512-BF16 or AMX (oneDNN's own check also says yes
    on plain AVX-512, where it emulates bf16 at several times fp32's time)."""
    from lorun_cli import restore as R

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: True)
    for bf16, amx, native in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert R.native_bf16_cpu() is native


def test_bf16_falls_back_to_fp32_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision bf16 on a CPU without native bf16 runs fp32 with a note; fp16 needs CUDA."""
    from lorun_cli import restore as R
    from lorun_cli.errors import UsageError

    monkeypatch.setattr(R, "native_bf16_cpu", lambda: False)
    precision, note = R.resolve_precision("bf16", "cpu")
    assert precision == "fp32" and "no native bf16" in note
    monkeypatch.setattr(R, "native_bf16_cpu", lambda: True)
    assert R.resolve_precision("bf16", "cpu") == ("bf16", "")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert R.resolve_precision("bf16", "cuda") == ("bf16", "")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    precision, note = R.resolve_precision("bf16", "cuda:0")
    assert precision == "fp32" and "fp16" in note
    assert R.resolve_precision("fp32", "cpu") == ("fp32", "")
    with pytest.raises(UsageError):
        R.resolve_precision("fp16", "cpu")


def test_bench_refuses_a_precision_this_cpu_would_only_emulate(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench measures what runs: bf16 without the bf16 units is refused in one line, not timed as fp32 or emulated."""
    from lorun_cli import bench as B
    from lorun_cli import restore as R
    from lorun_cli.errors import OptionError

    monkeypatch.setattr(R, "native_bf16_cpu", lambda: False)
    with pytest.raises(OptionError, match="no native bf16.*drop it"):
        B._precisions(B.BenchOptions(task="sr", precisions=["bf16"]))
    assert B._precisions(B.BenchOptions(task="sr", precisions=["fp32"])) == ["fp32"]
    monkeypatch.setattr(R, "native_bf16_cpu", lambda: True)
    assert B._precisions(B.BenchOptions(task="sr", precisions=["bf16"])) == ["fp32", "bf16"]
