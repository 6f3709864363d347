#!/usr/bin/env python
"""Benchmarks for kombu-worker: overhead, SQS requests, concurrency, batching, memory.

The entry point only; the sections and their helpers are the ``bench`` package beside this
file (``scripts/bench/``, whose docstring lists them). Usage::

    python scripts/services.py --no-postgres -- python scripts/bench.py      # full run
    python scripts/bench.py --quick --only a                                  # one section
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the SDK and tests/ from this checkout

# This file's folder is sys.path[0], and a package directory wins over a module of the same
# name, so ``bench`` is scripts/bench/ (this file runs as __main__, never as ``bench``).
from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
