"""A provider's credentials: where the API key comes from, which values are secret, and where they may go.

Every credential a request carries — the API key, every `extra_headers` value, the user:password in `base_url` —
is redacted from errors (`scrub`) and refused over plain http:// to another machine (`check_transport`). Pure
functions and one file read (the key file); no HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rowloom.config.models import ProviderConfig
from rowloom.errors import ConfigError, ConfigProblem
from rowloom.models.clients.headers import SECRET_HEADERS

REDACTED = "<redacted>"


class InsecureTransportError(ConfigError):
    """A credential (the API key, an `extra_headers` value, a URL's user:password) would travel over plain HTTP to
    a host that is not this machine."""


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every credential in `secrets` (longest first) replaced by `<redacted>`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and `localhost` itself. Not `*.localhost`: a resolver need not keep those on this machine
    (RFC 6761 only asks it to), so a credential sent there could leave it."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_credentials(url: str | None) -> list[str]:
    """The user and password in `url`, each a credential: as written, percent-decoded, and as the Basic
    Authorization value HTTP carries them in (base64, which a provider may quote back); none without."""
    try:
        parts = urlsplit(url or "")
        user, password = parts.username, parts.password
    except ValueError:  # not a URL (the config refuses such a base_url); it names no user to hide
        return []
    found = [v for v in (user, password) if v]
    found += [unquote(v) for v in found if unquote(v) != v]
    if user or password:
        pair = f"{unquote(user or '')}:{unquote(password or '')}"
        for encoding in ("latin-1", "utf-8"):
            with contextlib.suppress(UnicodeEncodeError):
                found.append(base64.b64encode(pair.encode(encoding)).decode("ascii"))
    return found


def provider_secrets(provider: ProviderConfig, api_key: str | None) -> tuple[str, ...]:
    """Every credential a request to `provider` carries, longest first: the API key, every `extra_headers` value
    (any header may hold a key: `x-goog-api-key`, a gateway's own), and the user:password in `base_url`.
    Each is redacted from errors; none may travel over plain http:// to another machine."""
    bearer = f"Bearer {api_key}" if api_key else ""  # the header's whole value, replaced as one
    values = [bearer, *provider.extra_headers.values(), *url_credentials(provider.base_url)]
    values += [v.split(" ", 1)[1] for v in values if " " in v]  # "Bearer KEY": the key alone too
    return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def provider_api_key(provider: ProviderConfig) -> str | None:
    """The provider's API key from its environment variable or key file; None when it names neither.

    A relative `api_key_file` is read from the working directory. A missing, unreadable, empty or multi-line
    key file is a `ConfigError` naming the file, never its content.
    """
    if provider.api_key_env:
        return os.environ.get(provider.api_key_env) or None
    if not provider.api_key_file:
        return None
    path = Path(provider.api_key_file).expanduser()
    where = f"providers.{provider.name}.api_key_file"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            ConfigProblem(
                where,
                f"cannot read the key file {str(path)!r} ({exc.strerror or type(exc).__name__})",
                "create it holding only the API key, or fix the path (relative paths start at the working directory)",
            )
        ) from None
    try:
        key = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        key = None
    if not key or any(ch.isspace() or not ch.isprintable() for ch in key):
        what = "is empty" if key == "" else "holds more than the key (several lines, spaces or binary data)"
        raise ConfigError(ConfigProblem(where, f"the key file {str(path)!r} {what}", "put only the API key in it"))
    return key


def key_advice(provider: ProviderConfig, key: str | None, *, explicit: bool = False) -> str:
    """What to do when `provider` refuses the key `key` (None: none was sent), naming where the key comes from
    (its variable or file, never its value). `explicit`: rowloom chose the key (a local server it started)."""
    if explicit:
        return "the key rowloom generated for the server it started was refused; report this as a bug"
    if provider.api_key_env:
        if key is None:
            state = "empty" if os.environ.get(provider.api_key_env) is not None else "not set"
            return f"set {provider.api_key_env} (it is {state}, so no key was sent)"
        return f"the key in {provider.api_key_env} was refused; set it to a key this endpoint accepts"
    if provider.api_key_file:
        return f"the key in the file {provider.api_key_file} (api_key_file) was refused; put a valid key in it"
    if any(name.lower() in SECRET_HEADERS for name in provider.extra_headers):
        return "the credential in extra_headers was refused; fix its value"
    return (
        f"no key is configured for provider {provider.name!r}; add api_key_env: VARIABLE (the variable holding "
        "the key) or api_key_file: PATH to it"
    )


def public_url(url: str) -> str:
    """`url` without its user:password part or query string (either may carry a credential), for display."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1], query="", fragment="").geturl()


def check_url_credentials(provider: ProviderConfig, headers: Mapping[str, str]) -> None:
    """Refuse a user:password in `base_url` beside an Authorization header (the API key's, or one in
    `extra_headers`): HTTP carries one Authorization, and aiohttp would fail every request on it."""
    if url_credentials(provider.base_url) and "authorization" in {name.lower() for name in headers}:
        raise ConfigError(
            ConfigProblem(
                f"providers.{provider.name}.base_url",
                "holds a user:password, and the provider also sends an Authorization header (its API key or "
                "extra_headers); a request carries only one",
                "remove the user:password from base_url, or the API key",
            )
        )


def check_transport(provider: ProviderConfig, api_key: str | None) -> None:
    """Refuse (`InsecureTransportError`) to send any credential of `provider` over plain http:// to another machine."""
    parts = urlsplit(provider.base_url)
    if provider.allow_insecure or parts.scheme != "http" or is_loopback(parts.hostname):
        return
    carried = [
        what
        for what, present in (
            ("an API key", bool(api_key)),
            (f"extra_headers ({', '.join(provider.extra_headers)})", bool(provider.extra_headers)),
            ("the user:password in base_url", bool(url_credentials(provider.base_url))),
        )
        if present
    ]
    if carried:
        raise InsecureTransportError(
            ConfigProblem(
                f"providers.{provider.name}.base_url",
                f"refusing to send {' and '.join(carried)} over plain http:// to {parts.hostname!r}, which is "
                "not this machine (every extra_headers value and URL credential counts as a secret)",
                "use an https:// base_url, or set allow_insecure: true if the network is trusted",
            )
        )
