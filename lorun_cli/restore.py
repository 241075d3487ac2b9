"""`lorun restore`: read → [simulate] → K × (GDM → PMM) → write → score, with bounded-memory tiling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics, models
from .errors import LorunError, UsageError
from .io import images
from .io.weights import load_manifest, resolve_model
from .physics.cassi import CASSI, WAVELENGTHS_28, load_mask
from .physics.cs import BlockCS
from .physics.sr import SRBlur, load_kernel_file, load_kernels
from .unfold import DUN

CUBE_EXTS = (".mat", ".npy", ".npz", ".tif", ".tiff")


@dataclass
class RestoreOptions:
    """What `lorun restore` was asked to do."""

    task: str = "sr"
    model: str | None = None
    strategy: str = "lorun9"
    backbone: Path | None = None
    scale: int = 4
    kernel: str = "K1"
    noise: float = 0.0
    ratio: float | None = None
    mask: Path | None = None
    simulate: bool = False
    ref: Path | None = None
    output: Path | None = None
    force: bool = False
    tile: int = 0
    device: str = "cpu"
    seed: int = 0


def default_model_name(task: str, strategy: str, ratio: float | None = None) -> str:
    """The manifest entry serving ``task``/``strategy`` (for CS the one trained at ``ratio``, default 25 %).

    Variants (e.g. compact adapters) are only used when named.
    """
    entries = [e for e in load_manifest()["models"]
               if e.get("task") == task and e.get("strategy") == strategy and not e.get("variant")]
    if task == "cs":
        want = 0.25 if ratio is None else ratio
        entries = [e for e in entries if abs(float(e.get("ratio", -1)) - want) < 1e-6]
    if not entries:
        what = f"{task} {strategy}" + (f" at ratio {ratio if ratio is not None else 0.25:g}" if task == "cs" else "")
        raise LorunError(f"no bundled {what} model; see `lorun weights list`, or train one "
                         f"(`lorun pretrain`/`lorun adapt`) and pass --model FILE")
    return entries[0]["name"]


def load_task_model(task: str, model: str | None, strategy: str = "lorun9", ratio: float | None = None,
                    backbone: Path | None = None, device: str = "cpu") -> tuple[DUN, str]:
    """Resolve ``--model`` (file or manifest name; default: the task's bundled model) and load it."""
    name = model or default_model_name(task, strategy, ratio)
    path = resolve_model(name)
    net = models.load_model(path, backbone)
    if net.task != task:
        raise UsageError(f"model {name} is a {net.task} model, not {task}; pass --task {net.task} or another --model")
    if task == "cs" and ratio is not None and abs(net.op.ratio - ratio) > 1e-6:
        raise UsageError(f"model {name} samples at ratio {net.op.ratio:g}, not {ratio:g}; drop --ratio or pick "
                         f"a model trained at {ratio:g}")
    return net.to(device).prepare_inference(), name


def expand_inputs(inputs: list[Path], task: str) -> list[Path]:
    """Files as given; folders expanded to their image/cube files (sorted)."""
    exts = CUBE_EXTS + images.IMAGE_EXTS if task == "cassi" else images.IMAGE_EXTS
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in exts)
            if not found:
                raise UsageError(f"folder {p} holds no {task} inputs ({', '.join(exts)})")
            out += found
        elif not p.exists():
            raise UsageError(f"input {p}: no such file")
        else:
            out.append(p)
    return out


def output_path(inp: Path, opts: RestoreOptions, many: bool) -> Path:
    """Where the result goes: ``-o`` (file, or folder for several inputs) or beside the input."""
    suffix = {"sr": f"_x{opts.scale}.png", "cs": "_cs.png", "cassi": "_cube.tif"}[opts.task]
    name = inp.stem + suffix
    if opts.output is None:
        return inp.with_name(name)
    if many or opts.output.is_dir():
        if not opts.output.is_dir():
            raise UsageError(f"-o {opts.output}: several inputs need an existing folder")
        return opts.output / name
    return opts.output


