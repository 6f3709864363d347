"""The limits a hook runs under: time limits, and the rate at which hooks may start.

Resolved per message, most specific first (as Celery's per-task ``time_limit``
overrides ``task_time_limit``):

* the hooks class attributes ``soft_time_limit_seconds``, ``time_limit_seconds`` and
  ``rate_limit``, else the worker config's keys of the same names;
* a message may *lower* its own time limits with the reserved params
  ``kw_soft_time_limit_seconds`` / ``kw_time_limit_seconds``, never raise them: a hostile
  or mistaken message must not be able to switch off the guard against hangs.

:class:`Deadline` is the clock ``ctx`` carries into the hook (``ctx.time_left()``,
``ctx.check_time_limit()``). The watchdog that enforces it is ``worker.watchdog``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from kombu_worker_sdk.errors import ConfigError, SoftTimeLimitExceeded

SOFT_PARAM = "kw_soft_time_limit_seconds"
HARD_PARAM = "kw_time_limit_seconds"
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``"10/s"``, ``"600/m"``, ``"3600/h"`` (Celery's forms) as starts per second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"rate_limit {text!r}: expected a positive count per unit, e.g. 10/s, 600/m, 3600/h"
        )
    return float(match.group(1)) / _PER[match.group(2)]


@dataclass(frozen=True)
class TimeLimits:
    """Seconds a hook may run: ``soft`` raises inside it, ``hard`` ends the process."""

    soft: float | None = None
    hard: float | None = None

    @property
    def any(self) -> bool:
        return self.soft is not None or self.hard is not None

    def tighter(self, other: TimeLimits) -> TimeLimits:
        """The smaller of each limit: a micro-batch runs under its strictest message's."""
        return TimeLimits(_smaller(self.soft, other.soft), _smaller(self.hard, other.hard))


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def worker_limits(config: Any, hooks: Any) -> TimeLimits:
    """The hooks class's limits where it sets them, else the config's."""
    soft = getattr(hooks, "soft_time_limit_seconds", None)
    hard = getattr(hooks, "time_limit_seconds", None)
    return TimeLimits(
        float(soft) if soft is not None else config.soft_time_limit_seconds,
        float(hard) if hard is not None else config.time_limit_seconds,
    )


def message_limits(base: TimeLimits, params: dict[str, Any] | None) -> TimeLimits:
    """``base`` lowered by the message's reserved params (ignored when not a positive number)."""
    params = params or {}
    asked = TimeLimits(_positive(params.get(SOFT_PARAM)), _positive(params.get(HARD_PARAM)))
    return base.tighter(asked)


def _positive(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def worker_rate(config: Any, hooks: Any) -> float | None:
    """Hook starts per second for this worker, or None for no limit."""
    text = getattr(hooks, "rate_limit", None) or config.rate_limit
    return parse_rate(str(text)) if text else None


class Deadline:
    """When the running hook's soft and hard limits fall (``time.monotonic()`` seconds).

    Mutable and shared: the device lane starts it when the hook starts, the hook reads it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.soft_at: float | None = None
        self.hard_at: float | None = None

    def start(self, limits: TimeLimits, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.soft_at = now + limits.soft if limits.soft is not None else None
            self.hard_at = now + limits.hard if limits.hard is not None else None

    def time_left(self) -> float | None:
        """Seconds until the nearer limit (soft first), or None when the hook has none."""
        target = self.soft_at if self.soft_at is not None else self.hard_at
        return None if target is None else target - time.monotonic()

    def check(self) -> None:
        """Raise :class:`SoftTimeLimitExceeded` once the soft (or hard) limit has passed."""
        left = self.time_left()
        if left is not None and left <= 0:
            raise SoftTimeLimitExceeded(f"time limit passed {-left:.1f}s ago")


# -- interrupting the hook's thread at its soft limit ------------------------------
# CPython delivers an exception set by PyThreadState_SetAsyncExc the next time that
# thread runs Python bytecode. Pure-Python code is interrupted within a few bytecodes;
# a thread blocked in C (time.sleep, a socket read without a timeout, a CUDA call, a
# lock acquire) gets it only when the call returns, which for a real hang is never:
# that is what the hard limit is for.
_in_hook: dict[int, bool] = {}
_in_hook_lock = threading.Lock()


class interruptible:
    """Marks the calling thread as inside a user hook: the only place it may be interrupted."""

    def __enter__(self) -> None:
        with _in_hook_lock:
            _in_hook[threading.get_ident()] = True

    def __exit__(self, *exc: object) -> None:
        ident = threading.get_ident()
        with _in_hook_lock:
            sent = _in_hook.pop(ident, True) is False
        if sent:  # the hook returned before the exception landed: drop it, it is too late
            _set_async_exc(ident, None)


def interrupt(ident: int) -> bool:
    """Raise SoftTimeLimitExceeded in thread ``ident`` if it is inside a hook; once per window."""
    with _in_hook_lock:
        if not _in_hook.get(ident):
            return False
        _in_hook[ident] = False  # sent: a stale mark never sends a second one
        return _set_async_exc(ident, SoftTimeLimitExceeded) == 1


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> int:
    import ctypes

    target = ctypes.py_object(exc) if exc is not None else None
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), target))
