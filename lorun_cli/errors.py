"""User-facing errors: one line that names the problem and the fix, plus a process exit code."""

from __future__ import annotations


class LorunError(Exception):
    """A runtime problem the user can fix (bad file, missing checkpoint, ...); exits with code 1."""

    exit_code: int = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The one-line message."""
        return str(self.args[0]) if self.args else ""


class UsageError(LorunError):
    """Wrong or inconsistent command-line usage (bad option value, wrong combination); exits with code 2."""

    exit_code: int = 2


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM: the CLI prints ``lorun: interrupted`` (plus ``note``) and exits 130 / 143.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` blocks do not swallow it; not a
    KeyboardInterrupt, so Typer does not turn it into a silent exit.
    """

    def __init__(self, note: str = "", exit_code: int = 130) -> None:
        super().__init__(note)
        self.note, self.exit_code = note, exit_code
