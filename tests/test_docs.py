"""The committed man pages and shell completions (made by scripts/gen_docs.py) are current and well formed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
COMPLETIONS = ROOT / "completions"
COMMANDS = ("restore", "pretrain", "adapt", "bench", "weights", "weights-list", "weights-fetch", "weights-verify",
            "weights-path")


def _committed_date() -> str:
    """The footer date the committed pages were generated with (regenerating with it must be a no-op)."""
    th = next(ln for ln in (MAN / "lorun.1").read_text().splitlines() if ln.startswith(".TH "))
    return re.findall(r'"([^"]*)"', th)[2]


def test_generated_docs_are_up_to_date():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE") and not k.startswith("LORUN_")}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check", "--date", _committed_date()],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"{r.stderr}\nregenerate: python scripts/gen_docs.py --date {_committed_date()}"
    assert "up to date" in r.stdout


def test_one_man_page_per_command():
    pages = sorted(p.name for p in MAN.glob("*.1"))
    assert pages == sorted(["lorun.1", *(f"lorun-{c}.1" for c in COMMANDS)])
    top = (MAN / "lorun.1").read_text()
    assert ".SH EXIT STATUS" in top and ".SH ENVIRONMENT" in top and "LORUN_CACHE_DIR" in top
    assert re.match(r"\d{4}-\d{2}-\d{2}$", _committed_date())
    restore = (MAN / "lorun-restore.1").read_text()
    for opt in ("task", "kernel", "scale", "tile", "force"):
        assert f"\\fB\\-\\-{opt}\\fR" in restore


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("*.1")))
def test_man_page_renders_without_warnings(page):
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", str(MAN / page)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(r".\x08", "", r.stdout)  # drop overstrike (bold/underline) sequences
    assert "NAME" in text and "SYNOPSIS" in text and "EXIT STATUS" in text and "lorun" in text


def test_completion_scripts():
    bash = (COMPLETIONS / "lorun.bash").read_text()
    assert bash.strip() and "_LORUN_COMPLETE=complete_bash" in bash and "-F _lorun_completion lorun" in bash
    zsh = (COMPLETIONS / "_lorun").read_text()
    assert zsh.startswith("#compdef lorun\n")  # zsh reads the tag from the very first line
    fish = (COMPLETIONS / "lorun.fish").read_text()
    assert "complete --command lorun" in fish and "_LORUN_COMPLETE=complete_fish" in fish


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_script_loads():
    r = subprocess.run(["bash", "-c", f"source {COMPLETIONS / 'lorun.bash'} && complete -p lorun"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "_lorun_completion" in r.stdout, r.stderr


@pytest.mark.parametrize(("words", "cword", "expected"), [("lorun res", 1, "restore"),
                                                          ("lorun restore --ke", 2, "--kernel"),
                                                          ("lorun weights ve", 2, "verify")])
def test_completion_protocol_answers(words, cword, expected):
    """What the bash script asks the program (COMP_WORDS/COMP_CWORD) is answered with the matching word."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE")}
    env.update(COMP_WORDS=words, COMP_CWORD=str(cword), _LORUN_COMPLETE="complete_bash")
    r = subprocess.run([sys.executable, "-m", "lorun_cli"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and expected in r.stdout.split(), (r.stdout, r.stderr)
