"""How the caller spells the arguments of a run, so a message names what the user can change.

The CLI says `--output out/` and `-n 40`; the Python API says `output='out/'` and `num_records=40`. Owns only
the words; must not decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Terms:
    """The caller's names for a run's arguments: `output`, `num_records` and `resume`."""

    output: str
    num_records: str
    resume: str
    cli: bool

    def name(self, argument: str) -> str:
        """How the caller writes `argument` without a value: `--output` or `output=`."""
        return getattr(self, argument)

    def given(self, argument: str, value: Any) -> str:
        """How the caller writes `argument` with `value`: `--resume never` or `resume='never'`."""
        spelled = self.name(argument)
        return f"{spelled} {value}" if self.cli else f"{spelled}{value!r}"


CLI_TERMS = Terms(output="--output", num_records="-n", resume="--resume", cli=True)
"""The `rowloom run` flags."""

PYTHON_TERMS = Terms(output="output=", num_records="num_records=", resume="resume=", cli=False)
"""The keyword arguments of `rowloom.generate` / `agenerate`."""

FOLDER_TERMS = Terms(output="OUT_DIR", num_records="-n", resume="--resume", cli=True)
"""Commands that read a run's folder (`rowloom report`, `rowloom export`) name it by their argument, OUT_DIR."""
