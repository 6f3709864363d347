"""Read each message's ``input_uri`` before the hooks, on the I/O lane, all at once.

Then ``ctx.storage.read(msg["input_uri"])`` inside ``process``/``process_batch``
returns from memory instead of making the device wait on a storage round trip. The
read goes through ``ctx.storage.open`` (the message's own scoped storage), so it is
refused exactly where the hook's read would be. Nothing here changes an outcome: an
input that cannot be read, or is larger than ``prefetch_input_max_bytes``, or does not
fit the cache's budget, is not cached, and the hook's own read behaves as without
prefetch. Turn it off with ``prefetch_input: false``.
"""

from __future__ import annotations

import logging

from kombu_worker_sdk.pipeline import Stage, TaskRun, describe

PREFETCHED = "prefetched_input"


class InputPrefetchStage(Stage):
    name = "prefetch"
    io_bound = True  # one storage request per message: a batch makes them at once

    def process(self, run: TaskRun) -> None:
        config, msg, ctx = run.runtime.config, run.message, run.ctx
        assert msg is not None and ctx is not None
        cache = ctx.storage.cache
        if not config.prefetch_input or cache is None or run.outputs is not None:
            return  # off, or resumed from a stored result: the hooks will not run
        limit = config.prefetch_input_max_bytes
        try:
            with ctx.storage.open(msg.input_uri) as stream:
                data = stream.read(limit + 1)
        except Exception as exc:  # the hook's own read will raise it, with its usual outcome
            if run.log.isEnabledFor(logging.DEBUG):
                run.log.debug("input not prefetched: %s", describe(exc))
            return
        if len(data) <= limit and cache.put(msg.input_uri, data):
            run.extras[PREFETCHED] = msg.input_uri

    def on_success(self, run: TaskRun) -> None:
        self._release(run)

    def on_failure(self, run: TaskRun, error: BaseException) -> None:
        self._release(run)

    @staticmethod
    def _release(run: TaskRun) -> None:
        uri = run.extras.pop(PREFETCHED, None)
        if uri is not None and run.ctx is not None and run.ctx.storage.cache is not None:
            run.ctx.storage.cache.release(uri)
