"""Columns that call a model: LLM text, structured, judge and code columns, and embeddings."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from rowloom.config.base import ConfigModel
from rowloom.config.columns.base import NAME_PATTERN, ColumnBase, check_template
from rowloom.config.scheduling import ResourceClass
from rowloom.config.schema_refs import unresolvable_ref
from rowloom.config.templates import template_references


class LLMColumnBase(ColumnBase):
    """A column whose value comes from a chat-completion request rendered from a Jinja prompt."""

    model: str = Field(description="Alias of a model in `models`.")
    prompt: str = Field(min_length=1, description="Jinja template; refers to other columns by name.")
    system_prompt: str | None = Field(None, description="Optional Jinja system prompt.")
    record_endpoint: bool = Field(
        False,
        description=(
            "Also write `<name>__endpoint`: the endpoint (provider/model) that served the cell's reply, for audit "
            "of a pooled model (null when the reply came from the reply cache)."
        ),
    )

    default_resource: ClassVar[ResourceClass] = ResourceClass.LLM_WAIT
    per_cell: ClassVar[bool] = True

    @field_validator("prompt", "system_prompt")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            check_template(value)
        return value

    def references(self) -> frozenset[str]:
        refs = template_references(self.prompt)
        if self.system_prompt:
            refs |= template_references(self.system_prompt)
        return refs

    @property
    def model_alias(self) -> str | None:
        return self.model

    def outputs(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}__endpoint") if self.record_endpoint else (self.name,)


class LLMTextColumn(LLMColumnBase):
    """Free text from the model."""

    type: Literal["llm_text"]


def schema_from(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value.model_json_schema()
    return value


class LLMStructuredColumn(LLMColumnBase):
    """A JSON object valid against `schema` (JSON Schema, or a pydantic model in Python)."""

    type: Literal["llm_structured"]
    output_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema of the reply.")
    max_correction_attempts: int = Field(
        2, ge=0, le=10, description="Re-asks with the validation error before the row is dropped."
    )

    @field_validator("output_schema", mode="before")
    @classmethod
    def _from_model(cls, value: Any) -> Any:
        return schema_from(value)

    @field_validator("output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
        if value.get("type") not in ("object", None):
            raise ValueError("the schema's top level must be an object (`type: object`)")
        bad_ref = unresolvable_ref(value)
        if bad_ref is not None:
            raise ValueError(f"invalid JSON Schema: {bad_ref}")
        return value


class Rubric(ConfigModel):
    """One judging criterion: integer scores, each with a description."""

    name: str = Field(description="Key of this rubric in the judge's output.")
    description: str = ""
    scores: dict[int, str] = Field(min_length=1, description="Score -> what it means.")

    @field_validator("name")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a valid rubric name; use letters, digits and underscores")
        return value


class LLMJudgeColumn(LLMColumnBase):
    """Scores per rubric with reasons: `{rubric: {score: int, reason: str}}`."""

    type: Literal["llm_judge"]
    rubrics: list[Rubric] = Field(min_length=1)
    max_correction_attempts: int = Field(2, ge=0, le=10)
    reason_max_length: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Longest reason (characters) the schema allows; servers that constrain decoding to the schema "
        "then cannot ramble past max_tokens and cut the JSON short.",
    )

    @model_validator(mode="after")
    def _unique(self) -> LLMJudgeColumn:
        names = [r.name for r in self.rubrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rubric names must be unique (repeated: {', '.join(dupes)})")
        return self

    @property
    def instructions(self) -> str:
        """What the judge is asked beyond the user's prompt: each rubric, what its scores mean, the reply's keys.
        (Without it a model sees the rubric names only through the schema, and many servers never show it that.)"""
        lines = ["", "", "Score each criterion below and give a one-sentence reason for each score."]
        for r in self.rubrics:
            about = f" {r.description.strip()}" if r.description.strip() else ""
            lines.append(f"- {r.name}:{about} Scores: {_score_meanings(r)}.")
        names = ", ".join(r.name for r in self.rubrics)
        lines.append(f"Reply with a JSON object only, with a key per criterion ({names}) holding its score and reason.")
        return "\n".join(lines)

    @property
    def output_schema(self) -> dict[str, Any]:
        """The JSON Schema the judge's reply must satisfy."""
        return {
            "type": "object",
            "properties": {
                r.name: {
                    "type": "object",
                    "description": f"{r.description.strip()} Scores: {_score_meanings(r)}.".strip(),
                    "properties": {
                        "score": {"type": "integer", "enum": sorted(r.scores)},
                        "reason": {"type": "string", "minLength": 1, "maxLength": self.reason_max_length},
                    },
                    "required": ["score", "reason"],
                    "additionalProperties": False,
                }
                for r in self.rubrics
            },
            "required": [r.name for r in self.rubrics],
            "additionalProperties": False,
        }


