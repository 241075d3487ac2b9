"""The ``lorun`` command line: a thin Typer shell over the engine (no torch import at start-up)."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import Interrupted, LorunError, OptionError, UsageError
from ..train.config import TrainConfig

app = typer.Typer(
    name="lorun",
    help="Deep LoRA-Unfolding Networks for image restoration: compressive sensing (cs), CASSI "
    "hyperspectral snapshot imaging (cassi) and super-resolution (sr).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
weights_app = typer.Typer(help="List, fetch and verify the checkpoints of weights_manifest.json.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

#: Environment variables read by the command line itself (listed in the man pages with the weights' ones).
ENVIRONMENT: dict[str, str] = {
    "LORUN_MAX_MEMORY": "Memory budget in GB for `lorun restore` (default: half the available memory, at most 1 GB "
    "on a CPU); larger inputs are tiled automatically.",
    "LORUN_MALLOC": "system: keep glibc's malloc defaults (by default lorun keeps freed memory instead of returning "
    "it to the system, which halves the wall time of large restores; see docs/SPEED.md).",
    "OMP_WAIT_POLICY": "OpenMP threads' idle policy; lorun sets PASSIVE unless it is set, so extra threads do not "
    "slow down on a busy machine.",
}

TASK_HELP = "Task: cs (block compressive sensing), cassi (hyperspectral snapshot), sr (super-resolution)."


class State:
    """Global options shared by every subcommand."""

    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    quiet: bool = False


STATE = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lorun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    device: Annotated[
        str, typer.Option(envvar="LORUN_DEVICE", help="auto, cpu, cuda or cuda:N (auto falls back to CPU).")
    ] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (simulated noise, training).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and requested output.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Global options."""
    from ..validate import RESTORE_RULES, check, check_threads

    STATE.device, STATE.threads, STATE.quiet = device, check_threads(threads), quiet
    STATE.seed = check("seed", seed, RESTORE_RULES["seed"])


def _setup_torch() -> str:
    """Import torch lazily, apply --threads/--seed and resolve --device."""
    from ..runtime import resolve_device, setup

    setup(STATE.threads, STATE.seed)
    return resolve_device(STATE.device)


def _note(text: str) -> None:
    """A one-line notice on stderr (e.g. the memory guard's automatic tiling)."""
    typer.echo(f"lorun: note: {text}", err=True)


def _click():
    """The click package Typer runs on (vendored as ``typer._click`` since Typer 0.26)."""
    try:
        import typer._click as click  # type: ignore[import-not-found]
    except ImportError:  # older Typer depends on the click package
        import click
    return click


