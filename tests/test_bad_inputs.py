"""Bad input never gives garbage: one table of bad (and borderline) command lines, each with the exit code,
a fragment of the one-line message, and the files that must not exist afterwards.

Every case runs the console entry point (``lorun_cli.cli.app.main``) in-process against the tiny test zoo
(tests/zoo.py), in a fresh folder. ``setup`` writes the case's input files (and, for disk-full, signal and
out-of-memory cases, patches the one call that fails); ``check`` adds what the case is about beyond the
message (e.g. a file that must stay untouched). Error cases must print exactly one ``lorun: error:`` (or
``lorun: interrupted``) line on stderr and no traceback; ``forbid`` lists text that must not appear
(e.g. numpy's or torch's own hints).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LORUN_ENV_KEYS
from PIL import Image

ASSETS = Path(__file__).resolve().parent.parent / "lorun_cli" / "assets"
SR_SAMPLE = ASSETS / "samples" / "sr" / "bird.png"
CS_SAMPLE = ASSETS / "samples" / "cs" / "house.png"
DEAD_PID = 4_194_304 + 4321  # above Linux's largest pid_max: no such process
Setup = Callable[[Path, pytest.MonkeyPatch], None]
Check = Callable[[Path, subprocess.CompletedProcess], None]


@dataclass
class Case:
    """One command line and what must come of it."""

    id: str
    args: list[str]  # after `lorun --threads 1`; {w} is the zoo's weights folder, {data} a tiny data root
    code: int
    fragment: str  # in the message line (case-insensitive); for exit 0, somewhere on stderr
    absent: tuple[str, ...] = ()  # paths (relative to the case folder) that must not exist afterwards
    setup: Setup | None = None
    check: Check | None = None
    forbid: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    click: bool = False  # the message comes from the option parser (click), not from lorun


# --------------------------------------------------------------------------- input makers


def rgb(name: str, size: int = 32) -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(SR_SAMPLE).convert("RGB").crop((0, 0, size, size)).save(d / name)

    return make


def gray(name: str, size: int = 32) -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        Image.open(SR_SAMPLE).convert("L").crop((0, 0, size, size)).save(d / name)

    return make


def cs_image(name: str = "house.png", size: int = 64) -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        Image.open(CS_SAMPLE).convert("L").crop((0, 0, size, size)).save(d / name)

    return make


def npy(name: str, arr: np.ndarray) -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(d / name, arr)

    return make


def text(name: str, content: str | bytes = "this is not data\n") -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        (d / name).write_bytes(data)

    return make


def folder(name: str) -> Setup:
    def make(d: Path, _mp: pytest.MonkeyPatch) -> None:
        (d / name).mkdir(parents=True, exist_ok=True)

    return make


def both(*steps: Setup) -> Setup:
    def make(d: Path, mp: pytest.MonkeyPatch) -> None:
        for s in steps:
            s(d, mp)

    return make


def meas(name: str = "meas.npy", bad: float | None = None) -> Setup:
    y = np.random.default_rng(1).random((256, 310)).astype(np.float32)
    if bad is not None:
        y[100, 100:110] = bad
    return npy(name, y)


def gauss(size: int, sigma: float = 1.2) -> np.ndarray:
    r = np.arange(size) - size // 2
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def padded_kernel() -> np.ndarray:
    k = np.zeros((101, 101))
    k[48:53, 48:53] = gauss(5)
    return k


def yaml_file(name: str, body: str) -> Setup:
    return text(name, body)


def truncated_ckpt(d: Path, _mp: pytest.MonkeyPatch) -> None:
    torch.save({"model": {"w": torch.zeros(1000)}, "step": 3}, d / "s.pt")
    (d / "m.safetensors.ckpt").write_bytes((d / "s.pt").read_bytes()[:300])
    (d / "s.pt").unlink()


def foreign_ckpt(d: Path, _mp: pytest.MonkeyPatch) -> None:
    torch.save({"weights": torch.zeros(3)}, d / "m.safetensors.ckpt")


def stale_temp(d: Path, _mp: pytest.MonkeyPatch) -> None:
    (d / f".in_x2.png.{DEAD_PID}-abcd1234.tmp").write_bytes(b"half a png")


def webp_gif(d: Path, _mp: pytest.MonkeyPatch) -> None:
    (d / "pics").mkdir()
    img = Image.open(SR_SAMPLE).convert("RGB").crop((0, 0, 24, 24))
    img.save(d / "pics" / "a.webp")
    img.convert("P").save(d / "pics" / "b.gif")
    (d / "pics" / "notes.txt").write_text("skip me")


def collide(d: Path, mp: pytest.MonkeyPatch) -> None:
    rgb("pics/pic.png")(d, mp)
    Image.open(d / "pics" / "pic.png").save(d / "pics" / "pic.bmp")
    (d / "out").mkdir()


# --------------------------------------------------------------------------- failure injectors


def disk_full_on(target: str, attr: str) -> Setup:
    """Make ``target.attr`` (a writer) write half of its destination file and then fail with ENOSPC."""

    def make(d: Path, mp: pytest.MonkeyPatch) -> None:
        import importlib

        mod = importlib.import_module(target.rsplit(".", 1)[0]) if "." in target else importlib.import_module(target)
        owner = getattr(mod, target.rsplit(".", 1)[1]) if "." in target else mod

        def broken(*args: object, **kwargs: object) -> None:
            paths = [a for a in args if isinstance(a, str | os.PathLike)]
            dest = paths[-1] if paths else None  # the destination (copyfile(src, dst), save(fp), imwrite(f))
            if dest is not None:
                Path(dest).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

        mp.setattr(owner, attr, broken)

    return make


def no_room_for_lock(_d: Path, mp: pytest.MonkeyPatch) -> None:
    """The weights cache cannot even hold its lock file."""
    from lorun_cli.io import weights

    def locked(path: Path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    mp.setattr(weights, "_locked", locked)


def signal_in_writer(sig: int) -> Setup:
    """The signal arrives while the output image is being written (after half of it)."""

    def make(_d: Path, mp: pytest.MonkeyPatch) -> None:
        def save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
            Path(str(fp)).write_bytes(b"half")
            signal.raise_signal(sig)

        mp.setattr(Image.Image, "save", save)

    return make


def in_forward(action: Callable[[], None]) -> Setup:
    """Run ``action`` inside the network's forward pass (a signal, an out-of-memory error, ...)."""

    def make(_d: Path, mp: pytest.MonkeyPatch) -> None:
        from lorun_cli.unfold import DUN

        def forward(self: object, *args: object, **kwargs: object) -> None:
            action()

        mp.setattr(DUN, "forward", forward)

    return make


