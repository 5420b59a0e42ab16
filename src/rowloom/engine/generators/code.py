"""Code columns: extract code from a model reply and validate it (Python, SQL, JSON).

Validators never execute the code: Python is compiled (not run) and checked by `ruff` in a subprocess when it is
installed, SQL is parsed by `sqlglot`, JSON by `json.loads`. Each check is bounded by a timeout; a check that
runs out of time is reported as an error of the snippet, never a crash. A snippet no parser can read (nested too
deep, too large) is a `CellFailed("unreadable_reply")` from `read_reply`, never a crash either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

from rowloom.config.columns import CodeValidation, LLMCodeColumn
from rowloom.engine.generators.llm import LLMGenerator
from rowloom.engine.generators.replies import read_reply

#: An opening fence line: its fence (three or more backticks or tildes) and the tag after it. Matched per line, so
#: the time is linear in the reply (one regex over the whole reply was quadratic on a line of backticks).
_OPENER = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)")
_ALIASES = {
    "python": {"python", "py", "python3"},
    "sql": {"sql", "postgresql", "postgres", "mysql", "sqlite", "tsql"},
    "json": {"json", "jsonc"},
    "javascript": {"javascript", "js", "jsx", "node"},
    "typescript": {"typescript", "ts", "tsx"},
    "bash": {"bash", "sh", "shell", "zsh"},
    "cpp": {"cpp", "c++", "cxx"},
    "csharp": {"csharp", "cs", "c#"},
    "yaml": {"yaml", "yml"},
}


def extract_code(text: str, language: str) -> str:
    """The code in a reply: the first fenced block tagged with `language` (or an alias of it), else the first
    untagged block, else the first block of any tag, else the whole reply stripped. An unterminated fence (a
    reply cut short) runs to the end of the reply."""
    blocks = _fenced_blocks(text)
    if not blocks:
        return text.strip()
    names = _ALIASES.get(language, {language})
    for tag, body in blocks:
        if tag in names:
            return body.strip("\n")
    for tag, body in blocks:
        if not tag:
            return body.strip("\n")
    return blocks[0][1].strip("\n")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, body) of each fenced block: an opening fence line, up to a line holding only the same fence (or to
    the end of the reply, where the search stops)."""
    lines = text.split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines) - 1:  # an opener needs a line after it
        opener = _OPENER.match(lines[i])
        if opener is None:
            i += 1
            continue
        fence, tag = opener.group(1), opener.group(2).lower()
        close = next((j for j in range(i + 1, len(lines)) if lines[j].strip(" \t") == fence), None)
        if close is None:
            blocks.append((tag, "\n".join(lines[i + 1 :])))
            break
        blocks.append((tag, "\n".join(lines[i + 1 : close])))
        i = close + 1
    return blocks


# ------------------------------------------------------------------ validators


def _python_compile(code: str) -> list[str]:
    try:
        compile(code, "<snippet>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", col {exc.offset}" if exc.offset else "")
        return [f"SyntaxError at {where}: {exc.msg}"]
    except ValueError as exc:  # e.g. null bytes
        return [f"not compilable: {exc}"]
    return []


@functools.cache
def ruff_command() -> tuple[str, ...] | None:
    """How to run ruff here (the `ruff` package's binary, or one on PATH), or None when it is not installed."""
    with contextlib.suppress(ImportError, FileNotFoundError):
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-not-found]

        return (os.fsdecode(find_ruff_bin()),)
    found = shutil.which("ruff")
    return (found,) if found else None


async def _ruff(code: str, rules: list[str], timeout_s: float) -> list[str]:
    command = ruff_command()
    if command is None or not rules:
        return []
    args = [*command, "check", "--isolated", "--no-cache", "--output-format", "json", "--select", ",".join(rules)]
    process = await asyncio.create_subprocess_exec(
        *args,
        "--stdin-filename",
        "snippet.py",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(code.encode()), timeout_s)
    except TimeoutError:
        return [f"ruff did not finish within {timeout_s:g} s"]
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    try:
        findings = json.loads(out or b"[]")
    except ValueError:
        return [f"ruff failed: {err.decode(errors='replace').strip()[:200]}"]
    return [
        f"{f.get('code') or 'ruff'} at line {f.get('location', {}).get('row', '?')}: {f.get('message', '')}"
        for f in findings
    ]


