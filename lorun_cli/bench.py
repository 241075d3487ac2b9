"""`lorun bench`: score the model under test and the compared ones on one test set, same measurements.

Every number carries its protocol: CS gray 8-bit whole image; SR Y (BT.601, 8-bit) with ``scale`` border
pixels cropped; CASSI float per-band PSNR/SSIM averaged over the bands.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics, models
from .errors import LorunError, OptionError, UsageError
from .facts import BASELINES, CASSI_STEP, HEADLINE_TESTSET, LEARNED, TASKS
from .io.datasets import DATASET_DIRS
from .physics.cassi import CASSI, load_mask
from .physics.sr import SRBlur, bicubic_on_grid, exposure_apply, exposure_map, exposure_unmap, load_kernels
from .restore import PROTOCOL, default_model_name, load_task_model
from .runtime import peak_rss_mb
from .unfold import param_report


@dataclass
class BenchOptions:
    """What `lorun bench` was asked to do."""

    task: str = "cs"
    model: str | None = None
    compare: list[str] = field(default_factory=lambda: ["block9"])
    dataset: str | None = None
    data: Path | None = None
    ratio: float | None = None
    scale: int = 4
    kernels: str = "K1"
    limit: int | None = None
    repeats: int = 10
    baseline_repeats: int | None = None  # cap on the latency runs of classical baselines (slow, not compared)
    memory: bool = True
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    stages: bool = False  # also score x⁰ and every stage's output of the learned models
    precisions: list[str] = field(default_factory=lambda: ["fp32"])  # the model under test runs in each
    warm_start: str | None = None  # CASSI: the learned models' stages run from this x⁰ (restore --warm-start)


@dataclass
class BenchResult:
    """One result structure: the Rich table, --json, --csv and the results page are views of it."""

    task: str
    dataset: str
    protocol: str
    device: str
    threads: int
    rows: list[dict[str, Any]]
    setting: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)




def default_dataset(task: str, data: str | os.PathLike | None) -> str | None:
    """The task's headline test set when the data root (``--data`` / ``$LORUN_DATA``) holds it; else None."""
    from .io.datasets import data_root

    try:
        root = data_root(data)
    except LorunError:
        return None
    name = HEADLINE_TESTSET.get(task)
    return name if name and (root / DATASET_DIRS[(task, name)]).is_dir() else None


def _testset(opts: BenchOptions) -> tuple[str, list[tuple[str, Tensor]]]:
    from .io import datasets as data

    if opts.dataset is None:
        items = data.load_sample(opts.task)
        name = "bundled samples"
    else:
        items = data.load_testset(opts.task, opts.dataset, data.data_root(str(opts.data) if opts.data else None))
        name = opts.dataset
    if opts.limit:
        items = items[: opts.limit]
    if not items:
        raise UsageError(f"test set {name} is empty")
    return name, items


def _kernel_names(spec: str) -> list[str]:
    bank = load_kernels()
    names = list(bank) if spec.strip().lower() == "all" else [k.strip().upper() for k in spec.split(",") if k.strip()]
    bad = [k for k in names if k not in bank]
    if bad:
        raise OptionError("kernels", spec, f"unknown {bad}; use K1…K12, a comma list, or all")
    return names


def _is_manifest_name(spec: str) -> bool:
    from .io.weights import load_manifest, model_names

    return spec in model_names(load_manifest())


def _precisions(opts: BenchOptions) -> list[str]:
    """fp32, then the other ``--precision`` values, each one this device runs as asked (bench measures what runs)."""
    from .restore import resolve_precision

    precisions = list(dict.fromkeys(["fp32", *opts.precisions]))
    for p in precisions:
        ran, why = resolve_precision(p, opts.device)
        if ran != p:
            raise OptionError("precisions", p, f"{why}; drop it")
    return precisions


