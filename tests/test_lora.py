"""Stage-wise LoRA: identity at init, merge equivalence, frozen backbone, exact parameter counts."""

import math

import pytest
import torch
from torch import nn

from lorun_cli import lora


class Toy(nn.Module):
    """A small net mixing every layer flavour LoRA must handle."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c2 = nn.Conv2d(8, 16, (3, 1), padding=(1, 0), padding_mode="reflect", bias=False)
        self.fc = nn.Linear(16, 5)
        self.norm = nn.LayerNorm(5)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = self.c2(self.dw(x))
        return self.norm(self.fc(x.mean((2, 3))))


def _train_adapters(model: nn.Module, steps: int = 3) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for k in range(steps):
        lora.set_stage(model, k % 4)
        loss = model(torch.randn(2, 3, 9, 7)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_rank_formula():
    assert lora.lora_rank(64, 32, 10) == math.ceil(3.2)
    assert lora.lora_rank(1, 64, 10) == 1
    assert lora.lora_rank(100, 100, 10) == 10
    assert lora.lora_rank(16, 16, 100) == 16


def test_identity_at_init_and_frozen_backbone():
    torch.manual_seed(0)
    net = Toy()
    x = torch.randn(2, 3, 9, 7)
    ref = net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lora.inject_lora(net, stages=4, gamma=10)
    for k in range(4):
        lora.set_stage(net, k)
        torch.testing.assert_close(net(x), ref, rtol=0, atol=0)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.rsplit(".", 1)[-1] in lora.ADAPTER_KEYS for n in trainable)
    _train_adapters(net)
    for n, p in net.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    # the backbone is untouched by training
    assert lora.backbone_state_dict(net).keys() == before.keys()
    for k, v in lora.backbone_state_dict(net).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_merge_matches_unmerged_and_stages_differ():
    torch.manual_seed(1)
    net = lora.inject_lora(Toy(), stages=4, gamma=25)
    _train_adapters(net, steps=8)
    x = torch.randn(3, 3, 11, 6)
    outs = []
    for k in range(4):
        lora.set_stage(net, k)
        y = net(x)
        merged = lora.merge(net, k)
        assert not list(lora.lora_layers(merged))
        assert all(type(m) in (nn.Conv2d, nn.Linear) for m in merged.modules() if hasattr(m, "weight")
                   and not isinstance(m, nn.LayerNorm))
        torch.testing.assert_close(merged(x), y, rtol=1e-5, atol=1e-5)
        outs.append(y)
    assert (outs[0] - outs[1]).abs().max() > 1e-6
    # cached merged weights (inference path) give the same result
    lora.cache_merged(net)
    with torch.no_grad():
        lora.set_stage(net, 2)
        torch.testing.assert_close(net(x), outs[2], rtol=1e-5, atol=1e-5)


def _expected_adapter_count(module: nn.Module, stages: int, gamma: float) -> int:
    """Adapter parameters Eq. 4/12 predict for a plain module (before injection)."""
    total = 0
    for m in module.modules():
        if type(m) not in (nn.Conv2d, nn.Linear):
            continue
        in_dim, out_dim = lora._layer_dims(m)
        r = lora.lora_rank(in_dim, out_dim, gamma)
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += out_dim * kh * r * kh + r * kh * in_dim * kw
        else:
            total += out_dim * r + r * in_dim
    return total * stages


def _adapters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if k.rsplit(".", 1)[-1] in lora.ADAPTER_KEYS}


def test_adapter_counts_match_formula():
    gamma, stages = 10, 9
    plain = Toy()
    expect = _expected_adapter_count(plain, stages, gamma)
    net = lora.inject_lora(Toy(), stages=stages, gamma=gamma)
    assert sum(v.numel() for v in _adapters(net).values()) == expect
    # hand count: c1 conv 3->8 k3 r=1: A 8*3 x 1*3, B 1*3 x 3*3 ; dw in/group=1 -> r=1: A 24x3, B 3x3
    # c2 8->16 k(3,1) r=1: A 48x3, B 3x8 ; fc 16->5 r=1: A 5x1, B 1x16
    hand = (24 * 3 + 3 * 9) + (24 * 3 + 3 * 3) + (48 * 3 + 3 * 8) + (5 + 16)
    assert expect == hand * stages
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expect


def test_rank_override_and_unknown_layer():
    net = lora.inject_lora(Toy(), stages=2, gamma=10, ranks={"c1": 3, "fc": 0})
    layers = dict(lora.lora_layers(net))
    assert layers["c1"].rank == 3 and "fc" not in layers
    with pytest.raises(KeyError):
        lora.inject_lora(Toy(), stages=2, ranks={"nope": 2})


def test_adapter_state_roundtrip_and_mismatch():
    torch.manual_seed(2)
    net = lora.inject_lora(Toy(), stages=3)
    _train_adapters(net)
    sd = _adapters(net)
    other = Toy()
    other.load_state_dict(lora.backbone_state_dict(net))
    lora.inject_lora(other, stages=3)
    other.load_state_dict(sd, strict=False)
    x = torch.randn(1, 3, 8, 8)
    for k in range(3):
        lora.set_stage(net, k)
        lora.set_stage(other, k)
        torch.testing.assert_close(other(x), net(x))
    wrong = lora.inject_lora(Toy(), stages=2)
    with pytest.raises(RuntimeError):
        wrong.load_state_dict(sd, strict=False)
    assert lora.state_sha256(lora.backbone_state_dict(net)) == lora.state_sha256(lora.backbone_state_dict(other))
