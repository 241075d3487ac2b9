"""`lorun restore`: read → [simulate] → K × (GDM → PMM) → write → score, with bounded-memory tiling."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import memory, metrics, models
from .errors import Interrupted, LorunError, OptionError, UsageError
from .facts import DEFAULT_RATIO, SR_SCALES, WAVELENGTHS_28
from .io import images
from .io.weights import load_manifest, resolve_model
from .options import CUBE_EXTS, RestoreOptions, expand_inputs, min_tile, output_path, plan
from .physics.cassi import load_mask
from .physics.cs import BlockCS
from .physics.sr import SRBlur, exposure_apply, exposure_map, exposure_unmap, load_kernel_file, load_kernels
from .runtime import peak_rss_mb
from .unfold import DUN

__all__ = ["CUBE_EXTS", "RestoreOptions", "default_model_name", "expand_inputs", "load_task_model", "output_path",
           "run_restore", "run_tiled"]


def default_model_name(task: str, strategy: str, ratio: float | None = None, kernel: str | None = None) -> str:
    """The manifest entry serving ``task``/``strategy`` (for CS the one trained at ``ratio``, default 25 %; for
    SR under ``kernel`` "auto" the adapters trained on estimated kernels, when the manifest has them).

    Variants (e.g. compact adapters) are only used when named.
    """
    served = [e for e in load_manifest()["models"] if e.get("task") == task and not e.get("variant")]
    if task == "sr":  # entries trained on the estimator's kernels ("kernel": "auto") serve --kernel auto only
        blind = [e for e in served if e.get("kernel") == "auto" and e.get("strategy") == strategy]
        if kernel == "auto" and blind:
            return blind[0]["name"]
        served = [e for e in served if e.get("kernel") != "auto"]
    entries = [e for e in served if e.get("strategy") == strategy]
    if not entries:
        have = sorted({str(e.get("strategy")) for e in served})
        raise OptionError("strategy", strategy, f"no bundled {task} model of that kind; bundled: "
                          f"{', '.join(have) or 'none'} (or pass --model FILE)")
    if task == "cs":
        want = DEFAULT_RATIO if ratio is None else ratio
        ratios = sorted({float(e["ratio"]) for e in entries if "ratio" in e})
        entries = [e for e in entries if abs(float(e.get("ratio", -1)) - want) < 1e-6]
        if not entries:
            raise OptionError("ratio", f"{want:g}", f"no bundled cs {strategy} model samples at this ratio; bundled "
                             f"ratios: {', '.join(f'{r:g}' for r in ratios)} (or train one with `lorun adapt "
                             f"--ratio {want:g}` and pass --model FILE)")
    return entries[0]["name"]


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 itself: AVX512-BF16 or AMX on x86. oneDNN also runs bf16 on plain AVX-512,
    emulated (its own check says yes there), at about 3.4× the fp32 time of an SR forward (docs/SPEED.md)."""
    cpu = torch.cpu
    if getattr(cpu, "_is_avx512_supported", lambda: False)():  # x86 with AVX-512: ask for the bf16 units
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: str) -> tuple[str, str]:
    """The precision to run (and a note when it differs): fp16 needs CUDA; bf16 on a CPU without native
    bf16 (AVX512-BF16 / AMX) would be emulated, slower than fp32, so fp32 runs instead; so does bf16 on a GPU
    older than Ampere (fp16 serves there)."""
    cuda = device.startswith("cuda")
    if precision == "fp16" and not cuda:
        raise OptionError("precision", "fp16", "needs a CUDA device; on a CPU use bf16 (or fp32)")
    if precision == "bf16" and device == "cpu" and not native_bf16_cpu():
        return "fp32", "this CPU has no native bf16 (AVX512-BF16 or AMX): emulated, it runs slower than fp32"
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "fp32", "this GPU has no native bf16 (before Ampere): use --precision fp16 there"
    return precision, ""


def load_task_model(task: str, model: str | None, strategy: str = "lorun9", ratio: float | None = None,
                    backbone: Path | None = None, device: str = "cpu",
                    precision: str = "fp32", kernel: str | None = None,
                    warm_start: str | None = None) -> tuple[DUN, str]:
    """Resolve ``--model`` (file or manifest name; default: the task's bundled model, see
    :func:`default_model_name`) and load it for inference (channels-last, the denoisers in ``precision``).
    ``warm_start`` (CASSI, ``--warm-start``, already checked by ``options.check_warm_start``): the stages run
    from that x⁰ instead of the model's own (:meth:`WarmStart.override`)."""
    name = model or default_model_name(task, strategy, ratio, kernel)
    if task == "cassi" and name == "gap-tv":  # the classical reconstruction through the same pipeline
        if warm_start is not None:
            raise UsageError(f"--warm-start sets a learned model's start; model {name} has none (drop one of them)")
        from .classical import GapTVModel
        from .facts import CASSI_BANDS

        return GapTVModel(CASSI_BANDS).to(device).prepare_inference(precision), name
    path = resolve_model(name)
    net = models.load_model(path, backbone)
    if net.task != task:
        raise UsageError(f"model {name} is a {net.task} model, not {task}; pass --task {net.task} or another --model")
    if task == "cs" and ratio is not None and abs(net.op.ratio - ratio) > 1e-6:
        raise UsageError(f"model {name} samples at ratio {net.op.ratio:g}, not {ratio:g}; drop --ratio or pick "
                         f"a model trained at {ratio:g}")
    if warm_start is not None:
        net.x0 = net.x0.override(warm_start)
    return net.to(device).prepare_inference(precision=precision), name