class Method:
    """A learned network or a classical baseline behind one call: restore(x_clean) -> (estimate, reference)."""

    def __init__(self, spec: str, opts: BenchOptions, is_model: bool = False, cs_op: Any = None,
                 precision: str = "fp32") -> None:
        self.spec, self.opts, self.precision = spec, opts, precision
        self.classical = spec in BASELINES.get(opts.task, ())
        self.net = None
        self.cs_op = cs_op  # CS: the sampling operator this method measures with
        if not self.classical:
            if spec in sum(BASELINES.values(), ()):
                raise OptionError("compare", spec, f"not a {opts.task} baseline; {opts.task} has "
                                  f"{', '.join(BASELINES[opts.task])}")
            named = not is_model and spec not in LEARNED and _is_manifest_name(spec)
            is_file = named or Path(spec).exists()
            if not is_model and not is_file and spec not in LEARNED:
                raise OptionError("compare", spec, f"use {', '.join(LEARNED + BASELINES[opts.task])}, a model "
                                  f"name from `lorun weights list` or a file")
            model = spec if is_file else (opts.model if is_model else None)
            strategy = "lorun9" if is_model else spec
            self.net, self.name = load_task_model(opts.task, model, strategy, opts.ratio, None, opts.device,
                                                  precision, warm_start=opts.warm_start)
            if opts.warm_start is not None:
                self.name += f" (x⁰ {opts.warm_start})"
            if precision != "fp32":
                self.name += f" ({precision})"
            self.cs_op = self.net.op  # learned CS models sample with their own learned Φ
        else:
            self.name = spec

    def params(self) -> dict[str, int]:
        if self.net is None:
            return {k: 0 for k in ("total", "trainable", "stored", "network", "setting", "stored_bytes")}
        rep = param_report(self.net)
        if self.net.strategy.kind == "lorun":  # inference: adapters+backbone; training trained only adapters
            rep["trainable"] = rep["setting"]
        return rep

    def stage_outputs(self, y: Tensor, op: Any) -> list[Tensor]:
        """x⁰ and the output of every stage (learned models only)."""
        op = op if op is not None else self.net.op
        mcg = self._exposure(y)
        y = exposure_apply(y, mcg)
        with torch.no_grad():
            return [exposure_unmap(op.crop(x), mcg)
                    for x in [self.net.initial_estimate(op, y), *self.net(y, op, return_stages=True)]]

    def _exposure(self, y: Tensor) -> tuple[float, float, float]:
        """SR networks restore a dim image at the reference contrast, as restore runs them (identity otherwise)."""
        return exposure_map(y) if self.opts.task == "sr" else (0.0, 0.0, 1.0)

    def __call__(self, y: Tensor, op: Any) -> Tensor:
        with torch.no_grad():
            if self.net is not None:
                mcg = self._exposure(y)
                y = exposure_apply(y, mcg)
                return exposure_unmap(self.net(y, op) if op is not None else self.net(y), mcg)
            from . import classical

            return classical.run_baseline(self.spec, op if op is not None else self.cs_op, y, scale=self.opts.scale)


