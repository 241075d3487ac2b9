"""SR degradation estimation: kernel families, the estimator's shapes, the kernel policy, and --kernel auto in
restore (auto path, --save-kernel, mismatch warning, bad options)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_lorun
from PIL import Image

from lorun_cli import restore as R
from lorun_cli.errors import UsageError
from lorun_cli.io import images
from lorun_cli.physics import sr_estimate as E
from lorun_cli.physics.sr import SRBlur, exposure_map, load_kernels


def test_estimator_shapes_and_valid_kernels() -> None:
    net = E.KernelEstimator()
    assert sum(p.numel() for p in net.parameters()) < 100_000
    y = torch.rand(2, 1, 40, 52)
    logits, u = net(y, 3)
    assert logits.shape == (2, 48) and u.shape == (2,)
    k = net.kernel(logits)
    assert k.shape == (2, 25, 25)
    k = k.detach()
    assert float(k.min()) >= 0 and torch.allclose(k.sum((-2, -1)), torch.ones(2), atol=1e-5)
    assert E.noise_from_u(E.u_from_noise(torch.tensor([0.0, 0.02]))).allclose(torch.tensor([0.0, 0.02]), atol=1e-6)


def test_arch2_estimator_keeps_pil_bicubic_exact_and_rebuilds_from_its_config() -> None:
    net = E.KernelEstimator(atoms=96, arch=2)
    atoms = net.atoms().detach()
    assert atoms.shape == (100, 25, 25)
    assert torch.equal(atoms[-1], E.pil_bicubic_kernel(4)) and float(atoms[-1].min()) < 0  # negative lobes kept
    logits, u = net(torch.rand(2, 1, 48, 48), 4)
    assert logits.shape == (2, 100) and u.shape == (2,)
    hot = torch.full((1, 100), -1e4)
    hot[0, 97] = 0.0  # all weight on PIL bicubic ×2
    assert torch.allclose(net.kernel(hot)[0], E.pil_bicubic_kernel(2), atol=1e-6)
    again = E.build_estimator({"estimator": net.config()})
    again.load_state_dict(net.state_dict())
    assert torch.equal(again(torch.ones(1, 1, 30, 30), 2)[0], net(torch.ones(1, 1, 30, 30), 2)[0])


def test_bundled_exact_atoms_snap_when_confident() -> None:
    """exact='bundled': the 12 kernels, delta and PIL ×2/3/4 follow the learned atoms; a confident retrieval of
    one of them *is* that kernel (estimate, kernel_policy), a hesitant one stays the blend."""
    net = E.KernelEstimator(atoms=8, exact="bundled")
    assert net.exact_names[:12] == list(load_kernels()) and net.exact_names[12:] == ["delta", "pil-x2", "pil-x3",
                                                                                       "pil-x4"]
    assert torch.equal(net.atoms()[net.exact_index("K9")].detach(), load_kernels()["K9"].float())
    assert E.build_estimator({"estimator": net.config()}).exact == "bundled"
    assert E.build_estimator({"estimator": {"atoms": 8}}).exact == "none"  # files before exact atoms
    assert E.build_estimator({"estimator": {"atoms": 8, "arch": 2}}).exact == "pil"
    last = net.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[net.exact_index("K9")] = 30.0  # all retrieval weight on K9
    y = torch.rand(1, 3, 40, 40)
    est = E.estimate(net, y, 3)
    assert est["snapped"] and est["exact"] == "K9" and est["exact_p"] > 0.99
    assert torch.equal(est["kernel"], load_kernels()["K9"].float()) and est["nearest"] == "K9"
    k, _ = E.kernel_policy(None, est["kernel"], est["snapped"])
    assert torch.equal(k, est["kernel"])  # K9 is wider than the minimum width: used as it is
    blend = E.estimate(net, y, 3, snap_p=2.0)
    assert not blend["snapped"] and not torch.equal(E.kernel_policy(None, blend["kernel"])[0], est["kernel"])
    with torch.no_grad():
        last.bias.zero_()  # uniform weights: no exact atom is likely enough
    assert not E.estimate(net, y, 3)["snapped"]



def test_centre_head_places_the_retrieved_shape_and_rebuilds_from_its_config() -> None:
    net = E.KernelEstimator(centre_head=True).eval()
    assert net.config()["centre_head"] and E.build_estimator({"estimator": net.config()}).centre_head
    assert "centre_head" not in E.KernelEstimator().config()  # files without a head keep their metadata
    with torch.no_grad():
        net.head[-1].weight.zero_()
        net.head[-1].bias.zero_()
        net.head[-1].bias[-2:] = torch.tensor([-1.0, -1.0])  # centre of mass (−1, −1): PIL's ×3 grid
        logits, u, centre = net.predict(torch.rand(1, 1, 40, 40), 3)
    assert logits.shape == (1, 48) and u.shape == (1,) and centre.shape == (1, 2)
    est = E.estimate(net, torch.rand(1, 1, 40, 40), 3)
    assert E.centroid(est["kernel"]) == pytest.approx((-1.0, -1.0), abs=2e-3)  # a wide blend loses mass at the edge
    assert E.grid_shift(est["kernel"]) == pytest.approx(E.grid_shift(E.pil_bicubic_kernel(3)), abs=2e-3)


def test_retrieval_is_a_convex_combination_of_atoms() -> None:
    atoms = torch.stack([E.delta_kernel(), load_kernels()["K4"]])
    k = E.retrieve_kernel(torch.tensor([[0.0, math.log(3.0)]]), atoms)[0]
    assert torch.allclose(k, 0.25 * atoms[0] + 0.75 * atoms[1], atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pil_bicubic_kernel_reproduces_pil_downscaling(scale: int) -> None:
    x = np.random.default_rng(scale).random((96, 96)).astype(np.float32)
    pil = np.asarray(Image.fromarray(x, mode="F").resize((96 // scale, 96 // scale), Image.BICUBIC))
    ours = SRBlur(E.pil_bicubic_kernel(scale), scale).A(torch.from_numpy(x)[None, None])[0, 0].numpy()
    m = 4  # away from the borders (circular there, edge-replicated in PIL)
    assert np.abs(pil - ours)[m:-m, m:-m].max() < 1e-5


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_valid_degradation_matches_the_operator(scale: int) -> None:
    hr = torch.rand(2, 1, 72, 72, dtype=torch.float64)
    ks = torch.stack([load_kernels()["K9"], E.gaussian_kernel(0.8, 2.0, 0.3)[0]])
    lr = E.degrade_valid(hr, ks, scale)
    for i in range(2):
        ref = SRBlur(ks[i].double(), scale).A(hr[i : i + 1])
        o = 12 // scale
        assert torch.allclose(lr[i], ref[0, :, o : o + lr.shape[-2], o : o + lr.shape[-1]], atol=1e-10)


def test_kernel_families_and_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    for fam in E.FAMILIES:
        k = E.sample_kernel(fam, 3, gen)
        assert k.shape == (25, 25) and abs(float(k.sum()) - 1) < 1e-5
    assert E.kernel_width(E.delta_kernel()) == 0
    assert E.kernel_width(E.gaussian_kernel(2.0, 2.0, 0.0)[0]) == pytest.approx(2.0, rel=0.02)
    assert E.nearest_bundled(load_kernels()["K7"]) == ("K7", 0.0)
    with pytest.raises(ValueError, match="unknown kernel family"):
        E.sample_kernel("box", 3, gen)



def test_recentred_moves_only_the_centre_of_mass() -> None:
    k9 = load_kernels()["K9"]
    moved = E.recentred(k9, (0.0, 0.0))  # K9's mass sits ~(−1.8, +1.0) px off its centre tap
    assert E.centroid(moved) == pytest.approx((0.0, 0.0), abs=1e-4) and float(moved.sum()) == pytest.approx(1.0)
    assert E.kernel_width(moved) == pytest.approx(E.kernel_width(k9), abs=0.05)
    point = E.recentred(E.delta_kernel(), (1.0, -2.0))  # whole-pixel moves are exact
    assert point[13, 10] == 1.0 and E.grid_shift(point) == pytest.approx((-1.0, 2.0))
    assert E.grid_shift(E.pil_bicubic_kernel(3)) == pytest.approx((1.0, 1.0))  # PIL: the centred grid


def test_kernel_policy_widens_auto_and_softens_a_much_wider_given_kernel() -> None:
    k5, delta = load_kernels()["K5"], E.delta_kernel()
    auto, mismatch = E.kernel_policy(None, delta)
    assert not mismatch and E.kernel_width(auto) > 0.4 and abs(float(auto.sum()) - 1) < 1e-5
    same, mismatch = E.kernel_policy(k5, k5)
    assert not mismatch and same is k5
    soft, mismatch = E.kernel_policy(k5, delta)  # the photo is sharp, the user says K5: soften, warn
    assert mismatch and E.kernel_width(soft) < E.kernel_width(k5)
    otf_min = {n: float(torch.fft.fft2(k).abs().min()) for n, k in (("soft", soft), ("k5", k5))}
    assert otf_min["soft"] > 0.1 and otf_min["soft"] > 20 * otf_min["k5"]  # no deep spectral nulls left to invert
    narrow, mismatch = E.kernel_policy(load_kernels()["K1"], load_kernels()["K4"])  # too narrow: soft, kept
    assert mismatch and torch.equal(narrow, load_kernels()["K1"])


def test_data_weight_regularises_the_hqs_step() -> None:
    y, w = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 24, 24)
    k = load_kernels()["K4"]
    plain = SRBlur(k, 3).hqs_step(w, y, 0.01)
    strong = SRBlur(k, 3, data_weight=1e6).hqs_step(w, y, 0.01)
    assert torch.allclose(strong, w, atol=1e-4) and not torch.allclose(plain, w, atol=1e-2)
    with pytest.raises(ValueError):
        SRBlur(k, 3, data_weight=0.5)


# ------------------------------------------------------------------------------------------ restore


class _Fixed(torch.nn.Module):
    """An estimator stand-in that always retrieves one atom of the real dictionary (and σ = 0)."""

    def __init__(self, atom: int) -> None:
        super().__init__()
        self.inner = E.KernelEstimator()
        self.atom = atom
        self.width_scale: dict[int, float] = {}
        self.exact_names: list[str] = []  # no exact atoms

    def predict(self, y: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        logits = torch.full((y.shape[0], 48), -50.0)
        logits[:, self.atom] = 50.0
        return logits, E.u_from_noise(torch.zeros(y.shape[0])), None

    def kernel(self, logits: torch.Tensor) -> torch.Tensor:
        return self.inner.kernel(logits)


@pytest.fixture
def in_zoo(zoo_env, monkeypatch):
    for k in ("LORUN_MANIFEST", "LORUN_CACHE_DIR", "LORUN_OFFLINE"):
        monkeypatch.setenv(k, zoo_env[k])
    monkeypatch.setattr(R, "_ESTIMATOR", [])
    return zoo_env


def _image(path: Path, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _restore(tmp_path: Path, kernel: str, **kw) -> tuple[list[dict], list[str]]:
    notes: list[str] = []
    opts = R.RestoreOptions(task="sr", scale=2, kernel=kernel, output=tmp_path / f"out_{kernel}.png", **kw)
    res = R.run_restore([_image(tmp_path / "lr.png")], opts, on_note=notes.append)
    return res, notes


def test_auto_path_uses_the_estimate_and_reports_it(in_zoo, tmp_path) -> None:
    R._ESTIMATOR[:] = [_Fixed(atom=3)]  # atom 3 of the dictionary starts as K4
    res, notes = _restore(tmp_path, "auto", save_kernel=tmp_path / "k.npy")
    est = res[0]["kernel_estimate"]
    assert res[0]["kernel"] == "auto" and est["nearest"] == "K4" and not est["mismatch"] and notes == []
    ref = E.estimate(R._ESTIMATOR[0], torch.rand(1, 3, 20, 20), 2, views=E.GRID_VIEWS,
                     centre=E.grid_centre("centre", 2))  # a file's default grid; the stand-in ignores the image
    assert est["noise"] == 0 and est["width"] == pytest.approx(ref["width"], abs=1e-3)
    assert est["width"] == pytest.approx(2.0, abs=0.1)  # K4's width (its views' shapes averaged)
    k = np.load(tmp_path / "k.npy")
    assert k.shape == (25, 25) and k.dtype == np.float32 and abs(k.sum() - 1) < 1e-5
    assert E.nearest_bundled(torch.from_numpy(k))[0] == "K4"
    assert (tmp_path / "out_auto.png").is_file() and not list(tmp_path.glob(".*.tmp"))


def test_a_tiny_image_under_auto_trims_the_estimate_or_says_it_is_too_small(in_zoo, tmp_path) -> None:
    """An output smaller than the estimate's 25 taps gets the estimate cut to fit (a note says so); one that holds
    no 3-tap kernel is one clear error, and nothing is written."""
    R._ESTIMATOR[:] = [_Fixed(atom=3)]
    notes: list[str] = []
    opts = R.RestoreOptions(task="sr", scale=2, kernel="auto", output=tmp_path / "out.png")
    R.run_restore([_image(tmp_path / "small.png", size=5)], opts, on_note=notes.append)
    assert Image.open(tmp_path / "out.png").size == (10, 10)
    assert any("trimmed to 9×9 taps" in n for n in notes)
    k = E.trimmed_kernel(load_kernels()["K4"], 9)
    assert k.shape == (9, 9) and float(k.sum()) == pytest.approx(1.0) and E.centroid(k) == pytest.approx((0.0, 0.0))
    opts = R.RestoreOptions(task="sr", scale=2, kernel="auto", output=tmp_path / "one_x2.png")
    with pytest.raises(R.LorunError, match="too small for ×2 SR.*at least 2 pixels a side"):
        R.run_restore([_image(tmp_path / "one.png", size=1)], opts)
    assert not (tmp_path / "one_x2.png").exists()


def test_exposure_map_of_a_single_pixel_is_finite() -> None:
    m, c, g = exposure_map(torch.full((1, 3, 1, 1), 0.3))
    assert m == pytest.approx(0.3) and all(math.isfinite(v) for v in (m, c, g))


def test_explicit_kernel_that_disagrees_prints_one_warning(in_zoo, tmp_path) -> None:
    R._ESTIMATOR[:] = [_Fixed(atom=12)]  # atom 12 starts as a delta: the estimator says "no blur"
    res, notes = _restore(tmp_path, "K4")
    assert len(notes) == 1 and "--kernel K4" in notes[0] and "disagrees" in notes[0] and "\n" not in notes[0]
    assert res[0]["kernel_estimate"]["mismatch"] and res[0]["kernel_estimate"]["softened"]
    R._ESTIMATOR[:] = [_Fixed(atom=3)]  # agrees with K4: silent
    _, notes = _restore(tmp_path, "K4", force=True)
    assert notes == []


def test_auto_without_estimator_weights_is_one_clear_error(in_zoo, tmp_path, monkeypatch) -> None:
    manifest = json.loads(Path(in_zoo["LORUN_MANIFEST"]).read_text())
    manifest["models"] = [e for e in manifest["models"] if e["name"] != E.ESTIMATOR_NAME]
    # beside the zoo's own manifest, so the zoo's files (not the package's of the same name) are found
    edited = Path(in_zoo["LORUN_MANIFEST"]).with_name("manifest-no-estimator.json")
    edited.write_text(json.dumps(manifest))
    monkeypatch.setenv("LORUN_MANIFEST", str(edited))
    with pytest.raises(Exception, match="--kernel auto: needs the sr-kernel-estimator weights"):
        _restore(tmp_path, "auto")
    assert not (tmp_path / "out_auto.png").exists()
    res, _ = _restore(tmp_path, "K2")  # an explicit kernel still works, unchecked
    assert "kernel_estimate" not in res[0]


def test_cli_auto_default_save_kernel_and_bad_options(zoo_env, tmp_path) -> None:
    _image(tmp_path / "in.png")
    r = run_lorun(["restore", "--task", "sr", "--scale", "2", "in.png", "-o", "o.png", "--save-kernel", "k.npy",
                   "--json"], zoo_env, tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)[0]
    assert rec["kernel"] == "auto" and set(rec["kernel_estimate"]) >= {"nearest", "width", "noise"}
    assert np.load(tmp_path / "k.npy").shape == (25, 25)
    for args, msg in (
        (["--save-kernel", "k.npy"], "k.npy exists"),
        (["--save-kernel", "k.txt"], "cannot write a kernel as .txt"),
        (["--task", "cs", "--save-kernel", "k2.npy"], "--save-kernel is an SR option"),
    ):
        r = run_lorun(["restore", "--task", "sr", "--scale", "2", "in.png", "-o", "o2.png", *args], zoo_env, tmp_path)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o2.png").exists()
    r = run_lorun(["restore", "--task", "sr", "--scale", "2", "in.png", "-o", "o3.png"], zoo_env, tmp_path)
    assert r.returncode == 0 and "kernel estimate (used)" in r.stderr


def test_options_accept_auto_in_any_case() -> None:
    from lorun_cli.options import RestoreOptions, check_options

    opts = RestoreOptions(task="sr", kernel="AUTO")
    check_options(opts)
    assert opts.kernel == "auto"
    with pytest.raises(UsageError):
        check_options(RestoreOptions(task="sr", kernel="K13"))


def test_scaled_and_auto_kernels() -> None:
    k4 = load_kernels()["K4"]
    assert E.kernel_width(E.scaled_kernel(k4, 0.8)) == pytest.approx(1.6, abs=0.05)
    assert E.scaled_kernel(k4, 1.0) is k4
    auto = E.auto_kernel(k4)
    assert abs(float(auto.sum()) - 1) < 1e-5 and float(auto.min()) >= 0
    keep = E.AUTO_KEEP
    assert torch.allclose(auto, keep * k4 + (1 - keep) * E.widened_kernel(E.delta_kernel()), atol=1e-5)
    assert E.kernel_width(auto) <= E.kernel_width(k4) + 1e-6
    narrow = [E.kernel_width(E.auto_kernel(E.delta_kernel(), 1.0, w)) for w in (0.3, 0.5, 0.8)]
    assert 0 < narrow[0] < narrow[1] < narrow[2]  # min_width sets how far a delta estimate is widened
    pil = E.pil_bicubic_kernel(3)  # off-centre by (−1, −1): the mix keeps the shift
    assert E.centroid(E.auto_kernel(pil)) == pytest.approx(E.centroid(pil), abs=1e-4)
    assert E.centroid(E.point_kernel(-0.25, 0.5)) == pytest.approx((-0.25, 0.5), abs=1e-6)


def test_auto_keep_falls_for_wide_estimates() -> None:
    lo, hi, k_wide = E.AUTO_WIDE
    keep = E.AUTO_KEEP
    assert E.auto_keep(lo - 1.0) == keep and E.auto_keep(lo) == keep
    assert E.auto_keep(hi) == pytest.approx(k_wide) and E.auto_keep(hi + 5.0) == pytest.approx(k_wide)
    assert E.auto_keep((lo + hi) / 2) == pytest.approx((keep + k_wide) / 2)
    assert E.auto_keep(hi + 5.0, wide=None) == keep
    assert E.auto_keep(hi, keep=0.1) == pytest.approx(0.1)  # the rule never keeps more than ``keep``
    k9 = load_kernels()["K9"]  # a long motion blur, wider than ``hi``
    assert E.kernel_width(k9) > hi
    dy, dx = E.centroid(k9)
    narrow = E.widened_kernel(E.point_kernel(dy, dx))
    expect = E.softened_kernel(E.widened_kernel(k9), narrow, k_wide)
    assert torch.allclose(E.auto_kernel(k9), expect, atol=1e-6)
    assert not torch.allclose(E.auto_kernel(k9, wide=None), expect, atol=1e-3)
    assert E.kernel_width(E.auto_kernel(k9)) < E.kernel_width(E.auto_kernel(k9, wide=None))


def test_auto_keep_follows_the_views_spread() -> None:
    """Views that agree keep more of the estimate, views that disagree less; the wide rule still caps it."""
    rule = lo, hi, sure, unsure = (0.045, 0.075, 0.9, 0.75)  # the rule checked in docs/logs/sr-views-prereg.md
    assert E.auto_keep(1.0, spread=0.0, spread_rule=rule) == sure == E.auto_keep(1.0, spread=lo, spread_rule=rule)
    assert E.auto_keep(1.0, spread=(lo + hi) / 2, spread_rule=rule) == pytest.approx((sure + unsure) / 2)
    assert E.auto_keep(1.0, spread=hi + 1.0, spread_rule=rule) == unsure
    assert E.auto_keep(1.0, spread=0.0, spread_rule=None) == E.AUTO_KEEP and E.auto_keep(1.0) == E.AUTO_KEEP
    assert E.auto_keep(E.AUTO_WIDE[1] + 1.0, spread=0.0, spread_rule=rule) == pytest.approx(E.AUTO_WIDE[2])
    k4 = load_kernels()["K4"]
    widths = [E.kernel_width(E.auto_kernel(k4, spread=v, spread_rule=rule)) for v in (0.0, 1.0)]
    assert widths[0] > widths[1]


def test_a_sure_mid_width_estimate_keeps_its_whole_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/logs/sr-sure-prereg.md (measured, off by default): an estimate in AUTO_SURE's width band whose 8 views
    agree gets its keep; a wider spread, a width outside the band, a single view's 0 or the rule off keep AUTO_KEEP."""
    assert E.AUTO_SURE is None and E.auto_keep(2.3, spread=0.01) == E.AUTO_KEEP  # shipped: off
    monkeypatch.setattr(E, "AUTO_SURE", E.SURE_CHECKED)
    lo, hi, limit, keep = E.AUTO_SURE
    mid = (lo + hi) / 2
    assert E.auto_keep(mid, spread=limit / 2) == keep == E.auto_keep(lo, spread=limit)
    assert E.auto_keep(mid, spread=limit * 1.5) == E.AUTO_KEEP and E.auto_keep(mid, spread=0.0) == E.AUTO_KEEP
    assert E.auto_keep(lo - 0.05, spread=limit / 2) == E.AUTO_KEEP == E.auto_keep(hi, spread=limit / 2)
    k5 = load_kernels()["K5"]
    assert lo <= E.kernel_width(k5) < hi
    torch.testing.assert_close(E.auto_kernel(k5, spread=limit / 2), E.widened_kernel(k5), atol=1e-6, rtol=0)
    assert not torch.allclose(E.auto_kernel(k5, spread=limit * 2), E.widened_kernel(k5), atol=1e-3)
    net = E.KernelEstimator(centre_head=True).eval()
    y = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(E, "AUTO_SURE", None)
    one = E.estimate(net, y, 2)
    assert one["spread"] == 0.0 and E.auto_keep(mid, spread=limit / 2) == E.AUTO_KEEP
    monkeypatch.setattr(E, "AUTO_SURE", (one["width"] - 0.01, one["width"] + 0.01, limit, keep))
    sure = E.estimate(net, y, 2)  # in the band: the one view's kernel, its 8 views' spread
    assert torch.equal(sure["kernel"], one["kernel"])
    assert sure["spread"] == pytest.approx(E.estimate(net, y, 2, views=8)["spread"]) and sure["spread"] > 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_views_of_an_lr_image_map_back_to_its_kernel(scale: int) -> None:
    """Each view (transpose, flips) of y = (x ⊛ k)↓s is the same degradation of the viewed scene by a kernel whose
    shape, mapped back, is k's; flips move the kernel by s − 1 px (top-left decimation), transposes do not."""
    torch.manual_seed(scale)
    x = torch.rand(1, 1, 12 * scale, 15 * scale)
    k = E.recentred(E.motion_kernel(torch.Generator().manual_seed(7)), (0.6, -1.2))
    y = SRBlur(k, scale).A(x)
    for view in E.VIEWS:
        t, fr, fc = view
        kv = k.t() if t else k
        dims = [d for d, f in ((-2, fr), (-1, fc)) if f]
        if dims:
            shift = torch.tensor([[-(scale - 1.0) if fr else 0.0, -(scale - 1.0) if fc else 0.0]])
            kv = E.shift_kernels(kv.flip(dims)[None], shift)[0]
        torch.testing.assert_close(E._view(y, view), SRBlur(kv, scale).A(E._view(x, view)), atol=1e-5, rtol=0)
        back = E._shape_from_view(kv, view)
        torch.testing.assert_close(E.recentred(back, E.centroid(k)), k, atol=1e-5, rtol=0)
        assert (E.centroid(back) == pytest.approx(E.centroid(k), abs=1e-4)) == (not dims)


