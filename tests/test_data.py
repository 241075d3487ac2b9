"""Tests for lorun_cli.train.data on bundled samples and tiny synthetic data trees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorun_cli.errors import LorunError
from lorun_cli.io import datasets as DS
from lorun_cli.train import data as D

CAVE_SIZE = 512


def _png16(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint16)).save(path)


def _fake_scene(folder: Path, name: str, values: np.ndarray) -> None:
    """Write ``values`` (21, H, W) uint16 as CAVE band PNGs ``name_06.png .. name_26.png``."""
    for k, i in enumerate(DS.CAVE_BAND_IDS):
        _png16(folder / name / f"{name}_{i:02d}.png", values[k])


def _linear_cube(h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Spectra linear in wavelength: value = base + 100 * band index (>255 for every band)."""
    return (base[None] + 100 * np.arange(21).reshape(21, 1, 1)).astype(np.uint16)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fake data root with the full layout."""
    r = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    # CS test sets: one plain gray TIFF, one palette TIFF with a reversed palette, one PNG
    (r / "cs/set11").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(r / "cs/set11/gray.tif")
    pal = Image.new("P", (8, 12))
    pal.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    pal.putdata(list(range(96)))
    pal.save(r / "cs/set11/pal.tif")
    (r / "cs/bsd68").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (21, 31), dtype=np.uint8)).save(r / "cs/bsd68/test001.png")
    # SR test sets, including a gray BMP
    for d in ("sr/set5", "sr/set14", "sr/bsd100"):
        (r / d).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (26, 25, 3), dtype=np.uint8)).save(r / "sr/set5/woman.bmp")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(r / "sr/set14/bridge.bmp")
    bsd100 = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(bsd100).save(r / "sr/bsd100/img_001_SRF_3_HR.png")
    # training: values <= 127 everywhere except the validation images, which are all 255
    (r / "train/bsd400").mkdir(parents=True)
    for i in (1, 2, 40):
        name = f"test_{i:03d}.png"
        bright = name in DS.CS_VAL_NAMES
        a = np.full((40, 40), 255, np.uint8) if bright else rng.integers(0, 128, (40, 40), np.uint8)
        Image.fromarray(a).save(r / "train/bsd400" / name)
    (r / "train/t91").mkdir(parents=True)
    for name, (h, w) in {"t1.bmp": (50, 61), "t2.bmp": (37, 70), "t13.bmp": (48, 48)}.items():
        bright = name in DS.SR_VAL_NAMES
        a = np.full((h, w, 3), 255, np.uint8) if bright else rng.integers(0, 128, (h, w, 3), np.uint8)
        Image.fromarray(a).save(r / "train/t91" / name)
    # CAVE: two training scenes whose held-out region is bright (> 0.75), the rest dark (< 0.1)
    yy, xx = np.mgrid[:CAVE_SIZE, :CAVE_SIZE]
    for scene, (y0, x0, y1, x1) in DS.CASSI_VAL_REGIONS.items():
        base = (300 + 3 * xx + 2 * yy) % 4000
        inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        base = np.where(inside, 50000, base)
        _fake_scene(r / "cassi/cave/train", scene, _linear_cube(CAVE_SIZE, CAVE_SIZE, base))
    _fake_scene(r / "cassi/cave/test", "balloons_ms", _linear_cube(CAVE_SIZE, CAVE_SIZE, 400 + yy + xx))
    return r


# ------------------------------------------------------------------------------------------- roots
def test_data_root_from_cli_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LORUN_DATA", raising=False)
    with pytest.raises(LorunError, match="LORUN_DATA"):
        DS.data_root(None)
    monkeypatch.setenv("LORUN_DATA", str(tmp_path))
    assert DS.data_root(None) == tmp_path
    assert DS.data_root(str(tmp_path / "..")) == tmp_path / ".."
    with pytest.raises(LorunError, match="not a directory"):
        DS.data_root(str(tmp_path / "nope"))


@pytest.mark.parametrize("call, folder", [
    (lambda r: DS.load_testset("cs", "set11", r), "cs/set11"),
    (lambda r: DS.load_testset("sr", "cbsd68", r), "sr/bsd100"),
    (lambda r: DS.load_testset("cassi", "cave", r), "cassi/cave/test"),
    (lambda r: D.cs_train_sampler(r), "train/bsd400"),
    (lambda r: D.sr_train_sampler(r), "train/t91"),
    (lambda r: D.cassi_train_sampler(r), "cassi/cave/train"),
    (lambda r: DS.validation_set("cassi", r), "cassi/cave/train"),
])
def test_missing_folder_names_it(tmp_path: Path, call, folder: str) -> None:
    with pytest.raises(LorunError) as info:
        call(tmp_path)
    assert f"'{folder}'" in str(info.value)


# ------------------------------------------------------------------------------------------- reading
def test_palette_tiff_and_gray_bmp(root: Path) -> None:
    sets = dict(DS.load_testset("cs", "set11", root))
    assert sets["pal"].shape == (1, 12, 8)
    expect = (255 - torch.arange(96, dtype=torch.float32)).view(1, 12, 8) / 255
    torch.testing.assert_close(sets["pal"], expect)
    gray = np.array(Image.open(root / "cs/set11/gray.tif"), dtype=np.float32) / 255
    torch.testing.assert_close(sets["gray"], torch.from_numpy(gray)[None])
    s14 = dict(DS.load_testset("sr", "set14", root))
    assert s14["bridge"].shape == (3, 20, 20)
    assert torch.equal(s14["bridge"][0], s14["bridge"][2])
    assert [n for n, _ in DS.load_testset("sr", "bsd100", root)] == ["img_001"]
    woman = DS.load_testset("sr", "set5", root)[0][1]
    assert woman.shape == (3, 26, 25)  # not mod-cropped
    assert DS.modcrop(woman, 3).shape == (3, 24, 24)
    assert DS.modcrop(woman[None], 4).shape == (1, 3, 24, 24)


def test_16bit_bands_survive(root: Path) -> None:
    raw = DS.read_cave_bands(root / "cassi/cave/test/balloons_ms")
    assert raw.dtype == np.uint16 and raw.shape == (21, CAVE_SIZE, CAVE_SIZE)
    assert raw.max() > 255 and raw[0, 0, 0] == 400 and raw[20, 0, 0] == 2400


def test_spectral_interpolation_linear_exact() -> None:
    lam = torch.tensor(DS.CAVE_WAVELENGTHS)
    spec = (0.1 + 0.002 * (lam - 450)).view(21, 1, 1).expand(21, 2, 3)
    out = DS.interpolate_bands(spec)
    expect = (0.1 + 0.002 * (torch.tensor(DS.WAVELENGTHS_28) - 450)).view(28, 1, 1).expand(28, 2, 3)
    torch.testing.assert_close(out, expect)
    m = DS.spectral_interp_matrix([1.0, 2.0, 3.0], [1.0, 2.0, 2.25, 3.0])
    torch.testing.assert_close(m, torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0.75, 0.25], [0, 0, 1.0]]))
    with pytest.raises(ValueError):
        DS.spectral_interp_matrix([1.0, 2.0], [0.5])


def test_cave_testsets(root: Path) -> None:
    cave = DS.load_testset("cassi", "cave", root)
    assert [n for n, _ in cave] == ["balloons_ms"]
    cube = cave[0][1]
    assert cube.shape == (28, 256, 256) and cube.dtype == torch.float32
    # pixel (0, 0) of the centre crop is scene pixel (128, 128): base 656, linear spectrum
    expect = (656 + 100 * (torch.tensor(DS.WAVELENGTHS_28) - 450) / 10) / 65535
    torch.testing.assert_close(cube[:, 0, 0], expect)
    quads = dict(DS.load_testset("cassi", "cave-quadrants", root))
    assert list(quads) == [f"balloons_ms_{q}" for q in DS.QUADRANTS]
    br = quads["balloons_ms_br"]
    assert abs(float(br[0, 0, 0]) * 65535 - (400 + 256 + 256 + 100 * 0.35)) < 1e-2


# ------------------------------------------------------------------------------------------ samplers
def test_patch_sampler_crops_and_dihedral() -> None:
    img = torch.arange(36, dtype=torch.float32).view(1, 6, 6)
    plain = D.PatchSampler([img, img + 100], patch=3, augment=False)
    g = torch.Generator().manual_seed(1)
    for patch in plain.sample(20, g):
        v = int(patch[0, 0, 0]) % 100
        y, x = divmod(v, 6)
        assert torch.equal(patch, img[:, y:y + 3, x:x + 3] + (patch[0, 0, 0] - v))
    full = D.PatchSampler([img], patch=6, augment=True)
    variants = [torch.rot90(im, k, (1, 2)) for im in (img, img.flip(2)) for k in range(4)]
    seen = set()
    for patch in full.sample(64, torch.Generator().manual_seed(2)):
        hits = [i for i, v in enumerate(variants) if torch.equal(patch, v)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert seen == set(range(8))


def test_patch_sampler_exclusion_and_size_check() -> None:
    img = torch.zeros(1, 10, 10)
    img[:, :5, :5] = 1.0
    s = D.PatchSampler([img], patch=4, exclude={0: [(0, 0, 5, 5)]})
    assert s.sample(200, torch.Generator().manual_seed(0)).max() == 0
    with pytest.raises(ValueError):
        s.sample(1, patch=11)


def test_cs_sampler(root: Path) -> None:
    s = D.cs_train_sampler(root, patch=32)
    assert s.shapes.shape[0] == 2 + 2  # Train400 + T91 luminance, minus the validation images
    a = s.sample(8, torch.Generator().manual_seed(3))
    b = s.sample(8, torch.Generator().manual_seed(3))
    assert a.shape == (8, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, s.sample(8, torch.Generator().manual_seed(4)))
    assert 0 <= a.min() and a.max() <= 127 / 255 + 1e-6  # the bright validation image never appears
    val = DS.validation_set("cs", root)
    assert [n for n, _ in val] == ["test_040"] and val[0][1].shape == (1, 40, 40)


def test_sr_sampler_and_degradation(root: Path) -> None:
    with pytest.raises(LorunError):
        D.sr_train_sampler(root, patch=40)
    s = D.sr_train_sampler(root, patch=36)
    assert s.shapes.shape[0] == 2
    hr = s.sample(6, torch.Generator().manual_seed(0))
    assert hr.shape == (6, 3, 36, 36) and hr.max() <= 127 / 255 + 1e-6
    assert [n for n, _ in DS.validation_set("sr", root)] == ["t13"]
    kernels = {f"K{i}": torch.full((25, 25), float(i)) for i in range(1, 13)}
    scale, ks, sig = D.sample_sr_degradation(hr, kernels, torch.Generator().manual_seed(5))
    scale2, ks2, sig2 = D.sample_sr_degradation(hr, kernels, torch.Generator().manual_seed(5))
    assert scale == scale2 and torch.equal(ks, ks2) and torch.equal(sig, sig2)
    assert scale in (2, 3, 4) and ks.shape == (6, 25, 25) and sig.shape == (6,)
    assert ((sig >= 0) & (sig <= 2.55 / 255)).all()
    assert all(1 <= k[0, 0] <= 12 and torch.all(k == k[0, 0]) for k in ks)
    scales = {D.sample_sr_degradation(hr, kernels, torch.Generator().manual_seed(i), scales=(2, 4))[0]
              for i in range(20)}
    assert scales == {2, 4}
    many = hr[:1].expand(64, -1, -1, -1)
    g = torch.Generator().manual_seed(1)
    _, kr, _ = D.sample_sr_degradation(many, kernels, g, extra_random_kernels=True)
    rnd = kr[kr[:, 0, 0] < 1]
    assert 0 < len(rnd) < 64
    torch.testing.assert_close(rnd.sum(dim=(1, 2)), torch.ones(len(rnd)))
    assert (rnd[:, 12, 12] >= rnd.amax(dim=(1, 2)) - 1e-7).all()  # centred


def test_cassi_sampler_and_validation(root: Path) -> None:
    s = D.cassi_train_sampler(root, patch=64, cache=False)
    assert s.shapes.shape[0] == 2 and s.channels == 28
    g = torch.Generator().manual_seed(0)
    x = s.sample(4, g)
    assert x.shape == (4, 28, 64, 64)
    big = s.sample(2, g, patch=256)
    assert big.shape == (2, 28, 256, 256)
    assert big.max() < 0.2 and x.min() > 0  # never inside the bright held-out regions
    val = dict(DS.validation_set("cassi", root))
    assert set(val) == {f"{k}_val" for k in DS.CASSI_VAL_REGIONS}
    for cube in val.values():
        assert cube.shape == (28, 256, 256) and cube.min() > 0.75


def test_rgb_spectral_maps_invert_colour_and_skip_held_out() -> None:
    from lorun_cli.facts import WAVELENGTHS_28
    from lorun_cli.io.images import spectrum_to_rgb

    g = torch.Generator().manual_seed(0)
    basis = torch.rand(3, 28, generator=g, dtype=torch.float64)
    spectra = (torch.rand(40 * 30, 3, generator=g, dtype=torch.float64) @ basis).float()  # rank-3 spectra
    odd = spectra.clone().view(40, 30, 28)
    odd[:10, :10] = torch.rand(10, 10, 28, generator=g)  # other spectra, only inside the held-out rectangle
    maps = D.rgb_spectral_maps(odd.reshape(-1, 28), [(40, 30)], {0: [(0, 0, 10, 10)]}, ridge=1e-9)
    assert maps.shape == (1, 28, 3)
    to_rgb = spectrum_to_rgb(WAVELENGTHS_28).float()
    torch.testing.assert_close(to_rgb @ maps[0], torch.eye(3), atol=1e-3, rtol=0)  # colour in, same colour out
    torch.testing.assert_close(spectra[:5] @ to_rgb.T @ maps[0].T, spectra[:5], atol=1e-3, rtol=1e-3)


def test_cassi_sampler_rgb_share(root: Path) -> None:
    assert isinstance(D.cassi_train_sampler(root, patch=16, cache=False, rgb_share=0.0), D.PatchSampler)
    s = D.cassi_train_sampler(root, patch=16, cache=False, rgb_share=1.0)
    assert isinstance(s, D.SpectralFromRGB) and s.maps.shape == (2, 28, 3) and s.channels == 28
    a, b = (s.sample(6, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a.shape == (6, 28, 16, 16) and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    cave = s.cave.sample(6, torch.Generator().manual_seed(3))
    assert not any(torch.equal(p, q) for p, q in zip(a, cave))  # every patch replaced at share 1
    with pytest.raises(ValueError):
        D.SpectralFromRGB(s.cave, s.rgb, s.maps, 1.5)


def test_cassi_cache(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORUN_CACHE_DIR", str(tmp_path))
    scene = root / "cassi/cave/test/balloons_ms"
    a = DS.read_cave_scene(scene)
    files = list((tmp_path / "cave28").glob("balloons_ms-*.npy"))
    assert len(files) == 1
    b = DS.read_cave_scene(scene)
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------- assets/samples
def test_cbsd68_mapping() -> None:
    entries = json.loads(DS.CBSD68_JSON.read_text())
    assert len(entries) == 68
    assert len({e["bsd68"] for e in entries}) == 68 and len({e["bsd100"] for e in entries}) == 68
    assert min(e["corr"] for e in entries) > 0.999


def test_load_sample_all_tasks() -> None:
    cs = DS.load_sample("cs")
    assert {n for n, _ in cs} == {"house", "cameraman"}
    assert all(x.shape == (1, 256, 256) for _, x in cs)
    sr = DS.load_sample("sr")
    assert {n for n, _ in sr} == {"butterfly", "bird"}
    assert all(x.shape[0] == 3 and x.shape[1] % 12 == 0 and x.shape[2] % 12 == 0 for _, x in sr)
    (name, cube), = DS.load_sample("cassi")
    assert cube.shape == (28, 256, 256) and cube.dtype == torch.float32
    assert 0 <= cube.min() and cube.max() <= 1 and cube.max() > 0.5
    for _, x in cs + sr:
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    total = sum(f.stat().st_size for f in DS.SAMPLE_DIR.rglob("*") if f.is_file())
    assert total < 1_500_000


def test_unknown_names() -> None:
    with pytest.raises(LorunError, match="set11"):
        DS.load_testset("cs", "kodak", "/nonexistent")
    with pytest.raises(LorunError):
        DS.load_sample("denoise")


# ------------------------------------------------------------------------------- optional real data
REAL = os.environ.get("LORUN_TEST_DATA")


@pytest.mark.skipif(not REAL, reason="set LORUN_TEST_DATA to a data root to run")
def test_real_data_root() -> None:
    set11 = dict(DS.load_testset("cs", "set11", REAL))
    assert len(set11) == 11 and set11["fingerprint"].shape == (1, 512, 512)
    assert set11["Parrots"].shape == (1, 256, 256)
    cb = dict(DS.load_testset("sr", "cbsd68", REAL))
    bsd68 = dict(DS.load_testset("cs", "bsd68", REAL))
    for name in ("test001", "test034"):
        y = DS.rgb_to_luma(cb[name])[0]
        g = bsd68[name][0, : y.shape[0], : y.shape[1]]
        c = torch.corrcoef(torch.stack([y.flatten(), g.flatten()]))[0, 1]
        assert c > 0.999
    cave = DS.load_testset("cassi", "cave", REAL)
    assert len(cave) == 3 and all(x.shape == (28, 256, 256) for _, x in cave)
    assert max(float(x.max()) for _, x in cave) > 0.5
