"""Templates render in Jinja's sandbox: reaching for Python internals fails with a clear error (at validate time
when the name is visible, else at render time) and nothing runs; values inserted into prompts are data."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rowloom.config import DatasetConfig
from rowloom.engine.job import run_job
from rowloom.errors import ConfigError, TemplateError

from .flaky_server import FlakyServer
from .helpers import run_cli, write_yaml

PROVIDERS = [{"name": "p", "base_url": "http://127.0.0.1:9/v1"}]
MODELS = [{"alias": "m", "provider": "p", "model": "x"}]
MARKER = "/tmp/rowloom-sandbox-escaped"

STATIC_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch " + MARKER + "') }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('touch " + MARKER + "') }}",
    "{{ range.__self__ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__ }}",
    "{{ n['__class__'] }}",
    "{{ n|attr('__class__') }}",
    "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% autoescape false %}{{ n }}{% endautoescape %}",
]


def sampler_with(column: dict) -> dict:
    return {"columns": [{"name": "n", "type": "uniform", "low": 1, "high": 5}, column], "run": {"seed": 1}}


@pytest.mark.parametrize("template", STATIC_ESCAPES)
@pytest.mark.parametrize("field", ["prompt", "system_prompt", "expr"])
def test_visible_escape_is_refused_when_the_config_is_validated(template, field):
    if field == "expr":
        column = {"name": "e", "type": "expression", "expr": template}
    else:
        column = {"name": "e", "type": "llm_text", "model": "m", "prompt": "hi {{ n }}", field: template}
    with pytest.raises(ConfigError) as info:
        DatasetConfig.from_dict({"providers": PROVIDERS, "models": MODELS, **sampler_with(column)})
    [problem] = info.value.problems
    assert problem.path == f"columns[1] (e).{field}"
    assert "Python internal" in problem.message or "autoescape" in problem.message
    assert not Path(MARKER).exists()


DYNAMIC_ESCAPES = [
    # Names built at render time are invisible to the validator; the sandbox refuses them when they render.
    ("{{ cycler|attr('_' ~ '_init_' ~ '_') }}", "Python internals"),
    ("{{ (cycler|attr('_'~'_init__')|attr('_'~'_globals__')).os.system('touch " + MARKER + "') }}", "internals"),
    ("{{ self|attr('_'~'_init__') }}", "Python internals"),
    ("{{ '{0.__class__}'.format(n) }}", "Python internals"),
    ("{{ (n ~ '')|attr('_'~'_class__') }}", "Python internals"),
    ("{{ [1].append(2) }}", "Python internals"),
    ("{{ {'a': 1}.update(b=2) }}", "Python internals"),
    # Resource bombs are stopped, not run (and never evaluated while compiling).
    ("{{ 'a' * 10**10 }}", "the sandbox allows at most"),
    ("{{ 10**(10**6) }}", "the sandbox allows at most"),
    ("{{ range(10**9)|list|length }}", "MAX_RANGE"),
    ("{{ lipsum(10**6) }}", "lipsum() is limited"),
    ("{{ 'a'|center(10**10) }}", "exceeds the sandbox"),
]


@pytest.mark.parametrize(("template", "message"), DYNAMIC_ESCAPES)
async def test_hidden_escape_fails_the_run_cleanly_at_render_time(template, message, tmp_path):
    started = time.monotonic()
    config = DatasetConfig.from_dict(sampler_with({"name": "e", "type": "expression", "expr": template}))
    assert time.monotonic() - started < 1.0  # validating compiles only; nothing is evaluated
    with pytest.raises(TemplateError) as info:
        await run_job(config, 5, output=tmp_path)
    assert "column 'e'" in str(info.value) and message in str(info.value)
    assert not Path(MARKER).exists()
    assert (tmp_path / "summary.json").is_file()  # the run ended through its normal exit path


def test_cli_run_with_a_hidden_escape_exits_with_one_message(tmp_path):
    column = {"name": "e", "type": "expression", "expr": "{{ cycler|attr('_' ~ '_init_' ~ '_') }}"}
    config = write_yaml(tmp_path / "escape.yaml", sampler_with(column))
    result = run_cli("run", str(config), "-n", "5", "-o", str(tmp_path / "out"), "-q", timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "column 'e'" in result.stderr and "Python internals" in result.stderr


async def test_escape_in_a_prompt_fails_before_any_request_is_sent(tmp_path):
    async with FlakyServer() as server:
        config = DatasetConfig.from_dict(
            {
                "providers": [{"name": "p", "base_url": server.base_url}],
                "models": MODELS,
                **sampler_with(
                    {"name": "q", "type": "llm_text", "model": "m", "prompt": "{{ self|attr('_'~'_init__') }}"}
                ),
            }
        )
        with pytest.raises(TemplateError, match="column 'q'"):
            await run_job(config, 5, output=tmp_path)
    assert server.prompts == []


INJECTION = "{{ 7*7 }} {% for i in range(3) %}x{% endfor %} {{ cycler.__init__.__globals__ }}"


def injected(row: dict) -> str:
    return INJECTION


async def test_values_inserted_into_prompts_are_data_not_templates(tmp_path):
    """Sampler values, custom-column values and LLM replies that look like templates reach the next prompt
    verbatim: `{{ 7*7 }}` stays `{{ 7*7 }}`, never `49`."""
    async with FlakyServer(reply_text=INJECTION) as server:
        config = DatasetConfig.from_dict(
            {
                "providers": [{"name": "p", "base_url": server.base_url}],
                "models": MODELS,
                "columns": [
                    {"name": "s", "type": "category", "values": [INJECTION]},
                    {"name": "c", "type": "custom", "function": injected},
                    {"name": "first", "type": "llm_text", "model": "m", "prompt": "A {{ s }} | B {{ c }}"},
                    {"name": "second", "type": "llm_text", "model": "m", "prompt": "Improve: {{ first }}"},
                    {"name": "e", "type": "expression", "expr": "'[' ~ first ~ ']'"},
                ],
                "run": {"seed": 1, "row_group_size": 4},
            }
        )
        result = await run_job(config, 4, output=tmp_path)
    frame = result.to_pandas()
    assert (frame["first"] == INJECTION).all()  # the model's reply, stored as is
    assert (frame["e"] == f"[{INJECTION}]").all()
    assert sorted(set(server.prompts)) == sorted({f"A {INJECTION} | B {INJECTION}", f"Improve: {INJECTION}"})
    assert not any("49" in prompt for prompt in server.prompts)
