"""Stage 6: ask ``publish_next`` for children, check them, commit, then publish.

Children are registered as PENDING in the same transaction that marks the
parent DONE, and only then published; a crash in between is healed by the next
delivery, which republishes every child still PENDING. Before that transaction
every child is checked for a route and for size: a child that could never be
sent fails its parent (with the reason) instead of sitting PENDING for ever.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from kombu_worker_sdk.concurrency import capture
from kombu_worker_sdk.errors import (
    BackendUnavailableError,
    ConfigError,
    HookError,
    MessageTooLargeError,
    WorkerSDKError,
)
from kombu_worker_sdk.message import NextMessage, TaskMessage, parse_next
from kombu_worker_sdk.pipeline import Stage, TaskRun, describe
from kombu_worker_sdk.state import PendingChild
from kombu_worker_sdk.worker.faults import fault_point


class FanoutStage(Stage):
    name = "fanout"

    def process(self, run: TaskRun) -> None:
        pending = self.commit(run)
        fault_point("between_commit_and_publish")
        run.published = publish_pending(run, pending)

    def process_batch(self, runs: list[TaskRun]) -> dict[int, BaseException]:
        """Commit the batch in one state transaction, then send every child in shared batch calls.

        Fewer SendMessageBatch requests; a failed send fails (and retries) the
        messages whose children it carried, and their redelivery republishes them.
        """
        errors: dict[int, BaseException] = {}
        wanted: list[tuple[int, list[NextMessage]]] = []
        asked = runs[0].runtime.hook_runner.call(lambda: [capture(ask_publish_next, run) for run in runs])
        for i, (run, raw) in enumerate(zip(runs, asked, strict=True)):
            try:
                wanted.append((i, checked_children(run, raw)))
            except Exception as exc:
                errors[i] = exc
        committed = self.commit_many(runs, wanted, errors)
        fault_point("between_commit_and_publish")
        if not committed:
            return errors
        everything = [child for _, pending in committed for child in pending]
        try:
            sent = publish_pending(runs[committed[0][0]], everything)
        except Exception as exc:
            errors.update({i: exc for i, pending in committed if pending})
            return errors
        sent_ids = {id(child) for child in sent}
        for i, pending in committed:
            runs[i].published = [child for child in pending if id(child) in sent_ids]
        return errors

    @staticmethod
    def commit_many(
        runs: list[TaskRun], wanted: list[tuple[int, list[NextMessage]]], errors: dict[int, BaseException]
    ) -> list[tuple[int, list[PendingChild]]]:
        """Mark DONE and register children for the batch; one by one if the batch fails."""
        if not wanted:
            return []
        runtime = runs[0].runtime
        items = [(message_of(runs[i]), children) for i, children in wanted]
        try:
            pending = runtime.state.complete_many(items, default_queue=runtime.config.next_queue)
            return [(i, found) for (i, _), found in zip(wanted, pending, strict=True)]
        except BackendUnavailableError as exc:
            errors.update(dict.fromkeys((i for i, _ in wanted), exc))
            return []
        except Exception:
            pass
        committed = []
        for i, children in wanted:
            try:
                committed.append((i, FanoutStage.complete(runs[i], children)))
            except Exception as exc:
                errors[i] = exc
        return committed

    def commit(self, run: TaskRun) -> list[PendingChild]:
        """Ask publish_next, then mark DONE and register the children in one transaction."""
        return self.complete(run, self.children_of(run))

    @staticmethod
    def complete(run: TaskRun, children: list[NextMessage]) -> list[PendingChild]:
        assert run.message is not None
        runtime = run.runtime
        return runtime.state.complete(run.message, children, default_queue=runtime.config.next_queue)

    @staticmethod
    def children_of(run: TaskRun) -> list[NextMessage]:
        """The checked children ``publish_next`` asks for (nothing is written yet)."""
        raw = run.runtime.hook_runner.call(lambda: ask_publish_next(run))
        return checked_children(run, raw)


def ask_publish_next(run: TaskRun) -> object:
    """Call the user's ``publish_next``: on the device lane, like every user hook."""
    runtime, msg, ctx = run.runtime, run.message, run.ctx
    assert msg is not None and ctx is not None and run.outputs is not None
    try:
        return runtime.hooks.publish_next(ctx, msg, run.outputs)
    except WorkerSDKError:
        raise
    except Exception as exc:
        raise HookError(f"publish_next raised {type(exc).__name__}: {exc}") from exc


