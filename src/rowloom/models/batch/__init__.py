"""Batch-API execution of chat requests: the runner that gathers, submits, polls and resubmits, and the journal
that lets a resumed run poll what an earlier one created."""

from rowloom.models.batch.journal import BatchJournal, JournalBatch
from rowloom.models.batch.runner import BatchCounts, BatchRunner, BatchSettings, line_id, row_group_of

__all__ = ["BatchCounts", "BatchJournal", "BatchRunner", "BatchSettings", "JournalBatch", "line_id", "row_group_of"]