def oom() -> None:
    raise torch.OutOfMemoryError("DefaultCPUAllocator: not enough memory: you tried to allocate 14 GB")


def ctrl_c_at_batch(n: int, sig: int = signal.SIGINT) -> Setup:
    """The signal arrives while training batch ``n`` is drawn."""

    def make(_d: Path, mp: pytest.MonkeyPatch) -> None:
        from lorun_cli.train import tasks

        orig = tasks.TaskData.batch
        calls = {"n": 0}

        def batch(self: object, *args: object, **kwargs: object):
            calls["n"] += 1
            if calls["n"] == n:
                signal.raise_signal(sig)
            return orig(self, *args, **kwargs)

        mp.setattr(tasks.TaskData, "batch", batch)

    return make


def no_model_load(_d: Path, mp: pytest.MonkeyPatch) -> None:
    """Output problems must be found before any model is loaded."""
    from lorun_cli import models

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a model was loaded before the output was checked")

    mp.setattr(models, "load_model", refuse)


# --------------------------------------------------------------------------- checks


def untouched(name: str, content: bytes) -> Check:
    def check(d: Path, _r: subprocess.CompletedProcess) -> None:
        assert (d / name).read_bytes() == content

    return check


def no_temps(d: Path, _r: subprocess.CompletedProcess) -> None:
    left = [p.name for p in d.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert left == [], left


def image_mode(name: str, mode: str, size: tuple[int, int] | None = None) -> Check:
    def check(d: Path, _r: subprocess.CompletedProcess) -> None:
        with Image.open(d / name) as im:
            assert im.mode == mode, im.mode
            assert size is None or im.size == size
            if mode == "RGB":
                a = np.asarray(im)
                assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])

    return check


def ckpt_at_step(name: str, step: int) -> Check:
    def check(d: Path, _r: subprocess.CompletedProcess) -> None:
        st = torch.load(d / name, weights_only=True)
        assert st["step"] == step
        no_temps(d, _r)

    return check


def exist(*names: str) -> Check:
    def check(d: Path, _r: subprocess.CompletedProcess) -> None:
        for n in names:
            assert (d / n).is_file(), n

    return check


def all_of(*checks: Check) -> Check:
    def check(d: Path, r: subprocess.CompletedProcess) -> None:
        for c in checks:
            c(d, r)

    return check


SR = ["restore", "--scale", "2"]
CASSI = ["restore", "--task", "cassi"]
PRE0 = ["pretrain", "--task", "cs", "--batch", "2", "--patch", "32", "--out", "m.safetensors"]  # steps from YAML
PRE = ["pretrain", "--task", "cs", "--steps", "5", "--batch", "2", "--patch", "32", "--out", "m.safetensors"]
ADAPT = ["adapt", "--backbone", "{w}/cs-share9-r25.safetensors", "--steps", "2", "--batch", "2",
         "--out", "a.safetensors"]
OK = 0
USAGE = 2
RUNTIME = 1
IN = rgb("in.png")