def run_tiled(fn, y: Tensor, tile: int, overlap: int, out_scale: int, axes: tuple[int, ...] = (-2, -1),
              align: int = 1) -> Tensor:
    """Apply ``fn`` to overlapping tiles of ``y`` along ``axes`` and stitch the tile centres.

    ``out_scale`` maps input to output pixels (SR); ``align`` keeps tile starts on a grid (CS blocks).
    Memory is bounded by one tile.
    """
    if tile <= 0 or all(y.shape[a] <= tile for a in axes):
        return fn(y)
    starts = []
    for a in axes:
        n, step = y.shape[a], max(align, (tile - 2 * overlap) // align * align)
        s = list(range(0, max(1, n - tile) + step, step))
        starts.append([min(v, max(0, n - tile)) // align * align for v in s])
    out = None
    grid = [(i,) for i in starts[0]] if len(axes) == 1 else [(i, j) for i in starts[0] for j in starts[1]]
    for pos in grid:
        sl = [slice(None)] * y.dim()
        for a, p in zip(axes, pos, strict=True):
            sl[a] = slice(p, p + tile)
        res = fn(y[tuple(sl)])
        if out is None:
            shape = list(res.shape)
            for a in axes:
                shape[a] = y.shape[a] * out_scale
            out = res.new_zeros(shape)
        osl = [slice(None)] * res.dim()
        rsl = [slice(None)] * res.dim()
        for a, p in zip(axes, pos, strict=True):
            n = y.shape[a]
            lo = 0 if p == 0 else p + overlap
            hi = n if p + tile >= n else p + tile - overlap
            osl[a] = slice(lo * out_scale, hi * out_scale)
            rsl[a] = slice((lo - p) * out_scale, (hi - p) * out_scale)
        out[tuple(osl)] = res[tuple(rsl)]
    return out


def _noise(shape: torch.Size, sigma255: float, gen: torch.Generator, like: Tensor) -> Tensor:
    if sigma255 <= 0:
        return torch.zeros((), device=like.device)
    return (sigma255 / 255.0) * torch.randn(shape, generator=gen).to(like.device)


def _sr_kernel(opts: RestoreOptions) -> Tensor:
    bank = load_kernels()
    key = opts.kernel.upper()
    if key in bank:
        return bank[key]
    p = Path(opts.kernel)
    if not p.exists():
        raise UsageError(f"--kernel {opts.kernel}: not one of K1…K12 and no such file")
    try:
        return load_kernel_file(p)
    except ValueError as e:
        raise UsageError(f"--kernel {p}: {e}") from None


def _restore_sr(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    img = images.read_image(inp, "rgb").unsqueeze(0).to(opts.device)
    k = _sr_kernel(opts).to(opts.device)
    s = opts.scale
    ref = None
    if opts.simulate:
        h, w = img.shape[-2] // s * s, img.shape[-1] // s * s
        if h == 0 or w == 0:
            raise UsageError(f"{inp}: image smaller than the scale factor {s}")
        ref = img[..., :h, :w]
        y = SRBlur(k, s).A(ref)
        y = y + _noise(y.shape, opts.noise, gen, y)
    else:
        y = img

    def fn(t: Tensor) -> Tensor:
        return net(t, SRBlur(k, s))

    with torch.no_grad():
        out = run_tiled(fn, y, opts.tile // s if opts.tile else 0, overlap=8, out_scale=s)
    return out.clamp(0, 1)[0], None if ref is None else ref[0]


def _restore_cs(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    img = images.read_image(inp, "auto").to(opts.device)  # (C,H,W): gray, or RGB sampled per channel
    op: BlockCS = net.op
    x = img.unsqueeze(1)  # channels as a batch of gray images
    with torch.no_grad():
        y = op.measure(x)
        y = y + _noise(y.shape, opts.noise, gen, y)
        B = op.block
        tile_blocks = max(1, opts.tile // B) if opts.tile else 0

        def fn(t: Tensor) -> Tensor:  # t: (N, C, m, hb, wb) measurement blocks
            return net(t)

        xpad = run_tiled(fn, y, tile_blocks, overlap=1 if tile_blocks > 2 else 0, out_scale=B) if tile_blocks \
            else net(y)
        out = op.crop(xpad)
    return out[:, 0].clamp(0, 1), img


def _restore_cassi(net: DUN, inp: Path, opts: RestoreOptions, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    mask = load_mask(opts.mask).to(opts.device)
    op = CASSI(mask, bands=net.channels, step=2)
    ref = None
    if opts.simulate:
        if inp.suffix == ".npz":
            from .train.data import read_cassi_sample

            cube = read_cassi_sample(inp)
        else:
            cube = images.read_cube(inp)
        cube = cube.to(opts.device)
        if cube.shape[0] != net.channels:
            raise UsageError(f"{inp}: cube has {cube.shape[0]} bands; the model expects {net.channels}")
        if tuple(cube.shape[-2:]) != tuple(mask.shape):
            raise UsageError(f"{inp}: cube is {cube.shape[-2]}×{cube.shape[-1]} but the mask is "
                             f"{mask.shape[0]}×{mask.shape[1]}; crop the cube or pass a matching --mask")
        ref = cube
        y = op.A(cube.unsqueeze(0))
        y = y + _noise(y.shape, opts.noise, gen, y)
    else:
        meas = images.read_measurement(inp).to(opts.device)
        want = (mask.shape[0], mask.shape[1] + 2 * (net.channels - 1))
        if tuple(meas.shape) != want:
            raise UsageError(f"{inp}: measurement is {meas.shape[0]}×{meas.shape[1]}, expected {want[0]}×{want[1]} "
                             f"for a {mask.shape[0]}×{mask.shape[1]} mask; pass the matching --mask")
        y = meas.view(1, 1, *want)

    with torch.no_grad():
        if opts.tile and y.shape[-2] > opts.tile:
            out = _cassi_rows(net, y, mask, opts.tile)
        else:
            out = net(y, op)
    return out.clamp(0, 1)[0], ref


def _cassi_rows(net: DUN, y: Tensor, mask: Tensor, tile: int, overlap: int = 16) -> Tensor:
    """Row tiles for CASSI: each tile uses its own rows of the mask (exact: the dispersion runs along W)."""
    h = y.shape[-2]
    out = None
    step = max(1, tile - 2 * overlap)
    for p in range(0, h, step):
        p = min(p, max(0, h - tile))
        op = CASSI(mask[p : p + tile], bands=net.channels, step=2)
        res = net(y[..., p : p + tile, :], op)
        if out is None:
            out = res.new_zeros(*res.shape[:-2], h, res.shape[-1])
        lo = 0 if p == 0 else p + overlap
        hi = h if p + tile >= h else p + tile - overlap
        out[..., lo:hi, :] = res[..., lo - p : hi - p, :]
        if p + tile >= h:
            break
    return out


PROTOCOL = {"cs": "gray8", "sr": "y", "cassi": "bands"}


def run_restore(inputs: list[Path], opts: RestoreOptions) -> list[dict[str, Any]]:
    """Restore every input; returns one result record per input (what reports print)."""
    if opts.task not in models.TASKS:
        raise UsageError(f"--task {opts.task!r}: use one of {', '.join(models.TASKS)}")
    if opts.task == "sr" and opts.scale < 1:
        raise UsageError(f"--scale {opts.scale}: use 2, 3 or 4 (any integer ≥ 1 works)")
    if opts.task == "cs" and opts.ratio is not None and not 0 < opts.ratio <= 1:
        raise UsageError(f"--ratio {opts.ratio}: a sampling ratio lies in (0, 1], e.g. 0.25")
    if opts.noise < 0:
        raise UsageError(f"--noise {opts.noise}: noise std must be ≥ 0 (0-255 scale)")
    if opts.task == "sr":
        _sr_kernel(opts)  # fail fast on a bad kernel
    files = expand_inputs(inputs, opts.task)
    if opts.ref is not None and len(files) > 1:
        raise UsageError("--ref scores one input; pass a single input with --ref")
    if opts.task == "cs" and not opts.simulate:
        opts.simulate = True  # a CS measurement only exists relative to the model's learned Φ
    outs = [output_path(f, opts, len(files) > 1) for f in files]
    for o in outs:
        for p in [o, o.with_name(o.stem + "_preview.png")] if opts.task == "cassi" else [o]:
            if p.exists() and not opts.force:
                raise UsageError(f"{p} exists; pass --force to overwrite or choose another -o")
        if not o.parent.is_dir():
            what = "is not a folder" if o.parent.exists() else "does not exist"
            raise UsageError(f"-o {o}: folder {o.parent} {what}")
    net, name = load_task_model(opts.task, opts.model, opts.strategy, opts.ratio, opts.backbone, opts.device)
    gen = torch.Generator().manual_seed(opts.seed)
    results = []
    fn = {"sr": _restore_sr, "cs": _restore_cs, "cassi": _restore_cassi}[opts.task]
    for f, o in zip(files, outs, strict=True):
        t0 = time.perf_counter()
        out, ref = fn(net, f, opts, gen)
        secs = time.perf_counter() - t0
        if opts.ref is not None:
            ref = (images.read_cube(opts.ref) if opts.task == "cassi" else
                   images.read_image(opts.ref, "rgb" if opts.task == "sr" else "auto")).to(out.device)
            if ref.shape != out.shape:
                raise UsageError(f"--ref {opts.ref}: shape {tuple(ref.shape)} differs from the output "
                                 f"{tuple(out.shape)}")
        rec: dict[str, Any] = {"input": str(f), "output": str(o), "task": opts.task, "model": name,
                               "shape": list(out.shape), "seconds": round(secs, 3)}
        if opts.task == "sr":
            rec.update(scale=opts.scale, kernel=opts.kernel, noise=opts.noise)
        if opts.task == "cs":
            rec["ratio"] = net.op.ratio
        if ref is not None:
            border = opts.scale if opts.task == "sr" else 0
            proto = PROTOCOL[opts.task] if not (opts.task == "sr" and out.shape[0] == 1) else "gray8"
            rec.update(metrics.score(out, ref, proto, border=border), protocol=metrics.PROTOCOL_TEXT[proto])
        _write(o, out, opts)
        results.append(rec)
    return results


def _write(path: Path, out: Tensor, opts: RestoreOptions) -> None:
    out = out.detach().cpu()
    if opts.task == "cassi":
        images.write_cube(path, out, list(WAVELENGTHS_28[: out.shape[0]]), force=opts.force)
        preview = path.with_name(path.stem + "_preview.png")
        images.write_image(preview, images.cube_preview_rgb(out, list(WAVELENGTHS_28[: out.shape[0]])),
                           force=opts.force)
    else:
        images.write_image(path, out, force=opts.force)
