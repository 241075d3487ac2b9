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


class OptionError(UsageError):
    """A bad value of one named option, raised by the engine in terms of its own parameter names.

    ``option`` is the engine's name (``"kernels"``, ``"max_memory"``), ``value`` what was given (None: the option
    as a whole), ``problem`` the reason and the fix. The command line prints it with the flag that sets the
    parameter (:meth:`text`); ``str()`` spells the flag the usual way (``--max-memory``).
    """

    def __init__(self, option: str, value: object, problem: str, exit_code: int | None = None) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(self.text("--" + option.replace("_", "-")), exit_code)

    def text(self, flag: str) -> str:
        """The one-line message with the option spelled ``flag``."""
        head = flag if self.value is None else f"{flag} {self.value}"
        return f"{head}: {self.problem}"


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM: the CLI prints ``lorun: interrupted`` (plus ``note``) and exits 130 / 143.

    A BaseException, like KeyboardInterrupt, so ``except Exception`` blocks do not swallow it; not a
    KeyboardInterrupt, so Typer does not turn it into a silent exit.
    """

    def __init__(self, note: str = "", exit_code: int = 130) -> None:
        super().__init__(note)
        self.note, self.exit_code = note, exit_code
