"""Rendering a compiled template against one row, turning sandbox and undefined errors into clear failures.

Row values are passed as data: a value that looks like a template is never evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from rowloom.errors import TemplateError


def render(template: jinja2.Template, row: Mapping[str, Any], column: str) -> str:
    """Render `template` with `row`; a sandbox violation or undefined name fails with the column named."""
    try:
        return template.render(row)
    except SecurityError as exc:
        raise TemplateError(
            f"column {column!r}: the template tried to reach Python internals ({exc}); "
            "templates may only read column values"
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"column {column!r}: {exc.message}; check the names the template uses") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"column {column!r}: template failed: {exc}") from None
