"""The K-stage deep unfolding network (paper Fig. 4, Algorithm 1): x⁰ → K × (data step → denoiser).

Strategies, spelled as the CLI spells them:
- ``block1``: a single stage; ``blockK``: K stages with K independent denoisers;
- ``shareK``: one denoiser reused by all K stages (LoRun phase 1, "pretrain");
- ``lorunK``: the frozen shared denoiser + K stage-wise LoRA adapters (LoRun phase 2, "adapt").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import denoisers, lora
from ..classical import GAP_TV_INNER, gap_tv
from ..physics.base import Operator
from ..validate import parse_warm_start

ALGOS = ("pgd", "hqs")
#: Inference precisions of the denoisers (:meth:`DUN.prepare_inference`); the data steps stay float32.
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Initial (ρ or μ, λ) per algorithm. PGD: ρ = λ = 0.5 as in Algorithm 1 (ρ is a step size for a Φ with
# orthonormal rows). HQS: μ is a penalty on the scale of ΦᵀΦ's spectrum (≈ 1/s² for SR, up to ~10 for
# CASSI); starting it at 0.5 makes every data step nearly ignore y and costs thousands of steps to unlearn,
# so μ starts at 0.01 and λ at μ·0.1², i.e. a stage noise level σ = sqrt(λ/μ) = 0.1.
INIT = {"pgd": (0.5, 0.5), "hqs": (0.01, 1e-4)}


def sigma_pgd(rho: Tensor, lam: Tensor) -> Tensor:
    """Noise level of the PGD proximal step, sqrt(ρλ)."""
    # Eq. 6-7
    return torch.sqrt(rho * lam)


def sigma_hqs(mu: Tensor, lam: Tensor) -> Tensor:
    """Noise level of the HQS proximal step, sqrt(λ/μ)."""
    # Eq. 10-11
    return torch.sqrt(lam / mu)


@dataclass(frozen=True)
class WarmStart:
    """How x⁽⁰⁾ is made: the operator's own ``init`` (``method="op"``) or ``iters`` GAP-TV iterations of TV
    weight ``lam``, ``inner`` TV dual steps each, on every band (``rank`` 0) or on the cube's leading
    ``rank`` spectral components (:func:`classical.gap_tv`).

    Stored in the model file as ``{"method": ..., "iters": ..., "lam": ...}`` (plus ``rank`` and ``inner``
    where they differ from 0 and ``GAP_TV_INNER``); :meth:`parse` also reads the strings of earlier files (``"op"``,
    ``"gap-tv:30"``, trained with λ 0.04) and the CLI's ``gap-tv:N[:LAMBDA[:RANK[:INNER]]]``.
    """

    method: str = "op"
    iters: int = 0
    lam: float = 0.04  # the TV weight gap-tv starts are trained with, independent of the GAP-TV baseline's
    rank: int = 0
    inner: int = GAP_TV_INNER

    def __post_init__(self) -> None:
        if self.method not in ("op", "gap-tv") or (self.method == "gap-tv" and self.iters < 1):
            raise ValueError(f"unknown initial estimate {self!r}; use WarmStart() or WarmStart('gap-tv', N ≥ 1)")
        if self.rank < 0 or self.inner < 1:
            raise ValueError(f"initial estimate {self!r}: rank must be ≥ 0 and inner ≥ 1")

    @classmethod
    def parse(cls, value: str | dict | WarmStart | None) -> WarmStart:
        """A WarmStart from a model file's value (a dict, or an earlier file's ``"op"`` / ``"gap-tv:N"``)."""
        if isinstance(value, WarmStart):
            return value
        if value is None or value == "op":
            return cls()
        if isinstance(value, dict):
            return cls(str(value.get("method", "op")), int(value.get("iters", 0)), float(value.get("lam", cls.lam)),
                       int(value.get("rank", 0)), int(value.get("inner", cls.inner)))
        return cls(**parse_warm_start(str(value)))

    def override(self, text: str) -> WarmStart:
        """This start with the fields ``text`` spells (``--warm-start``): ``gap-tv:20`` keeps this start's λ,
        rank and TV steps and changes its iterations; ``op`` is the operator's start."""
        fields = parse_warm_start(text)
        if fields["method"] == "op":
            return WarmStart()
        return replace(self, **fields)

    def to_meta(self) -> dict:
        """The JSON form stored in a model file."""
        meta: dict = {"method": self.method, "iters": self.iters, "lam": self.lam}
        if self.rank:
            meta["rank"] = self.rank
        if self.inner != WarmStart.inner:
            meta["inner"] = self.inner
        return meta

    def __call__(self, op: Operator, y: Tensor) -> Tensor:
        """x⁽⁰⁾ for the measurement ``y``."""
        if self.method == "op":
            return op.init(y)
        return gap_tv(op, y, lam=self.lam, iters=self.iters, inner=self.inner, rank=self.rank)


