"""The child-process side of a local model server: load the GGUF in llama.cpp's native server and serve it.

Run as `python -P path/to/child.py SPEC_JSON` by `LocalModelServer`; imports only the standard library and
xllamacpp. It prints one ready line on stdout and lives until its parent stops it or goes away.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading

#: Prefix of the single stdout line that says the server is listening (the rest is JSON: {"url": ...}).
READY_PREFIX = "rowloom-local-ready "
#: Environment variable carrying the per-run API key (command lines are visible to every local user).
API_KEY_ENV = "ROWLOOM_LOCAL_API_KEY"
#: Exit code when xllamacpp cannot be imported (the `local` extra is missing).
EXIT_NO_RUNTIME = 3
#: Exit code when llama.cpp refused to start (its reason is on stderr above).
EXIT_START_FAILED = 4

_WATCH_INTERVAL_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """Exit the whole process when the parent goes away, even by SIGKILL.

    The parent holds the only write end of our stdin pipe: when it dies, fd 0 becomes readable at EOF. The
    parent-pid check covers a parent that handed its stdin on to another process.
    """
    while True:
        readable, _, _ = select.select([0], [], [], _WATCH_INTERVAL_S)
        if readable and not os.read(0, 4096):
            os._exit(0)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str]) -> int:
    """Start the server described by the JSON spec in `argv[0]`, announce it, then wait to be stopped."""
    spec = json.loads(argv[0])
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(spec["parent_pid"],), daemon=True).start()
    try:
        import xllamacpp
    except ImportError as exc:
        print(f"rowloom: cannot import xllamacpp ({exc})", file=sys.stderr, flush=True)
        return EXIT_NO_RUNTIME

    params = xllamacpp.CommonParams()
    params.model.path = spec["model_path"]
    params.hostnames = ["127.0.0.1"]
    params.port = spec["port"]
    params.n_parallel = spec["parallel_slots"]
    params.n_ctx = spec["context_size"] * spec["parallel_slots"]  # llama.cpp splits n_ctx across the slots
    params.cpuparams.n_threads = spec["threads"]
    params.cpuparams_batch.n_threads = spec["threads"]
    params.fit_params = False  # keep the context we asked for instead of shrinking it silently
    params.ui = False
    params.verbosity = 1  # errors only: per-request info lines would grow the log for the whole run
    key = os.environ.get(API_KEY_ENV)
    if key:
        params.api_keys = [key]
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:
        print(f"rowloom: llama.cpp server did not start ({exc})", file=sys.stderr, flush=True)
        return EXIT_START_FAILED
    print(READY_PREFIX + json.dumps({"url": server.listening_address}), flush=True)
    os.dup2(2, 1)  # nobody reads stdout after the ready line: anything printed later must not fill that pipe
    threading.Event().wait()  # the watcher thread or a signal ends the process
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