def test_estimate_over_views_averages_the_unflipped_and_reports_their_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(E, "AUTO_SURE", None)  # one view's spread is 0 (not its 8 views': test_a_sure_mid_width…)
    torch.manual_seed(1)
    net = E.KernelEstimator(centre_head=True).eval()
    y = torch.rand(1, 3, 30, 40)
    one, four = E.estimate(net, y, 2, views=1), E.estimate(net, y, 2, views=4)
    _, k0, n0 = E._predict(net, y, 2)
    assert torch.equal(one["kernel"], k0[0]) and one["spread"] == 0.0 and one["noise"] == pytest.approx(float(n0[0]))
    _, kt, nt = E._predict(net, y.transpose(-1, -2), 2)
    mean = (k0[0] + kt[0].t()) / 2  # the identity's and the transpose's estimates, mapped back
    torch.testing.assert_close(four["kernel"], mean / mean.sum(), atol=2e-3, rtol=0)
    assert four["noise"] == pytest.approx((float(n0[0]) + float(nt[0])) / 2, abs=1e-6)
    assert four["spread"] > 0 and float(four["kernel"].sum()) == pytest.approx(1.0, abs=1e-5)
    sym = torch.rand(1, 3, 32, 32)
    sym = (sym + sym.transpose(-1, -2)) / 2  # an image equal to its transpose has a symmetric 2-view estimate
    k_sym = E.estimate(net, sym, 2, views=2)["kernel"]
    torch.testing.assert_close(k_sym, k_sym.t(), atol=1e-6, rtol=0)


