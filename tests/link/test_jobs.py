"""The JobQueue that bounds background work started by CSMS requests (reports now, logs and firmware later)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from appliance.util.jobs import JobQueue


async def test_one_runs_two_wait_the_rest_are_refused_in_order() -> None:
    queue = JobQueue("test", waiting=2)
    order: list[int] = []
    release = trio.Event()

    def job(n: int):  # type: ignore[no-untyped-def]
        async def run() -> None:
            order.append(n)
            await release.wait()

        return run

    tickets = [queue.admit(n, job(n)) for n in range(5)]
    assert [t is not None for t in tickets] == [True, True, True, False, False]
    assert queue.admitted == 3 and queue.holds(1) and not queue.holds(3)
    async with trio.open_nursery() as nursery:
        for ticket in reversed(tickets[:3]):  # whichever task gets there first, the oldest ticket goes first
            assert ticket is not None
            nursery.start_soon(ticket.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(order) == 1, "one job at a time"
        assert queue.admit(9, job(9)) is None, "still full while they wait"
        release.set()
    assert order == [0, 1, 2], "in the order of admission"
    assert queue.admitted == 0
    assert queue.admit(3, job(3)) is not None, "room again once they are done"


async def test_a_duplicate_key_is_refused() -> None:
    queue = JobQueue("test", waiting=2)

    async def nothing() -> None:
        pass

    assert queue.admit(7, nothing) is not None
    assert queue.admit(7, nothing) is None
    assert queue.admitted == 1


async def test_abandoned_ticket_frees_its_place_and_never_runs() -> None:
    """The CALLRESULT announcing the job could not be sent: the place is given back, a late run does nothing."""
    queue = JobQueue("test", waiting=0)
    ran = []

    async def job() -> None:
        ran.append(1)

    ticket = queue.admit(1, job)
    assert ticket is not None and queue.admit(2, job) is None
    ticket.release()
    ticket.release()  # idempotent
    assert queue.admitted == 0
    await ticket.run()
    assert ran == []
    assert queue.admit(2, job) is not None


async def test_cancelled_jobs_free_their_places() -> None:
    """The connection a job serves goes away: its task and the waiting ones are cancelled, nothing is leaked."""
    queue = JobQueue("test", waiting=1)

    async def forever() -> None:
        await trio.sleep_forever()

    running, waiting = queue.admit(1, forever), queue.admit(2, forever)
    assert running is not None and waiting is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(running.run)
        nursery.start_soon(waiting.run)
        await trio.testing.wait_all_tasks_blocked()
        assert queue.admitted == 2
        nursery.cancel_scope.cancel()
    assert queue.admitted == 0


async def test_a_failing_job_frees_its_place() -> None:
    queue = JobQueue("test", waiting=0)

    async def boom() -> None:
        raise RuntimeError("boom")

    ticket = queue.admit(1, boom)
    assert ticket is not None
    with pytest.raises(RuntimeError):
        await ticket.run()
    assert queue.admitted == 0
