"""The kombu-worker command line: main (the worker and its subcommands), send, status, dlq, check."""

from kombu_worker_sdk.cli.main import main

__all__ = ["main"]