def test_estimate_on_a_known_grid_averages_every_view_at_the_grid_centre() -> None:
    """With the grid's centre given, flipped views count too: the kernel is the mean of all views' shapes, each at
    that centre; one view leaves the estimate as it is (restore's one-view path runs bit for bit as before)."""
    torch.manual_seed(2)
    net = E.KernelEstimator(centre_head=True).eval()
    y, centre = torch.rand(1, 3, 30, 36), E.grid_centre("centre", 3)
    est = E.estimate(net, y, 3, views=8, centre=centre)
    assert E.centroid(est["kernel"]) == pytest.approx(centre, abs=2e-3)
    shapes = []
    for view in E.VIEWS:
        _, kv, _ = E._predict(net, E._view(y, view), 3)
        shapes.append(E.recentred(E._shape_from_view(kv[0], view), centre))
    mean = torch.stack(shapes).mean(0)
    torch.testing.assert_close(est["kernel"], mean / mean.sum(), atol=1e-5, rtol=0)
    assert not torch.allclose(est["kernel"], E.estimate(net, y, 3, views=8)["kernel"], atol=1e-4)  # unflipped only
    one = E.estimate(net, y, 3, views=1, centre=centre)
    assert torch.equal(one["kernel"], E.estimate(net, y, 3, views=1)["kernel"])