CASES: list[Case] = [
    # 1. pretrain/adapt must not clobber a resumable state or a learning curve
    Case("d01-pretrain-keeps-existing-ckpt", PRE, USAGE, "pass --resume to continue", ("m.safetensors",),
         text("m.safetensors.ckpt", "state"), untouched("m.safetensors.ckpt", b"state")),
    Case("d01-pretrain-keeps-existing-log", PRE, USAGE, "learning curve", ("m.safetensors",),
         text("m.safetensors.log.jsonl", "{}\n"), untouched("m.safetensors.log.jsonl", b"{}\n")),
    Case("d01-adapt-keeps-existing-ckpt", ADAPT, USAGE, "--resume", ("a.safetensors",),
         text("a.safetensors.ckpt", "state"), untouched("a.safetensors.ckpt", b"state")),
    Case("d01-pretrain-keeps-existing-model", PRE, USAGE, "exists; pass --force", (),
         text("m.safetensors", "model"), untouched("m.safetensors", b"model")),
    Case("d01-resume-without-state", [*PRE, "--resume"], USAGE, "no training state", ("m.safetensors",)),
    # 2. two inputs, one output name
    Case("d02-png-and-bmp-collide", [*SR, "pics", "-o", "out"], USAGE, "would both be written",
         ("out/pic_x2.png",), collide),
    Case("d02-png-and-bmp-collide-with-force", [*SR, "--force", "pics", "-o", "out"], USAGE, "both be written",
         ("out/pic_x2.png",), collide),
    Case("d02-same-stem-two-folders", [*SR, "a/pic.png", "b/pic.png", "-o", "out"], USAGE, "rename one",
         ("out/pic_x2.png",), both(rgb("a/pic.png"), rgb("b/pic.png"), folder("out"))),
    Case("d02-output-is-the-input", [*SR, "--force", "in.png", "-o", "in.png"], USAGE, "overwrite the input", (),
         IN),
    # 3. NaN / inf in inputs
    Case("d03-cassi-snapshot-with-nan", [*CASSI, "meas.npy"], RUNTIME, "NaN or infinite",
         ("meas_cube.tif", "meas_cube_preview.png"), meas(bad=np.nan)),
    Case("d03-cassi-snapshot-with-inf", [*CASSI, "meas.npy"], RUNTIME, "NaN or infinite",
         ("meas_cube.tif", "meas_cube_preview.png"), meas(bad=np.inf)),
    Case("d03-cassi-cube-with-nan", [*CASSI, "--simulate", "cube.npy"], RUNTIME, "NaN",
         ("cube_cube.tif",), npy("cube.npy", np.where(np.eye(256)[None] > 0, np.nan,
                                                      np.full((28, 256, 256), 0.5)).astype(np.float32))),
    Case("d03-float-tiff-with-nan", [*SR, "f.tif"], RUNTIME, "NaN", ("f_x2.png",),
         lambda d, _m: __import__("tifffile").imwrite(d / "f.tif", np.full((16, 16), np.nan, np.float32))),
    Case("d03-image-too-small-to-score", ["restore", "--task", "cs", "t.png"], RUNTIME,
         "t.png: SSIM needs images of at least 11x11, got 8x8; use a larger image, or skip scoring with --no-score",
         ("t_cs.png",), gray("t.png", 8)),
    # 4. --noise
    Case("d04-noise-nan", [*SR, "--noise", "nan", "in.png"], USAGE, "--noise nan is not a finite number",
         ("in_x2.png",), IN),
    Case("d04-noise-inf", [*SR, "--noise", "inf", "in.png"], USAGE, "not a finite number", ("in_x2.png",), IN),
    Case("d04-noise-negative", [*SR, "--noise", "-1", "in.png"], USAGE, "--noise -1", ("in_x2.png",), IN),
    Case("d04-noise-above-255", [*SR, "--noise", "300", "in.png"], USAGE, "[0, 255]", ("in_x2.png",), IN),
    # 5. training ranges, from YAML and flags alike
    Case("d05-yaml-steps-0", [*PRE0, "--config", "c.yaml"], USAGE, "c.yaml: steps: 0", ("m.safetensors",),
         yaml_file("c.yaml", "steps: 0\n"), forbid=("Traceback",)),
    Case("d05-yaml-steps-negative", [*PRE[:3], "--out", "m.safetensors", "--config", "c.yaml"], USAGE,
         "steps: -5 is out of range", ("m.safetensors",), yaml_file("c.yaml", "steps: -5\n")),
    Case("d05-cli-steps-0", [*PRE, "--steps", "0"], USAGE, "--steps 0 is out of range", ("m.safetensors",)),
    Case("d05-adapt-gamma-0", [*ADAPT, "--gamma", "0"], USAGE, "(0, 100]", ("a.safetensors",)),
    Case("d05-adapt-gamma-negative", [*ADAPT, "--gamma", "-5"], USAGE, "--gamma -5", ("a.safetensors",)),
    Case("d05-adapt-gamma-101", [*ADAPT, "--gamma", "101"], USAGE, "--gamma 101", ("a.safetensors",)),
    Case("d05-yaml-gamma-101", [*ADAPT, "--config", "c.yaml"], USAGE, "gamma: 101", ("a.safetensors",),
         yaml_file("c.yaml", "gamma: 101\n")),
    Case("d05-yaml-lr-0", [*PRE, "--config", "c.yaml"], USAGE, "lr: 0", ("m.safetensors",),
         yaml_file("c.yaml", "lr: 0\n")),
    Case("d05-yaml-ratio-2", [*PRE, "--config", "c.yaml"], USAGE, "ratio: 2", ("m.safetensors",),
         yaml_file("c.yaml", "ratio: 2\n")),
    Case("d05-sigma-max-nan", [*PRE, "--denoise", "--sigma-max", "nan"], USAGE, "--sigma-max nan",
         ("m.safetensors",)),
    Case("d05-yaml-max-minutes-0", [*PRE, "--config", "c.yaml"], USAGE, "max_minutes: 0", ("m.safetensors",),
         yaml_file("c.yaml", "max_minutes: 0\n")),
    # 6. kernels too large for the models (or the image)
    Case("d06-kernel-101x101", [*SR, "--kernel", "big.npy", "in.png"], USAGE, "49×49", ("in_x2.png",),
         both(IN, npy("big.npy", np.full((101, 101), 1.0)))),
    Case("d06-kernel-101x101-with-small-support", [*SR, "--kernel", "pad.npy", "in.png"], OK, "in_x2.png", (),
         both(IN, npy("pad.npy", padded_kernel())), exist("in_x2.png")),
    Case("d06-kernel-larger-than-image", [*SR, "--kernel", "k41.npy", "tiny.png"], USAGE, "larger than",
         ("tiny_x2.png",), both(rgb("tiny.png", 8), npy("k41.npy", gauss(41, 8.0)))),
    # 7. leftovers: temporaries of killed runs, signals while writing, a full cache disk
    Case("d07-stale-temp-of-a-killed-run-swept", [*SR, "in.png"], OK, "in_x2.png",
         (f".in_x2.png.{DEAD_PID}-abcd1234.tmp",), both(IN, stale_temp), exist("in_x2.png")),
    Case("d07-sigint-while-writing-leaves-no-temp", [*SR, "in.png"], 130, "lorun: interrupted", ("in_x2.png",),
         both(IN, signal_in_writer(signal.SIGINT)), no_temps),
    Case("d07-sigterm-while-writing-leaves-no-temp", [*SR, "in.png"], 143, "lorun: interrupted", ("in_x2.png",),
         both(IN, signal_in_writer(signal.SIGTERM)), no_temps),
    Case("d07-full-cache-falls-back-to-bundled", [*SR, "in.png"], OK, "in_x2.png",
         ("cache/sr-lorun9.safetensors.partial", "cache/sr-lorun9.safetensors"),
         both(IN, disk_full_on("lorun_cli.io.weights.shutil", "copyfile")),
         exist("in_x2.png", "cache/sr-lorun9.safetensors.lock"),  # the cache was tried
         env={"LORUN_CACHE_DIR": "{d}/cache"}),
    Case("d07-cache-without-room-for-a-lock-falls-back", [*SR, "in.png"], OK, "in_x2.png",
         ("cache/sr-lorun9.safetensors",), both(IN, no_room_for_lock), exist("in_x2.png"),
         env={"LORUN_CACHE_DIR": "{d}/cache"}),
    # 8. threads
    Case("d08-threads-10000", ["--threads", "10000", *SR, "in.png"], USAGE, "--threads 10000", ("in_x2.png",),
         IN),
    Case("d08-threads-0", ["--threads", "0", *SR, "in.png"], USAGE, "--threads 0", ("in_x2.png",), IN),
    # 9. memory guard
    Case("d09-auto-tiles-over-budget", [*SR, "--max-memory", "0.1", "big.png"], OK, "tiling automatically",
         (), rgb("big.png", 160), exist("big_x2.png")),
    Case("d09-explicit-tile-over-budget", [*SR, "--max-memory", "0.1", "--tile", "320", "big.png"], USAGE,
         "over the 102 MB budget (--max-memory 0.1); use --tile 96", ("big_x2.png",), rgb("big.png", 160)),
    Case("d09-no-tile-fits-budget", [*SR, "--max-memory", "0.09", "big.png"], USAGE, "raise --max-memory",
         ("big_x2.png",), rgb("big.png", 160)),
    Case("d09-env-budget", [*SR, "big.png"], OK, "LORUN_MAX_MEMORY=0.1", (), rgb("big.png", 160),
         exist("big_x2.png"), env={"LORUN_MAX_MEMORY": "0.1"}),
    Case("d09-env-budget-not-a-number", [*SR, "in.png"], USAGE, "LORUN_MAX_MEMORY", ("in_x2.png",), IN,
         env={"LORUN_MAX_MEMORY": "lots"}),
    Case("d09-max-memory-0", [*SR, "--max-memory", "0", "in.png"], USAGE, "--max-memory 0", ("in_x2.png",), IN),
    Case("d09-max-memory-nan", [*SR, "--max-memory", "nan", "in.png"], USAGE, "finite", ("in_x2.png",), IN),
    Case("d09-out-of-memory-is-one-line", [*SR, "in.png"], RUNTIME, "out of memory", ("in_x2.png",),
         both(IN, in_forward(oom)), forbid=("OutOfMemoryError",)),
    # 10-13. kernel files
    Case("d10-text-as-mat-kernel", [*SR, "--kernel", "k.mat", "in.png"], USAGE, "not a MATLAB .mat file",
         ("in_x2.png",), both(IN, text("k.mat")), forbid=("IndexError",)),
    Case("d11-text-as-npy-kernel", [*SR, "--kernel", "k.npy", "in.png"], USAGE, "not a NumPy .npy array",
         ("in_x2.png",), both(IN, text("k.npy")), forbid=("allow_pickle",)),
    Case("d11-pickled-npy-kernel", [*SR, "--kernel", "k.npy", "in.png"], USAGE, "numpy.save", ("in_x2.png",),
         both(IN, lambda d, _m: np.save(d / "k.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)),
         forbid=("allow_pickle",)),
    Case("d11-truncated-npy-kernel", [*SR, "--kernel", "k.npy", "in.png"], USAGE, "not a NumPy", ("in_x2.png",),
         both(IN, npy("k.npy", gauss(7)), lambda d, _m: (d / "k.npy").write_bytes((d / "k.npy").read_bytes()[:90]))),
    Case("d12-folder-as-kernel", [*SR, "--kernel", "kdir", "in.png"], USAGE, "--kernel kdir is a folder",
         ("in_x2.png",), both(IN, folder("kdir")), forbid=("not found",)),
    Case("d13-negative-taps", [*SR, "--kernel", "neg.npy", "in.png"], USAGE, "negative taps", ("in_x2.png",),
         both(IN, npy("neg.npy", gauss(7) - 0.01)), forbid=("normalize=False",)),
    Case("d13-zero-kernel", [*SR, "--kernel", "z.npy", "in.png"], USAGE, "positive sum", ("in_x2.png",),
         both(IN, npy("z.npy", np.zeros((5, 5))))),
    Case("d13-nan-kernel", [*SR, "--kernel", "n.npy", "in.png"], USAGE, "NaN", ("in_x2.png",),
         both(IN, npy("n.npy", np.full((3, 3), np.nan)))),
    Case("d13-3d-kernel", [*SR, "--kernel", "c.npy", "in.png"], USAGE, "2-D", ("in_x2.png",),
         both(IN, npy("c.npy", np.ones((3, 5, 5))))),
    Case("d13-kernel-unknown-format", [*SR, "--kernel", "k.txt", "in.png"], USAGE, "not a kernel format",
         ("in_x2.png",), both(IN, text("k.txt", "0.5 0.5"))),
    Case("d13-kernel-K13", [*SR, "--kernel", "K13", "in.png"], USAGE, "not one of K1…K12", ("in_x2.png",), IN),
    Case("d13-kernel-missing-file", [*SR, "--kernel", "none.npy", "in.png"], USAGE, "no such file",
         ("in_x2.png",), IN),
    # 14. YAML types and shapes
    Case("d14-yaml-steps-text", [*PRE0, "--config", "c.yaml"], USAGE, "steps: 'many' must be an integer",
         ("m.safetensors",), yaml_file("c.yaml", "steps: many\n"), forbid=("TypeError",)),
    Case("d14-yaml-batch-0", [*PRE[:3], "--out", "m.safetensors", "--config", "c.yaml"], USAGE, "batch: 0",
         ("m.safetensors",), yaml_file("c.yaml", "batch: 0\n"), forbid=("RuntimeError",)),
    Case("d14-yaml-steps-true", [*PRE0, "--config", "c.yaml"], USAGE, "steps: True", ("m.safetensors",),
         yaml_file("c.yaml", "steps: true\n")),
    Case("d14-yaml-patch-fraction", [*PRE[:3], "--out", "m.safetensors", "--config", "c.yaml"], USAGE,
         "patch: 64.5", ("m.safetensors",), yaml_file("c.yaml", "patch: 64.5\n")),
    Case("d14-yaml-lr-nan", [*PRE, "--config", "c.yaml"], USAGE, "lr: nan is not a finite number",
         ("m.safetensors",), yaml_file("c.yaml", "lr: .nan\n")),
    Case("d14-yaml-resume-text", [*PRE, "--config", "c.yaml"], USAGE, "resume: 'sure' must be true or false",
         ("m.safetensors",), yaml_file("c.yaml", "resume: sure\n")),
    Case("d14-yaml-unknown-task", [*PRE[:1], "--out", "m.safetensors", "--config", "c.yaml"], USAGE,
         "task: 'video'", ("m.safetensors",), yaml_file("c.yaml", "task: video\n")),
    Case("d14-yaml-unknown-key", [*PRE, "--config", "c.yaml"], USAGE, "unknown option(s) ['stepz']",
         ("m.safetensors",), yaml_file("c.yaml", "stepz: 10\n")),
    Case("d14-yaml-not-a-mapping", [*PRE, "--config", "c.yaml"], USAGE, "expected a mapping", ("m.safetensors",),
         yaml_file("c.yaml", "- steps\n- 10\n")),
    Case("d14-yaml-invalid", [*PRE, "--config", "c.yaml"], USAGE, "not valid YAML", ("m.safetensors",),
         yaml_file("c.yaml", "steps: [1,\n")),
    Case("d14-yaml-missing", [*PRE, "--config", "none.yaml"], USAGE, "no such file", ("m.safetensors",)),
    Case("d14-yaml-phi-unknown", [*ADAPT, "--config", "c.yaml"], USAGE, "phi: 'magic' is not one of",
         ("a.safetensors",), yaml_file("c.yaml", "phi: magic\n")),
    Case("d14-yaml-lr-as-text-number-then-steps-0", [*PRE0, "--config", "c.yaml"], USAGE, "steps: 0",
         ("m.safetensors",), yaml_file("c.yaml", "lr: 1e-3\nsteps: 0\n")),  # "1e-3" (text in YAML) is fine
    # 15. --mask
    Case("d15-mask-missing", [*CASSI, "--mask", "nomask.mat", "meas.npy"], USAGE, "--mask nomask.mat: no such",
         ("meas_cube.tif",), meas(), forbid=("ValueError",)),
    Case("d15-mask-png", [*CASSI, "--mask", "m.png", "meas.npy"], USAGE, "not a mask format", ("meas_cube.tif",),
         both(meas(), gray("m.png")), forbid=("ValueError",)),
    Case("d15-mask-text-as-npy", [*CASSI, "--mask", "m.npy", "meas.npy"], USAGE, "could not be read as a "
         "coded-aperture mask", ("meas_cube.tif",), both(meas(), text("m.npy"))),
    Case("d15-mask-3d", [*CASSI, "--mask", "m.npy", "meas.npy"], USAGE, "--mask m.npy", ("meas_cube.tif",),
         both(meas(), npy("m.npy", np.ones((2, 8, 8))))),
    Case("d15-mask-with-sr", [*SR, "--mask", "m.npy", "in.png"], USAGE, "CASSI option", ("in_x2.png",),
         both(IN, npy("m.npy", np.ones((8, 8))))),
    Case("d15-mask-size-mismatch", [*CASSI, "--mask", "m.npy", "meas.npy"], USAGE, "matching --mask",
         ("meas_cube.tif",), both(meas(), npy("m.npy", np.ones((64, 64), np.float32)))),
    # 16. disk full
    Case("d16-disk-full-writing-image", [*SR, "in.png"], RUNTIME, "no space left", ("in_x2.png",),
         both(IN, disk_full_on("PIL.Image.Image", "save")), no_temps, forbid=("Errno",)),
    Case("d16-disk-full-writing-cube", [*CASSI, "meas.npy"], RUNTIME, "no space left",
         ("meas_cube.tif", "meas_cube_preview.png"), both(meas(), disk_full_on("tifffile", "imwrite")), no_temps,
         forbid=("Errno",)),
    # 17. --resume with a bad state
    Case("d17-truncated-ckpt", [*PRE, "--resume"], RUNTIME, "truncated or corrupt", ("m.safetensors",),
         truncated_ckpt, forbid=("weights_only", "Traceback"), env={"LORUN_DATA": "{data}"}),
    Case("d17-garbage-ckpt", [*PRE, "--resume"], RUNTIME, "truncated or corrupt", ("m.safetensors",),
         text("m.safetensors.ckpt", bytes(range(256)) * 4), forbid=("weights_only",),
         env={"LORUN_DATA": "{data}"}),
    Case("d17-foreign-ckpt", [*PRE, "--resume"], RUNTIME, "not a lorun training state", ("m.safetensors",),
         foreign_ckpt, env={"LORUN_DATA": "{data}"}),
    # 18. CS ratios and strategies without a bundled model
    Case("d18-ratio-0.33", ["restore", "--task", "cs", "--ratio", "0.33", "house.png"], USAGE,
         "bundled ratios: 0.25", ("house_cs.png",), cs_image()),
    Case("d18-ratio-0", ["restore", "--task", "cs", "--ratio", "0", "house.png"], USAGE, "(0, 1]",
         ("house_cs.png",), cs_image()),
    Case("d18-ratio-nan", ["restore", "--task", "cs", "--ratio", "nan", "house.png"], USAGE, "finite",
         ("house_cs.png",), cs_image()),
    Case("d18-bench-ratio-0.33", ["bench", "--ratio", "0.33", "--no-memory", "--repeats", "1"], USAGE,
         "bundled ratios"),
    Case("d18-strategy-without-model", [*SR, "--strategy", "block5", "in.png"], USAGE, "bundled: block9",
         ("in_x2.png",), IN),
    # 19. Ctrl-C
    Case("d19-ctrl-c-during-restore", [*SR, "in.png"], 130, "lorun: interrupted", ("in_x2.png",),
         both(IN, in_forward(lambda: signal.raise_signal(signal.SIGINT))), no_temps),
    Case("d19-keyboard-interrupt-through-typer", [*SR, "in.png"], 130, "lorun: interrupted", ("in_x2.png",),
         both(IN, in_forward(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))), no_temps),
    # 20. Ctrl-C while training writes a checkpoint first
    Case("d20-ctrl-c-during-training-checkpoints", PRE, 130, "training state saved to m.safetensors.ckpt at "
         "step 3", ("m.safetensors",), ctrl_c_at_batch(3), ckpt_at_step("m.safetensors.ckpt", 3),
         env={"LORUN_DATA": "{data}"}),
    Case("d20-sigterm-during-training-checkpoints", PRE, 143, "continue with --resume", ("m.safetensors",),
         ctrl_c_at_batch(2, signal.SIGTERM), ckpt_at_step("m.safetensors.ckpt", 2), env={"LORUN_DATA": "{data}"}),
    # 21. outputs checked before any computation
    Case("d21-bad-output-extension", [*SR, "in.png", "-o", "out.xyz"], USAGE, "cannot write an image as .xyz",
         ("out.xyz",), both(IN, no_model_load)),
    Case("d21-unwritable-folder", [*SR, "in.png", "-o", "/sys/lorun-test.png"], RUNTIME, "not writable",
         ("/sys/lorun-test.png",), both(IN, no_model_load)),
    Case("d21-missing-folder", [*SR, "in.png", "-o", "nope/x.png"], USAGE, "does not exist", ("nope",),
         both(IN, no_model_load)),
    Case("d21-cassi-cube-as-png", [*CASSI, "meas.npy", "-o", "cube.png"], USAGE, "use .tif", ("cube.png",),
         both(meas(), no_model_load)),
    Case("d21-existing-output-needs-force", [*SR, "in.png"], USAGE, "exists; pass --force", (),
         both(IN, text("in_x2.png", "keep"), no_model_load), untouched("in_x2.png", b"keep")),
    Case("d21-existing-preview-needs-force", [*CASSI, "meas.npy"], USAGE, "meas_cube_preview.png exists",
         ("meas_cube.tif",),
         both(meas(), text("meas_cube_preview.png", "keep"), no_model_load),
         untouched("meas_cube_preview.png", b"keep")),
    Case("d21-pretrain-bad-extension", [*PRE[:-1], "m.txt"], USAGE, ".safetensors or .pt", ("m.txt",)),
    Case("d21-pretrain-missing-folder", [*PRE[:-1], "nope/m.safetensors"], USAGE, "does not exist", ("nope",)),
    Case("d21-pretrain-unwritable-folder", [*PRE[:-1], "/sys/m.safetensors"], RUNTIME, "not writable",
         ("/sys/m.safetensors",)),
    Case("d21-pretrain-out-is-folder", [*PRE[:-1], "outdir"], USAGE, ".safetensors or .pt", (), folder("outdir")),
    # 22. gray stays gray
    Case("d22-gray-sr-stays-gray", [*SR, "g.png"], OK, "g_x2.png", (), gray("g.png"),
         image_mode("g_x2.png", "L", (64, 64))),
    Case("d22-gray-as-rgb-stays-neutral", [*SR, "g3.png"], OK, "g3_x2.png", (),
         lambda d, _m: Image.open(SR_SAMPLE).convert("L").crop((0, 0, 32, 32)).convert("RGB").save(d / "g3.png"),
         image_mode("g3_x2.png", "RGB", (64, 64))),
    Case("d22-gray-simulate-scores-gray", [*SR, "--simulate", "g.png", "-o", "s.png"], OK, "gray", (),
         gray("g.png"), image_mode("s.png", "L", (32, 32))),
    # 23. --tile
    Case("d23-tile-negative", [*SR, "--tile", "-5", "in.png"], USAGE, "--tile -5 is out of range",
         ("in_x2.png",), IN),
    Case("d23-tile-too-small-sr", [*SR, "--tile", "16", "in.png"], USAGE, "≥ 96", ("in_x2.png",), IN),
    Case("d23-tile-too-small-cs", ["restore", "--task", "cs", "--tile", "64", "house.png"], USAGE, "≥ 96",
         ("house_cs.png",), cs_image()),
    Case("d23-tile-not-a-number", [*SR, "--tile", "big", "in.png"], USAGE, "invalid value for '--tile'",
         ("in_x2.png",), IN, click=True),
    # 24. every readable image format is found in folders
    Case("d24-folder-webp-and-gif", [*SR, "pics"], OK, "b_x2.png", ("pics/notes_x2.png",), webp_gif,
         exist("pics/a_x2.png", "pics/b_x2.png")),
    Case("d24-named-webp", [*SR, "pics/a.webp", "-o", "a.png"], OK, "a.png", (), webp_gif, exist("a.png")),
    Case("d24-folder-without-images", [*SR, "empty"], USAGE, "holds no sr inputs", (),
         both(folder("empty"), text("empty/readme.txt"))),
    # other inputs and options
    Case("input-missing", [*SR, "missing.png"], USAGE, "no such file", ("missing_x2.png",)),
    Case("input-corrupt-png", [*SR, "junk.png"], RUNTIME, "could not be read as an image", ("junk_x2.png",),
         text("junk.png", bytes(range(256)) * 8)),
    Case("input-empty-file", [*SR, "e.png"], RUNTIME, "e.png", ("e_x2.png",), text("e.png", b"")),
    Case("task-unknown", ["restore", "--task", "video", "in.png"], USAGE, "--task 'video' is not one of", (), IN),
    Case("scale-0", ["restore", "--scale", "0", "in.png"], USAGE, "--scale 0", ("in_x0.png",), IN),
    Case("scale-9", ["restore", "--scale", "9", "in.png"], USAGE, "[1, 8]", ("in_x9.png",), IN),
    Case("ref-missing", [*SR, "--ref", "none.png", "in.png"], USAGE, "--ref none.png: no such file",
         ("in_x2.png",), IN),
    Case("ref-shape-mismatch", [*SR, "--ref", "in.png", "in.png", "-o", "o.png"], USAGE, "differs from the output",
         ("o.png",), IN),
    Case("backbone-missing", [*SR, "--backbone", "none.safetensors", "in.png"], USAGE, "--backbone", ("in_x2.png",),
         IN),
    Case("model-file-missing", [*SR, "--model", "none.safetensors", "in.png"], USAGE, "--model none.safetensors",
         ("in_x2.png",), IN),
    Case("model-unknown-name", [*SR, "--model", "no-such-model", "in.png"], RUNTIME, "sr-lorun9", ("in_x2.png",),
         IN),
    Case("device-bogus", ["--device", "tpu", *SR, "in.png"], USAGE, "--device 'tpu'", ("in_x2.png",), IN),
    Case("seed-negative", ["--seed", "-1", *SR, "in.png"], USAGE, "--seed -1", ("in_x2.png",), IN),
    Case("bench-repeats-0", ["bench", "--repeats", "0"], USAGE, "--repeats 0"),
    Case("bench-limit-0", ["bench", "--limit", "0"], USAGE, "--limit 0"),
    Case("bench-csv-exists", ["bench", "--csv", "rows.csv"], USAGE, "rows.csv exists; pass --force", (),
         text("rows.csv", "keep"), untouched("rows.csv", b"keep")),
    Case("bench-csv-bad-extension", ["bench", "--csv", "rows.txt"], USAGE, "use .csv", ("rows.txt",)),
    Case("bench-markdown-bad-extension", ["bench", "--all", "--markdown", "page.html"], USAGE, "use .md",
         ("page.html",)),
    Case("bench-plot-missing-folder", ["bench", "--all", "--markdown", "p.md", "--plot", "nope/f.png"], USAGE,
         "does not exist", ("p.md", "nope")),
    Case("weights-fetch-unknown", ["weights", "fetch", "nope"], USAGE, "nope"),
    Case("pretrain-data-missing", PRE, RUNTIME, "no data root", ("m.safetensors",)),
    Case("pretrain-lorun-strategy", [*PRE, "--strategy", "lorun9"], USAGE, "lorun adapt", ("m.safetensors",),
         env={"LORUN_DATA": "{data}"}),
    Case("adapt-backbone-folder", ["adapt", "--backbone", "bdir", "--out", "a.safetensors"], USAGE, "is a folder",
         ("a.safetensors",), folder("bdir")),
    Case("adapt-backbone-missing", ["adapt", "--backbone", "none.pt", "--out", "a.safetensors"], USAGE,
         "lorun pretrain", ("a.safetensors",)),
    Case("cassi-measurement-wrong-size", [*CASSI, "bad.npy"], USAGE, "256×310", ("bad_cube.tif",),
         npy("bad.npy", np.zeros((256, 300), np.float32))),
    Case("cassi-npz-not-a-sample", [*CASSI, "--simulate", "x.npz"], RUNTIME, "not a lorun CASSI sample",
         ("x_cube.tif",), lambda d, _m: np.savez(d / "x.npz", a=np.zeros(3))),
]


# --------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CS training root: a few Train400 / T91 look-alikes (one of them a validation image)."""
    from lorun_cli.io.datasets import CS_VAL_NAMES

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    (root / "train" / "bsd400").mkdir(parents=True)
    (root / "train" / "t91").mkdir(parents=True)
    for name in ("test_001.png", CS_VAL_NAMES[0]):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(root / "train" / "bsd400" / name)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / "train" / "t91" / "a01.bmp")
    return root


