"""Image, cube, measurement and checkpoint file I/O on tiny synthetic files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tifffile
import torch
from PIL import Image

from lorun_cli.errors import LorunError, UsageError
from lorun_cli.io import (
    atomic_path,
    atomic_write_bytes,
    cube_preview_rgb,
    load_checkpoint,
    read_cube,
    read_cube_wavelengths,
    read_image,
    read_measurement,
    save_checkpoint,
    sha256_file,
    write_cube,
    write_image,
)


class NotAWeight:
    """Arbitrary object that weights-only loading must refuse."""

    def __init__(self) -> None:
        self.payload = "x"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def _levels(t: torch.Tensor, top: float) -> np.ndarray:
    """Integer levels of a [0, 1] tensor for a bit depth with maximum ``top``."""
    return np.round(t.numpy().astype(np.float64) * top)


def _palette_image(index: np.ndarray, table: np.ndarray) -> Image.Image:
    img = Image.fromarray(index.astype(np.uint8), mode="L").convert("P")
    img.putdata(index.ravel().tolist())
    img.putpalette(table.astype(np.uint8).ravel().tolist())
    return img


# ------------------------------------------------------------------ reading images


def test_read_palette_tiff_gray_identity_and_nonidentity(tmp_path: Path) -> None:
    idx = np.array([[0, 7, 128], [200, 255, 31]], dtype=np.uint8)
    ramp = np.arange(256)
    ident = np.stack([ramp, ramp, ramp], 1)
    p = tmp_path / "ident.tif"
    _palette_image(idx, ident).save(p)
    assert Image.open(p).mode == "P"
    x = read_image(p)
    assert x.shape == (1, 2, 3) and x.dtype == torch.float32
    np.testing.assert_array_equal(np.round(x[0].numpy() * 255), idx)

    inv = 255 - ident  # gray but not identity: values come from the palette, not the indices
    q = tmp_path / "inv.tif"
    _palette_image(idx, inv).save(q)
    np.testing.assert_array_equal(np.round(read_image(q)[0].numpy() * 255), 255 - idx.astype(int))


def test_read_palette_colour_becomes_rgb(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[0], table[1], table[2] = (255, 0, 0), (0, 128, 0), (10, 20, 30)
    p = tmp_path / "colour.png"
    _palette_image(idx, table).save(p)
    x = read_image(p)
    assert x.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.round(x.numpy() * 255).transpose(1, 2, 0), table[idx])


def test_read_16bit_png_keeps_values_above_255(tmp_path: Path) -> None:
    a = np.array([[0, 255, 256], [1000, 40000, 65535]], dtype=np.uint16)
    p = tmp_path / "band.png"
    Image.fromarray(a).save(p)
    x = read_image(p, mode="gray")
    assert x.shape == (1, 2, 3)
    np.testing.assert_array_equal(_levels(x[0], 65535), a)


def test_read_l_rgb_rgba_and_mode_conversion(tmp_path: Path) -> None:
    g = np.array([[0, 10], [128, 255]], dtype=np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png")[0].numpy(), (g / 255.0).astype(np.float32))

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = read_image(tmp_path / "a.png")
    assert x.shape == (3, 2, 2)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [200 / 255, 100 / 255, 50 / 255], atol=1e-7)

    gray = read_image(tmp_path / "a.png", mode="gray")
    assert gray.shape == (1, 2, 2)
    assert gray[0, 0, 0].item() == pytest.approx((0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, abs=1e-6)

    # R=G=B stays RGB in auto mode; gray -> rgb replicates
    same = np.repeat(g[..., None], 3, axis=2)
    Image.fromarray(same, mode="RGB").save(tmp_path / "same.bmp")
    assert read_image(tmp_path / "same.bmp").shape == (3, 2, 2)
    np.testing.assert_array_equal(_levels(read_image(tmp_path / "same.bmp", mode="gray")[0], 255), g)
    rgb = read_image(tmp_path / "g.png", mode="rgb")
    assert rgb.shape == (3, 2, 2) and torch.equal(rgb[0], rgb[2])


def test_read_int_mode_and_float_tiffs(tmp_path: Path) -> None:
    a = np.array([[0, 300], [65535, 12345]], dtype=np.int32)
    Image.fromarray(a, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_array_equal(_levels(read_image(tmp_path / "i.tif")[0], 65535), a)

    f = np.array([[0.0, 0.25], [0.123456, 1.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0].numpy(), f)

    f3 = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f3.tif", f3, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "f3.tif").numpy(), f3.transpose(2, 0, 1))

    u3 = (np.arange(60).reshape(4, 5, 3) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "u3.tif", u3, photometric="rgb")
    got = read_image(tmp_path / "u3.tif").numpy().transpose(1, 2, 0).astype(np.float64)
    np.testing.assert_array_equal(np.round(got * 65535), u3)


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(LorunError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(LorunError, match="broken.png"):
        read_image(bad)
    with pytest.raises(UsageError):
        read_image(bad, mode="cmyk")


# ------------------------------------------------------------------ writing images


def test_write_image_round_trips(tmp_path: Path) -> None:
    x = torch.rand(3, 5, 6, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / "o.png", x)
    np.testing.assert_array_equal(_levels(read_image(tmp_path / "o.png"), 255), _levels(x, 255))
    write_image(tmp_path / "o.tif", x)
    assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    np.testing.assert_allclose(read_image(tmp_path / "o.tif").numpy(), x.numpy(), atol=1 / 65535)
    write_image(tmp_path / "f.tiff", x[:1], dtype="float32")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff").numpy(), x[:1].numpy())
    write_image(tmp_path / "g16.png", x[:1, None][0], dtype="uint16")
    assert np.array(Image.open(tmp_path / "g16.png")).dtype == np.uint16
    with pytest.raises(UsageError):
        write_image(tmp_path / "o.gif", x)
    with pytest.raises(UsageError):
        write_image(tmp_path / "rgb16.png", x, dtype="uint16")
    assert _leftovers(tmp_path) == []


def test_write_refuses_existing_unless_force(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(LorunError, match="exists; pass --force"):
        write_image(target, torch.zeros(1, 4, 4))
    assert target.read_bytes() == b"old"
    write_image(target, torch.ones(1, 4, 4), force=True)
    assert read_image(target).min().item() == 1.0
    assert _leftovers(tmp_path) == []


def test_write_failure_midway_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"previous")

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(LorunError, match="no space left"):
        write_image(target, torch.zeros(1, 4, 4), force=True)
    assert target.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []


def test_write_into_bad_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LorunError, match="file"):
        write_image(blocker / "out.png", torch.zeros(1, 4, 4))
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(LorunError, match="not writable"):
                write_image(ro / "out.png", torch.zeros(1, 4, 4))
        finally:
            ro.chmod(0o700)


# ------------------------------------------------------------------ atomic helpers


def test_atomic_path_and_bytes(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second"
    assert sha256_file(target) == hashlib.sha256(b"second").hexdigest()


# ------------------------------------------------------------------ cubes and measurements


def test_cube_tiff_round_trip_with_wavelengths(tmp_path: Path) -> None:
    cube = torch.rand(5, 6, 7, generator=torch.Generator().manual_seed(1))
    wl = [450.0, 500.5, 550.0, 600.25, 650.0]
    p = tmp_path / "cube.tif"
    write_cube(p, cube, wl)
    assert tifffile.imread(p).shape == (6, 7, 5)  # bands last on disk
    back = read_cube(p)
    assert back.shape == (5, 6, 7) and back.dtype == torch.float32
    assert torch.equal(back, cube)
    assert read_cube_wavelengths(p) == wl
    with pytest.raises(LorunError, match="exists"):
        write_cube(p, cube, wl)
    with pytest.raises(UsageError):
        write_cube(tmp_path / "c2.tif", cube, wl[:3])
    with pytest.raises(UsageError):
        write_cube(tmp_path / "c2.png", cube, wl)
    assert _leftovers(tmp_path) == []


def test_read_cube_mat_npy_tif_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    hwc = rng.random((8, 9, 4)).astype(np.float32)
    scipy.io.savemat(tmp_path / "scene.mat", {"img": hwc, "other": np.zeros(3)})
    np.testing.assert_array_equal(read_cube(tmp_path / "scene.mat").numpy(), hwc.transpose(2, 0, 1))

    raw = (rng.random((8, 9, 4)) * 65535).astype(np.uint16)
    scipy.io.savemat(tmp_path / "train.mat", {"img_expand": raw})
    want = raw.transpose(2, 0, 1) / 65536.0
    np.testing.assert_allclose(read_cube(tmp_path / "train.mat").numpy(), want, rtol=1e-6)

    scipy.io.savemat(tmp_path / "only.mat", {"cube": hwc})
    np.testing.assert_array_equal(read_cube(tmp_path / "only.mat").numpy(), hwc.transpose(2, 0, 1))
    scipy.io.savemat(tmp_path / "two.mat", {"a": hwc, "b": hwc})
    with pytest.raises(LorunError, match="img"):
        read_cube(tmp_path / "two.mat")

    np.save(tmp_path / "last.npy", hwc)
    np.testing.assert_array_equal(read_cube(tmp_path / "last.npy").numpy(), hwc.transpose(2, 0, 1))
    chw = hwc.transpose(2, 0, 1).copy()
    np.save(tmp_path / "first.npy", chw)
    np.testing.assert_array_equal(read_cube(tmp_path / "first.npy").numpy(), chw)
    tifffile.imwrite(tmp_path / "first.tif", chw, photometric="minisblack", planarconfig="separate")
    np.testing.assert_array_equal(read_cube(tmp_path / "first.tif").numpy(), chw)

    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(LorunError, match="junk.mat"):
        read_cube(tmp_path / "junk.mat")


def test_read_cube_from_band_folder(tmp_path: Path) -> None:
    d = tmp_path / "scene"
    d.mkdir()
    bands = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 1000).astype(np.uint16)
    for k in range(3):
        Image.fromarray(bands[k]).save(d / f"scene_{k + 1:02d}.png")
    np.testing.assert_array_equal(_levels(read_cube(d), 65535), bands)


def test_read_measurement_formats(tmp_path: Path) -> None:
    meas = np.random.default_rng(3).random((6, 10)).astype(np.float32)
    scipy.io.savemat(tmp_path / "m.mat", {"meas_real": meas})
    np.testing.assert_array_equal(read_measurement(tmp_path / "m.mat").numpy(), meas)
    scipy.io.savemat(tmp_path / "k.mat", {"whatever": meas})
    np.testing.assert_array_equal(read_measurement(tmp_path / "k.mat").numpy(), meas)
    np.save(tmp_path / "m.npy", meas[None])
    assert read_measurement(tmp_path / "m.npy").shape == (6, 10)
    tifffile.imwrite(tmp_path / "m.tif", meas)
    np.testing.assert_array_equal(read_measurement(tmp_path / "m.tif").numpy(), meas)
    u16 = (meas * 60000).astype(np.uint16)
    Image.fromarray(u16).save(tmp_path / "m.png")
    np.testing.assert_array_equal(_levels(read_measurement(tmp_path / "m.png"), 65535), u16)
    with pytest.raises(LorunError):
        read_measurement(tmp_path / "nope.mat")


def test_cube_preview_rgb() -> None:
    wl = [450.0 + 10 * k for k in range(21)]
    flat = torch.full((21, 4, 4), 0.5)
    rgb = cube_preview_rgb(flat, wl)
    assert rgb.shape == (3, 4, 4) and rgb.dtype == torch.float32
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    torch.testing.assert_close(rgb[0], rgb[1], atol=1e-5, rtol=0)  # flat spectrum -> neutral
    torch.testing.assert_close(rgb[1], rgb[2], atol=1e-5, rtol=0)
    red = torch.zeros(21, 2, 2)
    red[wl.index(630.0)] = 1.0
    r = cube_preview_rgb(red, wl)[:, 0, 0]
    assert r[0] > 0.9 and r[0] > 3 * r[1] and r[0] > 3 * r[2]
    blue = torch.zeros(21, 2, 2)
    blue[wl.index(460.0)] = 1.0
    b = cube_preview_rgb(blue, wl)[:, 0, 0]
    assert b[2] > b[0] and b[2] > b[1]
    with pytest.raises(UsageError):
        cube_preview_rgb(flat, wl[:5])


# ------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    tensors = {"layer.weight": w, "layer.bias": torch.arange(4.0), "view": w[:2]}  # shared storage is fine
    meta = {"task": "cs", "stages": 9, "ratio": 0.25, "path": tmp_path / "x", "shape": (3, 4),
            "nested": {"a": [1]}}
    p = tmp_path / "model.safetensors"
    digest = save_checkpoint(p, tensors, meta)
    assert digest == sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    got, got_meta = load_checkpoint(p)
    assert set(got) == set(tensors)
    for k in tensors:
        assert torch.equal(got[k], tensors[k])
    assert got_meta == {**meta, "path": str(tmp_path / "x"), "shape": [3, 4]}
    assert _leftovers(tmp_path) == []


def test_int8_checkpoint_round_trip(tmp_path: Path) -> None:
    from lorun_cli.io.checkpoint import SCALE_SUFFIX, quantize_int8

    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 16, 3, 3, generator=g) * torch.logspace(-3, 0, 32).view(-1, 1, 1, 1)
    tensors = {"conv.weight": w, "conv.bias": torch.randn(32, generator=g), "rho_raw": torch.tensor([0.3, -2.0])}
    p = tmp_path / "q.safetensors"
    save_checkpoint(p, quantize_int8(tensors), {"task": "cs"})
    got, _ = load_checkpoint(p)
    assert set(got) == set(tensors)  # scales are folded back in
    assert torch.equal(got["conv.bias"], tensors["conv.bias"]) and torch.equal(got["rho_raw"], tensors["rho_raw"])
    # per-output-channel scales: every row keeps its own relative precision (≤ half a step of 1/127)
    rel = (got["conv.weight"] - w).abs().flatten(1).amax(1) / w.abs().flatten(1).amax(1)
    assert float(rel.max()) <= 0.5 / 127 + 1e-6
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, {"w": torch.ones(2, 2), "w" + SCALE_SUFFIX: torch.ones(2)}, {})
    with pytest.raises(LorunError, match="int8 scales"):
        load_checkpoint(bad)


def test_pt_weights_only(tmp_path: Path) -> None:
    sd = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    torch.save(sd, tmp_path / "flat.pt")
    got, meta = load_checkpoint(tmp_path / "flat.pt")
    assert meta == {} and torch.equal(got["w"], sd["w"])

    torch.save({"state_dict": sd, "meta": {"task": "sr"}}, tmp_path / "wrapped.pth")
    got, meta = load_checkpoint(tmp_path / "wrapped.pth")
    assert meta == {"task": "sr"} and set(got) == {"w", "b"}

    torch.save({"model": sd, "extra": NotAWeight()}, tmp_path / "evil.pt")
    with pytest.raises(LorunError, match="refusing to unpickle arbitrary objects"):
        load_checkpoint(tmp_path / "evil.pt")

    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 8)
    with pytest.raises(LorunError, match="garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_corrupt_or_missing_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, {"w": torch.ones(8, 8)}, {"k": 1})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LorunError, match="not a valid safetensors"):
        load_checkpoint(p)
    (tmp_path / "junk.safetensors").write_bytes(b"hello world, definitely not tensors")
    with pytest.raises(LorunError):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(LorunError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_read_applies_exif_orientation(tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF orientation 6 ("rotate 90° clockwise to view") is read as viewers
    show it: its left column becomes the top row, and height and width swap; orientation 1 changes nothing."""
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:, :4] = (255, 0, 0)  # a red left edge
    for orientation, shape in ((6, (3, 40, 20)), (1, (3, 20, 40))):
        im = Image.fromarray(raw)
        exif = im.getexif()
        exif[0x0112] = orientation
        p = tmp_path / f"o{orientation}.png"
        im.save(p, exif=exif)
        x = read_image(p, "rgb")
        assert tuple(x.shape) == shape
        red = x[0] > 0.5
        if orientation == 6:
            assert bool(red[:4].all()) and not bool(red[4:].any())  # the top rows
        else:
            assert bool(red[:, :4].all()) and not bool(red[:, 4:].any())


