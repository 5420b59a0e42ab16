"""`cancel_and_wait`: the task is stopped and awaited; a cancellation of the caller is never swallowed."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rowloom.concurrency.tasks import cancel_and_wait


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def background(cleanup: asyncio.Event | None = None) -> asyncio.Task[None]:
    """A task that runs until cancelled, then (optionally) waits for `cleanup` before it finishes."""

    async def run() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            if cleanup is not None:
                await cleanup.wait()

    return asyncio.get_running_loop().create_task(run())


async def test_the_task_is_cancelled_and_finished_and_the_caller_carries_on():
    task = background()
    await settle()
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_caller_cancelled_while_it_waits_for_the_task_stays_cancelled():
    task = background(cleanup=asyncio.Event())  # its cleanup never ends by itself: the caller waits in it
    carried_on = []

    async def caller() -> None:
        await cancel_and_wait(task)
        carried_on.append(True)

    stopping = asyncio.get_running_loop().create_task(caller())
    await settle()
    assert not stopping.done()  # waiting for the task's cleanup
    stopping.cancel()  # aimed at the caller (it also interrupts the cleanup the caller waits for)
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled() and carried_on == [] and task.done()


async def test_a_caller_cancelled_while_the_task_ignores_its_own_cancellation_stays_cancelled():
    stubborn_done = asyncio.Event()

    async def stubborn() -> None:
        while not stubborn_done.is_set():  # swallows every cancellation, then returns normally
            with contextlib.suppress(asyncio.CancelledError):
                await stubborn_done.wait()

    task = asyncio.get_running_loop().create_task(stubborn())
    await settle()
    stopping = asyncio.get_running_loop().create_task(cancel_and_wait(task))
    await settle()
    stopping.cancel()
    await settle()
    stubborn_done.set()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_a_caller_cleaning_up_after_its_own_cancellation_may_still_stop_its_tasks():
    task = background()
    stopped = []

    async def caller() -> None:
        try:
            await asyncio.Event().wait()
        finally:  # runs with the caller's cancellation pending: stopping the task must not cut it short
            await cancel_and_wait(task)
            stopped.append(task.cancelled())

    running = asyncio.get_running_loop().create_task(caller())
    await settle()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert stopped == [True]
