"""Common interface of the degradation operators y = Φx + n (Eq. 1)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

Scalar = float | Tensor


def per_sample(value: Scalar, like: Tensor) -> Scalar:
    """Return ``value`` ready to broadcast against ``like`` (first dim = batch).

    A Python number is returned as a float; a tensor of shape ``()``, ``(1,)`` or ``(N,)`` is reshaped to
    ``(N, 1, ..., 1)`` on ``like``'s device and dtype.
    """
    if not isinstance(value, Tensor):
        return float(value)
    v = value.to(device=like.device, dtype=like.dtype if like.is_floating_point() else value.dtype)
    if v.dim() > 1:
        v = v.reshape(-1)
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class Operator(nn.Module, ABC):
    """A linear degradation Φ with its exact adjoint and the two data-fidelity steps of a DUN stage."""

    task: str = ""

    @abstractmethod
    def A(self, x: Tensor) -> Tensor:
        """Forward model Φx."""

    @abstractmethod
    def A_adjoint(self, y: Tensor) -> Tensor:
        """Exact adjoint Φᵀy."""

    @abstractmethod
    def init(self, y: Tensor) -> Tensor:
        """Initial estimate x⁽⁰⁾ from a measurement."""

    @abstractmethod
    def hqs_step(self, y: Tensor, w: Tensor, mu: Scalar) -> Tensor:
        """Exact solution of (ΦᵀΦ + μI)x = Φᵀy + μw (Eq. 9)."""

    @abstractmethod
    def x_shape(self, y: Tensor) -> tuple[int, ...]:
        """Shape of the image that ``A_adjoint(y)`` returns."""

    def side_info(self, y: Tensor) -> Tensor | None:
        """Maps describing Φ that a degradation-aware denoiser sees beside its input (none by default)."""
        return None

    def pad(self, x: Tensor) -> Tensor:
        """Bring ``x`` to a size the operator accepts (identity by default)."""
        return x

    def crop(self, x: Tensor) -> Tensor:
        """Undo ``pad`` after reconstruction (identity by default)."""
        return x

    def pgd_step(self, x: Tensor, y: Tensor, rho: Scalar) -> Tensor:
        """Gradient-descent module; ``rho`` is a float or a per-sample ``(N,)`` tensor."""
        # Eq. 5
        return x - per_sample(rho, x) * self.A_adjoint(self.A(x) - y)

    def measure(
        self, x: Tensor, noise_sigma: Scalar = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Simulate a measurement: pad where needed, apply Φ, add Gaussian noise of std ``noise_sigma``."""
        y = self.A(self.pad(x))
        if isinstance(noise_sigma, Tensor) or noise_sigma > 0:
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y = y + per_sample(noise_sigma, y) * noise
        return y
