"""The broad SR training degradations: kernel families, noise range, perturbed data-step kernels, and the
training batch built from them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lorun_cli.errors import UsageError
from lorun_cli.physics import sr_estimate as E
from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.train import data as D
from lorun_cli.train.tasks import TaskData


def _draws(seed: int, n: int = 64, **kw) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
    return D.sample_sr_training_degradation(n, load_kernels(), torch.Generator().manual_seed(seed), **kw)


def test_deterministic_valid_kernels_and_noise_range() -> None:
    s, kt, kg, sig = _draws(0)
    s2, kt2, kg2, sig2 = _draws(0)
    assert s == s2 and torch.equal(kt, kt2) and torch.equal(kg, kg2) and torch.equal(sig, sig2)
    assert s in (2, 3, 4) and kt.shape == kg.shape == (64, 25, 25) and sig.shape == (64,)
    for k in (kt, kg):
        assert float(k.min()) > -0.01  # PIL's bicubic kernel has small negative lobes
        torch.testing.assert_close(k.sum((-2, -1)), torch.ones(64))
    assert float(sig.min()) >= 0 and float(sig.max()) <= 10 / 255
    assert float(sig.median()) < 2.5 / 255  # σ = max·u³: most samples lightly noisy
    assert not torch.equal(kt, _draws(1)[1])


def test_every_family_is_drawn() -> None:
    bank = torch.stack(list(load_kernels().values()))
    seen: set[str] = set()
    for seed in range(6):
        s, kt, _, _ = _draws(seed)
        for k in kt:
            if torch.equal(k, E.delta_kernel()):
                seen.add("delta")
            elif torch.allclose(k, E.pil_bicubic_kernel(s)):
                seen.add("pil-bicubic")
            elif any(torch.allclose(k, b) for b in bank):
                seen.add("bundled")
            else:
                seen.add("other")  # Gaussians and motion
    assert seen == {"delta", "pil-bicubic", "bundled", "other"}
    widths = [E.kernel_width(k) for seed in range(6) for k in _draws(seed, mix={"gauss-iso": 1.0})[1]]
    assert min(widths) < 0.4 and max(widths) > 2.5  # down to a near-delta, and wide


def test_only_some_given_kernels_are_perturbed_and_only_in_width() -> None:
    _, kt, kg, _ = _draws(3, n=400, mix={"gauss-iso": 1.0})
    changed = [i for i in range(400) if not torch.equal(kt[i], kg[i])]
    assert 0.15 < len(changed) / 400 < 0.35
    for i in changed[:40]:
        wt, wg = E.kernel_width(kt[i]), E.kernel_width(kg[i])
        if wt > 1.0:  # bilinear resampling is coarse for the narrowest kernels
            assert 1 / 1.3 < wg / wt < 1.3
    _, kt0, kg0, _ = _draws(3, n=50, perturb_share=0.0)
    assert torch.equal(kt0, kg0)


def test_training_batch_blurs_with_the_true_kernel_and_hands_the_given_one() -> None:
    td = TaskData.__new__(TaskData)
    td.cfg = SimpleNamespace(noise=0.0, extra={})
    td.kernels, td.sr_mix = load_kernels(), D.sr_train_mix(None)
    x = torch.rand(6, 3, 36, 36)
    _, y, op = td._sr_batch(x, torch.Generator().manual_seed(4), torch.device("cpu"))
    s, kt, kg, _ = D.sample_sr_training_degradation(6, td.kernels, torch.Generator().manual_seed(4), noise_max=0.0)
    assert op.scale == s and torch.equal(op.kernel, kg)
    torch.testing.assert_close(y, SRBlur(kt, s).A(x))
    td.cfg = SimpleNamespace(noise=None, extra={"sr_degradations": "bundled"})
    _, _, op_b = td._sr_batch(x, torch.Generator().manual_seed(4), torch.device("cpu"))
    bank = torch.stack(list(td.kernels.values()))
    assert all(any(torch.equal(k, b) for b in bank) for k in op_b.kernel)


def test_sr_mix_reweights_the_families_and_refuses_bad_weights() -> None:
    assert D.sr_train_mix(None) == D.SR_TRAIN_MIX
    bank = load_kernels()
    _, kt, kg, _ = D.sample_sr_training_degradation(
        8, bank, torch.Generator().manual_seed(1), mix=D.sr_train_mix({"delta": 1.0}), perturb_share=0.0)
    assert all(int((k > 0).sum()) == 1 for k in kt)  # plain decimation only: one tap each
    for bad in ({"nope": 1.0}, {"delta": -1.0}, {"delta": 0.0}, {"delta": float("nan")}, [0.5]):
        with pytest.raises(UsageError, match="sr_mix"):
            D.sr_train_mix(bad)
