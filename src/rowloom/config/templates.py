"""Jinja templates in configs: one sandboxed environment, compile checks and variable references.

Pure functions only: no rendering of rows here (the engine renders), no I/O.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import filters, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum

from rowloom.errors import TemplateError

#: Most characters or items one `*` may build, and most bits one `**` may produce, while rendering.
MAX_REPEAT_LENGTH = 1_000_000
MAX_POWER_BITS = 4096
#: Most paragraphs and words per paragraph `lipsum()` may generate.
MAX_LIPSUM_PARAGRAPHS = 100
MAX_LIPSUM_WORDS = 1000


@jinja2.pass_context
def _render_time_only(_context: Any, value: Any) -> Any:
    """An identity `finalize` that needs the render context, so Jinja never evaluates output at compile time."""
    return value


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` checked so one expression cannot exhaust memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # Jinja returns an Undefined that fails only when used; chained lookups (`|attr(a)|attr(b)`) then
        # report a confusing "no attribute" instead. Fail at the first unsafe access, saying why.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_REPEAT_LENGTH
                ):
                    raise TemplateRuntimeError(
                        f"`*` would build {len(seq) * times:,} items; the sandbox allows at most {MAX_REPEAT_LENGTH:,}"
                    )
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right * abs(left).bit_length() > MAX_POWER_BITS
        ):
            raise TemplateRuntimeError(f"`**` result too large; the sandbox allows at most {MAX_POWER_BITS} bits")
        try:
            return super().call_binop(context, operator, left, right)
        except OverflowError as exc:  # float ** float out of range
            raise TemplateRuntimeError(f"`{operator}` overflowed: {exc}") from None


def _range(*args: int) -> range:
    try:
        return safe_range(*args)
    except OverflowError as exc:  # a plain OverflowError would look like a bug in rowloom
        raise TemplateRuntimeError(str(exc)) from None


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > MAX_LIPSUM_PARAGRAPHS or max > MAX_LIPSUM_WORDS or min > MAX_LIPSUM_WORDS:
        raise TemplateRuntimeError(
            f"lipsum() is limited to {MAX_LIPSUM_PARAGRAPHS} paragraphs of {MAX_LIPSUM_WORDS} words"
        )
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _width(name: str, width: Any) -> None:
    if isinstance(width, int) and width > MAX_REPEAT_LENGTH:
        raise TemplateRuntimeError(f"{name}: width {width:,} exceeds the sandbox's {MAX_REPEAT_LENGTH:,}")


def _center(value: str, width: int = 80) -> str:
    _width("center", width)
    return filters.do_center(value, width)


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _width("indent", width)
    return filters.do_indent(value, width, first, blank)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    _width("batch", linecount)
    return filters.do_batch(value, linecount, fill_with)


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment every prompt and expression renders in (undefined names are errors).

    Compiling never evaluates anything: constant folding is off (`optimized=False`, a context-bound
    `finalize`), so a hostile constant such as `'a' * 10**10` costs nothing until it renders — and then
    fails with a `TemplateRuntimeError`.
    """
    env = _BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Inputs are data: nothing a template receives is ever re-parsed as a template.
        finalize=_render_time_only,
        optimized=False,
    )
    # Filters and globals whose size argument could allocate gigabytes get a bound.
    env.globals.update(range=_range, lipsum=_lipsum)
    env.filters.update(center=_center, indent=_indent, batch=_batch)
    return env


def _forbidden(ast: nodes.Template) -> str | None:
    """The first construct a template may not use (a dunder name, `{% autoescape %}`), described; else None."""
    kinds = (nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.EvalContextModifier)
    for node in ast.find_all(kinds):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            name = node.args[0].value if isinstance(node.args[0], nodes.Const) else None
        elif isinstance(node, nodes.EvalContextModifier):
            return f"line {node.lineno}: `{{% autoescape %}}` is not supported in prompts (they are plain text)"
        if isinstance(name, str) and name.startswith("__"):
            return (
                f"line {node.lineno}: `{name}` is a Python internal, which the sandbox forbids; "
                "templates may only read column values and their fields"
            )
    return None


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile a template once; a syntax error or a forbidden construct becomes a `TemplateError`."""
    env = environment()
    try:
        ast = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid Jinja at line {exc.lineno}: {exc.message}") from None
    forbidden = _forbidden(ast)
    if forbidden is not None:
        raise TemplateError(f"unsafe template at {forbidden}")
    try:
        template = env.from_string(ast)
    except jinja2.TemplateSyntaxError as exc:  # e.g. an unknown filter, found while compiling
        raise TemplateError(f"invalid Jinja at line {exc.lineno}: {exc.message}") from None
    # A plain dict of the globals instead of Jinja's ChainMap of the template's and the environment's: every render
    # copies them twice (into its context and the context's key set), and iterating a ChainMap builds a dict of
    # every map first (10 µs a render where a dict takes 2.7). The environment's globals are set before any
    # template is compiled and never change.
    template.globals = dict(template.globals)
    return template


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
