"""``python -m kombu_worker_sdk.runner --hooks ...``: the seed README's entry point.

The worker process itself is :mod:`kombu_worker_sdk.worker.runner`; this module keeps
the seed's command and the ``serve`` import path working.
"""

from __future__ import annotations

import sys

from kombu_worker_sdk.worker.runner import serve

__all__ = ["serve"]

if __name__ == "__main__":
    from kombu_worker_sdk.cli.main import main

    sys.exit(main())
