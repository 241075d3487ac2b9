"""What `lorun restore` was asked to do, and its checks before any work (no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import validate as V
from .errors import UsageError
from .facts import SR_GRIDS

CUBE_EXTS = (".mat", ".npy", ".npz", ".tif", ".tiff")
OUTPUT_SUFFIX = {"cs": "_cs.png", "cassi": "_cube.tif"}
#: Smallest useful tile (output pixels): room for the overlap of each task (SR: 16 input pixels a side).
MIN_TILE_SR_LR = 48
MIN_TILE = {"cs": 96, "cassi": 64}  # CS: 3 blocks, so tiles overlap by one block


@dataclass
class RestoreOptions:
    """What `lorun restore` was asked to do."""

    task: str = "sr"
    model: str | None = None
    strategy: str = "lorun9"
    backbone: Path | None = None
    scale: int = 4
    kernel: str = "auto"  # SR: K1…K12, a kernel file, or auto (estimated from the input)
    save_kernel: Path | None = None  # SR: write the estimated kernel (.npy; the given one without an estimator)
    grid: str | None = None  # SR --kernel auto: the LR grid (None: sr_estimate.default_grid; see facts.SR_GRIDS)
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
    max_memory: float | None = None  # GB; None: a fraction of the available memory
    precision: str = "fp32"  # the denoisers' precision: fp32, bf16 (CPU with bf16, CUDA) or fp16 (CUDA)
    score: bool = True  # score against --ref / the simulated ground truth
    warm_start: str | None = None  # CASSI: another x⁰ than the model's (unfold.dun.WarmStart's spelling)


def min_tile(task: str, scale: int) -> int:
    """The smallest --tile (output pixels) that leaves room for the tiles' overlap."""
    return MIN_TILE_SR_LR * scale if task == "sr" else MIN_TILE[task]


def expand_inputs(inputs: list[Path], task: str) -> list[Path]:
    """Files as given; folders expanded to their image/cube files (sorted)."""
    exts = CUBE_EXTS + V.IMAGE_READ_EXTS if task == "cassi" else V.IMAGE_READ_EXTS
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts)
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
    name = inp.stem + OUTPUT_SUFFIX.get(opts.task, f"_x{opts.scale}.png")
    if opts.output is None:
        return inp.with_name(name)
    if many or opts.output.is_dir():
        if not opts.output.is_dir() and not opts.output.exists() and not opts.output.suffix \
                and opts.output.parent.is_dir():
            opts.output.mkdir()  # `lorun restore DIR -o OUTDIR`: a new folder for the results
        if not opts.output.is_dir():
            raise UsageError(f"-o {opts.output}: several inputs need a folder (an existing one, or a new name "
                             f"without an extension)")
        return opts.output / name
    return opts.output


def check_warm_start(task: str, value: str | None) -> None:
    """``--warm-start`` (restore, bench): a CASSI option, spelled as :func:`validate.parse_warm_start` reads it."""
    if value is None:
        return
    if task != "cassi":
        raise UsageError(f"--warm-start is a CASSI option; drop it or pass --task cassi (not {task})")
    try:
        V.parse_warm_start(value)
    except ValueError as e:
        raise UsageError(f"--warm-start: {e} (e.g. gap-tv:45:0.16:8)") from None