# ---- restore ---------------------------------------------------------------------------------------------
@app.command()
def restore(
    inputs: Annotated[list[Path], typer.Argument(help="Images, cubes or measurements, or folders of them.")],
    task: Annotated[str, typer.Option(help=TASK_HELP)] = "sr",
    model: Annotated[str | None, typer.Option(help="Manifest name or model file (default: task's lorun9); "
                                              "CASSI also takes gap-tv (classical GAP-TV, no model).")] = None,
    strategy: Annotated[str, typer.Option(help="Bundled model to use: lorun9, block9, block1, share9.")] = "lorun9",
    backbone: Annotated[Path | None, typer.Option(help="Backbone file for an adapter checkpoint.")] = None,
    scale: Annotated[int, typer.Option(help="SR scale factor: 2, 3 or 4 (trained); 1 (deblurring) and 5–8 also "
                                       "run, with less gain.")] = 4,
    kernel: Annotated[str, typer.Option(help="SR blur kernel: auto (estimated from the input, the default), K1…K12 "
                                        "or a kernel file (.npy/.mat/.png).")] = "auto",
    save_kernel: Annotated[Path | None, typer.Option(help="SR: write the kernel estimated from the input (as the "
                                                     "estimator gives it; the given kernel when there is no "
                                                     "estimator) as .npy.")] = None,
    grid: Annotated[str | None, typer.Option(
        help="SR --kernel auto: where the LR pixels sit. centre (made smaller by a resizer: Pillow, OpenCV, "
             "ImageMagick, browsers; the default for a file), top-left (decimation x[::s, ::s] after a blur, as in "
             "USRNet-style benchmarks; the default under --simulate, which degrades so) or auto (the estimator's "
             "guess).", show_default=False)] = None,
    noise: Annotated[float, typer.Option(help="Noise std on the 0-255 scale added by --simulate.")] = 0.0,
    ratio: Annotated[float | None, typer.Option(help="CS sampling ratio in (0, 1] (default: the model's).")] = None,
    mask: Annotated[Path | None, typer.Option(help="CASSI mask file (default: bundled 256x256).")] = None,
    simulate: Annotated[bool, typer.Option(help="Degrade the clean input with the forward model first (SR: with "
                                           "--kernel; K1 under --kernel auto, then restored blind).")] = False,
    ref: Annotated[Path | None, typer.Option(help="Ground truth to score against (PSNR/SSIM).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output file (one input) or folder.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing outputs.")] = False,
    tile: Annotated[int, typer.Option(help="Tile size in output pixels for large inputs (0: whole image, or "
                                      "tiles chosen by the memory guard when the image would not fit).")] = 0,
    max_memory: Annotated[float | None, typer.Option(help="Memory budget in GB (default: LORUN_MAX_MEMORY, else half "
                                                     "the available memory, at most 1 GB on a CPU); larger inputs "
                                                     "are tiled.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    precision: Annotated[str, typer.Option(help="Denoiser precision: fp32, bf16 (CPUs with bf16, CUDA) or fp16 "
                                           "(CUDA); −0.1 dB at most. Faster on a CPU with bf16 units (0.6–0.7×) "
                                           "and on a GPU for large models and images (0.75–0.78×); slower for "
                                           "the small models on a GPU (docs/GPU.md).")] = "fp32",
    score: Annotated[bool, typer.Option(help="Score against --ref or the simulated ground truth (PSNR/SSIM); "
                                        "--no-score skips it (CS and --simulate score by default).")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Break the time down (start-up, model load, read, "
                                          "compute, score, write) and print the peak memory.")] = False,
    warm_start: Annotated[str | None, typer.Option(help="CASSI: another initial estimate x⁰ for the model's stages "
                                                   "than the one it was trained with: 'gap-tv:N[:LAMBDA[:RANK"
                                                   "[:INNER]]]' (fields left out keep the model's; e.g. "
                                                   "gap-tv:45:0.16:8, the TV on the cube's 8 leading spectral "
                                                   "components, faster, docs/CASSI.md) or 'op'.")] = None,
) -> None:
    """Restore images: super-resolve (sr), reconstruct CS or CASSI measurements.

    CS inputs are clean images that are sampled with the model's learned matrix (--simulate is implied).
    Examples: lorun restore --task sr --kernel K5 --scale 3 in.png ;
    lorun restore --task cs --ratio 0.1 photo.png ; lorun restore --task cassi --simulate cube.mat
    """
    from ..options import RestoreOptions, plan

    opts = RestoreOptions(task=task, model=model, strategy=strategy, backbone=backbone, scale=scale, kernel=kernel,
                          save_kernel=save_kernel, grid=grid, noise=noise, ratio=ratio, mask=mask, simulate=simulate,
                          ref=ref, output=output, force=force, tile=tile, seed=STATE.seed, max_memory=max_memory,
                          precision=precision, score=score, warm_start=warm_start)
    pairs = plan(inputs, opts)  # every check that needs no computation, before torch is even imported
    opts.device = _setup_torch()
    from ..report import RestoreProgress, print_restore
    from ..restore import run_restore
    from ..runtime import process_seconds

    startup = process_seconds()
    with RestoreProgress(len(pairs), enabled=not (STATE.quiet or json_out)) as progress:
        results = run_restore(inputs, opts, on_note=None if STATE.quiet else _note, on_result=progress,
                              on_tile=progress.tile)
    print_restore(results, json_out=json_out, quiet=STATE.quiet, command_seconds=process_seconds(),
                  startup_seconds=startup, verbose=verbose)


# ---- training ----------------------------------------------------------------------------------------------
def _train(phase: str, values: dict, config: Path | None) -> None:
    from ..train.cli_glue import run_training

    click = _click()
    ctx = click.globals.get_current_context()
    default = click.core.ParameterSource.DEFAULT
    explicit = {k for k in values if ctx.get_parameter_source(k) not in (None, default)}
    dev = _setup_torch()
    run_training(phase, values, explicit, config, dev, STATE.seed, STATE.quiet,
                 " ".join(["lorun", *sys.argv[1:]]))


