"""The chaos run's workers: real ``kombu-worker`` processes a supervisor keeps alive.

Each launch gets its own worker id, so when one dies the supervisor can read which
claims it left behind (its PROCESSING rows) and, later, when each was DONE elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kombu_worker_sdk.worker.faults import HANGS, POINTS
from kombu_worker_sdk.worker.overrun import EXIT_TIME_LIMIT
from tests.integration.stack import RUNNER, Stack

REPO = Path(__file__).resolve().parents[2]
STEPS = ("split", "part", "join")
NEXT_STEP: dict[str, str | None] = {"split": "part", "part": "join", "join": None}
HOOKS = "tests.sample_hooks:StepHooks"
#: Every injected kill is a real attempt: enough of them that random kills do not exhaust a task.
MAX_ATTEMPTS = 20

SEED_ENV = "KWS_CHAOS_SEED"
SHIM_ENV = "KWS_CHAOS_CONFIG_SHIM"
# Runs the real CLI (``python -m kombu_worker_sdk.runner``) after, optionally, seeding ``random``
# (which the fault points draw from) and hiding the KOMBU_WORKER_FAULTS* variables from the
# config loader when it refuses them as unknown config keys (see ``config_rejects_faults``).
SHIM = """
import os, random, runpy
if os.environ.get("KWS_CHAOS_SEED"):
    random.seed(int(os.environ["KWS_CHAOS_SEED"]))
if os.environ.get("KWS_CHAOS_CONFIG_SHIM"):
    import kombu_worker_sdk.config.loading as config
    env_layers = config._env_layers
    config._env_layers = lambda environ: env_layers(
        {k: v for k, v in environ.items() if not k.startswith("KOMBU_WORKER_FAULTS")}
    )
runpy.run_module("kombu_worker_sdk.runner", run_name="__main__", alter_sys=True)
"""
SHIM_RUNNER = [sys.executable, "-c", SHIM]
#: Give up early when workers keep dying of something other than an injected fault.
MAX_OTHER_DEATHS = 6
#: How injected faults end a worker: SIGKILL, or the hard time limit cutting off a hang.
FAULT_EXITS = (-signal.SIGKILL, EXIT_TIME_LIMIT)


def time_limit_of(options: argparse.Namespace) -> float:
    """The hard time limit: ``--time-limit``, else well past a step's ``--sleep``."""
    given: float | None = getattr(options, "time_limit", None)
    return given if given is not None else 3.0 + 2 * options.sleep


def config_rejects_faults() -> str | None:
    """The config loader's error when KOMBU_WORKER_FAULTS* are set, or None if it accepts them."""
    from kombu_worker_sdk.config import load_config
    from kombu_worker_sdk.errors import ConfigError

    env = {"KOMBU_WORKER_FAULTS": "after_receive=0", "KOMBU_WORKER_FAULTS_LOG": "/dev/null"}
    try:
        load_config(config_dir=REPO / "config", env=env)
    except ConfigError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------ workers


class CrashLoop(RuntimeError):
    """Workers die of something other than the injected faults: no point going on."""


@dataclass
class Slot:
    """One worker position of a step; the supervisor keeps a live process in it."""

    step: str
    index: int
    proc: subprocess.Popen[str] | None = None
    starts: int = 0
    worker_id: str = ""


@dataclass(frozen=True)
class Death:
    """A worker that died of an injected SIGKILL, and the claims it left behind."""

    worker_id: str
    pid: int
    noticed_at: float
    claims: tuple[str, ...]


