"""What an output folder holds against what a run asks for: start, resume, extend, nothing to do, or refuse.

Owns that decision and its messages, which name the caller's own arguments (`Terms`). Reads the manifest and
lists `data/`, writes nothing: a refusal or a finished folder leaves every file as it was. `OutputStore.open`
acts on the answer; this module must not touch the files itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from rowloom import __version__
from rowloom.config.dataset import DatasetConfig
from rowloom.engine.config_diff import describe
from rowloom.engine.output_location import TEMP_PREFIX, OutputLocation
from rowloom.engine.plan import row_groups
from rowloom.engine.storage import DATA_DIR, MANIFEST, READABLE_FORMATS, ResumeMode
from rowloom.engine.terms import CLI_TERMS, Terms
from rowloom.errors import OutputError


class Action(StrEnum):
    """What a run does with its output folder."""

    START = "start"  # nothing to continue: a new run
    RESUME = "resume"  # an unfinished run of this config and record count: write the row groups it lacks
    EXTEND = "extend"  # a run of this config with fewer records: add row groups after its last one
    DONE = "done"  # the complete run of this config and record count: nothing to do, nothing touched


@dataclass(frozen=True)
class ResumeDecision:
    """The decision, with what acting on it needs: the manifest to continue, the row-group cuts, the message."""

    action: Action
    manifest: dict[str, Any] | None = None  # the run continued (RESUME, EXTEND) or found complete (DONE)
    extended_from: tuple[int, ...] = ()  # earlier record counts of the run: where its row groups are cut
    message: str = ""  # DONE: what to tell the user
    present: frozenset[str] = field(default_factory=frozenset)  # files in data/ (names relative to the folder)
    recovered_from: str = ""  # the temp manifest `manifest` was read from, when manifest.json was missing
    # START over an earlier run of the same config that wrote no row group (a budget stopped it, say): its token
    # ledger and spend, which the new run adds to (that money is spent).
    accounts: dict[str, Any] | None = None

    @property
    def seed(self) -> int | None:
        """The seed the folder's run used (its rows are reproduced with it), or None for a new run."""
        if self.manifest is None or self.action is Action.START:
            return None
        return int(self.manifest["seed"])


TEMP_MANIFEST = f"{TEMP_PREFIX}{MANIFEST}-"  # a manifest being written (local: fsync + rename; HDFS: a move)
_PART = re.compile(r"part-\d{5}(-[0-9a-f]+-w\d+)?\.parquet")  # a Ray worker's parts carry its job and name


def folder_name(location: OutputLocation) -> str:
    """The folder as messages show it: `out/` (a URI with a query is shown as it is)."""
    text = str(location)
    return text if text.endswith("/") or "?" in text else text + "/"


def _read(location: OutputLocation, terms: Terms) -> dict[str, Any] | None:
    where = folder_name(location)
    try:
        data = location.read_bytes(MANIFEST)
        manifest = None if data is None else json.loads(data.decode("utf-8"))
    except NotADirectoryError:  # a file where the folder should be: creating it says so (`OutputStore.open`)
        return None
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"{where}{MANIFEST} is unreadable ({exc}); move it away to start a new run there, or use a new "
            f"{terms.name('output')}"
        ) from None
    if manifest is not None and not (isinstance(manifest, dict) and "config_fingerprint" in manifest):
        raise OutputError(
            f"{where} is not a rowloom output: its {MANIFEST} is another program's; use a new {terms.name('output')}"
        )
    return manifest


def _temp_manifests(location: OutputLocation) -> list[str]:
    return sorted(n for n in location.names("") if n.startswith(TEMP_MANIFEST))


def _recover(location: OutputLocation, temps: list[str]) -> tuple[dict[str, Any] | None, str]:
    """The newest whole temp manifest and its name. A filesystem whose move deletes the destination and renames
    again on failure (Arrow's HDFS) can leave a temp manifest and no manifest.json: the temp is the manifest."""
    best: dict[str, Any] | None = None
    name = ""
    for temp in temps:
        try:
            data = json.loads((location.read_bytes(temp) or b"").decode("utf-8"))
        except (OSError, ValueError):
            continue  # cut off mid-write
        if not (isinstance(data, dict) and "config_fingerprint" in data):
            continue
        if best is None or float(data.get("updated_at", 0)) > float(best.get("updated_at", 0)):
            best, name = data, temp
    return best, name


def _records(manifest: dict[str, Any], present: frozenset[str]) -> str:
    """`19 of 20 records (1 dropped)`: the rows of the listed parts that are on disk, of the records planned."""
    entries = [e for e in manifest.get("row_groups", []) if e["file"] in present]
    written, dropped = sum(e["rows"] for e in entries), sum(e["dropped"] for e in entries)
    extra = f" ({dropped} dropped)" if dropped else ""
    return f"{written} of {manifest.get('num_records')} records{extra}"


def decide(
    location: OutputLocation,
    config: DatasetConfig,
    num_records: int,
    mode: ResumeMode = "auto",
    terms: Terms = CLI_TERMS,
) -> ResumeDecision:
    """What to do with `location` for a run of `num_records` of `config`; raises `OutputError` to refuse."""
    manifest = _read(location, terms)
    present = frozenset(location.names(DATA_DIR))
    if manifest is not None:
        return _with_manifest(location, manifest, present, config, num_records, mode, terms)
    temps = _temp_manifests(location)
    manifest, recovered = _recover(location, temps)
    if manifest is None:
        return _without_manifest(location, present, temps, mode, terms)
    decision = _with_manifest(location, manifest, present, config, num_records, mode, terms)
    return replace(decision, recovered_from=recovered)


