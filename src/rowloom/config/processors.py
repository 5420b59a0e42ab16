"""Processors (what happens to a complete row group before it is written) and the export of a finished dataset.

Pydantic models and name checks only; the engine applies them (`rowloom.engine.processors`, `engine.export`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from rowloom.config.base import ConfigModel
from rowloom.config.templates import compile_template, template_references
from rowloom.errors import ConfigProblem, TemplateError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _valid_names(names: list[str], what: str) -> None:
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise ValueError(f"{', '.join(map(repr, bad))} {what}: use letters, digits and underscores")


class DropColumnsProcessor(ConfigModel):
    """Leave columns out of the written row group."""

    type: Literal["drop_columns"]
    columns: list[str] = Field(min_length=1, description="Columns to leave out.")

    def apply_names(self, names: list[str]) -> list[str]:
        """The column names after this step."""
        return [n for n in names if n not in self.columns]

    def needs(self) -> set[str]:
        """Columns that must exist before this step."""
        return set(self.columns)


class RenameColumnsProcessor(ConfigModel):
    """Rename columns (`old: new`)."""

    type: Literal["rename_columns"]
    mapping: dict[str, str] = Field(min_length=1, description="Old name -> new name.")

    @field_validator("mapping")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        _valid_names(list(value.values()), "are not valid new names")
        targets = list(value.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"two columns would be renamed to {', '.join(dupes)}")
        return value

    def apply_names(self, names: list[str]) -> list[str]:
        """The column names after this step."""
        return [self.mapping.get(n, n) for n in names]

    def needs(self) -> set[str]:
        """Columns that must exist before this step."""
        return set(self.mapping)


def template_leaves(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """`(path, template)` for every string leaf of a field template (a string, or lists/mappings of them)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from template_leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from template_leaves(value, f"{path}[{i}]")


class SchemaTransformProcessor(ConfigModel):
    """Replace the row by new fields, each a Jinja template or a structure whose string leaves are templates.

    E.g. `messages: [{role: user, content: "{{ question }}"}, {role: assistant, content: "{{ answer }}"}]`
    writes a `list<struct<role, content>>` column in chat format. Values render as text (never re-parsed).
    """

    type: Literal["schema_transform"]
    fields: dict[str, Any] = Field(min_length=1, description="Output field -> template (string or structure).")
    keep: list[str] = Field(default_factory=list, description="Existing columns to keep beside the new fields.")

    @field_validator("fields")
    @classmethod
    def _templates(cls, value: dict[str, Any]) -> dict[str, Any]:
        _valid_names(list(value), "are not valid field names")
        for name, node in value.items():
            for where, source in template_leaves(node, name):
                try:
                    compile_template(source)
                except TemplateError as exc:
                    raise ValueError(f"field {where}: {exc}; fix the template syntax") from None
            _check_shape(node, name)
        return value

    def apply_names(self, names: list[str]) -> list[str]:
        """The column names after this step: the kept columns, then the new fields."""
        return [*(k for k in self.keep if k not in self.fields), *self.fields]

    def needs(self) -> set[str]:
        """Columns the kept list and the templates read."""
        refs = set(self.keep)
        for node in self.fields.values():
            for _, source in template_leaves(node):
                refs |= template_references(source)
        return refs


def _check_shape(node: Any, path: str) -> None:
    if node is None or isinstance(node, str | bool | int | float):
        return
    if isinstance(node, dict):
        if not node:
            raise ValueError(f"field {path}: an empty mapping has no columns to write")
        for key, value in node.items():
            _check_shape(value, f"{path}.{key}")
        return
    if isinstance(node, list):
        for i, value in enumerate(node):
            _check_shape(value, f"{path}[{i}]")
        return
    raise ValueError(f"field {path}: {type(node).__name__} is not a template, list or mapping")


ProcessorConfig = Annotated[
    DropColumnsProcessor | RenameColumnsProcessor | SchemaTransformProcessor,
    Field(discriminator="type"),
]
PROCESSOR_TYPES: tuple[str, ...] = ("drop_columns", "rename_columns", "schema_transform")


class ExportConfig(ConfigModel):
    """Write the finished dataset once more as JSONL (e.g. chat format for fine-tuning) after a complete run."""

    format: Literal["chat-jsonl", "jsonl"] = Field(
        "chat-jsonl", description="chat-jsonl: one {'messages': [...]} per line; jsonl: every column."
    )
    path: str = Field("export.jsonl", description="File to write; relative paths are inside the output folder.")
    messages_column: str = Field("messages", description="Column holding the chat messages (chat-jsonl).")


def processor_problems(processors: list[Any], columns: list[str], export: ExportConfig | None) -> list[ConfigProblem]:
    """Processors that read columns not there at their step (names flow through the chain), and the export's."""
    problems: list[ConfigProblem] = []
    names = list(columns)
    for i, processor in enumerate(processors):
        missing = sorted(processor.needs() - set(names))
        if missing:
            near = [m for name in missing for m in difflib.get_close_matches(name, names, n=1, cutoff=0.6)]
            guess = f"did you mean {', '.join(map(repr, near))}? " if near else ""
            problems.append(
                ConfigProblem(
                    f"processors[{i}] ({processor.type})",
                    f"reads {', '.join(map(repr, missing))}, not a column at this step",
                    f"{guess}columns here: {', '.join(names) or '(none)'}",
                )
            )
        if isinstance(processor, RenameColumnsProcessor):
            kept = [n for n in names if n not in processor.mapping]
            clash = sorted(set(processor.mapping.values()) & set(kept))
            if clash:
                problems.append(
                    ConfigProblem(
                        f"processors[{i}] (rename_columns).mapping",
                        f"renames onto existing column(s) {', '.join(clash)}",
                        "drop those columns first or choose other names",
                    )
                )
        names = processor.apply_names(names)
    if export is not None and export.format == "chat-jsonl" and export.messages_column not in names:
        problems.append(
            ConfigProblem(
                "export.messages_column",
                f"{export.messages_column!r} is not a written column",
                "add a schema_transform processor that writes it, or name the column that holds the messages "
                f"(written: {', '.join(names)})",
            )
        )
    return problems