#: Options pretrain and adapt share: name → (type, help). Their defaults are TrainConfig's for the phase.
TRAIN_OPTIONS: dict[str, tuple[Any, str]] = {
    "data": (Path | None, "Data root (see README: Data)."),
    "steps": (int, "Training iterations."),
    "batch": (int, "Batch size."),
    "patch": (int | None, "Training patch size (task default if unset)."),
    "lr": (float, "Peak learning rate (Adam, cosine schedule)."),
    "max_minutes": (float | None, "Stop (and checkpoint) after this many minutes."),
    "val_every": (int, "Validation PSNR every N steps."),
    "ckpt_every": (int, "Checkpoint (OUT.ckpt) every N steps."),
    "noise": (float | None, "Measurement noise std in [0,1] units (SR: the maximum of σ = max·u³, u uniform; "
              "default 10/255 for SR, 0 otherwise)."),
    "stage_loss": (float, "Weight of the intermediate stages' mean L2 loss added to the final output's "
                   "(0: the paper's Eq. 13, final output only)."),
    "rgb_share": (float, "CASSI: share of training patches made from the RGB training images (T91), turned into "
                  "28-band cubes by the colour-to-spectrum maps of the CAVE training scenes (0: CAVE only)."),
    "sr_kernel": (str, "SR: the kernel the data step is given: 'true' (the true kernel, a quarter of them "
                  "slightly too wide or narrow), 'auto' (the kernel estimator's estimate of each training image, "
                  "as `restore --kernel auto` uses it) or 'auto-raw' (the estimate only widened to 0.5 px): "
                  "'auto*' trains adapters for blind SR."),
    "warm_start": (str | None, "CASSI: the initial estimate x⁰ the stages start from, 'op' (the operator's "
                   "cheap start) or 'gap-tv:N[:LAMBDA[:RANK[:INNER]]]' (N GAP-TV iterations, TV weight LAMBDA, the "
                   "TV on the cube's RANK leading spectral components (0: every band), INNER TV steps each; "
                   "fields left out keep the model's); default: the model's own."),
    "resume": (bool, "Continue from OUT.ckpt exactly where it stopped."),
    "force": (bool, "Overwrite an existing OUT."),
    "config": (Path | None, "YAML file of options; command-line flags override it."),
}


def train_options(phase: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add :data:`TRAIN_OPTIONS` to a command's own options (its ``**shared``), defaults from TrainConfig."""
    cfg = TrainConfig.defaults(phase)

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
        shared = []
        for name, (kind, text) in TRAIN_OPTIONS.items():
            opt = typer.Option(envvar="LORUN_DATA", help=text) if name == "data" else typer.Option(help=text)
            default = getattr(cfg, name, None) if name not in ("force", "config") else (False if kind is bool else None)
            shared.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[kind, opt]))
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        fn.__annotations__ = {p.name: p.annotation for p in params}
        return fn

    return add


_PRE, _ADAPT = TrainConfig.defaults("pretrain"), TrainConfig.defaults("adapt")


@app.command()
@train_options("pretrain")
def pretrain(
    task: Annotated[str, typer.Option(help=TASK_HELP)] = _PRE.task,
    strategy: Annotated[str, typer.Option(help="share9 (LoRun phase 1), block9 or block1 (baselines).")] = (
        _PRE.strategy),
    denoiser: Annotated[str | None, typer.Option(help="unet, transformer, resunet or spectral.")] = _PRE.denoiser,
    size: Annotated[str, typer.Option(help="Denoiser scale: small (CPU) or base (GPU).")] = _PRE.size,
    algo: Annotated[str | None, typer.Option(help="Gradient step: pgd (Eq. 5) or hqs (Eq. 9).")] = _PRE.algo,
    ratio: Annotated[float, typer.Option(help="CS sampling ratio in (0, 1].")] = _PRE.ratio,
    out: Annotated[Path, typer.Option(help="Output model file (.safetensors or .pt).")] = Path(_PRE.out),
    denoise: Annotated[bool, typer.Option(help="Phase 0: train the shared denoiser as a Gaussian denoiser "
                                          "(noise σ ~ U[0, --sigma-max]), no operator in the loop.")] = False,
    sigma_max: Annotated[float, typer.Option(help="--denoise: largest training noise level.")] = _PRE.sigma_max,
    init: Annotated[Path | None, typer.Option(help="Start the denoiser(s) from this shareK file's shared "
                                              "denoiser (e.g. a --denoise run).")] = None,
    **shared: Any,
) -> None:
    """Phase 1: train a shared denoiser across all stages (share9), or the block9/block1 baselines."""
    values = {k: v for k, v in locals().items() if k != "shared"} | shared
    _train("denoise" if values.pop("denoise") else "pretrain", values, shared["config"])