def test_noise_data_weight_rises_with_the_estimated_noise() -> None:
    lo, hi, top = E.AUTO_NOISE_WEIGHT
    assert E.noise_data_weight(0.0) == 1.0 and E.noise_data_weight(lo / 255) == 1.0
    assert E.noise_data_weight(hi / 255) == pytest.approx(top)
    assert E.noise_data_weight(3 * hi / 255) == pytest.approx(top)
    assert E.noise_data_weight((lo + hi) / 2 / 255) == pytest.approx((1 + top) / 2)
    assert E.noise_data_weight(1.0, None) == 1.0
    assert E.noise_data_weight(8 / 255, (2.0, 6.0, 3.0)) == pytest.approx(3.0)


def test_auto_restore_weights_the_data_step_by_the_estimated_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A noisy estimate gives data_weight > 1 (recorded): under --kernel auto from a light noise on, with an
    explicit kernel only from a heavier one."""
    from lorun_cli import restore

    fake = {"kernel": E.delta_kernel(), "noise": 6 / 255, "width": 0.0, "nearest": "K1", "nearest_error": 0.0,
            "snapped": False, "spread": 0.0}
    monkeypatch.setattr(restore, "sr_estimator", lambda required: object())
    monkeypatch.setattr(E, "estimate", lambda net, y, s, **kw: dict(fake))
    y = torch.rand(1, 3, 16, 16)
    _, weight, rec = restore.sr_kernel_for(y, 2, None)
    assert weight == pytest.approx(E.noise_data_weight(6 / 255)) and weight > 1
    assert rec["data_weight"] == round(weight, 3)
    _, weight, rec = restore.sr_kernel_for(y, 2, load_kernels()["K1"])
    assert weight == pytest.approx(E.noise_data_weight(6 / 255, E.GIVEN_NOISE_WEIGHT)) and weight > 1
    fake["noise"] = 3 / 255  # light noise: auto weights the data step, an explicit kernel does not
    assert restore.sr_kernel_for(y, 2, None)[1] > 1
    _, weight, rec = restore.sr_kernel_for(y, 2, load_kernels()["K1"])
    assert weight == 1.0 and rec["data_weight"] == 1.0


def test_auto_moves_the_estimate_out_to_a_multiple_of_its_centre() -> None:
    pil = E.pil_bicubic_kernel(3)  # centre of mass (−1, −1)
    g = E.AUTO_CENTRE_GAIN
    assert E.centroid(E.centre_expanded(pil)) == pytest.approx((-g, -g), abs=1e-3)
    assert E.centre_expanded(pil, 1.0) is pil
    centred = E.gaussian_kernel(1.2, 1.2, 0.0)[0].float()
    assert E.centroid(E.centre_expanded(centred)) == pytest.approx((0.0, 0.0), abs=1e-4)
    k_auto, _ = E.kernel_policy(None, pil)
    assert E.centroid(k_auto) == pytest.approx((-g, -g), abs=1e-3)
    k_plain, _ = E.kernel_policy(None, pil, centre_gain=1.0)  # the bench's registered column
    assert E.centroid(k_plain) == pytest.approx((-1.0, -1.0), abs=1e-3)


# ------------------------------------------------------------------ blind adapters (--sr-kernel auto)
def test_batch_estimate_matches_the_single_image_estimate() -> None:
    torch.manual_seed(0)
    net = E.KernelEstimator(centre_head=True).eval()
    y = torch.rand(3, 3, 20, 24)
    ks, noise = E.estimate_batch(net, y, 3)
    assert ks.shape == (3, 25, 25) and noise.shape == (3,)
    for i in range(3):
        one = E.estimate(net, y[i], 3, views=1)
        torch.testing.assert_close(ks[i], one["kernel"], rtol=1e-5, atol=1e-6)
        assert float(noise[i]) == pytest.approx(one["noise"], abs=1e-6)


def test_raw_policy_uses_the_estimate_itself_widened() -> None:
    k = load_kernels()["K6"]
    raw, mismatch = E.kernel_policy(None, k, policy="raw")
    assert not mismatch and torch.equal(raw, E.widened_kernel(k))
    blend, _ = E.kernel_policy(None, k)
    assert torch.equal(blend, E.kernel_policy(None, k, policy="blend")[0])  # None: the blend rules
    assert not torch.allclose(blend, raw)  # the blend keeps a quarter of a narrow kernel
    assert torch.equal(E.kernel_policy(k, k, policy="raw")[0], k)  # an explicit kernel is the user's either way
    with pytest.raises(ValueError, match="policy"):
        E.kernel_policy(None, k, policy="bogus")


def test_per_sample_data_weight_equals_one_operator_per_image() -> None:
    torch.manual_seed(1)
    k = load_kernels()["K3"]
    x, y = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 8, 8)
    gamma = torch.tensor([1.0, 2.5, 4.0])
    batch = SRBlur(k, 3, data_weight=gamma).hqs_step(x, y, torch.tensor(0.02))
    for i in range(3):
        one = SRBlur(k, 3, data_weight=float(gamma[i])).hqs_step(x[i : i + 1], y[i : i + 1], torch.tensor(0.02))
        torch.testing.assert_close(batch[i : i + 1], one)
    with pytest.raises(ValueError, match="≥ 1"):
        SRBlur(k, 3, data_weight=torch.tensor([1.0, 0.5]))


def test_auto_policy_survives_save_and_load(tmp_path) -> None:
    from lorun_cli import models

    net = models.build_model("sr", "share2", "unet", denoiser_kwargs={"widths": [4, 8]})
    assert net.auto_policy is None
    net.auto_policy = "raw"
    models.save_model(tmp_path / "b.safetensors", net)
    assert models.load_model(tmp_path / "b.safetensors").auto_policy == "raw"
    net.auto_policy = None
    models.save_model(tmp_path / "p.safetensors", net)
    assert "auto_policy" not in models.read_meta(tmp_path / "p.safetensors")


def test_kernel_auto_is_served_by_the_blind_entry_when_there_is_one(in_zoo, tmp_path, monkeypatch) -> None:
    manifest = json.loads(Path(in_zoo["LORUN_MANIFEST"]).read_text())
    assert R.default_model_name("sr", "lorun9", kernel="auto") == "sr-lorun9"  # none yet: the plain adapters
    blind = {**next(e for e in manifest["models"] if e["name"] == "sr-lorun9"), "name": "sr-lorun9-auto",
             "kernel": "auto"}
    manifest["models"].append(blind)
    edited = Path(in_zoo["LORUN_MANIFEST"]).with_name("manifest-blind.json")
    edited.write_text(json.dumps(manifest))
    monkeypatch.setenv("LORUN_MANIFEST", str(edited))
    assert R.default_model_name("sr", "lorun9", kernel="auto") == "sr-lorun9-auto"
    assert R.default_model_name("sr", "lorun9", kernel="K5") == "sr-lorun9"
    assert R.default_model_name("sr", "lorun9") == "sr-lorun9"


def test_sr_kernel_auto_training_hands_the_data_step_the_estimate(in_zoo, tmp_path) -> None:
    """pretrain --sr-kernel auto-raw: each batch's data step gets the estimator's kernel of a larger crop around
    the patch and a per-sample data weight; validation restores with the estimate; the file records the policy."""
    from lorun_cli import models
    from lorun_cli.io import datasets as DS
    from lorun_cli.train.loop import TrainConfig, train
    from lorun_cli.train.tasks import TaskData

    rng = np.random.default_rng(0)
    (tmp_path / "train/t91").mkdir(parents=True)
    for name, side in (("a.bmp", 160), ("b.bmp", 150), (DS.SR_VAL_NAMES[0], 48)):
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(tmp_path / "train/t91" / name)
    cfg = TrainConfig(task="sr", strategy="share2", denoiser="unet", data=str(tmp_path), steps=2, batch=2, patch=24,
                      val_every=2, ckpt_every=2, log_every=1, out=str(tmp_path / "m.safetensors"), sr_kernel="auto-raw")
    net = models.build_model("sr", "share2", "unet", denoiser_kwargs={"widths": [4, 8]})
    td = TaskData(cfg, net)
    x, y, op = td.batch(torch.Generator().manual_seed(0), torch.device("cpu"))
    assert x.shape == (2, 3, 24, 24) and y.shape[-1] == 24 // op.scale
    assert isinstance(op.data_weight, torch.Tensor) and op.data_weight.shape == (2,)
    assert bool((op.data_weight >= 1).all()) and torch.allclose(op.kernel.sum(dim=(1, 2)), torch.ones(2))
    assert all(E.kernel_width(k) >= E.MIN_WIDTH - 1e-3 for k in op.kernel)  # widened estimates, not true kernels
    (_, _, y_val, op_val), = td.val_items(torch.device("cpu"))
    k_val, w_val = td.auto_terms(y_val, op_val.scale)
    assert torch.equal(op_val.kernel, k_val[0]) and op_val.data_weight == float(w_val[0])
    train(cfg)
    assert models.load_model(tmp_path / "m.safetensors").auto_policy == "raw"
    with pytest.raises(UsageError, match="--sr-kernel applies to --task sr only"):
        TaskData(TrainConfig(task="cs", data=str(tmp_path), sr_kernel="auto"), net)
    with pytest.raises(UsageError, match="sr_mix .* applies to --task sr only"):
        TaskData(TrainConfig(task="cs", data=str(tmp_path), extra={"sr_mix": {"delta": 1.0}}), net)


def test_restore_hands_the_model_policy_to_the_kernel_choice(in_zoo, tmp_path, monkeypatch) -> None:
    """`--kernel auto --model FILE` restores under the policy the file was trained with (raw: the widened estimate)."""
    from lorun_cli import models
    from lorun_cli.io.weights import resolve_model

    net = models.load_model(resolve_model("sr-lorun9"))
    net.auto_policy = "raw"
    blind = tmp_path / "blind.safetensors"
    models.save_model(blind, net, {"backbone": str(resolve_model("sr-share9"))})
    R._ESTIMATOR[:] = [_Fixed(atom=3)]
    seen: list[tuple[str, torch.Tensor]] = []
    real = R.sr_kernel_for

    def spy(y, scale, given, policy=None, **kw):
        k, w, rec = real(y, scale, given, policy, **kw)
        seen.append((policy, k))
        return k, w, rec

    monkeypatch.setattr(R, "sr_kernel_for", spy)
    _restore(tmp_path, "auto", model=str(blind), grid="auto")  # the estimate's own centre (a file's default moves it)
    _restore(tmp_path, "auto", force=True, grid="auto")  # the zoo has no blind entry: sr-lorun9 under the blend rules
    (p_raw, k_raw), (p_blend, k_blend) = seen
    est = E.estimate(R._ESTIMATOR[0], torch.rand(1, 3, 20, 20), 2)  # the stand-in ignores the image
    assert p_raw == "raw" and p_blend is None  # a model not trained on estimates: the blend rules
    torch.testing.assert_close(k_raw, E.widened_kernel(est["kernel"]), rtol=1e-4, atol=1e-6)
    blend = E.kernel_policy(None, est["kernel"], policy="blend", spread=est["spread"])[0]
    torch.testing.assert_close(k_blend, blend, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(k_blend, k_raw, atol=1e-4)


def test_jpeg_luma_step_reads_the_quantisation_tables(tmp_path: Path) -> None:
    """The mean luma step of a JPEG file's tables grows as the quality falls; other formats give None."""
    steps = []
    for q in (95, 75, 50):
        _image(tmp_path / "x.png")
        Image.open(tmp_path / "x.png").save(tmp_path / f"x{q}.jpg", quality=q)
        steps.append(images.file_facts(tmp_path / f"x{q}.jpg").jpeg_step)
    assert steps[0] < steps[1] < steps[2] and steps[1] == pytest.approx(29.03, abs=0.01)  # IJG tables at 75
    assert images.file_facts(tmp_path / "x.png").jpeg_step is None
    im = Image.open(tmp_path / "x.png")  # a multi-picture JPEG as some cameras write, named .jpg
    im.save(tmp_path / "camera.jpg", format="MPO", quality=75, save_all=True, append_images=[im])
    assert Image.open(tmp_path / "camera.jpg").format == "MPO"
    assert images.file_facts(tmp_path / "camera.jpg").jpeg_step == pytest.approx(steps[1])
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg")
    assert images.file_facts(tmp_path / "fake.jpg").jpeg_step is None


