"""Versioned schema migrations, portable between SQLite and PostgreSQL.

Append a new ``(version, statements)`` pair to change the schema; never edit
an applied one. ``kombu-worker db upgrade`` applies what is missing.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE kw_jobs ("
            " job_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
            " total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0,"
            " failed INTEGER NOT NULL DEFAULT 0,"
            " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE kw_tasks ("
            " task_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, parent_task_id TEXT,"
            " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,"
            " content_hash TEXT, queue TEXT, worker_id TEXT, lease_until DOUBLE PRECISION,"
            " body TEXT, created_at DOUBLE PRECISION NOT NULL,"
            " updated_at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX kw_tasks_job ON kw_tasks (job_id)",
            "CREATE INDEX kw_tasks_parent ON kw_tasks (parent_task_id, status)",
            "CREATE TABLE kw_barriers ("
            " group_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, size INTEGER NOT NULL,"
            " arrived INTEGER NOT NULL DEFAULT 0, released_by TEXT)",
            "CREATE TABLE kw_barrier_members ("
            " group_id TEXT NOT NULL, member_task_id TEXT NOT NULL,"
            " PRIMARY KEY (group_id, member_task_id))",
        ],
    ),
    (
        2,
        [
            # The heartbeat's worker registry (the dashboard's Workers page): one row per
            # worker process, upserted at every heartbeat tick.
            "CREATE TABLE kw_workers ("
            " worker_id TEXT PRIMARY KEY, host TEXT NOT NULL, queue TEXT NOT NULL,"
            " step TEXT NOT NULL, inflight INTEGER NOT NULL DEFAULT 0,"
            " started_at DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX kw_workers_seen ON kw_workers (last_seen)",
        ],
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]
