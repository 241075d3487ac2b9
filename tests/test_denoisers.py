"""Tests of the denoiser registry and the four architectures (small presets, tiny inputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lorun_cli import denoisers as D
from lorun_cli.denoisers.common import pad_to_multiple, sigma_map

CHANNELS = (1, 3, 28)


def _model(name: str, channels: int, seed: int = 0) -> D.Denoiser:
    torch.manual_seed(seed)
    return D.build(name, channels).eval()


def _perturb_tail(model: D.Denoiser, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.tail.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", D.NAMES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_shape_and_identity_at_init(name: str, channels: int) -> None:
    model = _model(name, channels)
    x = torch.rand(2, channels, 37, 53, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x, torch.tensor([0.05, 0.2]))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.equal(out, x)


@pytest.mark.parametrize("name", D.NAMES)
def test_tiny_and_perturbed_inputs(name: str) -> None:
    model = _model(name, 3)
    _perturb_tail(model)
    g = torch.Generator().manual_seed(4)
    for h, w in ((3, 5), (1, 1), (9, 16)):  # smaller than the padding multiple -> replicate padding
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            out = model(x, 0.1)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()
        assert not torch.equal(out, x)


@pytest.mark.parametrize("name", D.NAMES)
def test_sigma_float_and_tensor(name: str) -> None:
    model = _model(name, 3)
    _perturb_tail(model)
    x = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a = model(x, 0.1)
        b = model(x, torch.tensor([0.1, 0.1]))
        c = model(x, torch.tensor(0.1))
        d = model(x, torch.tensor([0.1, 0.4]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a[:1], d[:1])
    assert not torch.allclose(a[1:], d[1:])  # the noise-level channel is used
    with pytest.raises(ValueError):
        model(x, torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("name", D.NAMES)
def test_gradient_reaches_all_parameters(name: str) -> None:
    model = _model(name, 3).train()
    _perturb_tail(model)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    loss = (model(x, torch.tensor([0.05, 0.1])) - target).square().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", D.NAMES)
def test_untrained_gradient_only_at_tail(name: str) -> None:
    model = _model(name, 1).train()
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    (model(x, 0.1) - 0.5).square().mean().backward()
    assert model.tail.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", D.NAMES)
def test_config_round_trip(name: str) -> None:
    for channels in (1, 28):
        model = _model(name, channels)
        again = D.build(name, channels, **D.config(name, "small"))
        assert D.param_count(again) == D.param_count(model)
        spec = D.spec(model)
        assert spec["name"] == name and spec["channels"] == channels
        rebuilt = D.from_spec(spec)
        assert rebuilt.config == model.config
        assert list(rebuilt.state_dict()) == list(model.state_dict())
        rebuilt.load_state_dict(model.state_dict())
        _perturb_tail(model)
        rebuilt.load_state_dict(model.state_dict())
        x = torch.rand(1, channels, 10, 10, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x, 0.2), model.eval()(x, 0.2))


@pytest.mark.parametrize("name", D.NAMES)
def test_overrides_and_sizes(name: str) -> None:
    small, base = D.config(name, "small"), D.config(name, "base")
    assert small != base
    assert D.config(name) == small
    small["tampered"] = True  # config returns a copy
    assert "tampered" not in D.config(name)
    with pytest.raises(ValueError):
        D.build(name, 3, no_such_option=1)
    with pytest.raises(ValueError):
        D.config(name, "huge")
    with pytest.raises(ValueError):
        _model(name, 3)(torch.rand(1, 1, 8, 8), 0.1)


def test_unknown_name() -> None:
    with pytest.raises(ValueError):
        D.build("nope", 3)
    assert set(D.NAMES) == {"unet", "transformer", "resunet", "spectral"}


def test_override_changes_architecture() -> None:
    a = D.build("unet", 3)
    b = D.build("unet", 3, widths=[8, 16], skip="add", down="stride")
    assert b.config["widths"] == [8, 16] and b.multiple == 2
    assert D.param_count(b) < D.param_count(a)
    x = torch.rand(1, 3, 7, 9)
    assert torch.equal(b(x, 0.0), x)


@pytest.mark.parametrize("name", D.NAMES)
def test_weights_live_in_conv_or_linear(name: str) -> None:
    model = _model(name, 28)
    modules = dict(model.named_modules())
    n_matrices = 0
    for pname, p in model.named_parameters():
        if p.ndim >= 2:
            owner = modules[pname.rpartition(".")[0]]
            assert isinstance(owner, (nn.Conv2d, nn.Linear)), pname
            n_matrices += 1
    assert n_matrices > 5
    assert not any(isinstance(m, (nn.MultiheadAttention, nn.ConvTranspose2d)) for m in model.modules())
    # no module instance is used at two places of the network
    ids = [id(m) for _, m in model.named_modules(remove_duplicate=False)]
    assert len(ids) == len(set(ids))


def test_base_presets_are_larger() -> None:
    torch.manual_seed(0)
    for name in ("unet", "transformer", "spectral"):
        assert D.param_count(D.build(name, 3, "base")) > 2 * D.param_count(D.build(name, 3, "small"))


def test_padding_helpers() -> None:
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    y, (h, w) = pad_to_multiple(x, 4)
    assert (h, w) == (5, 6) and y.shape == (1, 2, 8, 8)
    assert torch.equal(y[..., :5, :6], x)
    assert torch.equal(y[..., 5, :6], x[..., 3, :])  # reflect
    z, _ = pad_to_multiple(x[..., :2, :2], 8)
    assert z.shape == (1, 2, 8, 8)
    assert torch.equal(z[..., 7, 7], x[..., 1, 1])  # replicate when too small
    same, _ = pad_to_multiple(x, 1)
    assert same is x
    s = sigma_map(x, torch.tensor([0.3]))
    assert s.shape == (1, 1, 5, 6) and torch.all(s == 0.3)