def _tile_starts(n: int, tile: int, overlap: int, align: int) -> list[int]:
    """Where :func:`run_tiled` and :func:`_cassi_rows` start their tiles along an axis of ``n``: every
    ``tile − 2·overlap`` (on the ``align`` grid), the last one clipped to end at the edge; on the grid it may start
    up to ``align − 1`` short of that, so the last tile runs to the edge (up to ``align − 1`` longer)."""
    step = max(align, (tile - 2 * overlap) // align * align)
    return sorted({min(v, max(0, n - tile)) // align * align for v in range(0, max(1, n - tile) + step, step)})


def balanced_tile(sizes: Sequence[int], tile: int, overlap: int, align: int = 1) -> int:
    """The tile side, at most ``tile``, that covers ``sizes`` with the least work.

    The largest tile that fits the memory budget can be a poor choice: 992 on a 1024-pixel side takes two
    tiles per axis that overlap almost wholly (3.75× the pixels). For k tiles along an axis of n,
    t = ⌈(n + 2·overlap·(k − 1)) / k⌉ suffices; among these sizes (on the ``align`` grid, at most ``tile``) the one
    whose tiles add up to the smallest area wins (the larger on a tie: fewer calls).
    """
    def area(t: int) -> int:
        out = 1
        for n in sizes:
            out *= n if n <= t else len(_tile_starts(n, t, overlap, align)) * t  # one tile, or several of t
        return out

    floor = 2 * overlap + align  # a tile must advance
    candidates = {tile}
    for n in sizes:
        for k in range(2, min(64, n // align) + 2):
            t = -(-(n + 2 * overlap * (k - 1)) // k)
            t = -(-t // align) * align
            if t < floor:
                break
            if t <= tile:
                candidates.update((t, min(tile, t + align)))
    return min(sorted(candidates, reverse=True), key=area)


def run_tiled(fn, y: Tensor, tile: int, overlap: int, out_scale: int, axes: tuple[int, ...] = (-2, -1),
              align: int = 1, progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Apply ``fn`` to overlapping tiles of ``y`` along ``axes`` and stitch the tile centres.

    ``out_scale`` maps input to output pixels (SR); ``align`` keeps tile starts on a grid (CS blocks).
    ``tile`` is the largest tile memory allows; the tiles used are :func:`balanced_tile`'s (no larger).
    Memory is bounded by one tile. ``progress(done, total)`` hears of each finished tile.
    """
    if tile <= 0 or all(y.shape[a] <= tile for a in axes):
        return fn(y)
    tile = balanced_tile([y.shape[a] for a in axes], tile, overlap, align)
    starts = [_tile_starts(y.shape[a], tile, overlap, align) for a in axes]
    out = None
    grid = [(i,) for i in starts[0]] if len(axes) == 1 else [(i, j) for i in starts[0] for j in starts[1]]
    for done, pos in enumerate(grid, 1):
        sl = [slice(None)] * y.dim()
        for a, p, ps in zip(axes, pos, starts, strict=True):
            sl[a] = slice(p, None if p == ps[-1] else p + tile)  # the last tile runs to the edge
        res = fn(y[tuple(sl)])
        if out is None:
            shape = list(res.shape)
            for a in axes:
                shape[a] = y.shape[a] * out_scale
            out = res.new_zeros(shape)
        osl = [slice(None)] * res.dim()
        rsl = [slice(None)] * res.dim()
        for a, p, ps in zip(axes, pos, starts, strict=True):
            n = y.shape[a]
            lo = 0 if p == 0 else p + overlap
            hi = n if p == ps[-1] else p + tile - overlap
            osl[a] = slice(lo * out_scale, hi * out_scale)
            rsl[a] = slice((lo - p) * out_scale, (hi - p) * out_scale)
        out[tuple(osl)] = res[tuple(rsl)]
        if progress is not None:
            progress(done, len(grid))
    return out


def _noise(shape: torch.Size, sigma255: float, gen: torch.Generator, like: Tensor) -> Tensor:
    if sigma255 <= 0:
        return torch.zeros((), device=like.device)
    return (sigma255 / 255.0) * torch.randn(shape, generator=gen).to(like.device)


def _finite(t: Tensor, source: Path) -> Tensor:
    """Refuse NaN/inf values: they would silently turn the whole result into NaN."""
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise LorunError(f"{source} holds {bad} NaN or infinite value(s); replace them (e.g. with 0) and run again")
    return t


def _sr_kernel(opts: RestoreOptions) -> Tensor | None:
    """The kernel named by --kernel (bundled name or file); None for ``auto`` (estimated per input)."""
    if opts.kernel == "auto":
        return None
    bank = load_kernels()
    key = opts.kernel.strip().upper()
    if key in bank:
        return bank[key]
    p = Path(opts.kernel)
    if not p.exists() and not p.is_dir():
        raise OptionError("kernel", opts.kernel, "not one of K1…K12 and no such file")
    try:
        return load_kernel_file(p)
    except ValueError as e:
        raise OptionError("kernel", p, str(e)) from None


#: The kernel ``--simulate`` degrades with under ``--kernel auto`` (the result is then restored blind).
SIMULATE_AUTO_KERNEL = "K1"
_ESTIMATOR: list[Any] = []  # the loaded kernel estimator (loaded once per process)


def sr_estimator(required: bool) -> Any:
    """The bundled SR kernel estimator; None when absent from the manifest and not ``required``."""
    if not _ESTIMATOR:
        from .io.weights import load_manifest, model_names
        from .physics import sr_estimate

        if sr_estimate.ESTIMATOR_NAME not in model_names(load_manifest()):
            if required:
                raise OptionError("kernel", "auto", f"needs the {sr_estimate.ESTIMATOR_NAME} weights, which this "
                                  f"manifest lacks; pass --kernel K1…K12 or a kernel file", exit_code=1)
            return None
        _ESTIMATOR.append(sr_estimate.load_estimator())
    return _ESTIMATOR[0]


def sr_kernel_for(y: Tensor, scale: int, given: Tensor | None, policy: str | None = None,
                  estimator: Any = None, jpeg_step: float | None = None,
                  grid: str = "auto", exposure_gain: float = 1.0) -> tuple[Tensor, float, dict[str, Any] | None]:
    """(kernel to restore with, data-step weight, estimate record) for an LR image ``y`` (1, C, h, w).

    The record holds the estimated kernel itself under ``kernel`` (what ``--save-kernel`` writes).

    ``given`` None (``--kernel auto``): the estimated kernel. An explicit kernel is checked against the
    estimate when the estimator is available; a much wider one is softened toward it (see
    :func:`lorun_cli.physics.sr_estimate.kernel_policy`; ``policy``: how auto uses the estimate, the model's
    own ``auto_policy``) and the record says ``mismatch``. Either way the
    data-step weight grows with the estimated noise (:func:`lorun_cli.physics.sr_estimate.data_weight_policy`;
    for an explicit kernel only from a heavier noise on), and at least as much as a JPEG input's quantisation
    asks (``jpeg_step``: the mean luma step of its file, :func:`lorun_cli.physics.sr_estimate.jpeg_data_weight`).
    ``estimator``: another estimator than the bundled one. ``grid`` (auto only): where the LR pixels sit
    (:func:`lorun_cli.physics.sr_estimate.grid_centre`; ``auto``: the estimate's own centre).
    ``exposure_gain``: the gain g ``y`` was mapped by (:func:`lorun_cli.physics.sr.exposure_map`); it scales the
    JPEG error too, so auto's JPEG rule reads g × ``jpeg_step`` (a given kernel's the file's own:
    docs/logs/sr-jpeg-dim-prereg.md), and the record gives the input's own noise and step.
    """
    from .physics import sr_estimate as E

    explicit = given is not None
    net = estimator if estimator is not None else sr_estimator(required=not explicit)
    step = jpeg_step * exposure_gain if jpeg_step is not None and not explicit else jpeg_step
    if net is None:
        return given, E.jpeg_data_weight(step, explicit), None
    centre = None if explicit else E.grid_centre(grid, scale)
    # a named grid: every view's shape (sr_estimate.GRID_VIEWS); a given kernel needs no spread (sr_estimate.AUTO_SURE)
    est = E.estimate(net, y, scale, centre=centre, judge=not explicit)
    k, mismatch = E.kernel_policy(given, est["kernel"], est["snapped"], policy=policy, centre=centre,
                                  spread=est["spread"])
    weight = max(E.data_weight_policy(est["noise"], explicit), E.jpeg_data_weight(step, explicit))
    rec = {"nearest": est["nearest"], "width": round(est["width"], 3),
           "noise": round(255 * est["noise"] / exposure_gain, 2),
           "data_weight": round(weight, 3), "mismatch": mismatch, "softened": mismatch and not torch.equal(k, given),
           "kernel": est["kernel"]}
    if jpeg_step is not None:
        rec["jpeg_step"] = round(jpeg_step, 2)
    if not explicit:
        rec["grid"] = grid
    if explicit:
        rec["given_width"] = round(E.kernel_width(given), 3)
    return k, weight, rec


class _Guard:
    """The tiling of one run: the memory budget that sets each input's tile (:meth:`tile`), where its notes go,
    and who hears of each finished tile (``on_tile``, passed on to the tiled runs)."""

    def __init__(self, opts: RestoreOptions, on_note: Callable[[str], None] | None,
                 on_tile: Callable[[int, int], None] | None = None) -> None:
        self.budget, self.how = memory.budget_bytes(opts.max_memory, opts.device)
        self.on_note = on_note or (lambda _m: None)
        self.on_tile = on_tile  # (tiles done, tiles) of the image in progress

    def tile(self, net: DUN, inp: Path, opts: RestoreOptions, out_hw: tuple[int, int], batch: int, min_tile: int,
             align: int = 32, rows_only: bool = False) -> int:
        p = memory.plan_tiles(net.memory_width(), net.channels, batch, out_hw, opts.tile, self.budget, self.how,
                              min_tile, align=align, rows_only=rows_only)
        if p.note:
            self.on_note(f"{inp.name}: {p.note}")
        return p.tile


def read_input(inp: Path, opts: RestoreOptions) -> Tensor:
    """The input file as the task reads it (image; CASSI: cube under --simulate, else the measurement).

    Pure file I/O and decoding, no torch computation: `run_restore` calls it from a reader thread.
    """
    if opts.task != "cassi":
        return _finite(images.read_image(inp, "auto"), inp)
    if opts.simulate:
        return _finite(_read_cassi_cube(inp), inp)
    return _finite(images.read_measurement(inp), inp)


def _restore_sr(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator,
                guard: _Guard, data: Tensor | None = None,
                info: dict[str, Any] | None = None) -> tuple[Tensor, Tensor | None]:
    """SR of one input (``data``: its pixels, read here when None); ``info`` (when given) receives the kernel
    used and the estimate's report fields."""
    img = read_input(inp, opts) if data is None else data
    gray = img.shape[0] == 1 or bool(torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]))
    channels = img.shape[0]
    img = img.expand(3, -1, -1).unsqueeze(0).to(opts.device) if channels == 1 else img.unsqueeze(0).to(opts.device)
    given = _sr_kernel(opts)
    s = opts.scale
    ref = None
    if opts.simulate:
        h, w = img.shape[-2] // s * s, img.shape[-1] // s * s
        if h == 0 or w == 0:
            raise UsageError(f"{inp}: image smaller than the scale factor {s}")
        ref = img[..., :h, :w]
        k_sim = given if given is not None else load_kernels()[SIMULATE_AUTO_KERNEL]  # auto: restored blind
        y = SRBlur(k_sim.to(opts.device), s).A(ref)
        y = y + _noise(y.shape, opts.noise, gen, y)
        if gray:  # the same noise in every channel: a gray image stays gray
            y = y[:, :1].expand_as(y)
    else:
        y = img
    facts = info["facts"] if info and "facts" in info else images.file_facts(inp)
    jpeg_step = None if opts.simulate else facts.jpeg_step  # JPEG error is noise in y
    from .physics.sr_estimate import default_grid, trimmed_kernel

    grid = opts.grid or default_grid(opts.simulate)
    mcg = exposure_map(y)  # a dim image is estimated and restored at the training images' contrast
    y = exposure_apply(y, mcg)
    k, data_weight, est = sr_kernel_for(y, s, given, net.auto_policy, jpeg_step=jpeg_step, grid=grid,
                                        exposure_gain=mcg[2])
    k = k.to(opts.device)
    if info is not None:  # --save-kernel writes the estimate (the given kernel when there is no estimator)
        saved = est.pop("kernel") if est is not None else k
        info.update(kernel=saved.cpu(), estimate=est, data_weight=data_weight, exposure_gain=mcg[2])
    side, out_hw = s * min(y.shape[-2:]), f"{s * y.shape[-2]}×{s * y.shape[-1]}"
    if max(k.shape) > side:
        if given is not None:
            raise OptionError("kernel", opts.kernel, f"the {k.shape[0]}×{k.shape[1]} kernel is larger than the "
                             f"{out_hw} output; use a smaller kernel or a larger image")
        if side < 3:
            raise LorunError(f"{inp.name}: too small for ×{s} SR (a {out_hw} output holds no blur kernel); use an "
                             f"image at least {-(-3 // s)} pixels a side")
        k = trimmed_kernel(k, side if side % 2 else side - 1)  # a small image under auto: the estimate cut to fit
        guard.on_note(f"{inp.name}: the kernel estimate trimmed to {k.shape[0]}×{k.shape[1]} taps for the {out_hw} "
                      "output")
    pad = 2 * SR_OVERLAP
    tile = guard.tile(net, inp, opts, ((y.shape[-2] + pad) * s, (y.shape[-1] + pad) * s), 1, min_tile(opts.task, s))

    def fn(t: Tensor) -> Tensor:
        return net(t, SRBlur(k, s, data_weight=data_weight))

    with torch.no_grad():
        out = exposure_unmap(_sr_run(fn, y, tile // s, s, guard.on_tile), mcg)
    out = out.clamp(0, 1)[0]
    if gray:  # a gray input gives a gray output (no colour fringes from the RGB network)
        out = out.mean(dim=0, keepdim=True)
        out = out if channels == 1 else out.expand(3, -1, -1)
        ref = None if ref is None else ref[:, :channels]
    return out, None if ref is None else ref[0]


SR_OVERLAP = 16  # input pixels of context around an SR tile (tiled matches whole to > 60 dB)


def _sr_run(fn: Callable[[Tensor], Tensor], y: Tensor, tile_lr: int, s: int,
            progress: Callable[[int, int], None] | None = None) -> Tensor:
    """SR of the whole image or in tiles, with one result.

    The image is restored as a periodic signal (the blur is circular): it is padded circularly by the
    overlap, so a tile at the image border sees the same context as the whole-image run, and the padding is
    cropped afterwards. Tiles start on a grid of ``8 / gcd(8, s)`` input pixels, so that every tile meets
    the denoiser's pooling grid (three halvings) in the same phase as the whole image does.
    """
    h, w = y.shape[-2:]
    a = 8 // math.gcd(8, s)
    p = SR_OVERLAP if min(h, w) > SR_OVERLAP + a else 0
    if not p:
        return fn(y)
    eh, ew = -(h + 2 * p) % a, -(w + 2 * p) % a  # far-side extra, so tiles end on the grid too
    padded = torch.nn.functional.pad(y, (p, p + ew, p, p + eh), mode="circular")
    if tile_lr and max(padded.shape[-2:]) > tile_lr:
        out = run_tiled(fn, padded, max(a, tile_lr // a * a), overlap=p, out_scale=s, align=a, progress=progress)
    else:
        out = fn(padded)
    return out[..., p * s : (p + h) * s, p * s : (p + w) * s]


def _restore_cs(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator,
                guard: _Guard, data: Tensor | None = None) -> tuple[Tensor, Tensor]:
    img = (read_input(inp, opts) if data is None else data).to(opts.device)  # (C,H,W): gray, or RGB per channel
    op: BlockCS = net.op
    x = img.unsqueeze(1)  # channels as a batch of gray images
    B = op.block
    tile = guard.tile(net, inp, opts, tuple(img.shape[-2:]), img.shape[0], min_tile(opts.task, 1), align=B)
    with torch.no_grad():
        y = op.measure(x)
        y = y + _noise(y.shape, opts.noise, gen, y)
        tile_blocks = max(1, tile // B) if tile else 0

        def fn(t: Tensor) -> Tensor:  # t: (N, C, m, hb, wb) measurement blocks
            return net(t)

        xpad = run_tiled(fn, y, tile_blocks, overlap=_cs_overlap(tile_blocks), out_scale=B,
                         progress=guard.on_tile) if tile_blocks else net(y)
        out = op.crop(xpad)
    return out[:, 0].clamp(0, 1), img


def _cs_overlap(tile_blocks: int) -> int:
    """Overlap (in blocks) between CS tiles: as much context as the tile allows, up to 4 blocks a side."""
    return max(0, min(4, (tile_blocks - 1) // 2))


def _read_cassi_cube(inp: Path) -> Tensor:
    if inp.suffix.lower() == ".npz":
        from .io.datasets import read_cassi_sample

        try:
            return read_cassi_sample(inp)
        except Exception:  # noqa: BLE001 - KeyError/ValueError/zip errors: not one of our sample files
            raise LorunError(f"{inp} is not a lorun CASSI sample (.npz from lorun_cli/assets/samples/cassi); "
                             f"pass the cube as .mat, .npy or .tif") from None
    return images.read_cube(inp)


def _load_mask(path: Path | None) -> Tensor:
    try:
        return load_mask(path)
    except Exception as e:  # noqa: BLE001 - numpy/scipy/tifffile errors on a file that is not a mask
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OptionError("mask", path, f"could not be read as a coded-aperture mask ({text}); pass a 2-D "
                          f"array in .mat, .npy or .tif") from None


def _restore_cassi(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator,
                   guard: _Guard, data: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    mask = _finite(_load_mask(opts.mask), opts.mask or Path("mask")).to(opts.device)
    op = models.cassi_operator(net, mask)
    ref = None
    data = read_input(inp, opts) if data is None else data
    if opts.simulate:
        cube = data.to(opts.device)
        if cube.shape[0] != net.channels:
            raise UsageError(f"{inp}: cube has {cube.shape[0]} bands; the model expects {net.channels}")
        if tuple(cube.shape[-2:]) != tuple(mask.shape):
            raise UsageError(f"{inp}: cube is {cube.shape[-2]}×{cube.shape[-1]} but the mask is "
                             f"{mask.shape[0]}×{mask.shape[1]}; crop the cube or pass a matching --mask")
        ref = cube
        y = op.A(cube.unsqueeze(0))
        y = y + _noise(y.shape, opts.noise, gen, y)
    else:
        meas = data.to(opts.device)
        want = (mask.shape[0], op.out_width)
        if tuple(meas.shape) != want:
            raise UsageError(f"{inp}: measurement is {meas.shape[0]}×{meas.shape[1]}, expected {want[0]}×{want[1]} "
                             f"for a {mask.shape[0]}×{mask.shape[1]} mask; pass the matching --mask")
        y = meas.view(1, 1, *want)
    tile = guard.tile(net, inp, opts, tuple(mask.shape), 1, min_tile(opts.task, 1), align=8, rows_only=True)
    with torch.no_grad():
        if tile and y.shape[-2] > tile:
            out = _cassi_rows(net, y, mask, tile, progress=guard.on_tile)
        else:
            out = net(y, op)
    return out.clamp(0, 1)[0], ref


def _cassi_rows(net: DUN, y: Tensor, mask: Tensor, tile: int, overlap: int = 32, align: int = 8,
                progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Row tiles for CASSI: each tile uses its own rows of the mask (exact: the dispersion runs along W).

    Tiles start on a grid of ``align`` rows (the denoiser's pooling grid); the last one runs to the
    bottom edge, so it may be up to ``align - 1`` rows taller than ``tile``. ``overlap`` rows of context on
    each side (32: the ResUNet prior's receptive field reaches further than the U-Net's 16 did). A start whose
    TV runs on the cube's leading spectral components (``WarmStart.rank``) takes them from each tile's own rows,
    so such tiles are close to, not equal to, the whole-image result (tests/test_tiling.py).
    """
    h = y.shape[-2]
    tile = max(align, tile // align * align)
    overlap = min(overlap, (tile - align) // 2)  # every tile keeps at least ``align`` rows of its own
    tile = balanced_tile([h], tile, overlap, align)  # no larger than memory allows, the least work
    overlap = min(overlap, (tile - align) // 2)
    starts = _tile_starts(h, tile, overlap, align)
    out = None
    for i, p in enumerate(starts):
        end = h if i == len(starts) - 1 else p + tile
        op = models.cassi_operator(net, mask[p:end])
        res = net(y[..., p:end, :], op)
        if out is None:
            out = res.new_zeros(*res.shape[:-2], h, res.shape[-1])
        lo = 0 if p == 0 else p + overlap
        hi = h if end >= h else end - overlap
        out[..., lo:hi, :] = res[..., lo - p : hi - p, :]
        if progress is not None:
            progress(i + 1, len(starts))
    return out


PROTOCOL = {"cs": "gray8", "sr": "y", "cassi": "bands"}


def run_restore(inputs: list[Path], opts: RestoreOptions, on_note: Callable[[str], None] | None = None,
                on_result: Callable[[dict[str, Any]], None] | None = None,
                on_tile: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Restore every input; returns one result record per input (what reports print).

    Everything checkable is checked first (:func:`lorun_cli.options.plan`); the memory guard then keeps
    each input within the budget, tiling it when needed (``on_note`` receives the announcement).
    One model load serves every input; inputs are read ahead and results written behind the computation
    (:class:`_Pipeline`); ``on_result`` receives each record as its input is done (a progress bar), and
    ``on_tile`` (tiles done, tiles) each tile of a tiled input.
    Records carry ``seconds`` (the input's own compute and score time) and ``timings`` (read, compute,
    score, write; ``load`` on the first); the last also ``peak_rss_mb`` (the process's peak so far).
    """
    t_start = time.perf_counter()
    pairs = plan(inputs, opts)
    if opts.task == "sr":
        _sr_kernel(opts)  # fail fast on a bad kernel file
        if opts.kernel == "auto":
            sr_estimator(required=True)
    if opts.task == "cs" and not opts.simulate:
        opts.simulate = True  # a CS measurement only exists relative to the model's learned Φ
    if opts.task == "cassi":
        _load_mask(opts.mask)  # fail fast on a bad mask
    precision, why = resolve_precision(opts.precision, opts.device)
    if why and on_note is not None:
        on_note(f"{why}; running fp32")
    if opts.task == "sr" and opts.scale not in SR_SCALES and on_note is not None:
        on_note(f"×{opts.scale} lies outside the scales the SR models were trained on "
                f"({', '.join(map(str, SR_SCALES))}): it runs, with less gain over bicubic (README, Bundled models)")
    net, name = load_task_model(opts.task, opts.model, opts.strategy, opts.ratio, opts.backbone, opts.device,
                                precision, kernel=opts.kernel if opts.task == "sr" else None,
                                warm_start=opts.warm_start)
    t_load = time.perf_counter() - t_start
    gen = torch.Generator().manual_seed(opts.seed)
    guard = _Guard(opts, on_note, on_tile)
    results = []
    fn = {"sr": _restore_sr, "cs": _restore_cs, "cassi": _restore_cassi}[opts.task]
    with _Pipeline(pairs, opts) as io:
        for f, o, data, facts, t_read in io.inputs():
            t0 = time.perf_counter()
            info: dict[str, Any] = {"facts": facts}
            try:
                out, ref = fn(net, f, opts, gen, guard, data, info) if opts.task == "sr" else \
                    fn(net, f, opts, gen, guard, data)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                if not isinstance(e, torch.OutOfMemoryError | MemoryError) and not any(
                        w in text for w in ("not enough memory", "can't allocate memory", "out of memory")):
                    raise
                raise LorunError(f"{f}: out of memory ({text[:80]}); pass a smaller --tile or a lower "
                                 f"--max-memory") from None
            del data
            t1 = time.perf_counter()
            rec = _record(f, o, out, ref, name, net, opts, info, on_note)
            t2 = time.perf_counter()
            rec["timings"] = {"read": round(t_read, 3), "compute": round(t1 - t0, 3), "score": round(t2 - t1, 3)}
            rec["seconds"] = round(t2 - t0, 3)  # this input's own time (read and write overlap other inputs)
            results.append(rec)
            io.write(rec, out, info, last=len(results) == len(pairs))
            if on_result is not None:
                on_result(rec)
    for rec in results:
        rec["timings"]["write"] = round(rec["timings"].get("write", 0.0), 3)
    if results:
        results[0]["timings"]["load"] = round(t_load, 3)
        results[-1]["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return results


def _record(f: Path, o: Path, out: Tensor, ref: Tensor | None, name: str, net: DUN, opts: RestoreOptions,
            info: dict[str, Any], on_note: Callable[[str], None] | None) -> dict[str, Any]:
    """The result record of one input, scored (float32 metrics) when there is a reference and --score."""
    if opts.ref is not None and opts.score:
        ref = _finite(images.read_cube(opts.ref) if opts.task == "cassi" else
                      images.read_image(opts.ref, "rgb" if opts.task == "sr" and out.shape[0] == 3 else "auto"),
                      opts.ref).to(out.device)
        if ref.shape != out.shape:
            raise OptionError("ref", opts.ref, f"shape {tuple(ref.shape)} differs from the output "
                             f"{tuple(out.shape)}")
    rec: dict[str, Any] = {"input": str(f), "output": str(o), "task": opts.task, "model": name,
                           "shape": list(out.shape)}
    if opts.task == "sr":
        rec.update(scale=opts.scale, kernel=opts.kernel, noise=opts.noise)
        if info.get("exposure_gain", 1.0) != 1.0:
            rec["exposure_gain"] = round(info["exposure_gain"], 3)
        if info.get("estimate") is not None:
            rec["kernel_estimate"] = est = info["estimate"]
            if est["mismatch"] and on_note is not None:
                on_note(f"{f.name}: --kernel {opts.kernel} (width {est['given_width']:.2f} px) disagrees with "
                        f"the kernel estimated from the image (width {est['width']:.2f} px, nearest "
                        f"{est['nearest']})" + ("; softened toward the estimate" if est["softened"] else "")
                        + "; try --kernel auto")
    if opts.task == "cs":
        rec["ratio"] = net.op.ratio
    if opts.task != "cassi":
        bits = info["facts"].bits
        if bits > 8 and images.output_dtype(bits, o, out.shape[0]) is None and on_note is not None:
            on_note(f"{f.name} has {bits}-bit samples and {o.name} holds 8; name a .tif output to keep them")
    if ref is not None and opts.score:
        border = opts.scale if opts.task == "sr" else 0
        proto = PROTOCOL[opts.task] if not (opts.task == "sr" and out.shape[0] == 1) else "gray8"
        try:
            rec.update(metrics.score(out, ref, proto, border=border, dtype=torch.float32),
                       protocol=metrics.PROTOCOL_TEXT[proto])
        except LorunError as e:  # e.g. an image too small for SSIM: the result itself is fine
            raise LorunError(f"{f.name}: {e}, or skip scoring with --no-score") from None
        if not all(math.isfinite(float(rec[k])) for k in ("psnr", "ssim") if k in rec):
            raise LorunError(f"{f}: the score is not a number; check the input and --ref for invalid values")
    if not torch.isfinite(out).all():  # never write garbage with exit 0
        raise LorunError(f"the result for {o} holds NaN values; nothing was written (check the input)")
    return rec


class _Pipeline:
    """Reading and writing beside the computation: a reader thread decodes the next inputs (two ahead) and a
    writer thread encodes and writes the results (two behind) while the main thread computes.

    An error in either thread stops the run with that error (results already computed are still written);
    an interrupt (SIGINT/SIGTERM) drops the queued results and removes the one being written, so an
    interrupted run leaves only the outputs finished before it. Every write goes through a temporary file
    and a rename, and the threads are always joined before the command returns.
    """

    AHEAD = 2

    def __init__(self, pairs: list[tuple[Path, Path]], opts: RestoreOptions) -> None:
        import queue

        self.pairs, self.opts = pairs, opts
        self.read_q: queue.Queue = queue.Queue(self.AHEAD)
        self.write_q: queue.Queue = queue.Queue(self.AHEAD)
        self.stop = threading.Event()  # no more reading
        self.cancel = threading.Event()  # interrupted: no more writing, the output in progress is removed
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._reader, daemon=True, name="lorun-reader"),
                        threading.Thread(target=self._writer, daemon=True, name="lorun-writer")]

    def __enter__(self) -> _Pipeline:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is not None:
                self._halt(exc)
            if self.threads[1].is_alive():
                self._put(self.write_q, None)
            for t in self.threads:
                t.join()
        except BaseException as e:  # a signal while waiting for the writer
            self._halt(e)
            for t in self.threads:
                t.join()
            raise
        if exc_type is None and self.errors:
            raise self.errors[0]

    def _halt(self, why: BaseException | None) -> None:
        """Stop reading; on an interrupt also stop writing."""
        self.stop.set()
        if isinstance(why, Interrupted | KeyboardInterrupt):
            self.cancel.set()
            while not self.write_q.empty():
                self.write_q.get_nowait()
            self.write_q.put_nowait(None)
        while not self.read_q.empty():  # unblock the reader
            self.read_q.get_nowait()

    def _put(self, q: Any, item: Any) -> None:
        """Put ``item`` unless the pipeline stops (the end marker None is always tried, unless cancelled)."""
        import queue

        while not (self.cancel.is_set() or (self.stop.is_set() and item is not None and q is self.read_q)):
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if item is None and self.stop.is_set() and q is self.read_q:
                    return

    def _fail(self, e: BaseException) -> None:
        self.errors.append(e)
        self.stop.set()
        while not self.read_q.empty():  # unblock the reader
            self.read_q.get_nowait()

    def _reader(self) -> None:
        try:
            for f, o in self.pairs:
                if self.stop.is_set():
                    return
                t = time.perf_counter()
                data = read_input(f, self.opts)
                facts = images.file_facts(f) if self.opts.task != "cassi" else images.FileFacts()
                self._put(self.read_q, (f, o, data, facts, time.perf_counter() - t))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread in its turn
            self._put(self.read_q, e)
            return
        self._put(self.read_q, None)

    def inputs(self):
        """(input, output, pixels, header facts, read seconds) in order; raises a reader or writer error."""
        import queue

        while True:
            if self.errors:
                raise self.errors[0]
            try:
                item = self.read_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):  # the reader failed on this input
                raise item
            if item is None:
                if self.errors:
                    raise self.errors[0]
                return
            yield item

    def write(self, rec: dict[str, Any], out: Tensor, info: dict[str, Any], last: bool = False) -> None:
        """Queue a result for writing (raises a writer error of an earlier result). The ``last`` one is
        written here, after the queue, so a signal during that write interrupts the write itself."""
        if self.errors:
            raise self.errors[0]
        item = (rec, out.detach().cpu(), info)
        if not last:
            self._put(self.write_q, item)
            return
        self._put(self.write_q, None)
        self.threads[1].join()
        if self.errors:
            raise self.errors[0]
        self._write_one(item)

    def _write_one(self, item: tuple[dict[str, Any], Tensor, dict[str, Any]]) -> list[Path]:
        """Write one result (image or cube + preview, and --save-kernel); returns the files written."""
        rec, out, info = item
        o = Path(rec["output"])
        written = [o, o.with_name(o.stem + "_preview.png")] if self.opts.task == "cassi" else [o]
        t = time.perf_counter()
        _write(o, out, self.opts, info["facts"])
        if self.opts.task == "sr" and self.opts.save_kernel is not None:
            _save_kernel(self.opts.save_kernel, info["kernel"], o)
            rec["saved_kernel"] = str(self.opts.save_kernel)
            written.append(self.opts.save_kernel)
        rec["timings"]["write"] = time.perf_counter() - t
        return written

    def _writer(self) -> None:
        while True:
            item = self.write_q.get()
            if item is None or self.cancel.is_set():
                return
            try:
                written = self._write_one(item)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self._fail(e)
                return
            if self.cancel.is_set():  # interrupted while this output was written: it goes
                for p in written:
                    p.unlink(missing_ok=True)
                return


def _save_kernel(path: Path, k: Tensor, image: Path) -> None:
    """Write the kernel used as a float32 .npy (temp file + rename); on failure the image goes too."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, k.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        image.unlink(missing_ok=True)
        raise


def _write(path: Path, out: Tensor, opts: RestoreOptions, facts: images.FileFacts | None = None) -> None:
    """Write one result; an image keeps its input file's colour profile and, where the format allows, its depth
    (16-bit and float inputs; ``facts``: :func:`lorun_cli.io.images.file_facts` of the input)."""
    facts = facts or images.FileFacts()
    out = out.detach().cpu()
    if not torch.isfinite(out).all():  # never write garbage with exit 0
        raise LorunError(f"the result for {path} holds NaN values; nothing was written (check the input)")
    if opts.task == "cassi":
        preview = path.with_name(path.stem + "_preview.png")
        wl = list(WAVELENGTHS_28[: out.shape[0]])
        images.write_cube(path, out, wl, force=opts.force)
        try:
            images.write_image(preview, images.cube_preview_rgb(out, wl), force=opts.force)
        except BaseException:  # the cube and its preview go together
            path.unlink(missing_ok=True)
            raise
    else:
        images.write_image(path, out, force=opts.force, dtype=images.output_dtype(facts.bits, path, out.shape[0]),
                           icc=facts.icc)
