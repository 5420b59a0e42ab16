"""Where a run's files live: a local folder, or a folder under any `pyarrow.fs` URI (s3://, gs://, hdfs://, …).

Owns the atomic write of one file, listing, reading and removing files by their name relative to the folder;
must not know what the files hold (the output store decides that). Every write is atomic for readers: a local
file is fsynced to a temp name and renamed into place; an object store (S3, GCS, Azure) only shows an object
once its upload completes, so it is written under its final name, its content made whole in memory before the
upload starts; any other filesystem gets temp name + move.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import OutputError

TEMP_PREFIX = ".tmp-"
OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})  # an object appears whole when its upload completes, never part
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

Writer = Callable[[IO[bytes]], object]
"""`write(fh)`: write a file's content to a binary stream."""


def is_uri(target: str | Path) -> bool:
    """True for `scheme://…` (a `pyarrow.fs` URI); False for a plain path."""
    return isinstance(target, str) and bool(_URI.match(target))


#: A URI inside any text (a message quoting one, as pyarrow's errors do): up to whitespace or a quote.
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
#: Query parameters of `pyarrow.fs` URIs whose values are settings, shown as they are; any other value (a
#: `client_secret`, `sas_token`, `session_token`, an unknown one) may be a credential and is redacted.
_PLAIN_QUERY = frozenset(
    {
        "region",
        "endpoint_override",
        "scheme",
        "anonymous",
        "allow_bucket_creation",
        "allow_bucket_deletion",
        "default_bucket_location",
        "force_virtual_addressing",
        "project_id",
        "replication",
        "buffer_size",
        "default_block_size",
        "retry_limit_seconds",
        "connect_timeout",
        "request_timeout",
    }
)


def _redact_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    host, tail = rest[:end].rpartition("@")[2], rest[end:]
    path, mark, query = tail.partition("?")
    if mark:
        query, hash_, fragment = query.partition("#")
        fields = [field.partition("=") for field in query.split("&")]
        query = "&".join(
            f"{name}{eq}{value if name.lower() in _PLAIN_QUERY or not value else '<redacted>'}"
            for name, eq, value in fields
        )
        query += hash_ + fragment
    return f"{scheme}://{host}{path}{mark}{query}"


