"""A micro-batch's claim and completion give what one-by-one calls give, on SQLite and PostgreSQL.

Each case builds the same world in two fresh stores, runs the batch method on one and the
per-message method on the other, and compares the outcomes and every row they leave.
"""

from __future__ import annotations

from collections.abc import Callable

from kombu_worker_sdk.message import FanIn
from kombu_worker_sdk.state import ClaimOutcome, StateStore
from tests.integration.postgres_state.helpers import child, task

Row = tuple[object, ...]


def world(store: StateStore) -> None:
    """Tasks in every state a claim can meet."""
    store.register(task("pending"))
    store.claim(task("held"), worker_id="other", lease_seconds=600)
    store.claim(task("done"), worker_id="other", lease_seconds=600)
    store.complete(task("done"), [], default_queue="q")
    store.claim(task("expired"), worker_id="crashed", lease_seconds=-1)
    store.register(task("in-cancelled", job_id="job-x"))
    store.cancel_job("job-x")  # type: ignore[attr-defined]


CLAIMS = [
    (task("new-1"), "w/1"),
    (task("pending"), "w/2"),
    (task("held"), "w/3"),
    (task("done"), "w/4"),
    (task("pending", changed=True), "w/5"),  # same id, other content: a conflict
    (task("twice", job_id="job-c"), "w/6"),
    (task("twice", job_id="job-c"), "w/7"),  # a second copy in the same batch
    (task("expired"), "w/8"),
    (task("in-cancelled", job_id="job-x"), "w/9"),
    (task("new-root", job_id="job-x"), "w/10"),  # a new root sent into a cancelled job
    (task("new-2"), "w/11"),
]


def snapshot(store: StateStore, job_ids: list[str]) -> tuple[list[Row], list[Row]]:
    tasks = []
    for job_id in job_ids:
        for record in store.job_tasks(job_id):
            tasks.append((record.task_id, record.status, record.attempts, record.worker_id, record.error))
    jobs = []
    for job_id in job_ids:
        job = store.get_job(job_id)
        jobs.append((job_id, job.status, job.total, job.done, job.failed) if job else (job_id,))
    return sorted(tasks), jobs


def claims_match_one_by_one(batched: StateStore, single: StateStore) -> None:
    for store in (batched, single):
        world(store)
    got = batched.claim_many(CLAIMS, lease_seconds=60)
    want = [single.claim(msg, worker_id=worker, lease_seconds=60) for msg, worker in CLAIMS]
    assert [c.outcome for c in got] == [c.outcome for c in want]
    assert [c.attempts for c in got] == [c.attempts for c in want]
    assert [c.outcome for c in got][:4] == [
        ClaimOutcome.CLAIMED,
        ClaimOutcome.CLAIMED,
        ClaimOutcome.HELD,
        ClaimOutcome.DONE,
    ]
    assert got[5].outcome is ClaimOutcome.CLAIMED and got[6].outcome is ClaimOutcome.HELD
    jobs = ["job-1", "job-c", "job-x"]
    assert snapshot(batched, jobs) == snapshot(single, jobs)


def completions_match_one_by_one(batched: StateStore, single: StateStore) -> None:
    parts = [task(f"part-{i}") for i in range(3)]
    join = FanIn(group="parts", size=3)
    items = [
        (parts[0], [child("join", fan_in=join), child("side-0")]),
        (parts[1], [child("join", fan_in=join)]),
        (task("fan"), [child(f"fan-{i}") for i in range(4)]),
        (task("leaf"), []),
        (parts[2], [child("join", fan_in=join)]),
        (task("again"), [child("again-child")]),  # completed before: a redelivery
        (task("shared-a"), [child("shared")]),
        (task("shared-b"), [child("shared")]),  # two parents naming one child: the first wins
    ]
    for store in (batched, single):
        for msg, _ in items:
            store.claim(msg, worker_id="w", lease_seconds=60)
        store.complete(task("again"), [child("again-child")], default_queue="q")
    got = batched.complete_many(items, default_queue="q")
    want = [single.complete(msg, children, default_queue="q") for msg, children in items]
    assert got == want
    assert [c.message.task_id for c in got[4]] == ["join"], "the last sibling releases the join"
    assert [c.message.task_id for c in got[5]] == ["again-child"], "a redelivery republishes"
    assert snapshot(batched, ["job-1"]) == snapshot(single, ["job-1"])


Case = Callable[[StateStore, StateStore], None]


def run_case(case: Case, batched: StateStore, single: StateStore) -> None:
    """Upgrade both fresh stores, run the case, close them."""
    try:
        for store in (batched, single):
            store.upgrade()
        case(batched, single)
    finally:
        for store in (batched, single):
            store.close()


CASES: list[Case] = [
    claims_match_one_by_one,
    completions_match_one_by_one,
]