@dataclass
class Supervisor:
    stack: Stack
    options: argparse.Namespace
    faults_log: Path
    logs: Path
    config_shim: bool = False
    slots: list[Slot] = field(default_factory=list)
    restarts: int = 0
    deaths: Counter[int] = field(default_factory=Counter)
    killed: list[Death] = field(default_factory=list)
    _launches: int = 0

    def env(self, step: str) -> dict[str, str]:
        hang_rate = getattr(self.options, "hang_rate", None)
        rates = {p: hang_rate if p in HANGS and hang_rate is not None else self.options.rate for p in POINTS}
        spec = ",".join(f"{point}={rate}" for point, rate in rates.items())
        env = self.stack.env(
            step,
            NEXT_STEP[step],
            KOMBU_WORKER_FAULTS=spec,
            KOMBU_WORKER_FAULTS_LOG=str(self.faults_log),
            KOMBU_WORKER_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
            KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS="20",
            KOMBU_WORKER_CONCURRENCY=str(self.options.concurrency),
            KOMBU_WORKER_BATCH_SIZE=str(self.options.batch_size),
            KOMBU_WORKER_BATCH_WAIT_MS="200" if self.options.batch_size > 1 else "0",
            # The hang fault's way out: cut off, the attempt recorded, the process ends (124).
            KOMBU_WORKER_TIME_LIMIT_SECONDS=str(time_limit_of(self.options)),
        )
        if self.options.visibility_timeout is not None:  # else the shipped default
            env["KOMBU_WORKER_VISIBILITY_TIMEOUT"] = str(self.options.visibility_timeout)
        if self.options.seed is not None:
            # A new seed per launch: a restarted worker must not replay the draw that killed it.
            env[SEED_ENV] = str(self.options.seed * 100_000 + self._launches)
        if self.config_shim:
            env[SHIM_ENV] = "1"
        return env

    def launch(self, slot: Slot) -> None:
        plain = self.options.seed is None and not self.config_shim
        argv = [*(RUNNER if plain else SHIM_RUNNER), "--hooks", HOOKS]
        out = (self.logs / f"{slot.step}-{slot.index}-{slot.starts}.log").open("w")
        slot.worker_id = f"chaos-{slot.step}-{slot.index}-{slot.starts}"
        env = {**self.env(slot.step), "KOMBU_WORKER_WORKER_ID": slot.worker_id}
        try:
            slot.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        finally:
            out.close()  # the child has its own copy
        self._launches += 1
        slot.starts += 1

    def start(self) -> None:
        for step in STEPS:
            for index in range(self.options.workers):
                slot = Slot(step, index)
                self.slots.append(slot)
                self.launch(slot)

    def revive(self) -> None:
        """Restart every worker that died since the last look."""
        for slot in self.slots:
            assert slot.proc is not None
            code = slot.proc.poll()
            if code is None:
                continue
            self.deaths[code] += 1
            if code in FAULT_EXITS:
                self.killed.append(Death(slot.worker_id, slot.proc.pid, time.time(), self.claims_of(slot)))
            if self.other_deaths() > MAX_OTHER_DEATHS:
                tail = (self.logs / f"{slot.step}-{slot.index}-{slot.starts - 1}.log").read_text()[-800:]
                raise CrashLoop(f"workers keep exiting with codes {dict(self.deaths)}; last log:\n{tail}")
            self.restarts += 1
            self.launch(slot)

    def claims_of(self, slot: Slot) -> tuple[str, ...]:
        """Tasks the dead worker still holds: its leases are what the next worker must outlast."""
        try:
            rows = self.stack.query(
                "SELECT task_id FROM kw_tasks WHERE status = 'PROCESSING' AND worker_id LIKE %s",
                f"{slot.worker_id}/%",
            )
        except Exception:
            return ()  # the schema is created by the first worker
        return tuple(sorted(r[0] for r in rows))

    def other_deaths(self) -> int:
        return sum(n for code, n in self.deaths.items() if code not in FAULT_EXITS)

    def stop(self, timeout: float = 60) -> tuple[list[int], int]:
        """SIGTERM every worker and wait for each: (exit codes, workers killed for hanging)."""
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        codes, hung = [], 0
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                hung += 1
        return codes, hung

    def kill_all(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait(10)
