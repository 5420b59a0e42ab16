"""The lease book both admission levels keep: one rule for what a release did, generations told apart."""

from __future__ import annotations

import dataclasses

from rowloom.concurrency.leases import LeaseBook, ReleaseStatus


@dataclasses.dataclass(frozen=True)
class Lease:
    id: int
    generation: int


def issue(book: LeaseBook, key: str = "k") -> Lease:
    lease = Lease(book.next_id(), book.generation)
    book.add(key, lease)
    return lease


def test_only_the_first_release_of_the_very_lease_issued_counts():
    book: LeaseBook[str, Lease] = LeaseBook()
    a, b = issue(book), issue(book, "other")
    assert book.in_flight("k") == 1 and len(book) == 2
    assert book.settle("k", dataclasses.replace(a)) is ReleaseStatus.UNKNOWN  # an equal copy is not the lease
    assert book.settle("other", a) is ReleaseStatus.UNKNOWN  # not live on that key
    assert book.settle("k", a) is ReleaseStatus.RELEASED
    assert book.settle("k", a) is ReleaseStatus.DUPLICATE
    assert book.in_flight("k") == 0 and len(book) == 1 and book.recently_released() == [a.id]
    assert book.is_live("other", b) and not book.is_live("k", a)


def test_a_reset_makes_its_own_old_leases_stale_and_anothers_unknown():
    older: LeaseBook[str, Lease] = LeaseBook()  # created first: its generation is lower, yet it is not ours
    book: LeaseBook[str, Lease] = LeaseBook()
    stranger = issue(older)
    assert stranger.generation < book.generation
    mine = issue(book)
    book.reset()
    assert book.settle("k", mine) is ReleaseStatus.STALE
    assert book.settle("k", stranger) is ReleaseStatus.UNKNOWN
    assert len(book) == 0 and book.in_flight("k") == 0
    fresh = issue(book)
    assert fresh.generation == book.generation != mine.generation
    assert book.settle("k", fresh) is ReleaseStatus.RELEASED


def test_the_release_history_is_bounded():
    book: LeaseBook[str, Lease] = LeaseBook(memory=3)
    leases = [issue(book) for _ in range(5)]
    for lease in leases:
        book.settle("k", lease)
    assert book.recently_released() == [lease.id for lease in leases[-3:]]
    assert book.settle("k", leases[0]) is ReleaseStatus.UNKNOWN  # forgotten: no longer told from a stranger