def test_jpeg_data_weight_rises_with_the_step_and_is_capped() -> None:
    """1 for no JPEG and fine tables, then rising with the step to a cap; with a given kernel from a coarser step."""
    for explicit, (start, slope, cap) in ((False, E.JPEG_WEIGHT_AUTO), (True, E.JPEG_WEIGHT_GIVEN)):
        assert E.jpeg_data_weight(None, explicit) == 1.0 and E.jpeg_data_weight(start, explicit) == 1.0
        assert E.jpeg_data_weight(start + slope, explicit) == pytest.approx(2.0)
        assert E.jpeg_data_weight(1e4, explicit) == cap
    assert E.JPEG_WEIGHT_GIVEN[0] > E.JPEG_WEIGHT_AUTO[0]
    assert 1.0 < E.jpeg_data_weight(40.0, True) < E.jpeg_data_weight(40.0) < E.jpeg_data_weight(60.0)


def test_a_jpeg_input_weights_the_data_step_by_its_tables(in_zoo, tmp_path) -> None:
    """The same pixels as JPEG and as PNG: only the JPEG's data step is weighted (auto and an explicit kernel),
    and the record names its luma step."""
    R._ESTIMATOR[:] = [_Fixed(atom=3)]
    Image.open(_image(tmp_path / "src.png")).save(tmp_path / "lr.jpg", quality=40)  # coarse: weighted either way
    Image.open(tmp_path / "lr.jpg").save(tmp_path / "same.png")
    for kernel in ("auto", "K4"):
        res = R.run_restore([tmp_path / "lr.jpg", tmp_path / "same.png"],
                            R.RestoreOptions(task="sr", scale=2, kernel=kernel, output=tmp_path / f"o_{kernel}",
                                             force=True))
        jpg, png = (r["kernel_estimate"] for r in res)
        step = jpg["jpeg_step"]
        assert step > 20 and jpg["data_weight"] > 1
        assert jpg["data_weight"] == pytest.approx(E.jpeg_data_weight(step, kernel != "auto"), abs=0.01)
        assert "jpeg_step" not in png and png["data_weight"] == 1.0