def _cases(opts: BenchOptions, items: list[tuple[str, Tensor]]):
    """(case name, clean x, operator factory) for every image (× kernel for SR)."""
    dev = opts.device
    if opts.task == "sr":
        bank = load_kernels()
        for kname in _kernel_names(opts.kernels):
            for name, x in items:
                s = opts.scale
                x = x[..., : x.shape[-2] // s * s, : x.shape[-1] // s * s].unsqueeze(0).to(dev)
                yield f"{name}/{kname}", x, SRBlur(bank[kname].to(dev), s)
    elif opts.task == "cassi":
        mask = load_mask().to(dev)
        for name, x in items:
            yield name, x.unsqueeze(0).to(dev), CASSI(mask, bands=x.shape[0], step=CASSI_STEP)
    else:
        for name, x in items:
            yield name, x.unsqueeze(0).to(dev), None


def _score_method(m: Method, opts: BenchOptions, items) -> tuple[dict[str, float], list[float], Tensor, Any]:
    proto = PROTOCOL[opts.task]
    border = opts.scale if opts.task == "sr" else 0
    ps, ss, first = [], [], None
    per_stage: list[list[float]] = []
    for _case, x, op in _cases(opts, items):
        if opts.task == "cs":
            cs_op = m.cs_op
            cs_op.set_image_size(*x.shape[-2:])
            with torch.no_grad():
                y = cs_op.measure(x)
            out = cs_op.crop(m(y, None))
        else:
            with torch.no_grad():
                y = op.A(x)
            out = m(y, op)
        sc = metrics.score(out.clamp(0, 1), x, proto, border=border)
        if opts.stages and m.net is not None:
            per_stage.append([metrics.score(s.clamp(0, 1), x, proto, border=border)["psnr"]
                              for s in m.stage_outputs(y, op)])
        ps.append(sc["psnr"])
        ss.append(sc["ssim"])
        if first is None:
            first = (y, op)
    scores = {"psnr": statistics.fmean(ps), "ssim": statistics.fmean(ss)}
    if per_stage:  # mean over the cases of x⁰, stage 1, …, stage K
        scores["stage_psnr"] = [statistics.fmean(col) for col in zip(*per_stage)]
    return scores, ps, first[0], first[1]


def _timed(call: Callable[[], Any], cuda: bool) -> Callable[[], float]:
    """A timer of ``call()`` in ms (CUDA synchronised before and after)."""
    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1000

    return once


def _timer(m: Method, y: Tensor, op: Any) -> Callable[[], float]:
    """One timed inference of ``m`` on (y, op), in ms."""
    return _timed(lambda: m(y, op), y.is_cuda)


def _start_timer(m: Method, y: Tensor, op: Any) -> Callable[[], float]:
    """One timed x⁰ (the model's start, e.g. CASSI's GAP-TV iterations) of model ``m`` on (y, op), in ms."""
    net = m.net
    op = op if op is not None else net.op

    def start() -> None:
        with torch.no_grad():
            net.initial_estimate(op, y)

    return _timed(start, y.is_cuda)


def _latencies(jobs: list[tuple[Callable[[], float], int]]) -> list[dict[str, float]]:
    """Median/min/max latency of each (timer, runs) job, one warm-up each.

    The runs are interleaved round-robin (A B C A B C …), so a slow drift of the machine (clock, cache,
    other load) falls on every method alike instead of on whichever happened to run last.
    """
    for once, _ in jobs:
        once()  # warm-up
    times: list[list[float]] = [[] for _ in jobs]
    for i in range(max((n for _, n in jobs), default=0)):
        for (once, n), ts in zip(jobs, times):
            if i < n:
                ts.append(once())
    return [{"latency_ms": statistics.median(ts), "latency_min_ms": min(ts), "latency_max_ms": max(ts)}
            for ts in times]


def _peak_memory(spec: str, opts: BenchOptions, is_model: bool, precision: str = "fp32",
                 items: list[tuple[str, Tensor]] | None = None) -> float | None:
    """Peak memory of one inference in MB: CUDA max allocated; on CPU the peak RSS of a real ``lorun restore``
    of the first case (learned models; ``items`` given), or of a fresh probe process (classical baselines)."""
    if not opts.memory:
        return None
    args = {**asdict(opts), "data": str(opts.data) if opts.data else None, "spec": spec, "is_model": is_model,
            "precision": precision}
    if opts.device.startswith("cuda"):
        return _measure_once(args)
    if items is not None and spec not in BASELINES[opts.task]:
        return restore_peak_mb(spec, opts, is_model, precision, items[0][1])
    env = dict(os.environ)
    if opts.threads:
        env["OMP_NUM_THREADS"] = str(opts.threads)
    r = subprocess.run([sys.executable, "-m", "lorun_cli.bench", json.dumps(args)], capture_output=True, text=True,
                       env=env, timeout=3600)
    if r.returncode != 0:
        return None
    return float(r.stdout.strip().splitlines()[-1])


def restore_peak_mb(spec: str, opts: BenchOptions, is_model: bool, precision: str, x: Tensor) -> float | None:
    """The peak RSS (MB) a ``lorun restore`` of the clean image/cube ``x`` reports, run as its own process
    with the bench's threads: what a user's restore of that input costs (start-up, model, scoring included)."""
    import tempfile

    from .io import images

    with tempfile.TemporaryDirectory(prefix="lorun-bench-") as tmp:
        d = Path(tmp)
        args = ["--threads", str(opts.threads or torch.get_num_threads()), "-q", "restore", "--task", opts.task,
                "--json", "--precision", precision, "--force"]
        if is_model:
            args += ["--model", opts.model] if opts.model else []
        elif Path(spec).exists() or _is_manifest_name(spec):
            args += ["--model", spec]
        else:
            args += ["--strategy", spec]
        if opts.task == "cs":
            inp = d / "in.png"
            images.write_image(inp, x)
            args += ["--ratio", f"{opts.ratio:g}"] if opts.ratio is not None else []
        elif opts.task == "sr":
            s = opts.scale
            inp = d / "in.png"
            images.write_image(inp, x[..., : x.shape[-2] // s * s, : x.shape[-1] // s * s])
            kernel = _kernel_names(opts.kernels)[0] if not opts.kernels.lower().startswith("auto") else "K1"
            args += ["--simulate", "--scale", str(s), "--kernel", kernel]
        else:
            import numpy as np

            inp = d / "in.npy"
            np.save(inp, x.numpy().astype(np.float32))
            args += ["--simulate"]
        env = {k: v for k, v in os.environ.items() if k != "LORUN_DEVICE"}
        r = subprocess.run([sys.executable, "-m", "lorun_cli", "--device", "cpu", *args, "-o",
                            str(d / ("out.tif" if opts.task == "cassi" else "out.png")), str(inp)],
                           capture_output=True, text=True, env=env, timeout=3600)
        if r.returncode != 0:
            return None
        try:
            return float(json.loads(r.stdout)[-1]["peak_rss_mb"])
        except (ValueError, KeyError, IndexError):
            return None


def _measure_once(args: dict[str, Any]) -> float:
    """Load the method and run one inference on the first case; returns peak MB."""
    spec, is_model, precision = args.pop("spec"), args.pop("is_model"), args.pop("precision", "fp32")
    opts = BenchOptions(**{**args, "data": Path(args["data"]) if args["data"] else None})
    if opts.threads:
        torch.set_num_threads(opts.threads)
    _, items = _testset(opts)
    cuda = opts.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ref_op = Method("lorun9", opts, is_model=True).net.op if opts.task == "cs" and spec in BASELINES["cs"] else None
    m = Method(spec, opts, is_model, cs_op=ref_op, precision=precision)
    _case, x, op = next(iter(_cases(opts, items[:1])))
    if opts.task == "cs":
        m.cs_op.set_image_size(*x.shape[-2:])
        m(m.cs_op.measure(x), None)
    else:
        m(op.A(x), op)
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def run_bench(opts: BenchOptions, quiet: bool = False) -> BenchResult:
    """Score the model under test and every ``--compare`` entry on the same cases."""
    if opts.task not in BASELINES:
        raise OptionError("task", repr(opts.task), f"use one of {', '.join(TASKS)}")
    if not opts.compare:
        raise OptionError("compare", None, "needs at least one entry, e.g. block9")
    if opts.task == "sr" and opts.kernels.strip().lower().startswith("auto"):
        return run_sr_auto_bench(opts, quiet)
    dataset, items = _testset(opts)
    precisions = _precisions(opts)
    methods = [(Method("lorun9", opts, is_model=True), True)]
    ref_op = methods[0][0].cs_op  # classical CS baselines measure with the model under test's Φ
    methods += [(Method("lorun9", opts, is_model=True, precision=p), False) for p in precisions[1:]]
    methods += [(Method(c.strip(), opts, cs_op=ref_op), False) for c in opts.compare]
    rows, jobs = [], []
    for m, is_model in methods:
        if not quiet:
            print(f"bench: {m.name} …", file=sys.stderr)
        scores, per_image, y, op = _score_method(m, opts, items)
        row: dict[str, Any] = {"method": m.name, "role": "model" if is_model else "compared",
                               "strategy": models.strategy_label(m.net) if m.net is not None else m.spec,
                               **{k: round(v, 4) for k, v in scores.items() if k != "stage_psnr"},
                               "per_image_psnr": [round(p, 3) for p in per_image]}
        if "stage_psnr" in scores:
            row["stage_psnr"] = [round(p, 3) for p in scores["stage_psnr"]]
        row.update(m.params())
        row["stored_mb"] = round(row.get("stored_bytes", 0) / 2**20, 3)
        runs = min(opts.repeats, opts.baseline_repeats or opts.repeats) if m.classical else opts.repeats
        row["latency_runs"] = runs
        if m.precision != "fp32":  # what the lower precision costs the model under test
            row["precision"] = m.precision
            row["psnr_cost"] = round(row["psnr"] - rows[0]["psnr"], 4)
        row["peak_mem_mb"] = _peak_memory(m.spec if m.precision == "fp32" and not is_model else "lorun9", opts,
                                          is_model or m.precision != "fp32", m.precision, items)
        rows.append(row)
        jobs.append((_timer(m, y, op), runs))
    # learned models are timed together, interleaved; the (slow, never compared) classical ones on their own
    learned = [i for i, (m, _) in enumerate(methods) if not m.classical]
    for group in (learned, [i for i in range(len(methods)) if i not in learned]):
        if not quiet and group:
            print(f"bench: timing {', '.join(methods[i][0].name for i in group)} …", file=sys.stderr)
        for i, lat in zip(group, _latencies([jobs[i] for i in group])):
            rows[i].update({k: round(v, 3) for k, v in lat.items()})
    ref = rows[0]
    for r in rows:
        r["ratio_to_model"] = {k: (round(r[k] / ref[k], 3) if ref.get(k) else None)
                               for k in ("stored", "latency_ms", "peak_mem_mb") if r.get(k) is not None}
    setting = {"scale": opts.scale, "kernels": opts.kernels} if opts.task == "sr" else {}
    if opts.task == "cs":
        setting = {"ratio": ref_op.ratio, "block": ref_op.block}
    if opts.task == "cassi":
        setting = {"mask": "bundled 256x256 TSA-Net mask", "step": 2}
    proto = metrics.PROTOCOL_TEXT[PROTOCOL[opts.task]] + (f", border {opts.scale}" if opts.task == "sr" else "")
    return BenchResult(opts.task, dataset, proto, opts.device, torch.get_num_threads(), rows, setting)


# ---- SR: oracle vs estimated kernel vs bicubic -------------------------------------------------------------
#: Degradation families of ``--kernels auto`` (each image gets one draw of each).
AUTO_FAMILIES = ("bundled", "delta", "pil-bicubic", "gauss", "motion", "noise5")
AUTO_NOISE = 5.0 / 255  # the noise of the noise5 family (on a bundled kernel)


def auto_families(spec: str) -> list[str]:
    """Families (or bundled kernel names) of ``--kernels auto`` / ``auto:a,b,…``."""
    _, _, rest = spec.strip().partition(":")
    names = [t.strip() for t in rest.split(",") if t.strip()] or list(AUTO_FAMILIES)
    bank = load_kernels()
    out = [n.upper() if n.upper() in bank else n.lower() for n in names]
    bad = [n for n in out if n not in AUTO_FAMILIES and n not in bank]
    if bad:
        raise OptionError("kernels", spec, f"unknown {bad}; use auto or auto:FAMILY,… with families "
                          f"{', '.join(AUTO_FAMILIES)} or K1…K12")
    return out


def draw_degradation(family: str, scale: int, index: int, seed: int) -> tuple[str, Tensor, float]:
    """(label, true kernel, noise σ) for test image ``index``: a fixed function of (seed, scale, index, family)."""
    from .physics import sr_estimate as E

    bank = load_kernels()
    if family in bank:
        return family, bank[family], 0.0
    code = AUTO_FAMILIES.index(family)
    gen = torch.Generator().manual_seed(1_000_003 * seed + 10_007 * scale + 101 * index + code)
    names = list(bank)
    if family in ("bundled", "noise5"):
        name = names[int(torch.randperm(len(names), generator=gen)[index % len(names)])]
        return name, bank[name], AUTO_NOISE if family == "noise5" else 0.0
    if family == "gauss":
        u = torch.rand(3, generator=gen, dtype=torch.float64)
        s1, s2 = 0.4 + 2.6 * float(u[0]), 0.4 + 2.6 * float(u[1])
        return f"gauss {s1:.2f}×{s2:.2f}", E.gaussian_kernel(s1, s2, math.pi * float(u[2]))[0], 0.0
    return family, E.sample_kernel(family, scale, gen), 0.0


def run_sr_auto_bench(opts: BenchOptions, quiet: bool = False) -> BenchResult:
    """``--kernels auto``: lorun9 with the true (oracle) kernel, lorun9 with the estimated kernel, and bicubic.
    Each restores as ``restore`` would (data-step weight from the estimated noise: ``--kernel K`` for the oracle,
    ``--kernel auto`` for the estimate).

    Every image gets one degradation per family, drawn from ``--seed``. Bicubic interpolates on the grid the
    true kernel puts the LR pixels on (:func:`bicubic_on_grid` at ``grid_shift(k)``: the top-left grid for a
    centred kernel, the centred grid for PIL's downscaling, off-centre for a motion kernel whose mass is not
    centred). "auto, registered" restores with the estimate moved to the true kernel's centre of mass: the
    estimate's shape, scored apart from the registration that no LR-only estimate can know (a kernel's centre
    moves the whole reconstruction with it). Also reports, per family, the relative L2 kernel error ‖k̂ − k‖/‖k‖,
    the error of the estimated width and noise, and the estimator's time as a share of the SR network's.
    """
    from .physics import sr_estimate as E
    from .restore import sr_estimator

    families = auto_families(opts.kernels)
    dataset, items = _testset(opts)
    model = Method("lorun9", opts, is_model=True)
    blind = None if opts.model else default_model_name("sr", "lorun9", kernel="auto")
    auto_model = Method(blind, opts) if blind and blind != model.name else model  # as `restore --kernel auto`
    policy = auto_model.net.auto_policy
    est_net = sr_estimator(required=True)
    s, proto = opts.scale, PROTOCOL["sr"]
    per: dict[str, dict[str, list[float]]] = {}
    t_net = t_est = 0.0
    for fam in families:
        if not quiet:
            print(f"bench: {fam} …", file=sys.stderr)
        acc = per.setdefault(fam, {k: [] for k in ("oracle", "auto", "auto_registered", "bicubic", "kernel_err",
                                                    "width_err", "noise_err", "auto_minus_bicubic",
                                                    "auto_registered_minus_bicubic")})
        for i, (_name, x) in enumerate(items):
            x = x[..., : x.shape[-2] // s * s, : x.shape[-1] // s * s].unsqueeze(0).to(opts.device)
            label, k_true, sigma = draw_degradation(fam, s, i, opts.seed)
            gen = torch.Generator().manual_seed(opts.seed * 7919 + i)
            with torch.no_grad():
                y = SRBlur(k_true.to(opts.device), s).A(x)
                if sigma:
                    y = y + sigma * torch.randn(y.shape, generator=gen).to(y.device)
                t0 = time.perf_counter()
                gain = exposure_map(y)  # the estimate of the image the network sees (Method maps it too)
                est = E.estimate(est_net, exposure_apply(y, gain), s)  # its noise (data weights) at that gain
                t1 = time.perf_counter()
                k_auto, _ = E.kernel_policy(None, est["kernel"], est["snapped"], policy=policy, spread=est["spread"])
                weight = E.data_weight_policy(est["noise"], explicit=False)
                out_auto = auto_model(y, SRBlur(k_auto.to(opts.device), s, data_weight=weight))
                t2 = time.perf_counter()
                w_given = E.data_weight_policy(est["noise"], explicit=True)  # as `restore --kernel K` runs
                out_oracle = model(y, SRBlur(k_true.to(opts.device), s, data_weight=w_given))
                k_reg, _ = E.kernel_policy(None, E.recentred(est["kernel"], E.centroid(k_true)), est["snapped"],
                                           centre_gain=1.0, policy=policy, spread=est["spread"])
                out_reg = auto_model(y, SRBlur(k_reg.to(opts.device), s, data_weight=weight))
                bic = bicubic_on_grid(y, s, E.grid_shift(k_true))
            t_est += t1 - t0
            t_net += t2 - t1
            sc = {m: metrics.score(o.clamp(0, 1), x, proto, border=s)["psnr"] for m, o in
                  (("oracle", out_oracle), ("auto", out_auto), ("auto_registered", out_reg), ("bicubic", bic))}
            for m, v in sc.items():
                acc[m].append(v)
            acc["auto_minus_bicubic"].append(sc["auto"] - sc["bicubic"])
            acc["auto_registered_minus_bicubic"].append(sc["auto_registered"] - sc["bicubic"])
            acc["kernel_err"].append(E.kernel_error(est["kernel"], k_true))
            acc["width_err"].append(est["width"] - E.kernel_width(k_true))
            acc["noise_err"].append(255 * (est["noise"] / gain[2] - sigma))
    fam_rows = {}
    for fam, acc in per.items():
        fam_rows[fam] = {m: round(statistics.fmean(v), 3) for m, v in acc.items()}
        fam_rows[fam]["worst_auto_minus_bicubic"] = round(min(acc["auto_minus_bicubic"]), 3)
        fam_rows[fam]["worst_auto_registered_minus_bicubic"] = round(min(acc["auto_registered_minus_bicubic"]), 3)
        fam_rows[fam]["cases"] = len(acc["auto"])
    base, base_auto = model.params(), auto_model.params()
    est_params = sum(p.numel() for p in est_net.parameters())
    allv = {m: [v for acc in per.values() for v in acc[m]] for m in ("oracle", "auto", "auto_registered", "bicubic")}
    rows = []
    for m, label in (("oracle", f"{model.name} (oracle kernel)"), ("auto", f"{auto_model.name} (auto kernel)"),
                     ("auto_registered", f"{auto_model.name} (auto kernel, registered)"), ("bicubic", "bicubic")):
        learned = m != "bicubic"
        extra = est_params if m.startswith("auto") else 0
        rep = base_auto if m.startswith("auto") else base
        row = {"method": label, "role": "model" if m == "auto" else "compared", "strategy": m,
               "psnr": round(statistics.fmean(allv[m]), 4), "ssim": None,
               "per_image_psnr": [round(v, 3) for v in allv[m]],
               **{k: (v + extra if k in ("total", "stored") else v) if learned else 0 for k, v in rep.items()},
               "latency_runs": 0, "peak_mem_mb": None, "latency_ms": None, "latency_min_ms": None,
               "latency_max_ms": None, "ratio_to_model": {}}
        row["stored_mb"] = round(row.get("stored_bytes", 0) / 2**20, 3)
        rows.append(row)
    setting = {"scale": s, "kernels": opts.kernels, "seed": opts.seed, "families": fam_rows,
               "auto_model": auto_model.name, "auto_policy": policy or "blend", "estimator_params": est_params,
               "estimator_time_share": round(t_est / max(t_net, 1e-9), 4),
               "bicubic": "Keys bicubic (a = −0.75, edges replicated) on the grid the true kernel puts the LR "
               "pixels on (minus its centre of mass: top-left for centred kernels, centred for PIL's downscaling)",
               "registered": "auto, reg.: the estimate moved to the true kernel's centre of mass (its shape, apart "
               "from the registration that an LR image cannot tell)",
               "kernel_error": "relative L2 ‖k̂ − k‖/‖k‖ on a 25×25 grid"}
    text = metrics.PROTOCOL_TEXT[proto] + f", border {s}"
    return BenchResult("sr", dataset, text, opts.device, torch.get_num_threads(), rows, setting)




# ---- bench --speed: this machine's peaks and the forward pass against them --------------------------------
#: The fixed case `bench --speed` times (output size; random content: timing does not depend on it).
SPEED_SIZE = {"cs": 512, "sr": 512, "cassi": 256}
SPEED_BASELINE = {"cs": "linear", "sr": "bicubic", "cassi": "gap-tv"}


def _best_seconds(fn: Callable[[], Any], runs: int) -> float:
    """Fastest of ``runs`` timed calls after one warm-up (a peak: the least disturbed run)."""
    fn()
    best = math.inf
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def conv_shapes(widths: list[int], size: int = 512) -> list[tuple[int, int]]:
    """The denoiser-shaped convs the conv peak is measured on: 3×3, (channels, side) of each U-Net level
    (width w at ``size``², 2w at (size/2)², …)."""
    return [(w, max(32, size >> i)) for i, w in enumerate(widths)]


def machine_peaks(device: str, widths: list[int], dtype: torch.dtype = torch.float32,
                  runs: int = 5) -> dict[str, float]:
    """GFLOP/s of a 2048² matmul and the best of the denoiser-shaped 3×3 convs (:func:`conv_shapes`,
    channels_last) on this machine, in ``dtype`` (fastest of ``runs`` each)."""
    n = 2048
    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        t_mm = _best_seconds(lambda: (a @ b, sync()), runs)
        conv = 0.0
        for c, side in conv_shapes(widths):
            x = torch.rand(1, c, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            w = (0.05 * torch.randn(c, c, 3, 3, device=device, dtype=dtype)).contiguous(
                memory_format=torch.channels_last)
            t = _best_seconds(lambda x=x, w=w: (torch.nn.functional.conv2d(x, w, padding=1), sync()), runs)
            conv = max(conv, 2 * c * c * 9 * side * side / t / 1e9)
    return {"matmul_gflops": 2 * n**3 / t_mm / 1e9, "conv_gflops": conv}


def run_speed(opts: BenchOptions, quiet: bool = False) -> dict[str, Any]:
    """``bench --speed``: this machine's matmul and conv peaks, and the latency and forward GFLOP/s of the
    task's lorun9 (merged, channels-last; once per precision), block9 and a classical baseline on one
    fixed case, timed interleaved. GFLOP counts the denoisers' convolutions (FlopCounterMode); the time is
    the whole forward pass (data steps and FFTs included). The start x⁰ is also timed alone (interleaved
    with the rest): "stages" GFLOP/s divide by the forward time without it."""
    from torch.utils.flop_counter import FlopCounterMode

    precisions = _precisions(opts)
    gen = torch.Generator().manual_seed(opts.seed)
    size = SPEED_SIZE[opts.task]
    methods = [Method("lorun9", opts, is_model=True, precision=p) for p in precisions]
    ref_op = methods[0].cs_op
    methods += [Method("block9", opts, cs_op=ref_op), Method(SPEED_BASELINE[opts.task], opts, cs_op=ref_op)]
    if opts.task == "cs":
        x = torch.rand(1, 1, size, size, generator=gen).to(opts.device)
        ref_op.set_image_size(size, size)
        with torch.no_grad():
            y, op = ref_op.measure(x), None
    elif opts.task == "sr":
        s = opts.scale
        x = torch.rand(1, 3, size // s * s, size // s * s, generator=gen).to(opts.device)
        op = SRBlur(load_kernels()["K1"].to(opts.device), s)
        with torch.no_grad():
            y = op.A(x)
    else:
        mask = load_mask().to(opts.device)
        x = torch.rand(1, methods[0].net.channels, *mask.shape, generator=gen).to(opts.device)
        op = CASSI(mask, bands=x.shape[1], step=CASSI_STEP)
        with torch.no_grad():
            y = op.A(x)
    if not quiet:
        print("bench --speed: machine peaks …", file=sys.stderr)
    widths = methods[0].net.denoiser_widths()
    peaks = {p: machine_peaks(opts.device, widths, torch.float32 if p == "fp32" else
                              (torch.bfloat16 if p == "bf16" else torch.float16)) for p in precisions}
    rows = []
    for m in methods:
        flops = 0
        if m.net is not None:
            with FlopCounterMode(display=False) as fc:
                m(y, op)
            flops = fc.get_total_flops()
        rows.append({"method": m.name, "precision": m.precision if m.net is not None else "fp32",
                     "gflop": round(flops / 1e9, 3)})
    if not quiet:
        print(f"bench --speed: timing {', '.join(m.name for m in methods)} …", file=sys.stderr)
    runs = max(1, opts.repeats)
    base_runs = min(runs, opts.baseline_repeats or runs)
    jobs = [(_timer(m, y, op), runs if m.net is not None else base_runs) for m in methods]
    lats = _latencies([*jobs, (_start_timer(methods[0], y, op), runs)])
    start_ms = lats.pop()["latency_ms"]  # x⁰ alone (every model here shares the task's start)
    for row, lat in zip(rows, lats, strict=True):
        row.update({k: round(v, 3) for k, v in lat.items()})
        secs = row["latency_ms"] / 1000
        pk = peaks[row["precision"]]
        if row["gflop"]:
            stage_secs = max(row["latency_ms"] - start_ms, 1e-3) / 1000
            row.update(start_ms=round(start_ms, 3), gflops=round(row["gflop"] / secs, 2),
                       stages_gflops=round(row["gflop"] / stage_secs, 2))
            row["of_conv_peak"] = round(row["gflops"] / pk["conv_gflops"], 3)
            row["of_matmul_peak"] = round(row["gflops"] / pk["matmul_gflops"], 3)
            row["stages_of_conv_peak"] = round(row["stages_gflops"] / pk["conv_gflops"], 3)
    lead = rows[0]["latency_ms"]
    for row in rows:
        row["ratio_to_model"] = round(row["latency_ms"] / lead, 3)
    case = {"cs": f"CS {size}×{size} gray at ratio {ref_op.ratio:g}" if opts.task == "cs" else "",
            "sr": f"SR ×{opts.scale} to {x.shape[-2]}×{x.shape[-1]} RGB, kernel K1",
            "cassi": f"CASSI {x.shape[1]} bands {x.shape[-2]}×{x.shape[-1]}, bundled mask"}[opts.task]
    return {"task": opts.task, "case": case, "device": opts.device, "threads": torch.get_num_threads(),
            "peaks": {p: {k: round(v, 2) for k, v in pk.items()} for p, pk in peaks.items()},
            "conv_peak_shape": "best 3×3 conv of " + ", ".join(f"{c}→{c} ch at {s}²" for c, s in conv_shapes(widths))
            + " (channels_last)", "rows": rows}


if __name__ == "__main__":  # peak-memory probe: `python -m lorun_cli.bench '<json>'`
    from .runtime import tune_process

    tune_process()  # the settings a `lorun restore` runs with
    print(_measure_once(json.loads(sys.argv[1])))
