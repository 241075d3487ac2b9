"""Gradient-descent modules and stage noise levels (paper Sec. III-C)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..physics.base import Operator


def gdm_pgd(op: Operator, x: Tensor, y: Tensor, rho: Tensor) -> Tensor:
    """PGD gradient step z = x − ρ Φᵀ(Φx − y).  # Eq. 5"""
    return op.pgd_step(x, y, rho)


def gdm_hqs(op: Operator, y: Tensor, w: Tensor, mu: Tensor) -> Tensor:
    """HQS data step x = (ΦᵀΦ + μI)⁻¹(Φᵀy + μw), exact per operator.  # Eq. 9"""
    return op.hqs_step(y, w, mu)


def sigma_pgd(rho: Tensor, lam: Tensor) -> Tensor:
    """Noise level of the PGD proximal step, sqrt(ρλ).  # Eq. 6-7"""
    return torch.sqrt(rho * lam)


def sigma_hqs(mu: Tensor, lam: Tensor) -> Tensor:
    """Noise level of the HQS proximal step, sqrt(λ/μ).  # Eq. 10-11"""
    return torch.sqrt(lam / mu)
