"""Rendering a compiled template against one row: the template's own faults fail the run, the row's values' drop it.

Row values are passed as data: a value that looks like a template is never evaluated. A sandbox violation or an
undefined name is the config's bug (`TemplateError`, fatal); a value the template cannot compute with (`100 / x`
with x = 0, `"a" + 1`, a number too large for a float) is data — often a model's reply — and drops the row
(`CellFailed`), never failing the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from rowloom.engine.generators.base import CellFailed
from rowloom.engine.generators.replies import describe
from rowloom.errors import RowloomError, TemplateError

#: Why a row is dropped when a template raised on its values.
TEMPLATE_ERROR = "template_error"


def render(template: jinja2.Template, row: Mapping[str, Any], column: str, *, reason: str = TEMPLATE_ERROR) -> str:
    """Render `template` with `row`; a sandbox violation or undefined name fails with the column named, and an
    error raised by the row's values is `CellFailed(reason)` naming the column and the error."""
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
    except (RowloomError, CellFailed):
        raise
    except Exception as exc:  # the values' fault: ZeroDivisionError, TypeError, OverflowError, …
        raise CellFailed(reason, f"column {column!r}: {describe(exc)}") from None
