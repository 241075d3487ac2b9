"""The results page renders the same from fixed results before and after any refactoring of its pieces."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lorun_cli import results, results_chart, results_page, results_suite
from lorun_cli.bench import BenchResult

GOLDEN = Path(__file__).parent / "data" / "results_page.md"
MODELS = [
    {"name": f"cs-{s}-r{int(r * 100)}", "task": "cs", "strategy": s, "ratio": r, "bytes": b}
    for r in (0.1, 0.25, 0.5) for s, b in (("lorun9", 90_000), ("block9", 1_000_000), ("block1", 120_000))
] + [{"name": "cs-lorun9-r10-compact", "task": "cs", "strategy": "lorun9", "ratio": 0.1, "bytes": 40_000,
      "variant": "compact"}] + [
    {"name": f"{t}-{s}", "task": t, "strategy": s} for t in ("sr", "cassi") for s in ("lorun9", "block9")
]


def _rows(seed: int, compare: list[str], task: str) -> list[dict]:
    """Deterministic rows: the model under test, then every compared method."""
    rows = []
    for i, s in enumerate(["lorun9", *compare]):
        learned = s in ("lorun9", "block9", "block1", "share9") or s.startswith("cs-")
        v = 20.0 + (seed * 7 + i * 3) % 13 + 0.137 * i
        net = (350_000 if s == "lorun9" else 1_000_000 + 1000 * i) if learned else 0
        op = 1024 * 256 if (learned and task == "cs") else 0
        rows.append({"method": s, "role": "model" if i == 0 else "compared", "strategy": s, "psnr": v,
                     "ssim": 0.8 + 0.01 * i, "total": net + op, "network": net, "stored": net + op, "operator": op,
                     "stored_mb": (net + op) * 4 / 1e6, "latency_ms": 10.0 + i, "latency_min_ms": 9.0 + i,
                     "latency_max_ms": 12.0 + i, "latency_runs": 5 if learned else 3,
                     "peak_mem_mb": 300.0 + i if learned else None,
                     "ratio_to_model": {"stored": 1.0 + i, "latency_ms": 1.0 + 0.1 * i, "peak_mem_mb": 1.0},
                     "per_image_psnr": [v + 0.01 * j for j in range(3)]})
    return rows


def fixed_runs() -> tuple[list, list]:
    """The full suite expanded on a fixed manifest, each configuration with fixed rows."""
    runs, skipped = [], [("cassi", "CASSI — extra: not run — no data.")]
    n = 0
    for template in results_suite.SUITE:
        for cfg in results_suite._expand(template, MODELS):
            ratio = cfg.get("ratio") if cfg["task"] == "cs" else None
            compare = [v for c in cfg["compare"]
                       for v in (results_suite.variants(MODELS, cfg["task"], ratio) if c == "variants" else [c])]
            cfg = {**cfg, "compare": compare, "notes": ["block1: left out — test note"] if n == 0 else []}
            setting = {"cs": {"ratio": ratio, "block": 32}, "sr": {"scale": cfg.get("scale"),
                                                                  "kernels": cfg.get("kernels")},
                       "cassi": {"mask": "bundled mask", "step": 2}}[cfg["task"]]
            proto = {"cs": "gray 8-bit", "sr": "Y 8-bit, border 4", "cassi": "bands"}[cfg["task"]]
            runs.append((cfg, BenchResult(cfg["task"], cfg.get("dataset") or "x", proto, "cpu", 1,
                                          _rows(n, compare, cfg["task"]), setting)))
            n += 1
    return runs, skipped


def render() -> str:
    runs, skipped = fixed_runs()
    targets = results.evaluate_targets(runs, MODELS)
    facts = {"device": "cpu", "threads": "1", "cpu": "test cpu", "torch": "t", "lorun": "l", "python": "p"}
    return results_page.render_markdown(runs, skipped, targets, facts, "lorun bench --all", "psnr.png", Path("."), 5,
                                   True, False)


def test_results_page_renders_as_before() -> None:
    page = render()
    if os.environ.get("LORUN_WRITE_GOLDEN"):
        GOLDEN.write_text(page)
    assert page == GOLDEN.read_text()


def test_results_figure_draws(tmp_path: Path) -> None:
    runs, _ = fixed_runs()
    out = tmp_path / "fig.png"
    results_chart.draw_plot(runs, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LORUN_FIGURE_HASH"):
        Path(os.environ["LORUN_FIGURE_HASH"]).write_text(hashlib.sha256(out.read_bytes()).hexdigest())


def test_figure_draws_a_named_lorun9_as_lorun9_in_ascii(tmp_path: Path) -> None:
    """A strategy shown as "lorun9 (γ14)" keeps lorun9's red marker, and its label is spelled in ASCII."""
    from PIL import Image, ImageDraw

    runs, _ = fixed_runs()
    for _cfg, res in runs:
        for row in res.rows:
            if row.get("strategy") == "lorun9" and row.get("network"):
                row["strategy"] = "lorun9 (γ14)"
    drawn: list[str] = []
    text = ImageDraw.ImageDraw.text

    def spy(self, xy, txt, *a, **k):  # type: ignore[no-untyped-def]
        drawn.append(str(txt))
        return text(self, xy, txt, *a, **k)

    ImageDraw.ImageDraw.text = spy  # type: ignore[method-assign]
    try:
        results_chart.draw_plot(runs, tmp_path / "fig.png")
    finally:
        ImageDraw.ImageDraw.text = text  # type: ignore[method-assign]
    assert any("lorun9 (gamma14)" in t for t in drawn) and not any("γ" in t for t in drawn)
    img = Image.open(tmp_path / "fig.png").convert("RGB")
    assert (214, 39, 40) in {c for _n, c in img.getcolors(1 << 20)}


def test_figure_labels_of_close_points_do_not_overlap(tmp_path: Path) -> None:
    """Two models of nearly equal PSNR a few ticks apart (CASSI lorun9 (γ14) and block9): neither label covers the
    other label or the other marker."""
    from PIL import Image, ImageDraw

    cfg, res = next(r for r in fixed_runs()[0] if r[0]["task"] == "cassi")
    res.rows[:] = [{"strategy": "lorun9 (γ14)", "network": 4_400_000, "psnr": 31.09},
                   {"strategy": "block9", "network": 11_100_000, "psnr": 31.10},
                   {"strategy": "gap-tv", "psnr": 28.16}]
    drawn: list[tuple] = []
    text = ImageDraw.ImageDraw.text

    def spy(self, xy, txt, *a, **k):  # type: ignore[no-untyped-def]
        if str(txt).startswith(("lorun9", "block9")):
            drawn.append((xy, str(txt), k.get("anchor"), k.get("font")))
        return text(self, xy, txt, *a, **k)

    ImageDraw.ImageDraw.text = spy  # type: ignore[method-assign]
    try:
        results_chart.draw_plot([(cfg, res)], tmp_path / "fig.png")
    finally:
        ImageDraw.ImageDraw.text = text  # type: ignore[method-assign]
    scratch = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    boxes = [scratch.textbbox(xy, t, font=f, anchor=a) for xy, t, a, f in drawn]
    assert len(boxes) == 2 and not results_chart._overlap(*boxes)
    img = Image.open(tmp_path / "fig.png").convert("RGB")
    blue = [(x, y) for x in range(img.width) for y in range(img.height) if img.getpixel((x, y)) == (31, 119, 180)]
    bx0, by0 = min(p[0] for p in blue), min(p[1] for p in blue)  # block9's square (its label may be blue too)
    assert not any(results_chart._overlap(b, (bx0, by0, bx0 + 10, by0 + 10)) for b in boxes[:1])
