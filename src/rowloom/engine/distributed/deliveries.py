"""What the driver makes of workers' deliveries: each part listed once, under the very name its writer delivered.

Owns the driver's view of the one manifest (`DriverStore`) and the book of deliveries (`DeliveryBook`): progress,
drop reasons, events into the run's sinks, when each worker was last heard from and which workers were dropped;
must not talk to Ray (the executor does) nor write parts (workers do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from rowloom.engine.distributed.worker import Delivery
from rowloom.engine.output_location import TEMP_PREFIX
from rowloom.engine.progress import RunProgress
from rowloom.engine.storage import DATA_DIR, OutputStore, WrittenRowGroup
from rowloom.models.budget import Spend
from rowloom.observe.sinks import EventSink

PART_PREFIX = f"{DATA_DIR}/part-"
TEMP_PART_PREFIX = f"{DATA_DIR}/{TEMP_PREFIX}part-"


class DriverStore(OutputStore):
    """The output store as the driver uses it: records the parts workers wrote in the one manifest."""

    def record(self, entry: WrittenRowGroup) -> bool:
        """List a written part once; False when its row group is already listed."""
        if entry.index in self.written:
            return False
        self.written[entry.index] = entry
        self._write_manifest(complete=False)
        return True

    def spent(self) -> Spend:
        # Workers charge no budget of the driver's (a run under Ray has none): this run is charged what its
        # ledger reported.
        total, this_run = Spend(), self.ledger.total
        total.add(self.spend.before)
        total.add(Spend(cost=this_run.cost, tokens=this_run.total_tokens, requests=this_run.requests))
        return total

    def discard(self, entry: WrittenRowGroup) -> None:
        """Remove a delivered part that is not listed (a dropped worker's, or a second copy of a row group)."""
        listed = self.written.get(entry.index)
        if listed is None or listed.file != entry.file:
            self.location.delete(entry.file)

    def remove_strays(self) -> list[str]:
        """Delete the parts in `data/` the manifest does not list — written by a worker that was dropped or cut
        off before it delivered — and the temp files of writes a stopped worker left half done, so `data/` holds
        exactly the listed parts. Call it once no worker writes."""
        listed = {w.file for w in self.written.values()}
        strays = sorted(
            name
            for name in self.location.names(DATA_DIR)
            if (name.startswith(PART_PREFIX) and name.endswith(".parquet") and name not in listed)
            or name.startswith(TEMP_PART_PREFIX)
        )
        for name in strays:
            self.location.delete(name)
        return strays


class DeliveryBook:
    """Takes deliveries in arrival order: lists parts, keeps progress, forwards events, tracks who is alive."""

    def __init__(
        self,
        store: DriverStore,
        progress: RunProgress,
        events: EventSink,
        on_row_group: Callable[[WrittenRowGroup], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store, self.progress, self.events = store, progress, events
        self.on_row_group = on_row_group
        self.clock = clock
        self.heard: dict[str, float] = {}  # worker -> when its last delivery was taken
        self.dropped: set[str] = set()
        self.discarded: list[str] = []  # parts delivered but not listed, removed from the output

    def take(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            for event in delivery.events:  # requests a dropped worker made were made all the same
                self.events.emit(event)
            entry = delivery.entry
            if delivery.worker in self.dropped:  # its row groups went to another worker: its parts never count
                if entry is not None:
                    self._discard(entry)
                continue
            self.heard[delivery.worker] = self.clock()
            if entry is None:
                continue
            if not self.store.record(entry):
                self._discard(entry)
                continue
            progress = self.progress  # the driver learns of a worker's rows only when written
            progress.rows_done += entry.rows
            progress.records_written += entry.rows
            progress.rows_dropped += entry.dropped
            progress.dropped_by_reason.update(delivery.dropped_by_reason)
            progress.row_groups_written += 1
            if self.on_row_group is not None:
                self.on_row_group(entry)

    def _discard(self, entry: WrittenRowGroup) -> None:
        self.store.discard(entry)
        self.discarded.append(entry.file)

    def drop(self, worker: str) -> None:
        """From now on, whatever `worker` delivers is ignored and its parts removed."""
        self.dropped.add(worker)
        self.heard.pop(worker, None)

    def silent(self, workers: Iterable[str], limit_s: float) -> list[str]:
        """The workers (among `workers`) heard from before but not within the last `limit_s` seconds."""
        now = self.clock()
        return [w for w in workers if w in self.heard and now - self.heard[w] >= limit_s]

    def next_deadline(self, workers: Iterable[str], limit_s: float) -> float | None:
        """Seconds until the first of `workers` (heard from before) would be silent too long; None: none is."""
        last = [self.heard[w] for w in workers if w in self.heard]
        return None if not last else max(0.0, min(last) + limit_s - self.clock())
