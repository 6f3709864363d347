"""What a run measures: the knobs of every section, their ``--quick`` values and shared names."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

REGION = "us-east-1"
BUCKET = "bench"
log = logging.getLogger("bench")


@dataclass
class Settings:
    quick: bool = False
    overhead_messages: int = 5000
    repeats: int = 3
    time_cap: float = 8.0
    sqs_roots: int = 75
    sqs_fanout: int = 3
    sqs_concurrency: list[int] = field(default_factory=lambda: [1, 10])
    sqs_wait_seconds: int = 2
    sleep_seconds: float = 0.05
    concurrency_levels: list[int] = field(default_factory=lambda: [1, 8, 32])
    concurrency_seconds: float = 4.0
    batch_a: float = 0.020
    batch_b: float = 0.001
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    batch_wait_ms: int = 20
    batch_seconds: float = 3.0
    device_backlog: int = 400
    device_seconds: float = 15.0
    device_batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    device_moto: bool = True
    memory_small: int = 1000
    memory_large: int = 20000
    profile: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        s = cls(quick=args.quick, profile=args.profile)
        if args.quick:
            s.overhead_messages, s.repeats, s.time_cap = 1000, 1, 3.0
            s.sqs_roots, s.sqs_concurrency = 25, [10]
            s.concurrency_seconds, s.batch_seconds = 1.5, 1.0
            s.memory_small, s.memory_large = 500, 3000
            s.device_seconds = 6.0
        if args.messages:
            s.overhead_messages = args.messages
        if args.repeats:
            s.repeats = args.repeats
        if args.device_backlog:
            s.device_backlog = args.device_backlog
        if args.no_moto:
            s.device_moto = False
        if args.sqs_concurrency:
            s.sqs_concurrency = [int(x) for x in args.sqs_concurrency.split(",")]
        return s
