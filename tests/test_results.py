"""The results page: suite planning, targets computed from results, and a bundled-samples run on the tiny zoo."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from PIL import Image

from lorun_cli import classical, results, results_page, results_suite
from lorun_cli.bench import BenchResult


@pytest.fixture()
def zoo(zoo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the weights lookup at the tiny untrained zoo (offline); no data root in the environment."""
    for key in ("LORUN_MANIFEST", "LORUN_CACHE_DIR", "LORUN_OFFLINE"):
        monkeypatch.setenv(key, zoo_env[key])
    monkeypatch.delenv("LORUN_DATA", raising=False)


def test_plan_suite_skips_missing_data_and_models(zoo: None, tmp_path: Path) -> None:
    (tmp_path / "cs" / "set11").mkdir(parents=True)
    (tmp_path / "cs" / "set11" / "a.png").write_bytes(b"")
    (tmp_path / "sr" / "set5").mkdir(parents=True)  # present but empty
    planned, skipped = results_suite.plan_suite(tmp_path)
    assert [c["key"] for c in planned] == ["cs-set11-r25"]  # the zoo has CS lorun9 at 25 % only
    cfg = planned[0]
    assert cfg["ratio"] == 0.25 and cfg["compare"] == ["block9", "linear", "tv"]
    assert any("block1" in n for n in cfg["notes"])
    text = "\n".join(t for _, t in skipped)
    assert "cs/bsd68" in text and "sr/set5" in text and "sr/bsd100" in text and "cassi/cave/test" in text
    assert {t for t, _ in skipped} == {"cs", "sr", "cassi"}
    assert sum("every scale × kernel" in t for t in text.splitlines()) == 1  # one line for a whole grid
    opts = results_suite.bench_options(cfg, tmp_path, "cpu", 1, 3, False)
    assert (opts.task, opts.dataset, opts.ratio, opts.compare, opts.repeats) == ("cs", "set11", 0.25, cfg["compare"], 3)
    # without a data root only the bundled-samples suite is planned, one configuration per task
    planned, _ = results_suite.plan_suite(None)
    assert [c["task"] for c in planned] == ["cs", "sr", "cassi"] and all(c["dataset"] is None for c in planned)


def test_cs_ratios_from_manifest() -> None:
    models = [{"task": "cs", "strategy": "lorun9", "ratio": 0.1}, {"task": "cs", "strategy": "block9", "ratio": 0.5},
              {"task": "cs", "strategy": "lorun9", "ratio": 0.25}, {"task": "sr", "strategy": "lorun9"}]
    assert results_suite.cs_ratios(models) == [0.1, 0.25]
    expanded = results_suite._expand(results_suite.SUITE[0], models)
    assert [c["ratio"] for c in expanded] == [0.1, 0.25] and "10 %" in expanded[0]["title"]


def test_variants_are_compared_by_name_never_served_by_default() -> None:
    models = [{"name": "a", "task": "cs", "strategy": "lorun9", "ratio": 0.1},
              {"name": "a-compact", "task": "cs", "strategy": "lorun9", "ratio": 0.1, "variant": "compact"},
              {"name": "b-compact", "task": "cs", "strategy": "lorun9", "ratio": 0.5, "variant": "compact"}]
    assert results_suite.cs_ratios(models) == [0.1]  # a variant alone does not add a ratio to the suite
    assert results_suite.variants(models, "cs", 0.1) == ["a-compact"]
    assert results_suite.variants(models, "sr", None) == []
    assert results_suite._has_model(models, "cs", "lorun9", 0.1)
    assert not results_suite._has_model(models, "cs", "lorun9", 0.5)
    bytes_ = [{"name": "a", "task": "cs", "strategy": "lorun9", "ratio": 0.1, "bytes": 300},
              {"name": "a-compact", "task": "cs", "strategy": "lorun9", "ratio": 0.1, "bytes": 90, "variant": "c"},
              {"name": "f", "task": "cs", "strategy": "block9", "ratio": 0.1, "bytes": 1000}]
    t = results._adapter_bytes_target(bytes_, 0.10)
    assert t.status == "MET" and "10 %: 0.300" in t.measured and "10 % a-compact: 0.090" in t.measured
    assert results._adapter_bytes_target(bytes_[:1] + bytes_[2:], 0.10).status == "MISSED"


def _row(strategy: str, psnr: float, network: int = 0, op: int = 0, lat: float = 1.0) -> dict:
    return {"method": strategy, "role": "model" if strategy == "lorun9" else "compared", "strategy": strategy,
            "psnr": psnr, "ssim": 0.9, "network": network, "stored": network + op, "operator": op,
            "latency_ms": lat}


