"""Training loop: learns, is deterministic, resumes exactly, freezes the backbone in adapt, runs under DDP."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_data_root

from lorun_cli import lora, models
from lorun_cli.io import datasets as DS
from lorun_cli.physics.cs import derive_sampling
from lorun_cli.train.loop import TrainConfig, lr_at, train


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CS data root (conftest.make_tiny_data_root) with its validation image."""
    r = make_tiny_data_root(tmp_path_factory.mktemp("csdata"))
    assert "test_040.png" in DS.CS_VAL_NAMES
    return r


def _cfg(root: Path, out: Path, **kw) -> TrainConfig:
    base = dict(task="cs", strategy="share3", ratio=0.25, block=8, data=str(root), steps=6, batch=2, patch=16,
                lr=2e-3, warmup=2, val_every=3, ckpt_every=3, log_every=1, out=str(out), seed=3,
                denoiser_kwargs=None)
    base.pop("denoiser_kwargs")
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from lorun_cli.io.checkpoint import load_checkpoint

    return load_checkpoint(path)[0]


def test_lr_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-5)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-5)
    assert lr_at(55, cfg) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)


def test_deterministic_and_learns(cs_root, tmp_path):
    a = train(_cfg(cs_root, tmp_path / "a.safetensors", steps=12, val_every=12))
    b = train(_cfg(cs_root, tmp_path / "b.safetensors", steps=12, val_every=12))
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["peak_rss_mb"] > 50 and "peak_gpu_mb" not in a  # a torch process on the CPU
    log = [line for line in (tmp_path / "a.safetensors.log.jsonl").read_text().splitlines() if line]
    assert len(log) == 12
    # the loss of the first steps is above that of the last ones (it learns something)
    import json

    losses = [json.loads(x)["loss"] for x in log]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    m = models.load_model(tmp_path / "a.safetensors")
    assert str(m.strategy) == "share3" and m.op.ratio == 0.25


def test_exact_resume(cs_root, tmp_path):
    full = train(_cfg(cs_root, tmp_path / "full.safetensors"))

    class Kill(Exception):
        pass

    def killer(rec):
        if rec.get("step") == 4:  # after the step-3 checkpoint: step 4 is lost and must be redone
            raise Kill

    with pytest.raises(Kill):
        train(_cfg(cs_root, tmp_path / "cut.safetensors"), on_event=killer)
    assert (tmp_path / "cut.safetensors.ckpt").exists() and not (tmp_path / "cut.safetensors").exists()
    resumed = train(_cfg(cs_root, tmp_path / "cut.safetensors", resume=True))
    assert resumed["steps"] == 6
    assert resumed["weights_sha256"] == full["weights_sha256"]
    wa, wb = _weights(tmp_path / "full.safetensors"), _weights(tmp_path / "cut.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_adapt_freezes_backbone_and_binds_adapters(cs_root, tmp_path):
    bb = tmp_path / "bb.safetensors"
    train(_cfg(cs_root, bb, steps=3))
    before = models.load_model(bb)
    seen: dict = {}

    def spy(rec):
        if rec["event"] == "start":
            seen["params"] = rec["params"]

    out = tmp_path / "ad.safetensors"
    train(_cfg(cs_root, out, phase="adapt", backbone=str(bb), strategy="lorun3", gamma=10, steps=3), on_event=spy)
    p = seen["params"]
    assert p["trainable"] == p["adapter"] + p["operator"] + 6 and p["backbone"] > 0
    ad = models.load_model(out)
    assert str(ad.strategy) == "lorun3"
    for k, v in lora.backbone_state_dict(ad.backbone).items():  # frozen backbone untouched
        assert torch.equal(v, before.backbone.state_dict()[k]), k
    st = torch.load(str(out) + ".ckpt", weights_only=True)
    n_trainable = len([q for q in ad.parameters() if q.requires_grad])
    assert len(st["opt"]["state"]) == n_trainable  # no optimiser state for frozen weights
    assert out.stat().st_size < bb.stat().st_size
    # adapting to another CS ratio learns a new Φ with the adapters (settings switched by swapping files)
    out10 = tmp_path / "ad10.safetensors"
    train(_cfg(cs_root, out10, phase="adapt", backbone=str(bb), strategy="lorun3", ratio=0.1, steps=2))
    assert models.load_model(out10).op.m == round(0.1 * 64)


def test_adapt_init_continues_an_adapter_set(cs_root, tmp_path):
    """adapt --init starts from an earlier adapter set (every tensor), and refuses one of another shape."""
    bb, first = tmp_path / "bb.safetensors", tmp_path / "a1.safetensors"
    train(_cfg(cs_root, bb, steps=3))
    train(_cfg(cs_root, first, phase="adapt", backbone=str(bb), strategy="lorun3", gamma=10, steps=3))
    again = tmp_path / "a2.safetensors"
    train(_cfg(cs_root, again, phase="adapt", backbone=str(bb), strategy="lorun3", gamma=10, steps=0,
               init=str(first)))
    a, b = models.load_model(first).state_dict(), models.load_model(again).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="another shape"):
        train(_cfg(cs_root, tmp_path / "a3.safetensors", phase="adapt", backbone=str(bb), strategy="lorun3",
                   gamma=25, steps=1, init=str(first)))