@dataclass(frozen=True)
class Strategy:
    """How stages share denoiser weights."""

    kind: str
    stages: int

    def __str__(self) -> str:
        return f"{self.kind}{self.stages}"


def parse_strategy(text: str) -> Strategy:
    """Parse ``block9`` / ``share9`` / ``lorun9`` / ``block1``."""
    m = re.fullmatch(r"(block|share|lorun)(\d+)", text.strip().lower())
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"unknown strategy {text!r}; use blockK, shareK or lorunK with K ≥ 1 (e.g. lorun9)")
    return Strategy(m.group(1), int(m.group(2)))


def _inv_softplus(v: float) -> float:
    v = max(v, 1e-8)  # a value at (or under) the floor starts at the floor
    return v + math.log(-math.expm1(-v))


class DUN(nn.Module):
    """K stages of (GDM → PMM) over a degradation operator.

    ``op`` is held as a submodule when it carries learned parameters (CS sampling matrix); operators that
    depend on the input (SR kernel, CASSI mask) are passed to :meth:`forward` instead.
    """

    def __init__(
        self,
        channels: int,
        strategy: str | Strategy = "lorun9",
        denoiser: str = "unet",
        size: str = "small",
        algo: str = "pgd",
        op: Operator | None = None,
        gamma: float = 10.0,
        ranks: dict[str, int] | None = None,
        denoiser_kwargs: dict | None = None,
        init: tuple[float, float] | None = None,
        floor: float = 1e-5,
        x0: str | dict | WarmStart | None = None,
    ) -> None:
        super().__init__()
        self.strategy = parse_strategy(strategy) if isinstance(strategy, str) else strategy
        if algo not in ALGOS:
            raise ValueError(f"unknown algorithm {algo!r}; use one of {ALGOS}")
        self.channels, self.algo, self.floor = channels, algo, floor
        self.x0 = WarmStart.parse(x0)
        #: SR: how ``--kernel auto`` hands this model the estimated kernel (``sr_estimate.AUTO_POLICIES``); set
        #: on models trained on the estimator's estimates (``--sr-kernel auto*``), None for all others.
        self.auto_policy: str | None = None
        self.denoiser_name, self.size = denoiser, size
        self.denoiser_kwargs = dict(denoiser_kwargs or denoisers.config(denoiser, size))
        self.denoiser_kwargs.pop("channels", None)
        self.gamma: float | None = None
        self.ranks = dict(ranks or {})
        self.op = op
        self._infer = (False, "fp32")  # (channels_last, precision) of inference, see prepare_inference
        k = self.strategy.stages
        n_den = k if self.strategy.kind == "block" else 1
        self.denoisers = nn.ModuleList(self._new_denoiser() for _ in range(n_den))
        # the data-step scalar (step size ρ under PGD, penalty μ under HQS; stored as ``rho_raw`` in every
        # model file) and the regularisation weight λ, one per stage (Alg. 1)
        rho0, lam0 = init or INIT[algo]
        self.rho_raw = nn.Parameter(torch.full((k,), _inv_softplus(rho0 - floor)))
        self.lam_raw = nn.Parameter(torch.full((k,), _inv_softplus(lam0 - floor)))
        if self.strategy.kind == "lorun":
            self.strategy = Strategy("share", k)
            self.to_lorun(gamma, self.ranks)

    def _new_denoiser(self) -> nn.Module:
        return denoisers.build(self.denoiser_name, self.channels, **self.denoiser_kwargs)

    # ---- strategy changes -------------------------------------------------------------------------
    def to_lorun(self, gamma: float = 10.0, ranks: dict[str, int] | None = None) -> DUN:
        """Freeze the shared denoiser and give every stage its own adapters (Alg. 1, phase 2)."""
        if self.strategy.kind != "share":
            raise ValueError(f"LoRA adapters need a shared backbone (shareK), not {self.strategy}")
        lora.inject_lora(self.denoisers[0], self.strategy.stages, gamma, ranks)
        self.strategy, self.gamma, self.ranks = Strategy("lorun", self.strategy.stages), gamma, dict(ranks or {})
        return self

    @property
    def backbone(self) -> nn.Module:
        """The shared denoiser (share/lorun strategies)."""
        if self.strategy.kind == "block":
            raise AttributeError("blockK models have no shared backbone")
        return self.denoisers[0]

    # ---- per-stage scalars --------------------------------------------------------------------------
    def _data_scalar(self) -> Tensor:
        """Per-stage ρ (PGD) or μ (HQS), kept above a floor."""
        return self.floor + F.softplus(self.rho_raw)

    def rho(self) -> Tensor:
        """Per-stage PGD step size ρ (Eq. 5)."""
        if self.algo != "pgd":
            raise ValueError("an HQS network has a penalty μ per stage, not a step size ρ: use mu()")
        return self._data_scalar()

    def mu(self) -> Tensor:
        """Per-stage HQS penalty μ (Eq. 9)."""
        if self.algo != "hqs":
            raise ValueError("a PGD network has a step size ρ per stage, not a penalty μ: use rho()")
        return self._data_scalar()

    def lam(self) -> Tensor:
        """Per-stage λ, kept above a floor."""
        return self.floor + F.softplus(self.lam_raw)

    def set_sigma_schedule(self, first: float, last: float) -> DUN:
        """Start the stage noise levels on a geometric schedule σ_1 = first … σ_K = last (keeps ρ/μ).

        A plug-and-play style start: early stages remove large errors, late stages refine.
        """
        k = self.strategy.stages
        ratio = (last / first) ** (1.0 / max(1, k - 1))
        sig = torch.tensor([first * ratio**i for i in range(k)])
        s = self._data_scalar().detach()
        lam = s * sig**2 if self.algo == "hqs" else sig**2 / s  # σ² = λ/μ (HQS) or ρλ (PGD)
        with torch.no_grad():
            self.lam_raw.copy_(torch.tensor([_inv_softplus(float(v) - self.floor) for v in lam]))
        return self

    def sigmas(self) -> Tensor:
        """Noise level each stage's denoiser receives."""
        fn = sigma_pgd if self.algo == "pgd" else sigma_hqs
        return fn(self._data_scalar(), self.lam())

    # ---- one stage ----------------------------------------------------------------------------------
    def data_step(self, op: Operator, x: Tensor, y: Tensor, s: Tensor) -> Tensor:
        """Gradient-descent module: a PGD step with ρ = s (Eq. 5) or the exact HQS step with μ = s (Eq. 9)."""
        return op.pgd_step(x, y, s) if self.algo == "pgd" else op.hqs_step(x, y, s)

    def pmm(self, k: int, z: Tensor, sigma: Tensor, info: Tensor | None = None) -> Tensor:
        """Proximal mapping of stage k: the stage's denoiser at noise level σ_k.  # Eq. 7 / Eq. 11

        ``info``: the operator's side information for a degradation-aware denoiser (``cond > 0``).
        """
        if self.strategy.kind == "block":
            d = self.denoisers[k]
        else:
            d = self.denoisers[0]
            if self.strategy.kind == "lorun":
                lora.set_stage(d, k)
        return self._denoise(d, z, sigma.expand(z.shape[0]), info)

    def initial_estimate(self, op: Operator, y: Tensor) -> Tensor:
        """x⁽⁰⁾ (see :class:`WarmStart`)."""
        return self.x0(op, y)

    # ---- forward ------------------------------------------------------------------------------------
    def forward(self, y: Tensor, op: Operator | None = None, return_stages: bool = False) -> Tensor | list:
        """Reconstruct x from the measurement y (cropping is the caller's job, via ``op.crop``)."""
        op = op if op is not None else self.op
        if op is None:
            raise ValueError("no degradation operator: pass op= or build the model with one")
        s, sigma = self._data_scalar(), self.sigmas()
        info = op.side_info(y) if self.denoiser_kwargs.get("cond") else None
        if info is not None and self._infer[0]:  # NHWC once, not at every stage's concat
            info = info.contiguous(memory_format=torch.channels_last)
        with op.per_forward(y):  # operators may precompute per-measurement terms (SR)
            x = self.initial_estimate(op, y)
            outs = []
            for k in range(self.strategy.stages):
                z = self.data_step(op, x, y, s[k])  # Eq. 5 / Eq. 9
                x = self.pmm(k, z, sigma[k], info)  # Eq. 7 / Eq. 11
                outs.append(x)
        return outs if return_stages else x

    # ---- inference helpers -------------------------------------------------------------------------
    def prepare_inference(self, channels_last: bool = True, precision: str = "fp32") -> DUN:
        """eval mode; lorunK precomputes merged stage weights so inference costs what blockK costs.

        ``channels_last``: weights and the denoisers' inputs in NHWC layout (oneDNN's fast path; same result
        to float rounding). ``precision``: ``fp32``, or ``bf16``/``fp16`` autocast of the denoisers (the data
        steps stay float32; fp16 only on CUDA). See docs/SPEED.md for the speed and PSNR cost of each.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.eval()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for d in self.denoisers:
            for m in d.modules():  # 4-D weights only (what Module.to(memory_format=...) converts)
                for p in m.parameters(recurse=False):
                    if p.dim() == 4:
                        p.data = p.data.contiguous(memory_format=fmt)
        if self.strategy.kind == "lorun":
            lora.cache_merged(self.denoisers[0], True, memory_format=fmt)
        self._infer = (channels_last, precision)
        return self

    def _denoise(self, d: nn.Module, z: Tensor, sigma: Tensor, info: Tensor | None) -> Tensor:
        """One denoiser call in the layout and precision set by :meth:`prepare_inference` (float32 out)."""
        channels_last, precision = self._infer
        if not channels_last and precision == "fp32":
            return d(z, sigma, info)
        zin = z.contiguous(memory_format=torch.channels_last) if channels_last else z
        if precision == "fp32":
            return d(zin, sigma, info).contiguous()
        with torch.autocast(z.device.type, dtype=AUTOCAST_DTYPE[precision]):
            out = d(zin, sigma, info)
        return out.float().contiguous()

    def merged(self) -> DUN:
        """An equivalent blockK network with each stage's adapter baked into its own plain denoiser."""
        if self.strategy.kind != "lorun":
            raise ValueError("only lorunK models can be merged")
        k = self.strategy.stages
        out = DUN(op=self.op, **{**self.config(), "strategy": f"block{k}"})
        out.denoisers = nn.ModuleList(lora.merge(self.denoisers[0], i) for i in range(k))
        out.rho_raw, out.lam_raw = self.rho_raw, self.lam_raw
        out.task = getattr(self, "task", None)
        if hasattr(self, "cassi_step"):  # set by models.build_model for CASSI networks
            out.cassi_step = self.cassi_step
        return out

    def denoiser_widths(self) -> list[int]:
        """Channel widths of the denoiser's levels (a transformer's single ``dim``)."""
        kw = self.denoiser_kwargs
        return [int(w) for w in kw.get("widths", [kw.get("dim", 32)])]

    def memory_width(self) -> int:
        """Width of the denoiser's first level: what dominates inference memory (the memory guard's w₀)."""
        return self.denoiser_widths()[0]

    def config(self) -> dict:
        """Everything needed to rebuild this network (without weights)."""
        return {
            "channels": self.channels,
            "strategy": str(self.strategy),
            "denoiser": self.denoiser_name,
            "size": self.size,
            "algo": self.algo,
            "gamma": self.gamma,
            "ranks": self.ranks,
            "denoiser_kwargs": self.denoiser_kwargs,
            "floor": self.floor,
            "x0": self.x0.to_meta(),
        }