def test_file_facts_read_depth_from_the_header(tmp_path: Path) -> None:
    """16-bit PNG and TIFF, float TIFF and 8-bit files, as the header says (no pixels decoded)."""
    from lorun_cli.io.images import file_facts

    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((4, 4, 3), np.uint16), photometric="rgb")
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 4), np.float32))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d.png")
    assert [file_facts(tmp_path / n).bits for n in ("a.png", "b.tif", "c.tif", "d.png")] == [16, 16, 32, 8]
    assert file_facts(tmp_path / "d.png").jpeg_step is None


def test_written_images_keep_the_input_colour_profile(tmp_path: Path) -> None:
    """A photo's ICC profile (a wide-gamut phone photo's, say) travels to restore's output in PNG, JPEG and TIFF;
    a profile of another colour space (RGB for a gray result) is left out, and a file without one gives None."""
    from PIL import ImageCms

    from lorun_cli import restore as R
    from lorun_cli.io.images import file_facts

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in.jpg"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(src, icc_profile=icc)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "plain.png")
    assert file_facts(src).icc == icc and file_facts(tmp_path / "plain.png").icc is None
    assert file_facts(tmp_path / "missing.png").icc is None
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "in.tif", icc_profile=icc)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / "plain.tif")
    tif = file_facts(tmp_path / "in.tif")
    assert (tif.jpeg_step, tif.icc, tif.bits) == (None, icc, 8) and file_facts(tmp_path / "plain.tif").icc is None
    x = torch.rand(3, 8, 8)
    for ext in (".png", ".jpg", ".tif"):
        out = tmp_path / f"o{ext}"
        R._write(out, x, R.RestoreOptions(task="sr"), file_facts(src))
        if ext == ".tif":
            with tifffile.TiffFile(out) as tf:
                got = bytes(tf.pages[0].tags[34675].value)
        else:
            got = Image.open(out).info.get("icc_profile")
        assert got == icc, ext
    gray = write_image(tmp_path / "g.png", torch.rand(1, 8, 8), icc=icc)
    assert "icc_profile" not in Image.open(gray).info
    assert "icc_profile" not in Image.open(write_image(tmp_path / "n.png", x)).info