def _sql(code: str, dialect: str | None) -> list[str]:
    import sqlglot
    from sqlglot import exp

    statement_kinds = (
        exp.Query,
        exp.DML,
        exp.DDL,
        exp.Command,
        exp.Drop,
        exp.Alter,
        exp.Use,
        exp.Set,
        exp.Describe,
        exp.Transaction,
        exp.Commit,
        exp.Rollback,
        exp.Pragma,
        exp.Show,
        exp.Grant,
        exp.Cache,
        exp.Analyze,
    )
    try:
        statements = sqlglot.parse(code, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.ParseError as exc:
        return [
            f"line {e.get('line')}, col {e.get('col')}: {str(e.get('description')).split(' but got <Token')[0]}"
            for e in exc.errors
        ] or [str(exc).split("\n")[0]]
    except sqlglot.TokenError as exc:
        return [f"cannot tokenize: {exc}"]
    found = [s for s in statements if s is not None]
    if not found:
        return ["no SQL statement"]
    return [
        f"statement {i + 1} is not a SQL statement (it parses as {type(s).__name__})"
        for i, s in enumerate(found)
        if not isinstance(s, statement_kinds)
    ]


def _json(code: str) -> list[str]:
    try:
        json.loads(code)
    except ValueError as exc:
        return [f"invalid JSON: {exc}"]
    return []


#: The parser of each language a snippet can be validated in.
_CHECKS: dict[str, Any] = {
    "python": lambda code, settings: _python_compile(code),
    "sql": lambda code, settings: _sql(code, settings.sql_dialect),
    "json": lambda code, settings: _json(code),
}


def parse_code(language: str, code: str, settings: CodeValidation) -> list[str]:
    """What the parser of `language` finds wrong with `code` (empty = parses). CPU work, run off the event loop;
    raises whatever the parser raises on code it cannot read (RecursionError, MemoryError…)."""
    return _CHECKS[language](code, settings)


async def validate_code(language: str, code: str | None, settings: CodeValidation) -> list[str]:
    """Problems found in `code` (empty = valid). A check past its timeout is a problem; code the parser itself
    fails on (RecursionError, MemoryError…) raises `CellFailed("unreadable_reply")`, never anything else."""
    if code is None or not code.strip():
        return ["no code"]
    if language not in _CHECKS:
        raise ValueError(f"no validator for {language!r}")
    try:
        # Parsing is CPU work: off the event loop, bounded (a thread cannot be killed; it finishes on its own).
        errors = await asyncio.wait_for(
            asyncio.to_thread(read_reply, f"the {language} validator", parse_code, language, code, settings),
            settings.timeout_s,
        )
    except TimeoutError:
        return [f"{language} validation did not finish within {settings.timeout_s:g} s"]
    if language == "python" and not errors:
        errors = await _ruff(code, settings.ruff_rules, settings.timeout_s)
    return errors


def validation_values(name: str, code: str | None, errors: list[str]) -> dict[str, Any]:
    """The three outputs of a validated code column."""
    return {name: code, f"{name}__valid": not errors, f"{name}__errors": "; ".join(errors) if errors else None}


# ------------------------------------------------------------------ the column


class CodeGenerator(LLMGenerator):
    """Asks for code, extracts it, validates it (re-asking with the errors up to `max_correction_attempts`)."""

    def __init__(self, plan, executor, model):
        super().__init__(plan, executor, model)
        column = plan.column
        assert isinstance(column, LLMCodeColumn)
        self.code_column = column
        self.companions = column.validate_code

    def _messages(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = super()._messages(row)
        if self.system is None:
            language = self.code_column.language
            messages.insert(
                0,
                {"role": "system", "content": f"Reply with {language} code only, in one fenced ```{language} block."},
            )
        return messages

    async def value(self, row: Mapping[str, Any]) -> Any:
        column = self.code_column
        messages = self._messages(row)
        text = await self._ask(messages)
        code = read_reply("the code reply", extract_code, text, column.language)
        if not column.validate_code:
            return code
        errors = await validate_code(column.language, code, column.validation)
        for _ in range(column.max_correction_attempts):
            if not errors:
                break
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That code has problems: {'; '.join(errors)}. Reply again with the corrected "
                    f"{column.language} code only, in one fenced code block.",
                },
            ]
            text = await self._ask(messages)
            code = read_reply("the code reply", extract_code, text, column.language)
            errors = await validate_code(column.language, code, column.validation)
        return validation_values(self.name, code, errors)