@app.command()
@train_options("adapt")
def adapt(
    backbone: Annotated[Path, typer.Option(help="A shareK model from `lorun pretrain` (.safetensors or .pt).")],
    gamma: Annotated[float, typer.Option(help="LoRA rank factor γ: r = ceil(min(in,out)·γ/100) (Eq. 12).")] = (
        _ADAPT.gamma),
    stages: Annotated[int | None, typer.Option(help="Number of stages K (default: the backbone's).")] = None,
    ratio: Annotated[float | None, typer.Option(help="CS: adapt to another sampling ratio (new Φ).")] = None,
    phi: Annotated[str, typer.Option(help="CS: how Φ adapts, starting from the backbone's: learn (full matrix, "
                                     "stored), lora (low-rank update, rank by Eq. 12; smallest files that still "
                                     "learn Φ) or frozen (not stored).")] = _ADAPT.phi,
    out: Annotated[Path | None, typer.Option(help="Adapter file (default: BACKBONE-lorunK-gG.safetensors).")] = None,
    init: Annotated[Path | None, typer.Option(help="Start from this adapter set (same backbone, γ and stages) "
                                              "and continue with new settings.")] = None,
    **shared: Any,
) -> None:
    """Phase 2: freeze the backbone, add stage-wise LoRA adapters and train them (+ ρ, λ, Φ)."""
    values = {k: v for k, v in locals().items() if k != "shared"} | shared
    _train("adapt", values, shared["config"])


