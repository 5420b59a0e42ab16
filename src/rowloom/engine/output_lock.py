"""The writer lock of an output folder: one run writes a folder at a time.

Owns taking, describing and releasing `rowloom.lock` in the folder; must not judge the folder's content
(`engine.resume` does). Locally the lock is an `flock` on that file, which the kernel releases however the
process ends, so a lock file left by a killed run is taken over (with a warning naming it). pyarrow's
filesystems offer no conditional put, so on an object store (or HDFS) the lock is a best effort: the file is
written, read back after `SETTLE_S`, and held by the run whose token is in it (see docs/durability.md).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import socket
import sys
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from rowloom.engine.output_location import OutputLocation, is_uri, redact
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import OutputError, RowloomWarning

F = TypeVar("F")

LOCK = "rowloom.lock"
SETTLE_S = 0.5  # object stores: a second writer that read no lock writes its own within this, and one of two loses


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a folder's lock: process, host, since when, doing what; `token` tells two holders apart."""

    pid: int
    host: str
    since: float
    command: str
    token: str

    @classmethod
    def me(cls) -> LockHolder:
        argv = [redact(a) if is_uri(a) else a for a in sys.argv]  # a URI in the command may carry a secret
        command = shlex.join([os.path.basename(argv[0] or "python"), *argv[1:]])
        return cls(os.getpid(), socket.gethostname(), time.time(), command[:300], uuid.uuid4().hex)

    @classmethod
    def parse(cls, data: bytes | None) -> LockHolder | None:
        """The holder a lock file names; None for an empty or foreign file (a holder still writing it)."""
        try:
            fields = json.loads(data or b"")
            return cls(int(fields["pid"]), str(fields["host"]), float(fields["since"]), str(fields["command"]),
                       str(fields["token"]))  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    def describe(self) -> str:
        """`pid 4242 on host-a, since 2026-11-30 13:20:05 UTC (rowloom run cfg.yaml -n 50 -o out)`."""
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} on {self.host}, since {since} ({self.command})"

    def gone(self) -> bool:
        """True when the holder ran on this host and its process has ended."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive under another user
            return False
        return False


def _where(location: OutputLocation) -> str:
    text = str(location)
    return text if text.endswith("/") or "?" in text else text + "/"


def _lock_file(location: OutputLocation) -> str:
    """The lock file as a user would delete it: a local path, or `s3://bucket/prefix/rowloom.lock`."""
    return location.shown(LOCK)


def _held(location: OutputLocation, holder: LockHolder | None, terms: Terms, *, local: bool) -> OutputError:
    who = holder.describe() if holder is not None else "a run that is starting"
    clear = "" if local else f"; if no run writes there any more, delete {_lock_file(location)}"
    return OutputError(
        f"{_where(location)} is being written by another rowloom run ({who}); wait for it to end or stop it, or "
        f"use a new {terms.name('output')}{clear}"
    )


def _took_over(location: OutputLocation, holder: LockHolder) -> None:
    warnings.warn(
        f"took over {_lock_file(location)} of a run that ended without releasing it ({holder.describe()}); "
        "its finished row groups are kept",
        RowloomWarning,
        stacklevel=3,
    )


class WriterLock:
    """The lock of one output folder, held from before the folder is read until the run's last write."""

    def __init__(self, location: OutputLocation, holder: LockHolder, fd: int | None, made_folder: bool):
        self.location, self.holder = location, holder
        self._fd, self._made_folder = fd, made_folder

    @classmethod
    def take(cls, location: OutputLocation, terms: Terms = CLI_TERMS) -> WriterLock:
        """Lock `location` for this process (creating the folder), or raise `OutputError` naming the holder."""
        made_folder = location.local is not None and not location.local.exists()
        try:
            location.make_dirs()
        except OSError as exc:
            raise OutputError(f"cannot create output folder {location}: {exc.strerror or exc}") from None
        me = LockHolder.me()
        try:
            if location.local is not None:
                return cls(location, me, cls._flock(location, me, terms), made_folder)
            cls._put(location, me, terms)
        except PermissionError:
            raise OutputError(
                f"output folder {location} is not writable; choose another {terms.name('output')}"
            ) from None
        except OSError as exc:
            raise OutputError(f"cannot lock output folder {location}: {exc.strerror or exc}") from None
        return cls(location, me, None, made_folder)

    @staticmethod
    def _flock(location: OutputLocation, me: LockHolder, terms: Terms) -> int:
        import fcntl

        assert location.local is not None
        path = location.local / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(os.pread(fd, 1 << 16, 0))
                os.close(fd)
                raise _held(location, holder, terms, local=True) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder unlinked while we waited to lock it
                break
            os.close(fd)
        previous = LockHolder.parse(os.pread(fd, 1 << 16, 0))
        if previous is not None:  # a holder that ended without unlinking it (SIGKILL, power loss)
            _took_over(location, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.to_bytes(), 0)
        return fd

    @staticmethod
    def _put(location: OutputLocation, me: LockHolder, terms: Terms) -> None:
        holder = LockHolder.parse(location.read_bytes(LOCK))
        if holder is not None:
            if not holder.gone():
                raise _held(location, holder, terms, local=False)
            _took_over(location, holder)
        location.write_bytes(LOCK, me.to_bytes())
        time.sleep(SETTLE_S)  # a writer that raced us has written by now: whoever's token is there holds it
        there = LockHolder.parse(location.read_bytes(LOCK))
        if there is None or there.token != me.token:
            raise _held(location, there, terms, local=False)

    def release(self) -> None:
        """Remove the lock file (only while it is ours), and the folder when taking the lock made it and it is
        still empty (a refused run leaves nothing behind)."""
        location = self.location
        if self._fd is not None:
            assert location.local is not None
            with contextlib.suppress(OSError):
                (location.local / LOCK).unlink()  # while still locked: no one else holds this file
            os.close(self._fd)
            self._fd = None
            if self._made_folder:
                with contextlib.suppress(OSError):
                    location.local.rmdir()  # only when empty
            return
        with contextlib.suppress(OSError):
            there = LockHolder.parse(location.read_bytes(LOCK))
            if there is not None and there.token == self.holder.token:
                location.delete(LOCK)

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def holding_writer_lock(run: F) -> F:
    """Run a blocking `run(config, num_records, *, output=…, terms=…, …)` under its output folder's writer lock
    (the Ray driver's entry point; `run_job` takes the lock itself)."""

    @functools.wraps(run)  # type: ignore[arg-type]
    def locked(config: Any, num_records: int, *, output: Any, terms: Terms = CLI_TERMS, **options: Any) -> Any:
        location = OutputLocation.of(output, terms)
        with WriterLock.take(location, terms):
            return run(config, num_records, output=location, terms=terms, **options)  # type: ignore[operator]

    return locked  # type: ignore[return-value]
