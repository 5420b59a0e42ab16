"""The live progress line as a user sees it: `rowloom run` on a pseudo-terminal 80 columns wide, against the
built-in simulator. The line shows rows/s, requests/s, each endpoint's requests in flight against its limit and
the money spent with its currency; the run ends on the records written and the rows dropped."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import yaml

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def on_a_terminal(*args: str, cwd: Path, columns: int = 80, timeout_s: float = 60.0) -> tuple[int, str]:
    """`rowloom ARGS` with stdout and stderr on a pseudo-terminal `columns` wide: (exit code, what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "24", "TERM": "xterm-256color", "ROWLOOM_CACHE": "off"}
    for name in ("NO_COLOR", "FORCE_COLOR", "CI"):
        env.pop(name, None)
    command = [sys.executable, "-m", "rowloom.interface", *args]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    drawn, deadline = bytearray(), time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the run is over
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, drawn.decode(errors="replace")


def screens(drawn: str) -> list[str]:
    """Every line the terminal was given (each redraw of the live line is one), without escape sequences."""
    return [line.strip() for line in re.split(r"[\r\n]+", ANSI.sub("\n", drawn)) if line.strip()]


def test_the_live_line_on_an_80_column_terminal_shows_rates_in_flight_and_spend_and_ends_on_what_was_written(
    tmp_path,
):
    port = free_port()
    config = {
        "providers": [{"name": "sim", "base_url": f"http://127.0.0.1:{port}/v1"}],
        "models": [
            {
                "alias": "writer",
                "provider": "sim",
                "model": "sim-small",
                "max_parallel_requests": 6,
                "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
            }
        ],
        "columns": [
            {"name": "topic", "type": "category", "values": ["a", "b"]},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "About {{ topic }}"},
        ],
        "run": {"row_group_size": 6},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    sim = "latency_s=0.3,capacity=6,seed=3"
    code, drawn = on_a_terminal("run", "c.yaml", "-n", "12", "-o", "out", "--with-sim", sim, cwd=tmp_path)
    lines = screens(drawn)
    assert code == 0, drawn
    live = [line for line in lines if "rows/s" in line and "records written" not in line]
    assert live, drawn
    assert any("req/s" in line and re.search(r"\bsim \d+/6\b", line) for line in live), "\n".join(live)
    assert any(re.search(r"\b0\.0*[1-9]\d* USD", line) for line in live), "\n".join(live)
    final = next(line for line in reversed(lines) if "records written" in line)
    assert "12/12 records written" in final and "0 rows dropped" in final
    assert re.search(r"\d\.\d+ USD", final), final
    assert all(len(line) <= 80 for line in [*live, final])