@pytest.mark.parametrize("mode", ["lora", "frozen"])
def test_adapt_phi_derived_from_backbone(cs_root, tmp_path, mode):
    """--phi lora|frozen: Φ is rebuilt from the backbone's on load; the file holds only its update (or nothing)."""
    bb = tmp_path / "bb.safetensors"
    train(_cfg(cs_root, bb, steps=2))
    learn, small = tmp_path / "learn.safetensors", tmp_path / f"{mode}.safetensors"
    train(_cfg(cs_root, learn, phase="adapt", backbone=str(bb), strategy="lorun3", ratio=0.5, steps=2))
    summary = train(_cfg(cs_root, small, phase="adapt", backbone=str(bb), strategy="lorun3", ratio=0.5, steps=3,
                         phi=mode))
    stored = _weights(small)
    assert not any(k in stored for k in ("op.phi", "op.parametrizations.phi.original"))
    assert ("op.parametrizations.phi.0.lora_A" in stored) == (mode == "lora")
    assert small.stat().st_size < learn.stat().st_size
    m = models.load_model(small)
    assert m.op.m == 32 and models.read_meta(small)["op"]["phi"] == mode
    assert models.strategy_label(m) == f"lorun3 (Φ-{mode})"
    assert lora.state_sha256(m.state_dict()) == summary["weights_sha256"]  # reloads exactly what was trained
    derived = derive_sampling(models.load_model(bb).op.phi, 32)
    if mode == "frozen":
        torch.testing.assert_close(m.op.phi, derived)
    else:
        upd = m.op.parametrizations.phi[0]  # Φ = derived + A·B, A (32, r), r by Eq. 12; A moved from zero
        assert upd.lora_A.shape == (32, lora.lora_rank(64, 32, 10)) and upd.lora_A.abs().max() > 0
        torch.testing.assert_close(m.op.phi, derived + upd.lora_A @ upd.lora_B)
    with pytest.raises(Exception, match="--phi"):
        train(_cfg(cs_root, tmp_path / "bad.safetensors", phase="adapt", backbone=str(bb), phi="low"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str, q) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    summary = train(_cfg(Path(root), Path(out), steps=3))
    q.put((rank, summary["weights_sha256"], summary["world_size"]))
    import torch.distributed as dist

    dist.destroy_process_group()


def test_ddp_gloo_two_ranks_identical_weights(cs_root, tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(cs_root), str(tmp_path / "ddp.safetensors"), q))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert all(p.exitcode == 0 for p in procs)
    res = sorted(q.get(timeout=5) for _ in range(2))
    assert res[0][2] == res[1][2] == 2
    assert res[0][1] == res[1][1]  # both ranks end with identical weights
    assert (tmp_path / "ddp.safetensors").exists()


def test_loss_spikes_are_skipped_and_a_diverged_run_stops(cs_root, tmp_path, monkeypatch):
    import json

    from lorun_cli.errors import LorunError
    from lorun_cli.train import loop

    real, calls = loop.stage_loss, []

    def spiky(*a, **k):  # step 12: 1e4 times the loss; step 13: NaN; then the true loss
        loss = real(*a, **k)
        calls.append(1)
        return loss * {12: 1e4, 13: float("nan")}.get(len(calls), 1.0)

    monkeypatch.setattr(loop, "stage_loss", spiky)
    out = tmp_path / "s.safetensors"
    summary = train(_cfg(cs_root, out, steps=16, val_every=16))
    assert summary["skipped_steps"] == 2 and np.isfinite(summary["val_psnr"])
    log = [json.loads(x) for x in (tmp_path / "s.safetensors.log.jsonl").read_text().splitlines() if x]
    assert [r["step"] for r in log if r.get("skipped")] == [12, 13]
    assert all(torch.isfinite(v).all() for v in _weights(out).values())

    calls.clear()
    monkeypatch.setattr(loop, "stage_loss", lambda *a, **k: real(*a, **k) * (float("nan") if calls.append(1)
                                                                             or len(calls) > 3 else 1.0))
    with pytest.raises(LorunError, match="diverged at step 23"):
        train(_cfg(cs_root, tmp_path / "d.safetensors", steps=40, val_every=40))