def test_a_dim_jpeg_weights_the_data_step_by_its_step_in_the_mapped_image(in_zoo, tmp_path) -> None:
    """The exposure map multiplies the JPEG error by its gain g: under --kernel auto the data step is weighted for
    g × the file's luma step; a given kernel's rule reads the file's step. The record names the file's own step."""
    R._ESTIMATOR[:] = [_Fixed(atom=3)]
    rng = np.random.default_rng(1)
    Image.fromarray((20 + rng.random((48, 48, 3)) * 40).astype(np.uint8)).save(tmp_path / "dim.jpg", quality=60)
    file_step = images.file_facts(tmp_path / "dim.jpg").jpeg_step
    for kernel in ("auto", "K4"):
        res = R.run_restore([tmp_path / "dim.jpg"], R.RestoreOptions(task="sr", scale=2, kernel=kernel,
                                                                     output=tmp_path / f"o_{kernel}.png"))
        est, g = res[0]["kernel_estimate"], res[0]["exposure_gain"]
        assert g > 2 and est["jpeg_step"] == pytest.approx(file_step, abs=0.01)
        if kernel == "auto":
            assert E.jpeg_data_weight(file_step) < est["data_weight"]  # the file's step alone would weight less
            assert est["data_weight"] == pytest.approx(E.jpeg_data_weight(g * file_step), abs=0.01)
        else:
            assert est["data_weight"] == pytest.approx(E.jpeg_data_weight(file_step, True), abs=0.01)


