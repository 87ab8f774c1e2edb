"""The daemon's job queue: bounded, fair across clients, and honest about a job's place in line."""

import pytest

from backend import protocol
from backend.daemon.fair_queue import FairQueue, Job, waiting_message


def test_queue_serves_clients_round_robin_and_refuses_when_full():
    queue = FairQueue(limit=5)
    for identity, n in [(b"A", 1), (b"A", 2), (b"A", 3), (b"B", 1), (b"C", 1)]:
        queue.put(Job(identity, {"id": f"{identity.decode()}{n}", "kind": "stylize"}, []))
    with pytest.raises(protocol.Busy):
        queue.put(Job(b"D", {"id": "D1", "kind": "stylize"}, []))
    assert queue.remove(b"B", "A2") is None  # a client can only remove its own jobs
    order = []
    for _ in range(5):
        job = queue.take()
        order.append(job.id)
        queue.finish(job)
        if job.id == "A1":
            queue.put(Job(b"B", {"id": "B2", "kind": "stylize"}, []))
    assert order == ["A1", "B1", "C1", "A2", "B2"]
    assert queue.close()[0].id == "A3"
    assert queue.take() is None


def test_fair_queue_never_serves_a_client_twice_in_a_row_while_another_waits():
    queue = FairQueue(limit=10)
    queue.put(Job(b"A", {"id": "A1", "kind": "stylize"}, []))
    first = queue.take()
    for n in (2, 3):
        queue.put(Job(b"A", {"id": f"A{n}", "kind": "stylize"}, []))
    queue.put(Job(b"B", {"id": "B1", "kind": "stylize"}, []))   # arrives while A1 runs
    queue.finish(first)
    order = [first.id] + [queue.take().id for _ in range(3)]
    assert order == ["A1", "B1", "A2", "A3"]
    for job_id in ("A5", "A6", "B2"):   # a client that went away: all its waiting jobs go at once
        queue.put(Job(job_id[:1].encode(), {"id": job_id, "kind": "stylize"}, []))
    assert [job.id for job in queue.remove_client(b"A")] == ["A5", "A6"]
    assert queue.take().id == "B2" and queue.snapshot()[1] == []


def test_a_queued_jobs_position_counts_the_jobs_served_before_it():
    queue = FairQueue(limit=5)
    assert queue.put(Job(b"A", {"id": "A1", "kind": "stylize"}, [])) == 0
    queue.take()                                                             # A1 runs
    assert queue.put(Job(b"A", {"id": "A2", "kind": "stylize"}, [])) == 1
    assert queue.put(Job(b"A", {"id": "A3", "kind": "stylize"}, [])) == 2
    assert queue.put(Job(b"B", {"id": "B1", "kind": "stylize"}, [])) == 1   # B goes before A's second job
    assert [job.id for job in queue.snapshot()[1]] == ["B1", "A2", "A3"]
    assert (waiting_message(1), waiting_message(2)) == ("waiting, 1 job ahead", "waiting, 2 jobs ahead")