def run_case(case: Case, d: Path, zoo_env: dict[str, str], data: Path, mp: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture) -> subprocess.CompletedProcess:
    """Run the case's command in-process in folder ``d``; returns exit code and captured output."""
    from lorun_cli.cli import app as cli_app

    wdir = Path(zoo_env["LORUN_MANIFEST"]).parent / "weights"

    def fill(s: str) -> str:
        return s.replace("{w}", str(wdir)).replace("{data}", str(data)).replace("{d}", str(d))

    env = {**zoo_env, **{k: fill(v) for k, v in case.env.items()}}
    for k in (*LORUN_ENV_KEYS, "LORUN_MAX_MEMORY"):
        mp.delenv(k, raising=False)
    for k in (*LORUN_ENV_KEYS, "LORUN_MAX_MEMORY"):
        if k in env:
            mp.setenv(k, env[k])
    mp.chdir(d)
    if case.setup is not None:
        case.setup(d, mp)
    argv = ["lorun", "--threads", "1", *map(fill, case.args)]
    mp.setattr(sys, "argv", argv)
    capsys.readouterr()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with torch.random.fork_rng(), pytest.raises(SystemExit) as exc:
        cli_app.main()
    assert {s: signal.getsignal(s) for s in handlers} == handlers, "signal handlers were not restored"
    out = capsys.readouterr()
    code = exc.value.code
    return subprocess.CompletedProcess(argv, 0 if code is None else code, out.out, out.err)


