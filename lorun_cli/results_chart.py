"""The PSNR-vs-stored-parameters figure of the results page: one panel per task, drawn with Pillow."""

from __future__ import annotations

import io
import math
from pathlib import Path

from .facts import TASKS
from .io.checkpoint import atomic_write_bytes
from .results_suite import FIGURE_PANELS, TASK_TITLES, Run, find_runs

_COLOURS = {"lorun9": (214, 39, 40), "block9": (31, 119, 180), "block1": (44, 160, 44), "share9": (148, 103, 189)}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # older Pillow / no FreeType
        return ImageFont.load_default()


_ASCII = {"—": "-", "–": "-", "×": "x", "Φ": "Phi", "γ": "gamma", "≥": ">=", "≤": "<=", "…": "...", "→": "->"}


def _ascii(text: str) -> str:
    """The default bitmap/TrueType font lacks some symbols: spell them in ASCII for the figure."""
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    return text


def _headline(runs: list[Run], task: str) -> Run | None:
    """The run a task's panel shows (:data:`FIGURE_PANELS`), else the task's first run."""
    runs = [r for r in runs if not r[0].get("grid")]
    found = find_runs(runs, task)
    if not found:
        return None
    best = find_runs(runs, task, **FIGURE_PANELS[task])
    return best[0] if best else found[0]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values (linear units) for a log axis spanning 10**lo … 10**hi."""
    ticks = [10.0 ** e for e in range(math.floor(lo), math.ceil(hi) + 1) if lo <= e <= hi]
    if len(ticks) < 2:
        ticks = [m * 10.0 ** e for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)
                 if lo <= math.log10(m * 10.0 ** e) <= hi]
    return ticks


def _si(v: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suf}"
    return f"{v:g}"


def _nice_step(span: float) -> float:
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


Box = tuple[float, float, float, float]
_LABEL_SPOTS = (((9, -9), "lb"), ((9, 9), "lt"), ((-9, -9), "rb"), ((-9, 9), "rt"))  # beside a marker, in this order


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(draw, at: tuple[float, float], label: str, font, area: Box,
                 taken: list[Box]) -> tuple[tuple[float, float], str, Box]:
    """Where a point's label goes (anchor point, anchor, text box): the first spot beside the marker (right above,
    right below, left above, left below) that stays inside the plot ``area`` and covers none of the ``taken``
    boxes; else the least bad one."""
    best, best_cost = None, math.inf
    for (dx, dy), anchor in _LABEL_SPOTS:
        xy = (at[0] + dx, at[1] + dy)
        box = draw.textbbox(xy, label, font=font, anchor=anchor)
        outside = max(0.0, area[0] - box[0]) + max(0.0, box[2] - area[2]) + max(0.0, area[1] - box[1]) \
            + max(0.0, box[3] - area[3])
        cost = outside + 1000.0 * sum(_overlap(box, t) for t in taken)
        if cost == 0:
            return xy, anchor, box
        if cost < best_cost:
            best, best_cost = (xy, anchor, box), cost
    assert best is not None
    return best


def _panel(img, draw, box: tuple[int, int, int, int], run: Run | None, task: str) -> None:
    x0, y0, x1, y1 = box
    f_small, f_title = _font(12), _font(14)
    title = TASK_TITLES[task] if run is None else run[0]["title"]
    draw.text(((x0 + x1) // 2, y0 + 4), _ascii(title), fill="black", font=f_title, anchor="mt")
    px0, py0, px1, py1 = x0 + 66, y0 + 30, x1 - 16, y1 - 46
    draw.rectangle((px0, py0, px1, py1), outline="black")
    if run is None:
        draw.text(((px0 + px1) // 2, (py0 + py1) // 2), "not measured", fill="gray", font=f_small, anchor="mm")
        return
    res = run[1]
    pts = [(r["strategy"], float(r["network"]), float(r["psnr"])) for r in res.rows if r.get("network")]
    lines_ = [(r["strategy"], float(r["psnr"])) for r in res.rows if not r.get("network")]
    ys = [p[2] for p in pts] + [v for _, v in lines_]
    ylo, yhi = min(ys) - 0.5, max(ys) + 0.5
    step = _nice_step(yhi - ylo)
    ylo, yhi = math.floor(ylo / step) * step, math.ceil(yhi / step) * step
    if pts:
        lx = [math.log10(p[1]) for p in pts]
        xlo, xhi = min(lx) - 0.35, max(lx) + 0.35
    else:
        xlo, xhi = 3.0, 6.0

    def X(v: float) -> float:
        return px0 + (math.log10(v) - xlo) / (xhi - xlo) * (px1 - px0)

    def Y(v: float) -> float:
        return py1 - (v - ylo) / (yhi - ylo) * (py1 - py0)

    for t in _log_ticks(xlo, xhi):
        x = X(t)
        draw.line((x, py1, x, py1 + 4), fill="black")
        draw.line((x, py0, x, py1), fill=(232, 232, 232))
        draw.text((x, py1 + 6), _si(t), fill="black", font=f_small, anchor="mt")
    v = ylo
    while v <= yhi + 1e-9:
        y = Y(v)
        draw.line((px0 - 4, y, px0, y), fill="black")
        draw.line((px0 + 1, y, px1 - 1, y), fill=(232, 232, 232))
        draw.text((px0 - 6, y), f"{v:g}", fill="black", font=f_small, anchor="rm")
        v += step
    draw.rectangle((px0, py0, px1, py1), outline="black")
    taken: list[Box] = []  # label and marker boxes already drawn, which a later label must not cover
    for name, val in lines_:  # parameter-free baselines: dashed horizontal lines
        y = Y(val)
        for xs in range(px0 + 2, px1 - 2, 10):
            draw.line((xs, y, min(xs + 5, px1 - 2), y), fill=(110, 110, 110), width=1)
        label = _ascii(f"{name} {val:.2f}")
        draw.text((px1 - 4, y - 2), label, fill=(80, 80, 80), font=f_small, anchor="rb")
        taken.append(draw.textbbox((px1 - 4, y - 2), label, font=f_small, anchor="rb"))
    marks = []
    for name, n, val in pts:
        x, y = X(n), Y(val)
        kind = name.split(" ")[0]  # "lorun9 (γ14)" is drawn as lorun9
        col = _COLOURS.get(kind, (90, 90, 90))
        if kind == "lorun9":
            draw.ellipse((x - 6, y - 6, x + 6, y + 6), fill=col, outline="black")
        else:
            draw.rectangle((x - 5, y - 5, x + 5, y + 5), fill=col, outline="black")
        taken.append((x - 6, y - 6, x + 6, y + 6))
        marks.append((x, y, _ascii(f"{name} {val:.2f}"), col))
    for x, y, label, col in marks:
        xy, anchor, box = _place_label(draw, (x, y), label, f_small, (px0, py0, px1, py1), taken)
        taken.append(box)
        draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill="white")
        draw.text(xy, label, fill=col, font=f_small, anchor=anchor)
    draw.text(((px0 + px1) // 2, py1 + 22), "stored parameters (network, log scale)", fill="black", font=f_small,
              anchor="mt")
    _vertical_text(img, draw, (x0 + 4, (py0 + py1) // 2), "PSNR (dB)", f_small)


def _vertical_text(img, draw, at: tuple[int, int], text: str, font) -> None:
    """Text rotated by 90° (reading upwards), centred vertically on ``at``."""
    from PIL import Image, ImageDraw

    w, h = int(draw.textlength(text, font=font)) + 4, 16
    tile = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(tile).text((2, h // 2), text, fill="black", font=font, anchor="lm")
    tile = tile.rotate(90, expand=True)
    img.paste(tile, (at[0], at[1] - tile.height // 2))


def draw_plot(runs: list[Run], path: Path, width: int = 1320, height: int = 460) -> None:
    """PSNR vs stored network parameters, one panel per task (PIL only), saved atomically as PNG."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((width // 2, 10), _ascii("LoRun: PSNR vs stored parameters (measured here; CS Φ not counted; "
                                       "dashed: parameter-free baselines)"), fill="black", font=_font(16), anchor="mt")
    pw = width // len(TASKS)
    for i, task in enumerate(TASKS):
        _panel(img, draw, (i * pw + 6, 36, (i + 1) * pw - 6, height - 6), _headline(runs, task), task)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