def _run(task: str, dataset: str | None, rows: list[dict], **cfg) -> tuple[dict, BenchResult]:
    return ({"task": task, "dataset": dataset, "title": f"{task} {dataset}", **cfg},
            BenchResult(task, dataset or "bundled samples", "p", "cpu", 1, rows, {}))


def test_targets_are_computed_from_results() -> None:
    runs = [
        _run("cs", "set11", [_row("lorun9", 31.6, 350, 1000, 1.0), _row("block9", 31.7, 1000, 1000, 1.0),
                             _row("tv", 30.0)], ratio=0.25),
        _run("cs", "set11", [_row("lorun9", 26.0, 350, 400, 1.2), _row("block9", 26.5, 1000, 400, 1.0),
                             _row("tv", 26.1)], ratio=0.10),
        _run("sr", "cbsd68", [_row("lorun9", 25.0, 30, lat=1.0), _row("block9", 25.1, 100, lat=1.0),
                              _row("bicubic", 23.0)], scale=4, kernels="all"),
    ]
    models = [{"task": "cs", "strategy": "lorun9", "ratio": 0.25, "bytes": 50},
              {"task": "cs", "strategy": "block9", "ratio": 0.25, "bytes": 1000}]
    got = {t.name: t for t in results.evaluate_targets(runs, models)}

    def status(prefix: str) -> str:
        (hit,) = [t for name, t in got.items() if name.startswith(prefix)]
        return hit.status

    assert status("CS Set11 25 %") == "MET"
    assert status("CS Set11 10 %") == "MISSED"
    assert status("CS Set11 50 %") == "NOT MEASURED"
    assert status("CS: lorun9 beats tv") == "MISSED"  # −0.10 dB at 10 %
    assert status("SR CBSD68 ×4, 12-kernel mean: lorun9 PSNR") == "MET"
    assert status("SR CBSD68 ×4, 12-kernel mean: lorun9 ≥ bicubic") == "MET"  # +2.0 dB
    assert status("CASSI: lorun9 ≥ gap-tv") == "NOT MEASURED"
    assert status("CS: lorun9 PSNR ≥ block9") == "MISSED"  # −0.5 dB at 10 %
    block = got[next(n for n in got if n.startswith("CS: lorun9 PSNR ≥ block9"))].measured
    assert "Set11 25 %: -0.10 dB" in block and "Set11 10 %: -0.50 dB" in block  # each run named by data + ratio
    near = [_run("cs", "set11", [_row("lorun9", 20.8437), _row("tv", 20.8408)], ratio=0.01)]
    (tv,) = [t for t in results.evaluate_targets(near, []) if t.name.startswith("CS: lorun9 beats tv")]
    assert tv.status == "MET" and "Set11 1 %: +0.003 dB" in tv.measured  # a near-tie shows its third decimal
    assert status("SR: lorun9 PSNR ≥ block9") == "MET"  # −0.1 dB
    assert status("CS: stored params") == "MET"  # 350/1000 on the network, Φ excluded
    assert "with Φ" in got[next(n for n in got if n.startswith("CS: stored params"))].measured
    assert status("SR: stored params") == "MET"
    assert status("CS: an extra ratio") == "MET"  # 50 / 1000 bytes
    assert status("CS: merged lorun9 latency") == "MISSED"  # median of 1.0 and 1.2 = 1.1 > 1.05
    assert status("SR: merged lorun9 latency") == "MET"
    assert status("CASSI: merged lorun9 latency") == "NOT MEASURED"


def _capped(fn, most: int):
    """``fn`` with at most ``most`` iterations, whatever the caller asks for."""

    def run(*args, iters: int = most, **kwargs):
        return fn(*args, iters=min(iters, most), **kwargs)

    return run


