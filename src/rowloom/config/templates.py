"""Jinja templates in configs: one sandboxed environment, compile checks and variable references.

Pure functions only: no rendering of rows here (the engine renders), no I/O.
"""

from __future__ import annotations

import functools

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rowloom.errors import TemplateError


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment every prompt and expression renders in (undefined names are errors)."""
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Inputs are data: nothing a template receives is ever re-parsed as a template.
        finalize=None,
    )


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile a template once; a syntax error becomes a `TemplateError` with the line and reason."""
    try:
        return environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid Jinja at line {exc.lineno}: {exc.message}") from None


@functools.lru_cache(maxsize=4096)
def template_references(source: str) -> frozenset[str]:
    """Top-level variable names a template reads (columns it depends on)."""
    try:
        ast = environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid Jinja at line {exc.lineno}: {exc.message}") from None
    return frozenset(jinja2.meta.find_undeclared_variables(ast))


def expression_source(expr: str) -> str:
    """Wrap a bare expression (`a + b`) as a template that prints it; full templates pass through."""
    return expr if ("{{" in expr or "{%" in expr) else "{{ " + expr + " }}"