# ---- bench -----------------------------------------------------------------------------------------------
@app.command()
def bench(
    compare: Annotated[str, typer.Option(help="Comma list to compare with: block9, block1, share9, tv, linear, "
                                         "bicubic, gap-tv, or checkpoint files.")] = "block9",
    task: Annotated[str, typer.Option(help=TASK_HELP)] = "cs",
    model: Annotated[str | None, typer.Option(help="The model under test (default: the task's lorun9).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Test set (cs: set11, bsd68; sr: set5, set14, bsd100, "
                                                "cbsd68; cassi: cave; samples). Default: the task's headline "
                                                "set (set11, set5, cave) when the data root holds it, else the "
                                                "bundled samples.")] = None,
    data: Annotated[Path | None, typer.Option(envvar="LORUN_DATA", help="Data root for --dataset.")] = None,
    ratio: Annotated[float | None, typer.Option(help="CS ratio (picks the matching bundled models).")] = None,
    scale: Annotated[int, typer.Option(help="SR scale.")] = 4,
    kernels: Annotated[str, typer.Option(help="SR kernels, comma list or 'all'; 'auto' scores the oracle kernel, the "
                                         "estimated kernel and bicubic on degradations drawn from --seed (every "
                                         "family; 'auto:bundled,delta,pil-bicubic,gauss,noise5' picks "
                                         "some).")] = "K1",
    limit: Annotated[int | None, typer.Option(help="Use only the first N test images.")] = None,
    repeats: Annotated[int, typer.Option(help="Latency repeats per model.")] = 10,
    memory: Annotated[bool, typer.Option(help="Measure peak memory (subprocess RSS on CPU).")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout (the table goes to stderr).")] = False,
    csv: Annotated[Path | None, typer.Option(help="Also write the rows as CSV.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing --csv file.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Run the whole results suite (every task and test set).")] = False,
    markdown: Annotated[Path | None, typer.Option(help="With --all: write the results page here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="With --all: write the PSNR-vs-parameters figure (PNG).")] = None,
    quick: Annotated[bool, typer.Option(help="With --all: 2 latency repeats, no memory probe.")] = False,
    stages: Annotated[bool, typer.Option(help="Also print the PSNR of x⁰ and after every stage of the learned "
                                         "models.")] = False,
    precision: Annotated[str, typer.Option(help="Comma list of precisions to run the model under test in (fp32, "
                                           "bf16, fp16): one row each, with its PSNR cost against fp32.")] = "fp32",
    speed: Annotated[bool, typer.Option(help="Speed check instead of scores: this machine's matmul and conv peaks, "
                                        "and the forward GFLOP/s and latency of lorun9 (merged; per --precision), "
                                        "block9 and a classical baseline on one fixed case.")] = False,
    warm_start: Annotated[str | None, typer.Option(help="CASSI: run the learned models' stages from this initial "
                                                   "estimate, as `restore --warm-start` does.")] = None,
) -> None:
    """Score a model against others on a test set: PSNR, SSIM, parameters, memory, latency.

    `lorun bench --all --markdown docs/RESULTS.md --plot docs/psnr_params.png --data DIR` regenerates the
    results page from the bundled models.
    """
    from ..validate import RESTORE_RULES, check

    for key, value in (("ratio", ratio), ("scale", scale), ("limit", limit), ("repeats", repeats)):
        check(key, value, RESTORE_RULES[key])
    task = check("task", task, RESTORE_RULES["task"])
    precisions = [check("precision", p.strip(), RESTORE_RULES["precision"]) for p in precision.split(",") if p.strip()]
    from ..options import check_warm_start

    check_warm_start(task, warm_start)
    from ..validate import check_output_file

    if csv is not None:
        check_output_file(csv, "--csv", (".csv",), force, "a table")
    if markdown is not None:  # the results page and figure are regenerated in place (see docs/RESULTS.md)
        check_output_file(markdown, "--markdown", (".md",), True, "a results page")
    if plot is not None:
        check_output_file(plot, "--plot", (".png",), True, "a figure")
    from ..bench import BenchOptions, default_dataset, run_bench
    from ..report import print_bench

    dev = _setup_torch()
    if all_:
        from ..results import build_results

        if markdown is None:
            raise UsageError("--all writes a results page: pass --markdown FILE (and optionally --plot FILE)")
        build_results(data, markdown, plot, threads=STATE.threads, device=dev, repeats=repeats, memory=memory,
                      quick=quick, quiet=STATE.quiet)
        return
    if markdown is not None or plot is not None:
        raise UsageError("--markdown/--plot go with --all")
    if speed:
        from ..bench import run_speed
        from ..report import print_speed

        opts = BenchOptions(task=task, model=model, ratio=ratio, scale=scale, repeats=repeats, device=dev,
                            threads=STATE.threads, seed=STATE.seed, precisions=precisions or ["fp32"],
                            baseline_repeats=1 if task == "cassi" else 3,  # GAP-TV: ~20 s a run
                            warm_start=warm_start)
        print_speed(run_speed(opts, quiet=STATE.quiet), json_out=json_out, quiet=STATE.quiet)
        return
    if dataset is None:
        dataset = default_dataset(task, data)
    elif dataset.strip().lower() == "samples":
        dataset = None
    opts = BenchOptions(task=task, model=model, compare=[c for c in compare.split(",") if c.strip()],
                        dataset=dataset, data=data, ratio=ratio, scale=scale, kernels=kernels, limit=limit,
                        repeats=repeats, memory=memory, device=dev, threads=STATE.threads, seed=STATE.seed,
                        stages=stages, precisions=precisions or ["fp32"], warm_start=warm_start)
    result = run_bench(opts, quiet=STATE.quiet)
    print_bench(result, json_out=json_out, csv=csv, quiet=STATE.quiet)


# ---- weights ---------------------------------------------------------------------------------------------
@weights_app.command("list")
def weights_list(json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """What the manifest holds and what is cached."""
    from ..report import print_weights

    print_weights(json_out=json_out)


@weights_app.command("fetch")
def weights_fetch(
    names: Annotated[list[str] | None, typer.Argument(help="Manifest names (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Download again even if cached.")] = False,
) -> None:
    """Download (or copy the bundled file) into the cache, verifying sha256."""
    from ..io import weights as w

    for e in w.load_manifest()["models"]:
        if names and e["name"] not in names:
            continue
        path = w.fetch(e, force=force)
        if not STATE.quiet:
            typer.echo(f"{e['name']}: {path}")
    unknown = set(names or []) - {e["name"] for e in w.load_manifest()["models"]}
    if unknown:
        raise UsageError(f"unknown model name(s) {sorted(unknown)}; see `lorun weights list`")


@weights_app.command("verify")
def weights_verify() -> None:
    """Check the sha256 of every cached checkpoint; exit 1 if any is corrupt."""
    from ..io import weights as w

    bad = []
    for e in w.load_manifest()["models"]:
        present = w.cached_path(e).is_file()
        ok = present and w.verify(e)
        typer.echo(f"{e['name']}: {'ok' if ok else ('CORRUPT' if present else 'not cached')}")
        if present and not ok:
            bad.append(e["name"])
    if bad:
        raise LorunError(f"corrupt cached file(s): {', '.join(bad)}; run `lorun weights fetch --force {bad[0]}`")


@weights_app.command("path")
def weights_path(name: Annotated[str | None, typer.Argument(help="A manifest name.")] = None) -> None:
    """Print the cache directory, or the cached path of one model."""
    from ..io import weights as w

    typer.echo(str(w.cache_dir() if name is None else w.cached_path(w.find_entry(name))))


def main() -> None:
    """Console entry point: one clear line and an exit code for user errors, never a traceback.

    The process ends with ``os._exit`` once its output is flushed: tearing torch down at interpreter exit
    costs about half a second and does nothing a finished command needs (no lorun code runs at exit).
    ``LORUN_NO_FAST_EXIT=1`` (the in-process tests) raises ``SystemExit`` as usual instead.
    """
    try:
        _main()
    except SystemExit as e:
        if not os.environ.get("LORUN_NO_FAST_EXIT"):
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        raise


def _main() -> None:
    """The command with its errors turned into one line and an exit code (always raises SystemExit)."""
    from ..runtime import interrupts_raise, tune_process

    tune_process()  # OpenMP wait policy and malloc settings: before torch is imported
    try:
        with interrupts_raise():
            rc = app(standalone_mode=False, prog_name="lorun")  # also under `python -m lorun_cli`
        if rc == 130:  # Typer turns a KeyboardInterrupt it sees into a silent exit code 130
            typer.echo("lorun: interrupted", err=True)
        sys.exit(rc if isinstance(rc, int) else 0)
    except Interrupted as e:
        typer.echo(f"lorun: interrupted{'; ' + e.note if e.note else ''}", err=True)
        sys.exit(e.exit_code)
    except OptionError as e:
        typer.echo(f"lorun: error: {e.text(flag_of(e.option))}", err=True)
        sys.exit(e.exit_code)
    except LorunError as e:
        typer.echo(f"lorun: error: {e.message}", err=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.echo("lorun: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("lorun: interrupted", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        if os.environ.get("LORUN_DEBUG"):
            raise
        typer.echo(f"lorun: error: {_os_error_text(e)}", err=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - a bug or an unexpected environment problem
        if isinstance(e, _click().exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if os.environ.get("LORUN_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        typer.echo(f"lorun: error: {type(e).__name__}: {first} (set LORUN_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)


def flag_of(option: str) -> str:
    """The command-line flag that sets the engine parameter ``option`` (e.g. ``json_out`` → ``--json``)."""
    from typer.main import get_command

    root = get_command(app)
    groups = [root, *getattr(root, "commands", {}).values()]
    for group in list(groups):
        groups += list(getattr(group, "commands", {}).values())
    for cmd in groups:
        for param in getattr(cmd, "params", []):
            if param.name == option and getattr(param, "opts", None):
                return max(param.opts, key=len)
    return "--" + option.replace("_", "-")


def _os_error_text(e: OSError) -> str:
    """One line for a file-system error: what, where, and the usual fix."""
    import errno

    where = f" ({e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return f"no space left on the device{where}; free some space or write to another disk"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}; choose another path or fix its permissions"
    return f"{e.strerror or e}{where}; check the path and the disk"
