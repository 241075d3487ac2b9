"""The unfolding network: strategies, stage noise levels, merging, parameter accounting, model files."""

import pytest
import torch

from lorun_cli import lora, models
from lorun_cli.errors import LorunError
from lorun_cli.physics.sr import SRBlur, load_kernels
from lorun_cli.unfold import param_report, parse_strategy


def test_parse_strategy():
    assert str(parse_strategy("lorun9")) == "lorun9"
    assert parse_strategy("block1").stages == 1 and parse_strategy("Share4").kind == "share"
    for bad in ("lora9", "block0", "block", "9"):
        with pytest.raises(ValueError):
            parse_strategy(bad)


def test_rho_lambda_init_and_sigma():
    m = models.build_model("cs", "share3", ratio=0.1, block=8)
    torch.testing.assert_close(m.rho(), torch.full((3,), 0.5))
    torch.testing.assert_close(m.sigmas(), torch.sqrt(m.rho() * m.lam()))
    h = models.build_model("sr", "share3")
    torch.testing.assert_close(h.sigmas(), torch.sqrt(h.lam() / h.mu()))
    torch.testing.assert_close(h.sigmas(), torch.full((3,), 0.1))


@pytest.mark.parametrize("task", ["cs", "sr", "cassi"])
def test_strategies_forward_and_lorun_equals_share_at_init(task):
    torch.manual_seed(0)
    share = models.build_model(task, "share3", ratio=0.25, block=8)
    with torch.no_grad():  # make the backbone a non-identity map
        for p in share.backbone.parameters():
            p.add_(0.02 * torch.randn_like(p))
    c, hw = share.channels, 16
    x = torch.rand(2, c, hw, hw)
    op = None
    if task == "sr":
        op = SRBlur(load_kernels()["K5"], 2)
    elif task == "cassi":
        from lorun_cli.physics.cassi import CASSI

        op = CASSI(torch.rand(hw, hw), bands=c, step=2)
    y = (op or share.op).A(x)
    ref = share(y, op)
    lor = models.build_model(task, "share3", ratio=0.25, block=8)
    lor.load_state_dict(share.state_dict())
    lor.to_lorun(10)
    torch.testing.assert_close(lor(y, op), ref)
    outs = lor(y, op, return_stages=True)
    assert len(outs) == 3 and outs[-1].shape == x.shape
    blk = models.build_model(task, "block3", ratio=0.25, block=8)
    assert len(blk.denoisers) == 3 and blk(y, op).shape == x.shape


def test_merged_network_matches_unmerged():
    torch.manual_seed(1)
    m = models.build_model("cs", "share3", ratio=0.25, block=8).to_lorun(25)
    with torch.no_grad():
        for _, layer in lora.lora_layers(m):
            layer.lora_A.normal_(0, 0.05)
    y = m.op.A(torch.rand(1, 1, 24, 24))
    with torch.no_grad():
        ref = m(y)
        merged = m.merged()
        assert merged.strategy.kind == "block" and not list(lora.lora_layers(merged))
        torch.testing.assert_close(merged(y), ref, rtol=1e-5, atol=1e-5)
        m.prepare_inference()
        torch.testing.assert_close(m(y), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["cs", "sr", "cassi"])
def test_lorun9_stores_at_most_40_percent_of_block9(task):
    b9 = param_report(models.build_model(task, "block9", "unet", "small"))
    l9 = param_report(models.build_model(task, "lorun9", "unet", "small", gamma=10))
    assert l9["network"] <= 0.40 * b9["network"], (l9["network"], b9["network"])
    # the unfolding network alone: what DUN papers count; the CS sampling matrix is reported apart
    assert l9["operator"] == b9["operator"]
    assert l9["trainable"] == l9["setting"] < l9["total"]


def test_param_report_counts():
    m = models.build_model("sr", "share9", "unet", "small")
    base = sum(p.numel() for p in m.backbone.parameters())
    r = param_report(m)
    assert r["total"] == base + 18 and r["trainable"] == r["total"] and r["backbone"] == 0
    m.to_lorun(10)
    r = param_report(m)
    adapters = sum(x.lora_A.numel() + x.lora_B.numel() for _, x in lora.lora_layers(m))
    assert r["backbone"] == base and r["adapter"] == adapters
    assert r["trainable"] == r["adapter"] + 18 and r["stored_bytes"] == 4 * r["stored"]