def check_options(opts: RestoreOptions) -> None:
    """Types, ranges and NaN of every numeric option, and the files named by options."""
    opts.task = V.check("task", opts.task, V.RESTORE_RULES["task"])
    opts.precision = V.check("precision", opts.precision, V.RESTORE_RULES["precision"])
    for key in ("scale", "noise", "ratio", "tile", "max_memory", "seed"):
        setattr(opts, key, V.check(key, getattr(opts, key), V.RESTORE_RULES[key]))
    if opts.tile and opts.tile < min_tile(opts.task, opts.scale):
        low = min_tile(opts.task, opts.scale)
        at = f" at ×{opts.scale}" if opts.task == "sr" else ""
        raise UsageError(f"--tile {opts.tile}: tiles smaller than {low} output pixels{at} leave no room for their "
                         f"overlap; use 0 (whole image) or a value ≥ {low}")
    if opts.mask is not None:
        if opts.task != "cassi":
            raise UsageError(f"--mask is a CASSI option; drop it or pass --task cassi (not {opts.task})")
        V.check_input_file(opts.mask, "--mask", V.MASK_EXTS, "mask")
    if opts.ref is not None and not opts.score:
        raise UsageError("--ref scores the result and --no-score skips scoring; pass one of them")
    if opts.ref is not None:
        exts = V.IMAGE_READ_EXTS + (CUBE_EXTS if opts.task == "cassi" else ())
        V.check_input_file(opts.ref, "--ref", exts, "reference")
    if opts.backbone is not None:
        V.check_input_file(opts.backbone, "--backbone", V.MODEL_EXTS, "model")
    if opts.model is not None and Path(opts.model).suffix.lower() in V.MODEL_EXTS:
        V.check_input_file(opts.model, "--model", V.MODEL_EXTS, "model")
    check_warm_start(opts.task, opts.warm_start)
    if opts.save_kernel is not None:
        if opts.task != "sr":
            raise UsageError(f"--save-kernel is an SR option; drop it or pass --task sr (not {opts.task})")
        V.check_output_file(opts.save_kernel, "--save-kernel", (".npy",), opts.force, "a kernel")
    if opts.grid is not None:
        opts.grid = opts.grid.strip().lower()
        if opts.grid not in SR_GRIDS:
            raise UsageError(f"--grid {opts.grid}: use one of {', '.join(SR_GRIDS)}")
        if opts.task != "sr" or opts.kernel.strip().lower() != "auto":
            raise UsageError(f"--grid {opts.grid} places the estimated kernel of --task sr --kernel auto; drop it "
                             "(a given kernel carries its own centre)")
    if opts.task == "sr" and opts.kernel.strip().lower() == "auto":
        opts.kernel = "auto"
    elif opts.task == "sr" and opts.kernel.strip().upper() not in {f"K{i}" for i in range(1, 13)}:
        if not Path(opts.kernel).exists() and Path(opts.kernel).suffix.lower() not in V.KERNEL_EXTS:
            raise UsageError(f"--kernel {opts.kernel}: not one of K1…K12 and no such file; name a bundled kernel "
                             f"or a kernel file ({', '.join(V.KERNEL_EXTS)})")
        V.check_input_file(opts.kernel, "--kernel", V.KERNEL_EXTS, "kernel")


def plan(inputs: list[Path], opts: RestoreOptions) -> list[tuple[Path, Path]]:
    """Check everything `restore` can check without computing; returns the (input, output) pairs.

    Options (ranges, NaN), input files, output extensions, writable folders, existing outputs (without
    --force) and outputs that two inputs, or an input itself, would share.
    """
    check_options(opts)
    files = expand_inputs(inputs, opts.task)
    if opts.ref is not None and len(files) > 1:
        raise UsageError("--ref scores one input; pass a single input with --ref")
    if opts.save_kernel is not None and len(files) > 1:
        raise UsageError("--save-kernel writes one kernel; pass a single input with --save-kernel")
    pairs = [(f, output_path(f, opts, len(files) > 1)) for f in files]
    exts = V.CUBE_WRITE_EXTS if opts.task == "cassi" else V.IMAGE_WRITE_EXTS
    what = "a cube" if opts.task == "cassi" else "an image"
    V.check_collisions(pairs)
    for _, o in pairs:
        V.check_output_file(o, "-o", exts, opts.force, what)
        if opts.task == "cassi":
            preview = o.with_name(o.stem + "_preview.png")
            if preview.exists() and not opts.force:
                raise UsageError(f"{preview} exists; pass --force to overwrite or choose another -o")
    return pairs