def redact(text: str) -> str:
    """`text` — a URI, or a message quoting URIs — without credentials, for messages and logs: a user:password is
    dropped (`s3://KEY:SECRET@bucket/x` -> `s3://bucket/x`) and query values other than known settings replaced
    (`abfs://…?client_secret=<redacted>`). Never fails, whatever the text."""
    return _URI_IN_TEXT.sub(lambda match: _redact_uri(match.group(0)), text)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Writer) -> None:
    """Write a local file via a temp file, fsync and rename: readers see the old or the new file, never half."""
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also leave a half-written temp file behind
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`atomic_write` of a bytes value."""
    atomic_write(path, lambda fh: fh.write(data))


class OutputLocation:
    """One output folder. Names are relative ("manifest.json", "data/part-00000.parquet")."""

    def __init__(self, target: str | Path, terms: Terms = CLI_TERMS):
        self.target = str(target)
        self.local: Path | None = None
        self._fs: Any = None
        self.root = ""
        if is_uri(self.target):
            from pyarrow import fs as pafs

            try:
                filesystem, root = pafs.FileSystem.from_uri(self.target)
            except (ValueError, OSError) as exc:  # an unknown scheme or a malformed URI
                raise OutputError(
                    f"{terms.given('output', redact(self.target))} is not a usable pyarrow.fs URI "
                    f"({redact(str(exc))}); give a local folder or a URI such as s3://bucket/prefix"
                ) from None
            if isinstance(filesystem, pafs.LocalFileSystem):
                self.local = Path(root)  # file:// is a local folder: keep fsync + rename
            else:
                self._fs, self.root = filesystem, root.rstrip("/")
        else:
            self.local = Path(self.target)

    @classmethod
    def of(cls, target: str | Path | OutputLocation, terms: Terms = CLI_TERMS) -> OutputLocation:
        """`target` as a location (a location is returned as it is); `terms` name the argument in errors."""
        return target if isinstance(target, OutputLocation) else cls(target, terms)

    @classmethod
    def on(cls, filesystem: Any, root: str) -> OutputLocation:
        """A folder on a `pyarrow.fs.FileSystem` object (for callers that built one themselves)."""
        location = cls.__new__(cls)
        location.target = f"{filesystem.type_name}:{root}"
        location.local, location._fs, location.root = None, filesystem, root.rstrip("/")
        return location

    def __str__(self) -> str:
        return str(self.local) if self.local is not None and not is_uri(self.target) else redact(self.target)

    def __reduce__(self) -> tuple[Any, ...]:  # travels to Ray workers as its target, rebuilt there
        if is_uri(self.target) or self._fs is None:
            return (OutputLocation, (self.target,))
        return (OutputLocation.on, (self._fs, self.root))

    def path(self, name: str = "") -> str:
        """The path of a name inside the folder: a local path, or a path within `filesystem` (for pyarrow readers)."""
        if self.local is not None:
            return str(self.local / name) if name else str(self.local)
        return f"{self.root}/{name}" if name else self.root

    def shown(self, name: str = "") -> str:
        """A file (or, without a name, the folder) as a user would name it: a local path, or
        `s3://bucket/prefix/name` (neither credentials nor the URI's query)."""
        if self.local is not None:
            return self.path(name)
        scheme = self.target.partition("://")[0] if is_uri(self.target) else self._fs.type_name
        return f"{scheme}://{self.path(name)}"

    @property
    def filesystem(self) -> Any:
        """The `pyarrow.fs.FileSystem` of a URI location; None for a local folder (plain paths work)."""
        return self._fs

    # ------------------------------------------------------------ folders

    def make_dirs(self, name: str = "") -> None:
        if self.local is not None:
            (self.local / name).mkdir(parents=True, exist_ok=True)
        else:
            self._fs.create_dir(self.path(name), recursive=True)

    def writable(self) -> bool:
        """False only when the local folder is known read-only (a URI shows it at the first write)."""
        return self.local is None or os.access(self.local, os.W_OK)

    def names(self, folder: str = "") -> set[str]:
        """Names of the files directly in `folder` (relative to this location); empty when it does not exist."""
        if self.local is not None:
            base = self.local / folder
            files = [p.name for p in base.iterdir() if p.is_file()] if base.is_dir() else []
            return {f"{folder}/{n}" if folder else n for n in files}
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(self.path(folder), allow_not_found=True, recursive=False)
        prefix = self.root + "/"
        return {
            info.path.removeprefix(prefix)
            for info in self._fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        }

    # ------------------------------------------------------------ files

    def is_file(self, name: str) -> bool:
        if self.local is not None:
            return (self.local / name).is_file()
        from pyarrow import fs as pafs

        return self._fs.get_file_info(self.path(name)).type == pafs.FileType.File

    def read_bytes(self, name: str) -> bytes | None:
        """The file's content, or None when there is no such file."""
        if self.local is not None:
            try:
                return (self.local / name).read_bytes()
            except FileNotFoundError:
                return None
        if not self.is_file(name):
            return None
        with self._fs.open_input_stream(self.path(name)) as fh:
            return fh.read()

    def write(self, name: str, write: Writer) -> None:
        """Write a file atomically for readers (see the module doc for how, per kind of filesystem)."""
        if self.local is not None:
            atomic_write(self.local / name, write)
            return
        final = self.path(name)
        if self._fs.type_name in OBJECT_STORES:
            # Closing an object's output stream completes its upload even when the block raised, which would
            # publish a half part under its final name: the content is made whole in memory first, then sent in
            # one write, so a failing writer never starts an upload.
            import pyarrow as pa

            buffer = pa.BufferOutputStream()
            write(buffer)
            content = buffer.getvalue()
            fh = self._fs.open_output_stream(final)
            try:
                fh.write(content)
            except BaseException:
                # pyarrow offers no abort: the stream completes whatever was sent when it is closed (here, or
                # when it is collected). A close that fails completed nothing and the old object stays; one
                # that succeeds published part of the content, which is deleted.
                try:
                    fh.close()
                except Exception:
                    pass
                else:
                    with contextlib.suppress(OSError):
                        self._fs.delete_file(final)
                raise
            fh.close()
            return
        head, _, tail = final.rpartition("/")
        tmp = f"{head}/{TEMP_PREFIX}{tail}-{uuid.uuid4().hex[:8]}"
        try:
            with self._fs.open_output_stream(tmp) as fh:
                write(fh)
            self._fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                self._fs.delete_file(tmp)
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        if self.local is not None:
            atomic_write_bytes(self.local / name, data)
        else:
            self.write(name, lambda fh: fh.write(data))

    def delete(self, name: str) -> None:
        if self.local is not None:
            (self.local / name).unlink(missing_ok=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._fs.delete_file(self.path(name))

    def remove_leftovers(self, *folders: str) -> None:
        """Delete temp files of interrupted writes in the given folders."""
        for folder in folders:
            for name in self.names(folder):
                if name.rpartition("/")[2].startswith(TEMP_PREFIX):
                    self.delete(name)
