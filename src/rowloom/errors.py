"""The one exception hierarchy of rowloom.

Every error a user can see derives from `RowloomError`; each says what happened and what to do.
"""

from __future__ import annotations


class RowloomError(Exception):
    """Base of every error rowloom raises on purpose."""


class ConfigError(RowloomError):
    """A dataset config is invalid. Carries one or more problems, each with a field path and a fix."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem):
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in the config:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigProblem:
    """One problem in a config: where (a dotted field path), what, and how to fix it."""

    __slots__ = ("fix", "message", "path")

    def __init__(self, path: str, message: str, fix: str = ""):
        self.path = path
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{where}{self.message}.{fix}" if not self.message.endswith(".") else f"{where}{self.message}{fix}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self.path!r}, {self.message!r}, {self.fix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigProblem) and (self.path, self.message, self.fix) == (
            other.path,
            other.message,
            other.fix,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message, self.fix))


class TemplateError(RowloomError):
    """A Jinja template failed to compile or render (including sandbox violations)."""


class UserCodeError(RowloomError):
    """A user's custom column raised a bug-class exception; the run fails with its traceback.

    The user's exception is the `__cause__` (its traceback holds the function's frames); `column` names the column
    and `function` its function, when known.
    """

    def __init__(self, message: str, *, column: str | None = None, function: str | None = None):
        super().__init__(message)
        self.column = column
        self.function = function


class RunAborted(RowloomError):
    """The run stopped before finishing (error-rate threshold, circuit breaker, interrupt).

    Every row group already written stays on disk.
    """


class OutputError(RowloomError):
    """The output folder cannot be written, or holds a run that cannot be resumed."""


class BudgetReached(RunAborted):
    """The next request does not fit the run's budget. The run stops admitting work, lets the requests in flight
    finish and writes every complete row group; raising the limit and running again resumes it.

    `limit` names the `run.budget` field that was reached; the message is completed with what the run wrote
    once it has stopped (`SpendBudget.reached`)."""

    def __init__(self, limit: str, message: str):
        self.limit = limit
        super().__init__(message)


class RunInterrupted(RunAborted):
    """The user stopped the run (Ctrl-C / SIGTERM); finished row groups are on disk and a rerun resumes."""


class RowloomWarning(UserWarning):
    """Something the user may want to know or fix; the run goes on (`rowloom run` prints it as `warning: …`)."""