def test_the_table_is_big_and_covers_every_defect() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 80
    covered = {int(i[1:3]) for i in ids if i[0] == "d" and i[1:3].isdigit()}
    assert covered == set(range(1, 25))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, zoo_env: dict[str, str], data_root: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    if any(a.startswith("/sys/") for a in case.args) and os.access("/sys", os.W_OK) and Path("/sys").is_dir():
        try:
            Path("/sys/.lorun-probe").touch()
        except OSError:
            pass
        else:  # pragma: no cover - an unusual system where /sys is writable
            Path("/sys/.lorun-probe").unlink()
            pytest.skip("/sys is writable here")
    r = run_case(case, tmp_path, zoo_env, data_root, monkeypatch, capsys)
    text = r.stdout + r.stderr
    assert r.returncode == case.code, f"exit {r.returncode}, expected {case.code}\n{text}"
    assert "Traceback" not in text
    for bad in case.forbid:
        assert bad.lower() not in text.lower(), f"{bad!r} in {text!r}"
    lines = r.stderr.strip().splitlines()
    if case.code == 0:
        assert case.fragment.lower() in r.stderr.lower(), r.stderr
    elif case.click:
        assert case.fragment.lower() in r.stderr.lower() and "Usage: lorun" in r.stderr, r.stderr
    else:
        head = "lorun: interrupted" if case.code in (130, 143) else "lorun: error: "
        if case.args[0] in ("pretrain", "adapt") and case.code in (130, 143):
            lines = lines[1:]  # the training run's start line comes first
        assert len(lines) == 1 and lines[0].startswith(head), r.stderr
        assert case.fragment.lower() in lines[0].lower(), f"{case.fragment!r} not in {lines[0]!r}"
    for rel in case.absent:
        p = Path(rel) if rel.startswith("/") else tmp_path / rel
        assert not p.exists(), f"{rel} exists after the run"
    if case.check is not None:
        case.check(tmp_path, r)
    if case.code != 0:
        assert r.stdout == "", r.stdout  # nothing on stdout for a failed run