def _score_meanings(rubric: Rubric) -> str:
    return "; ".join(f"{score} = {meaning}" for score, meaning in sorted(rubric.scores.items()))


#: Languages an `llm_code` column may declare; only those in `VALIDATED_LANGUAGES` can be validated.
CODE_LANGUAGES: tuple[str, ...] = (
    "python",
    "sql",
    "json",
    "javascript",
    "typescript",
    "java",
    "go",
    "rust",
    "c",
    "cpp",
    "csharp",
    "bash",
    "yaml",
    "html",
    "css",
)
VALIDATED_LANGUAGES: tuple[str, ...] = ("python", "sql", "json")
#: Ruff rules that mean "this snippet is broken" (syntax, undefined names), not style.
DEFAULT_RUFF_RULES: tuple[str, ...] = ("E9", "F63", "F7", "F82")


def check_language(value: str, *, validated: bool) -> str:
    lowered = value.strip().lower()
    known = VALIDATED_LANGUAGES if validated else CODE_LANGUAGES
    if lowered not in known:
        what = "a validator for" if validated else "the code language"
        raise ValueError(f"rowloom has no {what} {value!r}; use one of: {', '.join(known)}")
    return lowered


class CodeValidation(ConfigModel):
    """How code is checked: Python by `compile()` then `ruff`, SQL by `sqlglot`, JSON by `json.loads`."""

    sql_dialect: str | None = Field(None, description="sqlglot dialect for SQL (e.g. postgres, duckdb); unset = ANSI.")
    ruff_rules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RUFF_RULES),
        description="Ruff rules a Python snippet must pass (when ruff is installed); [] = compile() only.",
    )
    timeout_s: float = Field(10.0, gt=0, le=600, description="Longest a validator may run on one snippet.")

    @field_validator("sql_dialect")
    @classmethod
    def _dialect(cls, value: str | None) -> str | None:
        if value is not None:
            import sqlglot

            try:
                sqlglot.Dialect.get_or_raise(value)
            except ValueError:
                known = ", ".join(sorted(d.value for d in sqlglot.Dialects if d.value))
                raise ValueError(f"sqlglot has no SQL dialect {value!r}; use one of: {known}") from None
        return value


class LLMCodeColumn(LLMColumnBase):
    """Code from the model: extracted from a fenced block (or the raw reply), optionally validated.

    With `validate: true` the column also writes `<name>__valid` (bool) and `<name>__errors` (string).
    """

    type: Literal["llm_code"]
    language: str = Field(description=f"Language of the code: {', '.join(CODE_LANGUAGES)}.")
    validate_code: bool = Field(False, alias="validate", description="Check the code and write __valid/__errors.")
    validation: CodeValidation = Field(default_factory=CodeValidation)
    max_correction_attempts: int = Field(
        0, ge=0, le=10, description="Re-asks with the validator's errors before keeping invalid code."
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return check_language(value, validated=False)

    @model_validator(mode="after")
    def _validatable(self) -> LLMCodeColumn:
        if self.validate_code and self.language not in VALIDATED_LANGUAGES:
            raise ValueError(
                f"validate: true, but rowloom has no validator for {self.language!r}; "
                f"validated languages: {', '.join(VALIDATED_LANGUAGES)} (or set validate: false)"
            )
        if self.max_correction_attempts and not self.validate_code:
            raise ValueError("max_correction_attempts needs validate: true (corrections quote the validator's errors)")
        return self

    def outputs(self) -> tuple[str, ...]:
        companions = (f"{self.name}__valid", f"{self.name}__errors") if self.validate_code else ()
        return (*super().outputs(), *companions)


class EmbeddingColumn(ColumnBase):
    """A `list<float32>` vector per row from the provider's `/v1/embeddings`, batched `batch_size` rows a request."""

    type: Literal["embedding"]
    model: str = Field(description="Alias of a model in `models` (an embedding model).")
    input: str = Field(min_length=1, description="Jinja template of the text to embed; refers to columns by name.")
    batch_size: int = Field(64, ge=1, le=2048, description="Inputs per embeddings request.")

    default_resource: ClassVar[ResourceClass] = ResourceClass.LLM_WAIT

    @field_validator("input")
    @classmethod
    def _compiles(cls, value: str) -> str:
        check_template(value)
        return value

    def references(self) -> frozenset[str]:
        return template_references(self.input)

    @property
    def model_alias(self) -> str | None:
        return self.model
