"""Configuration: YAML chosen by WORKER_CONFIG, queues.yaml, then the environment.

Precedence, lowest first: built-in defaults, ``config/default.yaml``, the file
named by WORKER_CONFIG (``vastra`` → ``config/vastra.yaml``, or a path),
``config/queues.yaml``, the seed's environment variables (QUEUE_URL,
NEXT_QUEUE_URL, BUCKET, DB_DSN), ``KOMBU_WORKER_<KEY>`` variables, and finally
command-line flags. Every layer is checked key by key, so an error names the
file (or variable) and the key.

Backends follow the form of the configuration (see :data:`BACKEND_RULES`): an
``https://`` queue URL means the SQS broker and ``BUCKET`` means S3 storage,
unless ``broker_url`` / ``storage_url`` is set; a set value that contradicts
that form is refused in one line naming both sources. Only when nothing names
a production backend do the embedded defaults (``filesystem://``, ``file://``
and SQLite under ``data_dir``) apply. ``load_config`` records where every value
came from in :attr:`WorkerConfig.sources` (what ``kombu-worker config show`` prints).
"""

from kombu_worker_sdk.config.loading import (
    ENV_PREFIX,
    NOT_CONFIG_ENV,
    RETIRED_KEYS,
    SEED_ENV,
    load_config,
)
from kombu_worker_sdk.config.model import (
    BACKEND_RULES,
    BUILT_IN,
    QUEUE_KEYS,
    BackendRule,
    StageSpec,
    WorkerConfig,
    is_sqs_queue_url,
)

__all__ = [
    "BACKEND_RULES",
    "BUILT_IN",
    "ENV_PREFIX",
    "NOT_CONFIG_ENV",
    "QUEUE_KEYS",
    "RETIRED_KEYS",
    "SEED_ENV",
    "BackendRule",
    "StageSpec",
    "WorkerConfig",
    "is_sqs_queue_url",
    "load_config",
]
