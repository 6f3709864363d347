"""Stage 6: ask ``publish_next`` for children, commit, then publish.

Children are registered as PENDING in the same transaction that marks the
parent DONE, and only then published; a crash in between is healed by the next
delivery, which republishes every child still PENDING.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..errors import HookError, PublishError, WorkerSDKError
from ..faults import fault_point
from ..message import NextMessage, parse_next
from ..pipeline import Stage, TaskRun
from ..state import PendingChild


class FanoutStage(Stage):
    name = "fanout"

    def process(self, run: TaskRun) -> None:
        runtime, msg, ctx = run.runtime, run.message, run.ctx
        assert msg is not None and ctx is not None and run.outputs is not None
        try:
            raw = runtime.hooks.publish_next(ctx, msg, run.outputs)
        except WorkerSDKError:
            raise
        except Exception as exc:
            raise HookError(f"publish_next raised {type(exc).__name__}: {exc}") from exc
        run.children = _parse_children(raw, msg)
        default_queue = runtime.config.next_queue
        orphans = [c.task_id for c in run.children if not (c.queue or default_queue)]
        if orphans:
            raise PublishError(f"publish_next returned {orphans[:3]} but no next_queue is configured")
        pending = runtime.state.complete(msg, run.children, default_queue=default_queue)
        fault_point("between_commit_and_publish")
        run.published = publish_pending(run, pending)


def _parse_children(raw: object, parent: object) -> list[NextMessage]:
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise HookError(f"publish_next must return a list, got {type(raw).__name__}")
    from ..message import TaskMessage

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
        if queue:
            by_queue[queue].append(child)
    for queue, children in by_queue.items():
        run.runtime.publisher.publish(queue, [c.message for c in children])
        run.log.info("published %d message(s) to %s", len(children), queue)
    return [c for children in by_queue.values() for c in children]