def test_grid_moves_the_estimate_to_the_named_lr_grid() -> None:
    """--grid centre / top-left put auto's kernel at the resizers' centred grid / at zero, whatever the estimate's
    own centre; auto keeps the estimate's centre (expanded)."""
    assert E.grid_centre("auto", 3) is None and E.grid_centre("top-left", 4) == (0.0, 0.0)
    assert E.grid_centre("centre", 3) == (-1.0, -1.0) and E.grid_centre("centre", 2) == (-0.5, -0.5)
    with pytest.raises(ValueError):
        E.grid_centre("middle", 2)
    k = E.recentred(load_kernels()["K4"], (0.3, -0.2))
    for policy in (None, "raw"):
        for grid, want in (("centre", (-1.0, -1.0)), ("top-left", (0.0, 0.0))):
            used, _ = E.kernel_policy(None, k, policy=policy, centre=E.grid_centre(grid, 3))
            assert E.centroid(used) == pytest.approx(want, abs=0.02)
        used, _ = E.kernel_policy(None, k, policy=policy, centre=None)
        assert E.centroid(used) != pytest.approx((0.0, 0.0), abs=0.05)
    given = load_kernels()["K2"]  # a given kernel is never moved
    assert torch.equal(E.kernel_policy(given, given, centre=(-1.0, -1.0))[0], given)