def test_model_files_roundtrip_and_adapter_binding(tmp_path):
    torch.manual_seed(2)
    share = models.build_model("cs", "share3", ratio=0.25, block=8)
    bb = tmp_path / "bb.safetensors"
    models.save_model(bb, share)
    lor = models.load_model(bb).to_lorun(10)
    with torch.no_grad():
        for _, layer in lora.lora_layers(lor):
            layer.lora_A.normal_(0, 0.05)
    ad = tmp_path / "ad.safetensors"
    models.save_model(ad, lor, {"backbone": "bb.safetensors"})
    assert ad.stat().st_size < bb.stat().st_size
    y = lor.op.A(torch.rand(1, 1, 16, 16))
    back = models.load_model(ad)  # backbone found beside the adapter file
    with torch.no_grad():
        torch.testing.assert_close(back(y), lor(y))
    other = models.build_model("cs", "share3", ratio=0.25, block=8)
    ob = tmp_path / "other.safetensors"
    models.save_model(ob, other)
    with pytest.raises(LorunError, match="backbone"):
        models.load_model(ad, backbone=ob)
    pt = tmp_path / "bb.pt"
    models.save_model(pt, share)
    with torch.no_grad():
        torch.testing.assert_close(models.load_model(pt)(y), share(y))


def test_warm_start_reads_old_and_new_model_files(tmp_path) -> None:
    """x0 is an object; files store it as a dict and earlier files' strings still load (CASSI step too)."""
    from lorun_cli.unfold import WarmStart

    assert WarmStart.parse("op") == WarmStart.parse(None) == WarmStart()
    assert WarmStart.parse("gap-tv:30") == WarmStart("gap-tv", 30) == WarmStart.parse({"method": "gap-tv", "iters": 30})
    with pytest.raises(ValueError):
        WarmStart.parse("gap-tv")
    sub = WarmStart.parse("gap-tv:20:0.5:5:8")  # the spectral-subspace start: rank 5, 8 TV steps
    assert sub == WarmStart("gap-tv", 20, 0.5, rank=5, inner=8)
    assert sub.to_meta() == {"method": "gap-tv", "iters": 20, "lam": 0.5, "rank": 5, "inner": 8}
    assert WarmStart.parse(sub.to_meta()) == sub
    assert WarmStart.parse("gap-tv:20:0.5:5") == WarmStart("gap-tv", 20, 0.5, 5)
    assert WarmStart("gap-tv", 45, 0.16).to_meta() == {"method": "gap-tv", "iters": 45, "lam": 0.16}  # files as before
    with pytest.raises(ValueError):
        WarmStart("gap-tv", 20, 0.5, inner=0)
    for bad in ("gap-tv:0", "gap-tv:5:0.16:3:0", "gap-tv:5:1e-3", "gap-tv:5:0.1:x"):
        with pytest.raises(ValueError):
            WarmStart.parse(bad)
    shipped = WarmStart("gap-tv", 45, 0.16)  # --warm-start overrides only the fields it spells
    assert shipped.override("gap-tv:20") == WarmStart("gap-tv", 20, 0.16)
    assert shipped.override("gap-tv:45:0.16:8") == WarmStart("gap-tv", 45, 0.16, rank=8)
    assert sub.override("gap-tv:30") == WarmStart("gap-tv", 30, 0.5, rank=5, inner=8)
    assert shipped.override("op") == WarmStart() and WarmStart().override("gap-tv:3") == WarmStart("gap-tv", 3)
    m = models.build_model("cassi", "block1", size="small", x0=WarmStart("gap-tv", 2), step=1)
    path = tmp_path / "c.safetensors"
    models.save_model(path, m)
    meta = models.read_meta(path)
    assert meta["config"]["x0"] == {"method": "gap-tv", "iters": 2, "lam": 0.04}
    assert meta["op"] == {"bands": 28, "step": 1}
    back = models.load_model(path)
    assert back.x0 == WarmStart("gap-tv", 2) and models.cassi_operator(back, torch.rand(8, 8)).step == 1
    meta["config"]["x0"] = "gap-tv:5"  # as written before x0 became an object, and before the step was stored
    del meta["op"]
    old = models._build_from_meta(meta)
    assert old.x0 == WarmStart("gap-tv", 5) and models.cassi_step(old) == 2
