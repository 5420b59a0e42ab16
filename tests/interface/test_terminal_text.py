"""What a model, a seed file or a provider wrote reaches the terminal as text: never as rich markup (`[link=…]`
stays literal, a stray `[/bold]` is no crash) and never as control characters (no escape sequence, bell, carriage
return or bidi override gets through), in `rowloom preview` as a table or as blocks and in error messages."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from rowloom.interface import cli
from rowloom.interface.output import CliConsole, strip_controls

HOSTILE = (
    "[link=http://evil.example]click[/link] [/bold] [red]red? "
    "\x1b]8;;http://evil.example\x1b\\osc-link\x1b]8;;\x1b\\ \x1b[2J\x1b]0;title\x07 \x9b31m "
    "ok\rFAKE \x08\x7f \u202egnp.exe\u202c\ttab\nsecond line"
)
FORBIDDEN = ["\x1b", "\x07", "\r", "\x08", "\x7f", "\x9b", "\u202e", "\u202c"]
LITERAL = ["[link=http://evil.example]click[/link]", "[/bold]", "[red]red?", "second line", "tab"]


class _Provider(BaseHTTPRequestHandler):
    refuse = False

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.refuse:
            body = {"error": {"message": f"key refused {HOSTILE}", "code": "invalid_api_key"}}
            status = 401
        else:
            body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": HOSTILE}}]}
            status = 200
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a run stopped by the refusal hangs up on requests in flight; not this test's output


@pytest.fixture(params=[False, True], ids=["answers", "refuses"])
def provider(request) -> Iterator[tuple[str, bool]]:
    handler = type("Provider", (_Provider,), {"refuse": request.param})
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", request.param
    finally:
        server.shutdown()
        server.server_close()


def config(tmp_path: Path, base_url: str) -> Path:
    seed = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"note": [HOSTILE, "plain"]}), seed)
    data = {
        "providers": [{"name": "p", "base_url": base_url}],
        "models": [{"alias": "m", "provider": "p", "model": "x"}],
        "seed": {"path": str(seed)},
        "columns": [{"name": "reply", "type": "llm_text", "model": "m", "prompt": "say {{ note }}"}],
        "run": {"row_group_size": 2},
    }
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("layout", ["blocks", "table"])
def test_preview_shows_model_and_seed_text_literally_without_control_characters(
    provider, layout, tmp_path, monkeypatch
):
    base_url, refuses = provider
    if layout == "table":  # a wide terminal: the table path (colour off, so rich itself emits no escapes)
        monkeypatch.setattr(cli, "out", CliConsole(terminal=True, width=400, color_system=None))
    result = CliRunner().invoke(cli.app, ["preview", str(config(tmp_path, base_url)), "-n", "2"])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    for character in FORBIDDEN:
        assert character not in result.output, repr(character)
    if refuses:  # the provider's words, in the error line
        assert result.exit_code == 1 and "key refused [link=http://evil.example]click[/link] [/bold]" in result.output
    else:
        assert result.exit_code == 0
        for text in LITERAL:
            assert text in result.output
        assert "osc-link" in result.output and "gnp.exe" in result.output  # the words stay, their controls go


def test_strip_controls_keeps_text_tabs_and_newlines_and_nothing_a_terminal_acts_on():
    assert strip_controls(HOSTILE).count("\n") == 1 and "\t" in strip_controls(HOSTILE)
    assert strip_controls("a\tb\nc", newlines=False) == "a b c"
    assert strip_controls("naïve — 日本語 🙂") == "naïve — 日本語 🙂"
    for character in FORBIDDEN:
        assert character not in strip_controls(HOSTILE)