def test_build_results_on_bundled_samples(zoo: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the classical iterative baselines are shortened: this test checks the page, not their quality
    # (iters capped, not defaulted: DUN.initial_estimate passes its own iters=30 to gap_tv)
    monkeypatch.setattr(classical, "cs_tv", _capped(classical.cs_tv, 3))
    monkeypatch.setattr(classical, "gap_tv", _capped(classical.gap_tv, 2))
    md, png = tmp_path / "docs" / "RESULTS.md", tmp_path / "docs" / "psnr_params.png"
    out = results.build_results(None, md, png, threads=1, quick=True, quiet=True)
    assert [r.task for r in out] == ["cs", "sr", "cassi"]
    assert all(r.dataset == "bundled samples" for r in out)
    page = md.read_text(encoding="utf-8")
    first = page.splitlines()[0]
    assert re.search(r"`lorun (--threads \d+ )?bench --all --markdown", first)
    assert "--plot" in first and "--quick" in first
    assert "--data" not in first  # no data root: bundled samples only
    for res in out:  # one measured table per task, with its protocol in the caption
        assert res.protocol in page
        assert len(res.rows) >= 2
    assert page.count("(model under test) |") == 3
    assert page.count("Published numbers (other protocol/data, not measured here)") == 3
    assert "Table I" in page and "Table III" in page and "Table V" in page
    assert "Machine: device **cpu**" in page and "torch" in page
    targets = page.split("## Targets", 1)[1]
    assert re.search(r"\*\*(MET|MISSED)\*\*", targets)
    # the params ratio printed on the page is the one the results give
    cs = out[0]
    lor, blk = results_suite.row_of(cs, "lorun9"), results_suite.row_of(cs, "block9")
    ratio = lor["network"] / blk["network"]
    line = next(s for s in targets.splitlines() if s.startswith("| CS: stored params"))
    assert f"{ratio:.3f}" in line and ("MET" if ratio <= 0.40 else "MISSED") in line
    assert "![PSNR vs stored parameters" in page and "(psnr_params.png)" in page
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.width >= 600 and im.height >= 300
        rgb = im.convert("RGB")
        assert (214, 39, 40) in {c for _, c in rgb.getcolors(1 << 20)}  # the lorun9 markers


def test_baselines_are_timed_at_most_baseline_repeats(zoo: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from lorun_cli.bench import BenchOptions, run_bench

    monkeypatch.setattr(classical, "cs_tv", functools.partial(classical.cs_tv, iters=2))
    res = run_bench(BenchOptions(task="cs", compare=["block9", "tv"], repeats=4, baseline_repeats=1, memory=False,
                                 threads=1), quiet=True)
    assert [r["latency_runs"] for r in res.rows] == [4, 4, 1]
    assert results_page._runs_text(res, 4) == "4 runs (1 for the classical baselines)"
    assert results_suite.bench_options({"task": "sr", "compare": []}, None, "cpu", 1, 10, False).baseline_repeats == 3


def test_latency_runs_are_interleaved_round_robin() -> None:
    from lorun_cli.bench import _latencies

    calls: list[str] = []

    def timer(name: str, ms: float):
        def once() -> float:
            calls.append(name)
            return ms
        return once

    lat = _latencies([(timer("a", 2.0), 3), (timer("b", 5.0), 3), (timer("c", 1.0), 1)])
    assert calls == ["a", "b", "c", "a", "b", "c", "a", "b", "a", "b"]  # warm-ups, then A B C A B A B
    assert [x["latency_ms"] for x in lat] == [2.0, 5.0, 1.0]


def test_sr_grid_expands_scores_every_case_and_renders_one_table() -> None:
    (grid,) = [c for c in results_suite.SUITE if c.get("grid")]
    cases = results_suite._expand(grid, [])
    assert len(cases) == 36 and {(c["scale"], c["kernels"]) for c in cases} >= {(2, "K1"), (4, "K12")}
    opts = results_suite.bench_options(cases[0], Path("."), "cpu", 1, 10, True)
    assert (opts.scale, opts.kernels, opts.repeats, opts.memory) == (2, "K1", 1, False)
    runs = [_run("sr", "cbsd68", [_row("lorun9", 26.0 + (c["kernels"] == "K1")), _row("bicubic", 25.0)],
                 **{k: c[k] for k in ("key", "title", "scale", "kernels", "grid", "grid_title")}) for c in cases]
    runs = [({**cfg, "title": c["title"]}, res) for (cfg, res), c in zip(runs, cases)]
    got = {t.name: t for t in results.evaluate_targets(runs, [])}
    every = got["SR: lorun9 ≥ bicubic + 1.5 dB for every kernel and scale"]
    assert every.status == "MISSED" and "36 cases on CBSD68" in every.measured
    assert "×2 K2 +1.00" in every.measured and "K1 +" not in every.measured  # K1 cases gain 2 dB here
    assert got["SR: lorun9 PSNR ≥ block9 − 0.2 dB (every run)"].status == "NOT MEASURED"  # grid runs left out
    page = results_page.render_markdown(runs, [], [], {"device": "cpu", "threads": "1", "cpu": "x", "torch": "t",
                                                   "lorun": "l", "python": "p"}, "cmd", None, Path("."), 1, False,
                                   False)
    assert page.count("### SR — CBSD68 first 10 images, every scale × kernel") == 1
    assert "| Kernel | ×2 lorun9 | ×2 bicubic | ×2 gap |" in page and "| K12 | 26.00 | 25.00 | +1.00 |" in page