def checked_children(run: TaskRun, raw: object) -> list[NextMessage]:
    """Parse and check what publish_next returned (re-raising what it raised)."""
    if isinstance(raw, Exception):  # publish_next raised it (on the device lane)
        raise raw
    assert run.message is not None
    run.children = _parse_children(raw, run.message)
    check_children(run, run.children)
    return run.children


def message_of(run: TaskRun) -> TaskMessage:
    """The run's validated message: every stage after validate has one."""
    assert run.message is not None
    return run.message


def check_children(run: TaskRun, children: Sequence[NextMessage]) -> None:
    """Refuse, before the parent is marked DONE, every child that could never be sent.

    Both errors are permanent: the parent is FAILED on this attempt, with a reason
    that names the child or the setting, rather than DONE beside a stranded child.
    """
    default_queue = run.runtime.config.next_queue
    orphans = [c for c in children if not (c.queue or default_queue)]
    if orphans:
        raise ConfigError(no_next_queue(len(orphans)))
    by_queue: dict[str, list[NextMessage]] = defaultdict(list)
    for child in children:
        by_queue[child.queue or default_queue or ""].append(child)
    for queue, group in by_queue.items():
        try:
            run.runtime.publisher.check(queue, [child.task() for child in group])
        except MessageTooLargeError as exc:
            raise MessageTooLargeError(f"child {exc}; pass large data by URI in storage") from None


def no_next_queue(count: int) -> str:
    return (
        f"publish_next returned {count} message(s) but no next queue is configured: "
        "set NEXT_QUEUE_URL or next_queue, or return [] from publish_next"
    )


def _parse_children(raw: object, parent: object) -> list[NextMessage]:
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise HookError(f"publish_next must return a list, got {type(raw).__name__}")
    assert isinstance(parent, TaskMessage)
    children = []
    for item in raw:
        body = item.model_dump() if isinstance(item, TaskMessage) else item
        if not isinstance(body, dict):
            raise HookError(f"publish_next items must be dicts, got {type(item).__name__}")
        children.append(parse_next(body, parent=parent))
    return children


def publish_pending(run: TaskRun, pending: Sequence[PendingChild]) -> list[PendingChild]:
    """Send pending children, grouped by queue; returns what was sent."""
    by_queue: dict[str, list[PendingChild]] = defaultdict(list)
    for child in pending:
        queue = child.queue or run.runtime.config.next_queue
        if _sendable(run, queue, child):
            by_queue[queue or ""].append(child)
    for queue, children in by_queue.items():
        run.runtime.publisher.publish(queue, [c.message for c in children])
        run.log.info("published %d message(s) to %s", len(children), queue)
    return [c for children in by_queue.values() for c in children]


def _sendable(run: TaskRun, queue: str | None, child: PendingChild) -> bool:
    """A registered child that can never be sent is marked FAILED with the reason.

    Children are checked before they are registered, so this catches only what
    changed since (a lower ``max_message_bytes``, a removed ``next_queue``): left
    PENDING, such a child would keep its job RUNNING for ever.
    """
    try:
        if not queue:
            raise ConfigError(no_next_queue(1))
        run.runtime.publisher.check(queue, [child.message])
    except (ConfigError, MessageTooLargeError) as exc:
        reason = describe(exc)
        run.log.error("child %s can never be sent, marking it FAILED: %s", child.message.task_id, reason)
        run.runtime.state.fail(child.message.task_id, child.message.job_id, error=reason)
        return False
    return True
