"""Stage 4: run the user's ``process`` hook (or ``process_batch`` for a micro-batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kombu_worker_sdk.errors import FlowControl, HookError, PermanentError, WorkerSDKError
from kombu_worker_sdk.hooks import Outputs, overrides_batch
from kombu_worker_sdk.limits import interruptible
from kombu_worker_sdk.pipeline import Stage, TaskRun
from kombu_worker_sdk.signals import task_postrun, task_prerun
from kombu_worker_sdk.worker.faults import fault_point


class HooksStage(Stage):
    name = "hooks"

    def process(self, run: TaskRun) -> None:
        if run.outputs is not None:  # resumed from a stored result: never run twice
            return
        msg, ctx, hooks = run.message, run.ctx, run.runtime.hooks
        assert msg is not None and ctx is not None
        task_prerun.send(hooks, task_id=msg.task_id, message=msg, ctx=ctx)
        try:
            run.outputs = check_outputs(_call_hook(hooks.process, ctx, msg))
            fault_point("during_hooks")
            fault_point("hang_in_hooks")  # a hang at the hooks boundary: the hard time limit's case
        finally:
            task_postrun.send(hooks, task_id=msg.task_id, message=msg, ctx=ctx, outputs=run.outputs)

    def process_batch(self, runs: list[TaskRun]) -> dict[int, BaseException]:
        hooks = runs[0].runtime.hooks
        todo = [i for i, run in enumerate(runs) if run.outputs is None]
        if len(todo) < 2 or not overrides_batch(hooks):
            return super().process_batch(runs)
        msgs = [runs[i].message for i in todo]
        for i in todo:
            task_prerun.send(hooks, task_id=runs[i].task_id, message=runs[i].message, ctx=runs[i].ctx)
        errors: dict[int, BaseException] = {}
        try:
            results = _call_hook(hooks.process_batch, runs[0].runtime.context, msgs)
            if not isinstance(results, list) or len(results) != len(todo):
                raise PermanentError(f"process_batch must return a list of {len(todo)} outputs")
        except Exception as exc:
            results = [exc] * len(todo)
        for i, result in zip(todo, results, strict=True):
            try:
                if isinstance(result, BaseException):
                    raise _wrap(result)
                runs[i].outputs = check_outputs(result)
            except Exception as exc:
                errors[i] = exc
            task_postrun.send(
                hooks,
                task_id=runs[i].task_id,
                message=runs[i].message,
                ctx=runs[i].ctx,
                outputs=runs[i].outputs,
            )
        return errors


def _call_hook(fn: Any, *args: Any) -> Any:
    try:
        with interruptible():  # on a device-lane thread; the soft time limit lands in here
            return fn(*args)
    except Exception as exc:
        raise _wrap(exc) from exc


def _wrap(exc: BaseException) -> BaseException:
    """SDK errors pass through; anything else becomes a HookError naming the original."""
    if isinstance(exc, WorkerSDKError | FlowControl):
        return exc
    wrapped = HookError(f"{type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def check_outputs(outputs: Any) -> Outputs:
    """``process`` must return a mapping; a wrong shape is a bug that retries cannot fix."""
    if not isinstance(outputs, Mapping):
        raise PermanentError(f"process must return a dict with 'result', got {type(outputs).__name__}")
    unknown = set(outputs) - {"result", "metrics", "result_ext"}
    if unknown:
        raise PermanentError(f"process returned unknown output keys: {sorted(unknown)}")
    if not isinstance(outputs.get("metrics", {}), Mapping):
        raise PermanentError("outputs['metrics'] must be a dict")
    result: Outputs = {"result": outputs.get("result"), "metrics": dict(outputs.get("metrics", {}))}
    if outputs.get("result_ext"):
        result["result_ext"] = str(outputs["result_ext"])
    return result
