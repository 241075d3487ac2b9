"""Common interface of the degradation operators y = Φx + n (Eq. 1)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator

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
    """A linear degradation Φ with its exact adjoint and the two data-fidelity steps of a DUN stage.

    Both data steps take the current estimate first and the measurement second: ``pgd_step(x, y, ρ)`` and
    ``hqs_step(x, y, μ)``. ``norm`` and ``adjointness_test`` hold for every operator (power method and a
    random inner-product check); ``gram`` (ΦΦᵀ) is given where it has a cheap closed form.
    """

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
    def hqs_step(self, x: Tensor, y: Tensor, mu: Scalar) -> Tensor:
        """Exact solution of (ΦᵀΦ + μI)z = Φᵀy + μx (Eq. 9); ``mu`` is a float or a per-sample ``(N,)`` tensor."""

    @abstractmethod
    def x_shape(self, y: Tensor) -> tuple[int, ...]:
        """Shape of the image that ``A_adjoint(y)`` returns."""

    def gram(self, ref: Tensor | None = None) -> Tensor:
        """ΦΦᵀ in the operator's own closed form (a matrix for CS, a diagonal image for CASSI)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form ΦΦᵀ")

    @contextlib.contextmanager
    def per_forward(self, y: Tensor) -> Iterator[None]:
        """Scope of one forward pass on the measurement ``y``: an operator may precompute terms of y for every
        stage's data step inside it (SR does); nothing by default."""
        yield

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
        """Gradient-descent module z = x − ρ Φᵀ(Φx − y); ``rho`` is a float or a per-sample ``(N,)`` tensor."""
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

    def _probe(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        """A fixed-seed random image of the shape ``A_adjoint(y)`` returns (same on every call)."""
        gen = torch.Generator(device="cpu").manual_seed(0)
        return torch.randn(self.x_shape(y), generator=gen, dtype=dtype).to(y.device)

    def norm(self, y: Tensor, max_iter: int = 200, tol: float = 1e-9) -> float:
        """λ_max(ΦᵀΦ) = ‖Φ‖², the Lipschitz constant of the data-term gradient, by the power method.

        ``y`` is any measurement of the right shape (only its shape, device and dtype are used); the iteration
        runs in float64 (float32 on MPS) from a fixed-seed start and stops when λ changes by less than ``tol``
        (relative).
        """
        dtype = torch.float32 if y.device.type == "mps" else torch.float64
        with torch.no_grad():
            x = self._probe(y, dtype)
            x = x / x.norm()
            lam = 0.0
            for _ in range(max_iter):
                z = self.A_adjoint(self.A(x))
                new = float((x * z).sum())
                x = z / z.norm().clamp_min(torch.finfo(dtype).tiny)
                if abs(new - lam) <= tol * abs(new):
                    return new
                lam = new
            return lam

    def adjointness_test(self, y: Tensor) -> float:
        """Relative gap |⟨Φu, v⟩ − ⟨u, Φᵀv⟩| / |⟨Φu, v⟩| for random u, v (≈ 1e-15 in float64 for an exact adjoint).

        ``y`` gives the measurement shape, as for :meth:`norm`.
        """
        with torch.no_grad():
            u = self._probe(y, torch.float64)
            au = self.A(u)
            gen = torch.Generator(device="cpu").manual_seed(1)
            v = torch.randn(au.shape, generator=gen, dtype=torch.float64).to(au.device)
            lhs, rhs = float((au * v).sum()), float((u * self.A_adjoint(v)).sum())
            return abs(lhs - rhs) / max(abs(lhs), 1e-300)
