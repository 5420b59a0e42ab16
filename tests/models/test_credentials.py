"""Every credential a request carries — the API key, every `extra_headers` value, the user:password in
`base_url` — is refused over plain http:// to another machine (only 127.0.0.0/8, ::1 and `localhost` are this
machine) and redacted from errors, scrubbed before a message is cut; credentials in an output URI never reach a
message. Real sockets on 127.0.0.1 where a provider answers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError
from typer.testing import CliRunner

from rowloom.config.models import ProviderConfig
from rowloom.engine.output_location import OutputLocation, redact
from rowloom.errors import ConfigError, OutputError
from rowloom.interface.cli import app
from rowloom.models.clients import InsecureTransportError, OpenAIClient
from rowloom.models.clients.openai import MESSAGE_LIMIT
from rowloom.models.types import ChatRequest, ProviderError

KEY = "sk-canary-1d2e3f4a5b6c7d8e9f"
GOOG = "AIzaCanary-0123456789abcdefghij"
PASSWORD = "pw-canary-a1b2c3d4"
REQUEST = ChatRequest(model="m", messages=({"role": "user", "content": "hi"},))


@pytest.mark.parametrize(
    ("provider", "api_key", "named"),
    [
        ({"extra_headers": {"x-goog-api-key": GOOG}}, None, "extra_headers (x-goog-api-key)"),
        ({"extra_headers": {"X-Title": "my app"}}, None, "extra_headers (X-Title)"),  # any header: all are secret
        ({"base_url": f"http://user:{PASSWORD}@10.1.2.3:8000/v1"}, None, "the user:password in base_url"),
        ({"base_url": "http://gateway.localhost:8000/v1"}, KEY, "an API key"),  # *.localhost may leave the machine
        ({"base_url": "http://127.0.0.1.nip.io:8000/v1"}, KEY, "an API key"),
    ],
    ids=["goog-header", "any-header", "url-password", "dot-localhost", "dns-to-loopback"],
)
def test_any_credential_over_plain_http_to_another_machine_is_refused(provider, api_key, named):
    config = ProviderConfig(name="remote", **{"base_url": "http://10.1.2.3:8000/v1", **provider})
    with pytest.raises(InsecureTransportError) as info:
        OpenAIClient(config, api_key=api_key)
    message = str(info.value)
    assert f"refusing to send {named} over plain http://" in message and "providers.remote.base_url" in message
    for secret in (KEY, GOOG, PASSWORD):
        assert secret not in message


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:8000/v1", "http://127.0.0.1:8000/v1", "http://127.9.8.7:8000/v1", "http://[::1]:8000/v1"],
)
def test_credentials_may_go_over_plain_http_to_this_machine(base_url):
    OpenAIClient(ProviderConfig(name="p", base_url=base_url, extra_headers={"x": GOOG}), api_key=KEY)
    OpenAIClient(ProviderConfig(name="p", base_url=base_url.replace("//", f"//u:{PASSWORD}@")))


def test_a_url_password_beside_an_api_key_is_one_clear_error_not_a_crash_per_request():
    provider = ProviderConfig(name="p", base_url=f"http://user:{PASSWORD}@127.0.0.1:8000/v1")
    with pytest.raises(ConfigError) as info:
        OpenAIClient(provider, api_key=KEY)
    assert str(info.value).startswith("providers.p.base_url: holds a user:password, and the provider also sends")
    assert PASSWORD not in str(info.value) and KEY not in str(info.value)


def test_extra_header_values_are_not_in_the_provider_configs_repr():
    assert GOOG not in repr(ProviderConfig(name="p", base_url="https://x.example/v1", extra_headers={"k": GOOG}))


# ------------------------------------------------------------------ redacted from what a provider echoes back


async def _echo(request: web.Request) -> web.Response:
    """A gateway that quotes every header and the Authorization it got back in its error, after `pad` characters."""
    pad = int(request.match_info["pad"])
    quoted = " ".join(f"{k}={v}" for k, v in request.headers.items() if k.lower() in ("x-goog-api-key", "x-org"))
    message = "x" * pad + f" rejected {request.headers.get('Authorization', '')} {quoted}"
    return web.json_response({"error": {"message": message}}, status=400)


@pytest.fixture
async def echo_server(loopback_http) -> int:
    app = web.Application()
    app.router.add_post("/{pad}/v1/chat/completions", _echo)
    return int((await loopback_http(app)).rsplit(":", 1)[1])


# The cut falls inside the x-goog-api-key value (pad 420) and inside the Basic value of the URL's user:password
# (pad 470): cut first, then scrubbed, their heads stayed in the message.
@pytest.mark.parametrize("pad", [0, MESSAGE_LIMIT - 80, MESSAGE_LIMIT - 30, MESSAGE_LIMIT - 20])
async def test_echoed_credentials_are_redacted_before_the_message_is_cut(echo_server, pad):
    provider = ProviderConfig(
        name="p",
        base_url=f"http://user:{PASSWORD}@127.0.0.1:{echo_server}/{pad}/v1",
        extra_headers={"x-goog-api-key": GOOG, "X-Org": "org-canary-7c7c7c7c"},
    )
    async with OpenAIClient(provider) as client:  # the user:password travels as the Authorization header
        with pytest.raises(ProviderError) as info:
            await client.chat(REQUEST)
    message = str(info.value)
    assert message.startswith("HTTP 400: ") and ("<redacted" in message or message.endswith("…"))
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    for secret in (GOOG, PASSWORD, basic, "org-canary-7c7c7c7c"):
        heads = {secret[:n] for n in range(8, len(secret) + 1)}
        assert not any(head in message for head in heads), (secret, message[-60:])


# ------------------------------------------------------------------ output URIs


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("hdfs://KEY:SECRET@host:port/x", "hdfs://host:port/x"),  # pyarrow's own error quotes the URI
        ("s3://KEY:SECRET@bucket x/y", "s3://bucket x/y"),
        ("hdfs://KEY:SECRET@[::1/x", "hdfs://[::1/x"),  # not even a URL: still no crash, no secret
        (
            "abfs://acct.dfs.core.windows.net/c?client_secret=SECRET&tenant_id=t",
            "abfs://acct.dfs.core.windows.net/c?client_secret=<redacted>&tenant_id=<redacted>",
        ),
    ],
)
def test_an_output_uris_credentials_never_reach_the_message(uri, shown):
    with pytest.raises(OutputError) as info:
        OutputLocation(uri)
    message = str(info.value)
    assert "SECRET" not in message and "KEY:" not in message
    assert message.startswith(f"--output {shown} is not a usable pyarrow.fs URI")


def test_redact_keeps_settings_and_text_and_drops_credentials():
    assert redact("s3://AK:SK@bucket/p?region=eu-west-1&session_token=T") == (
        "s3://bucket/p?region=eu-west-1&session_token=<redacted>"
    )
    assert redact("cannot open 'gs://u:p@b/x' (denied); see https://example.com/help") == (
        "cannot open 'gs://b/x' (denied); see https://example.com/help"
    )
    assert redact("out/folder") == "out/folder"


def test_cli_never_prints_an_output_uris_credentials(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9}]}))
    for uri in ("hdfs://KEY:SECRET@host:port/x", "abfs://a.dfs.core.windows.net/c?client_secret=SECRET"):
        result = CliRunner().invoke(app, ["run", str(config), "-n", "2", "-o", uri])
        assert result.exit_code != 0 and "error:" in result.output
        assert "SECRET" not in result.output and "Traceback" not in result.output
        assert json.dumps(result.output)  # printable


@pytest.mark.parametrize("base_url", ["http://[::1/v1", "http://host:port/v1", "http:///v1"])
def test_a_base_url_that_is_no_url_is_a_config_error_naming_it(base_url):
    with pytest.raises(ValidationError) as info:
        ProviderConfig(name="p", base_url=base_url)
    assert "base_url" in str(info.value) and "http://HOST:PORT/v1" in str(info.value)