def _with_manifest(
    location: OutputLocation,
    manifest: dict[str, Any],
    present: frozenset[str],
    config: DatasetConfig,
    num_records: int,
    mode: ResumeMode,
    terms: Terms,
) -> ResumeDecision:
    where, output = folder_name(location), terms.name("output")
    version = manifest.get("format_version", 1)
    if version not in READABLE_FORMATS:  # a later format may cut row groups or name files in ways we cannot know
        writer = manifest.get("rowloom_version")
        by = f"rowloom {writer}" if isinstance(writer, str) else "a newer rowloom"
        raise OutputError(
            f"{where} was written by {by} (manifest format {version}), which rowloom {__version__} cannot continue; "
            f"upgrade rowloom to continue it, or use a new {output}"
        )
    same_config = manifest.get("config_fingerprint") == config.fingerprint()
    if not manifest.get("row_groups") and (same_config or mode != "always"):
        # An earlier start that wrote nothing: no rows to keep, but what it spent stays counted.
        accounts = {k: manifest[k] for k in ("ledger", "spend") if k in manifest} if same_config else None
        return ResumeDecision(Action.START, present=present, accounts=accounts or None)
    if not same_config:
        change = describe(manifest.get("fingerprint_fields"), config.fingerprint_fields())
        raise OutputError(
            f"{where} holds a run of a different config: {change}; use a new {output}, or restore the config"
        )
    return _same_config(location, manifest, present, num_records, mode, terms)


def _without_manifest(
    location: OutputLocation, present: frozenset[str], temps: list[str], mode: ResumeMode, terms: Terms
) -> ResumeDecision:
    where, output = folder_name(location), terms.name("output")
    parts = [p for p in present if not p.rpartition("/")[2].startswith(TEMP_PREFIX)]
    ours = sorted(p.rpartition("/")[2] for p in parts if _PART.fullmatch(p.rpartition("/")[2]))
    if ours:  # a rowloom run's parts whose manifest is gone: starting afresh would overwrite them
        listed = ", ".join(ours[:3]) + (", …" if len(ours) > 3 else "")
        several = f"{len(parts)} files" if len(parts) > 1 else "1 file"
        lost = f", only {temps[0]}: an unfinished write of it that cannot be read" if temps else ""
        raise OutputError(
            f"{where} has no {MANIFEST}{lost or ' (lost in an interrupted write?)'}; {where}{DATA_DIR}/ holds "
            f"{several} of a rowloom run ({listed}) and which run and config they belong to is unknown, so nothing "
            f"was changed: use a new {output}, or move {where}{DATA_DIR}/ away to start a new run there"
        )
    if parts:  # files that a later read of data/ would mix with the rows of this run
        files = f"{len(parts)} file{'s' if len(parts) > 1 else ''}"
        raise OutputError(
            f"{where} is not a rowloom output: {where}{DATA_DIR}/ holds {files} but there is no {MANIFEST}; "
            f"use a new {output}, or move {where}{DATA_DIR}/ away"
        )
    if mode == "always":
        always = terms.given("resume", "always")
        raise OutputError(
            f"{always}, but {where} holds no run to resume (no {MANIFEST}); leave out {always} to start one "
            "there, or give the folder of an earlier run"
        )
    return ResumeDecision(Action.START, present=present)


def _same_config(
    location: OutputLocation,
    manifest: dict[str, Any],
    present: frozenset[str],
    num_records: int,
    mode: ResumeMode,
    terms: Terms,
) -> ResumeDecision:
    """A folder holding rows of this very config: continue, extend, nothing to do, or refuse."""
    where, output = folder_name(location), terms.name("output")
    planned = int(manifest.get("num_records", 0))
    earlier = tuple(int(c) for c in manifest.get("extended_from", ()))
    expected = {g.index for g in row_groups(planned, int(manifest.get("row_group_size", 1)), earlier)}
    on_disk = {entry["index"] for entry in manifest.get("row_groups", []) if entry["file"] in present}
    complete = bool(manifest.get("complete")) and expected <= on_disk
    records = _records(manifest, present)
    if mode == "never":
        never = terms.given("resume", "never")
        if complete:
            grow = f", or leave out {never} to extend it to {num_records}" if num_records > planned else ""
            raise OutputError(
                f"{where} already holds a complete run of this config ({records}) and {never} only starts new "
                f"runs; use a new {output}{grow}"
            )
        raise OutputError(
            f"{where} holds an unfinished run of this config ({records} written) and {never} only starts new "
            f"runs; leave out {never} to continue it, or use a new {output}"
        )
    if num_records < planned:  # rows are never taken away from a folder
        asked = terms.given("num_records", num_records)
        if complete:
            raise OutputError(
                f"{where} already holds a complete run of this config with {planned} records and {asked} asks for "
                f"fewer; nothing changed: read the rows you need from it, or use a new {output}"
            )
        raise OutputError(
            f"{where} holds an unfinished run of this config ({records} written) and {asked} asks for fewer; "
            f"nothing changed: pass {terms.given('num_records', planned)} to continue it (or more to extend it), or "
            f"use a new {output}"
        )
    if num_records > planned:
        return ResumeDecision(Action.EXTEND, manifest, (*earlier, planned), present=present)
    if not complete:
        return ResumeDecision(Action.RESUME, manifest, earlier, present=present)
    message = (
        f"{where} already holds a complete run of this config: {records} — nothing to do; use a new {output}, "
        f"or a larger {terms.name('num_records')} to extend it"
    )
    return ResumeDecision(Action.DONE, manifest, earlier, message, present)


def check_output(
    output: Any, config: DatasetConfig, num_records: int, mode: ResumeMode = "auto", terms: Terms = CLI_TERMS
) -> ResumeDecision:
    """`decide` for an output given as the caller gave it (a path, a URI or an `OutputLocation`)."""
    return decide(OutputLocation.of(output, terms), config, num_records, mode, terms)