def test_cli_grid_option(zoo_env, tmp_path) -> None:
    _image(tmp_path / "in.png")
    r = run_lorun(["restore", "--task", "sr", "--scale", "2", "--grid", "centre", "in.png", "-o", "o.png", "--json"],
                  zoo_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["kernel_estimate"]["grid"] == "centre"
    for args, want in (([], "centre"), (["--simulate"], "top-left"), (["--grid", "auto"], "auto")):
        r = run_lorun(["restore", "--task", "sr", "--scale", "2", *args, "in.png", "-o", "d.png", "--force", "--json"],
                      zoo_env, tmp_path)  # a file: the resizers' grid; lorun's own simulation: its top-left grid
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["kernel_estimate"]["grid"] == want
    assert E.default_grid(simulated=False) == "centre" and E.default_grid(simulated=True) == "top-left"
    for args, msg in ((["--grid", "middle"], "--grid middle: use one of auto, centre, top-left"),
                      (["--grid", "centre", "--kernel", "K2"], "a given kernel carries its own centre"),
                      (["--grid", "top-left", "--task", "cs"], "--grid top-left places the estimated kernel")):
        r = run_lorun(["restore", "--scale", "2", "in.png", "-o", "o2.png", *args], zoo_env, tmp_path)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "o2.png").exists()


def test_scaled_kernel_about_a_point_keeps_that_point() -> None:
    """Scaling about the centre of mass narrows a kernel without moving it; the default scales about the centre tap."""
    k = E.recentred(E.gaussian_kernel(1.5, 1.0, 0.3)[0], (-1.0, -1.0))
    narrow = E.scaled_kernel(k, 0.7, E.centroid(k))
    assert E.centroid(narrow) == pytest.approx((-1.0, -1.0), abs=1e-3)
    assert E.kernel_width(narrow) < 0.85 * E.kernel_width(k)
    moved = E.scaled_kernel(k, 0.7)  # about the centre tap: the centre of mass moves in with the widths
    assert E.centroid(moved) == pytest.approx((-0.7, -0.7), abs=0.05)


def test_a_dim_image_is_restored_at_the_reference_contrast_and_mapped_back(in_zoo, tmp_path, monkeypatch) -> None:
    import lorun_cli.physics.sr as S

    R._ESTIMATOR[:] = [_Fixed(atom=3)]
    rng = np.random.default_rng(0)
    Image.fromarray((12 + rng.random((48, 48, 3)) * 30).astype(np.uint8)).save(tmp_path / "dim.png")  # std ~0.02
    seen: list[tuple] = []
    monkeypatch.setattr(R, "exposure_map", lambda y: seen.append(S.exposure_map(y)) or seen[-1])
    monkeypatch.setattr(R, "exposure_unmap", lambda x, mcg: seen.append(mcg) or S.exposure_unmap(x, mcg))
    opts = R.RestoreOptions(task="sr", scale=2, kernel="K4", output=tmp_path / "out.png")
    res = R.run_restore([tmp_path / "dim.png"], opts)
    assert len(seen) == 2 and seen[1] == seen[0] and seen[0][2] > 4  # mapped, then mapped back by the same map
    assert res[0]["exposure_gain"] == pytest.approx(seen[0][2], abs=1e-3)
    Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(tmp_path / "lit.png")  # std ~0.29
    res = R.run_restore([tmp_path / "lit.png"], R.RestoreOptions(task="sr", scale=2, kernel="K4",
                                                                 output=tmp_path / "out2.png"))
    assert "exposure_gain" not in res[0] and seen[-1][2] == 1.0  # a well-exposed image is not moved