def test_time_budget_stop_is_validated_and_logged(cs_root, tmp_path):
    import json

    out = tmp_path / "t.safetensors"
    summary = train(_cfg(cs_root, out, max_minutes=0.0))  # the budget is spent before the first step
    assert summary["stop"] != "steps" and summary["steps"] == 0 and np.isfinite(summary["val_psnr"])
    last = json.loads((tmp_path / "t.safetensors.log.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "end" and last["step"] == 0 and last["val_psnr"] == pytest.approx(summary["val_psnr"],
                                                                                              abs=1e-3)


def test_warm_start_option_sets_the_trained_models_x0(cs_root, tmp_path):
    """--warm-start gap-tv:N:LAMBDA becomes the model's x⁰ (kept in its config); CS refuses a GAP-TV start."""
    from lorun_cli.errors import OptionError
    from lorun_cli.train.loop import set_warm_start
    from lorun_cli.unfold.dun import WarmStart

    assert WarmStart.parse("gap-tv:60:0.16") == WarmStart("gap-tv", 60, 0.16)
    assert WarmStart.parse("gap-tv:30") == WarmStart("gap-tv", 30, 0.04)
    net = models.build_model("cassi", "share3")
    cfg = TrainConfig(task="cassi", warm_start="gap-tv:5:0.1")
    assert set_warm_start(net, cfg).config()["x0"] == {"method": "gap-tv", "iters": 5, "lam": 0.1}
    with pytest.raises(OptionError, match="warm"):
        set_warm_start(net, TrainConfig(task="cassi", warm_start="tv:5"))
    with pytest.raises(OptionError, match="CASSI"):
        train(_cfg(cs_root, tmp_path / "w.safetensors", steps=1, warm_start="gap-tv:3"))


def test_rgb_share_is_cassi_only(cs_root, tmp_path):
    from lorun_cli.errors import UsageError

    with pytest.raises(UsageError, match="--rgb-share applies to --task cassi only"):
        train(_cfg(cs_root, tmp_path / "r.safetensors", steps=1, rgb_share=0.5))
    assert not (tmp_path / "r.safetensors").exists()


def test_stage_loss_weights_the_intermediate_stages(cs_root, tmp_path):
    """--stage-loss 0 is Eq. 13 on the final output; W > 0 adds W × the mean over stages 1..K-1."""
    from lorun_cli.train.loop import l2_loss, stage_loss

    ref = torch.zeros(1, 1, 4, 4)
    outs = [torch.full_like(ref, v) for v in (3.0, 2.0, 1.0)]
    assert stage_loss(outs, ref, 0.0).item() == pytest.approx(1.0)
    assert stage_loss(outs, ref, 0.5).item() == pytest.approx(1.0 + 0.5 * (9 + 4) / 2)
    assert stage_loss(outs[-1:], ref, 0.5).item() == pytest.approx(l2_loss(outs[-1], ref).item())
    a = train(_cfg(cs_root, tmp_path / "s0.safetensors", steps=3, val_every=3))
    b = train(_cfg(cs_root, tmp_path / "s1.safetensors", steps=3, val_every=3, stage_loss=0.5))
    assert a["weights_sha256"] != b["weights_sha256"]  # the option reaches the loop
    assert models.load_model(tmp_path / "s1.safetensors") is not None


def test_adapt_reads_a_cassi_backbone_whose_op_has_no_ratio(tmp_path):
    """A CASSI backbone's metadata records bands and step, no ratio: adapt takes its task and stages from it."""
    from lorun_cli.train.cli_glue import _adapt_defaults

    bb = tmp_path / "cassi-share3.safetensors"
    models.save_model(bb, models.build_model("cassi", "share3"))
    assert "ratio" not in models.read_meta(bb)["op"]
    cfg = TrainConfig.defaults("adapt")
    cfg.backbone, cfg.strategy = str(bb), ""
    _adapt_defaults(cfg, set())
    assert cfg.task == "cassi" and cfg.strategy == "lorun3" and cfg.ratio == TrainConfig().ratio


def test_init_continues_a_file_with_another_start(tmp_path):
    """--init from a same-strategy file trained from a GAP-TV start loads it whole and keeps its start;
    --warm-start still overrides it."""
    from lorun_cli.train.loop import build_for_phase
    from lorun_cli.unfold.dun import WarmStart

    src = models.build_model("cassi", "block3")
    src.x0 = WarmStart("gap-tv", 5, 0.1)
    with torch.no_grad():
        src.rho_raw.add_(0.5)
    f = tmp_path / "cassi-block3.safetensors"
    models.save_model(f, src)
    m = build_for_phase(TrainConfig(task="cassi", strategy="block3", init=str(f)))
    assert m.x0 == WarmStart("gap-tv", 5, 0.1) and torch.equal(m.rho_raw, src.rho_raw)  # whole, scalars too
    m = build_for_phase(TrainConfig(task="cassi", strategy="block3", init=str(f), warm_start="op"))
    assert m.x0.method == "op"
