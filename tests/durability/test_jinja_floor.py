"""The Jinja sandbox escapes fixed in jinja2 3.1.5/3.1.6 stay closed: the floor in pyproject.toml admits no
version that has them, and the escape through `|attr('format')` (CVE-2025-27516) is refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from rowloom.config.templates import environment

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_requires_a_jinja2_without_the_known_sandbox_escapes():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [jinja] = [d for d in dependencies if d.lower().startswith("jinja2")]
    assert jinja.replace(" ", "") == "jinja2>=3.1.6"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ('{0.__class__}'|attr('format'))(n) }}",  # CVE-2025-27516: |attr returned the unchecked str.format
        "{% set f = '{0.__class__}'.format %}{{ f(n) }}",  # CVE-2024-56326: a stored reference to str.format
    ],
)
def test_str_format_reached_indirectly_is_still_checked_by_the_sandbox(template):
    with pytest.raises(SecurityError):
        environment().from_string(template).render(n=1)
