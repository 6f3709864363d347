"""The ``kombu-worker`` command (click).

``kombu-worker --hooks pkg.module:Class`` runs a worker; the subcommands send
messages, show a job, run the demo, and operate the backends. Every SDK error
is printed as one line, without a traceback, and exits 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from kombu_worker_sdk.config import WorkerConfig, load_config
from kombu_worker_sdk.errors import ConfigError, WorkerSDKError
from kombu_worker_sdk.masking import mask_url

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalOptions:
    """What ``kombu-worker`` itself was given, handed to every subcommand as click's ``ctx.obj``.

    ``kombu-worker --config my.yaml --data-dir d status J`` must read my.yaml and d: the
    subcommand's own ``--config`` wins, then these, then WORKER_CONFIG (read by load_config).
    """

    config_name: str | None = None
    config_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def global_options() -> GlobalOptions:
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(GlobalOptions) if ctx is not None else None
    return found or GlobalOptions()


def config_options(fn: F) -> F:
    """--config and --config-dir on a subcommand, falling back to the global ones.

    No ``envvar`` here: load_config reads WORKER_CONFIG itself, below any flag.
    """

    @functools.wraps(fn)
    def with_globals(*args: Any, config_name: str | None, config_dir: str | None, **kwargs: Any) -> Any:
        options = global_options()
        return fn(
            *args,
            config_name=config_name or options.config_name,
            config_dir=config_dir or options.config_dir,
            **kwargs,
        )

    wrapped: Any = with_globals
    wrapped = click.option(
        "--config",
        "config_name",
        help="Config name (config/NAME.yaml) or path; same as WORKER_CONFIG.  [default: default]",
    )(wrapped)
    wrapped = click.option(
        "--config-dir",
        type=click.Path(),
        help="Folder holding default.yaml, NAME.yaml and queues.yaml; same as WORKER_CONFIG_DIR.  "
        "[default: config]",
    )(wrapped)
    return wrapped  # type: ignore[no-any-return]


def one_line_errors(fn: F) -> F:
    """Turn SDK errors into one clear line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WorkerSDKError as exc:
            click.echo(f"error: {mask_url(str(exc))}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def build_config(config_name: str | None, config_dir: str | None, **overrides: Any) -> WorkerConfig:
    """The merged config: a subcommand's own flags over the global ones (``kombu-worker --queue``)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return load_config(config_name, config_dir=config_dir, overrides={**global_options().overrides, **given})


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--hooks", help="Hooks class: pkg.module:Class (or pkg.module.Class).")
@config_options
@click.option("--concurrency", type=int, help="Messages processed at once, in threads.")
@click.option("--queue", help="Input queue name or URL (QUEUE_URL).")
@click.option("--next-queue", help="Queue for publish_next's messages (NEXT_QUEUE_URL).")
@click.option("--batch-size", type=int, help="Micro-batch size for process_batch.")
@click.option("--batch-wait-ms", type=int, help="Longest wait to fill a micro-batch.")
@click.option("--max-messages", type=int, help="Exit 0 after this many messages (ScaledJob).")
@click.option("--health-port", type=int, help="Serve /healthz, /readyz and /metrics here.")
@click.option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Folder of the embedded queues, storage and state (KOMBU_WORKER_DATA_DIR).  [default: .kombu-worker]",
)
@click.version_option(package_name="kombu-worker-sdk")
@click.pass_context
@one_line_errors
def main(
    ctx: click.Context,
    /,
    hooks: str | None,
    config_name: str | None,
    config_dir: str | None,
    max_messages: int | None,
    **overrides: Any,
) -> None:
    """Run a pipeline step: long-poll a queue and run your hooks on each message.

    The options before a subcommand apply to it too: kombu-worker --config my.yaml status JOB.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    ctx.obj = GlobalOptions(config_name, config_dir, given)
    if ctx.invoked_subcommand is not None:
        if hooks or max_messages is not None:
            raise ConfigError(f"--hooks and --max-messages run a worker: not with '{ctx.invoked_subcommand}'")
        return
    if not hooks:
        click.echo(ctx.get_help())
        ctx.exit(2)
    from kombu_worker_sdk.worker.runner import serve

    config = build_config(config_name, config_dir, **overrides)
    sys.exit(serve(config, hooks, max_messages=max_messages))


@main.command()
@click.argument("source", required=False)
@click.option("--job-id", help="The job the task belongs to (without SOURCE: required).")
@click.option("--task-id", help="The task's id.  [default: <job>-root]")
@click.option("--input-uri", help="What the task reads: s3://bucket/key or file:///path.")
@click.option("--output-prefix", help="Where the task writes: s3://bucket/prefix/ (ends with /).")
@click.option("--param", "params", multiple=True, help="key=value (value parsed as JSON if it can be).")
@click.option("--queue", help="Queue to send to.  [default: the configured queue, tasks]")
@click.option(
    "--no-register",
    is_flag=True,
    help="Do not record the task as PENDING in the state (under .kombu-worker unless db_dsn is set).",
)
@config_options
@one_line_errors
def send(
    source: str | None,
    job_id: str | None,
    task_id: str | None,
    input_uri: str | None,
    output_prefix: str | None,
    params: tuple[str, ...],
    queue: str | None,
    no_register: bool,
    config_name: str | None,
    config_dir: str | None,
) -> None:
    """Send task messages from SOURCE (a JSON file, '-' for stdin) or from flags.

    Each task is first registered PENDING in the state, so that status shows it: by
    default SQLite under the data folder .kombu-worker (kombu-worker --data-dir DIR,
    KOMBU_WORKER_DATA_DIR, or DB_DSN change it).
    """
    from kombu_worker_sdk.cli.send import messages_from_flags, messages_from_text, send_messages

    config = build_config(config_name, config_dir)
    if source:
        msgs = messages_from_text(read_source(source))
    else:
        msgs = messages_from_flags(job_id, task_id, input_uri, output_prefix, params)
    target = queue or config.queue
    count = send_messages(config, msgs, target, register=not no_register)
    click.echo(f"sent {count} message(s) to {mask_url(target)}")


def read_source(source: str) -> str:
    """The text of SOURCE ('-' is stdin); a file that cannot be read is one line, not a traceback."""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {source}: {reason}") from None


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job and its tasks as JSON.")
@config_options
@one_line_errors
def status(job_id: str, as_json: bool, config_name: str | None, config_dir: str | None) -> None:
    """Show a job's status and its tree of tasks, with attempts and errors."""
    from kombu_worker_sdk.cli.status import job_as_dict, read_job, render_job

    job, tasks = read_job(build_config(config_name, config_dir), job_id)
    if as_json:
        click.echo(json.dumps(job_as_dict(job, tasks), indent=2))
    else:
        click.echo(render_job(job, tasks))


@main.command()
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="Your own image.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=".kombu-worker/demo",
    show_default=True,
    help="Where the demo's queues, outputs and state go.",
)
@click.option("--jobs", type=int, default=1, show_default=True, help="How many jobs to run.")
@one_line_errors
def demo(image: str | None, data_dir: str, jobs: int) -> None:
    """Run the Detection → Analysis → Completion demo on the embedded defaults."""
    from kombu_worker_sdk.examples.demo import run_demo

    sys.exit(run_demo(Path(data_dir), image=Path(image) if image else None, jobs=jobs))


@main.group("config")
def config_group() -> None:
    """Inspect the merged configuration."""


@config_group.command("show")
@config_options
@one_line_errors
def config_show(config_name: str | None, config_dir: str | None) -> None:
    """Print the config in use (YAML + env), secrets masked, each value with its source."""
    config = build_config(config_name, config_dir)
    click.echo(config.show(), nl=False)


@main.group("db")
def db_group() -> None:
    """Manage the state database."""


@db_group.command("upgrade")
@config_options
@one_line_errors
def db_upgrade(config_name: str | None, config_dir: str | None) -> None:
    """Create or migrate the schema; safe to run from many pods at once."""
    from kombu_worker_sdk.state import open_state

    config = build_config(config_name, config_dir)
    state = open_state(config.effective_db_dsn)
    try:
        applied = state.upgrade()
    finally:
        state.close()
    click.echo(f"applied migrations {applied}" if applied else "schema is up to date")


@main.command()
@config_options
@one_line_errors
def check(config_name: str | None, config_dir: str | None) -> None:
    """Check connectivity and permissions for the queues, the storage and the database."""
    from kombu_worker_sdk.cli.check import run_checks

    results = run_checks(build_config(config_name, config_dir))
    for result in results:
        click.echo(result.line())
    sys.exit(0 if all(r.ok for r in results) else 1)


@main.group("dlq")
def dlq_group() -> None:
    """Work with the dead-letter queue."""


@dlq_group.command("redrive")
@click.option("--limit", type=int, help="Move at most this many messages.")
@config_options
@one_line_errors
def dlq_redrive(limit: int | None, config_name: str | None, config_dir: str | None) -> None:
    """Move dead letters back to the input queue for reprocessing."""
    from kombu_worker_sdk.cli.dlq import redrive

    config = build_config(config_name, config_dir)
    moved = redrive(config, limit=limit)
    click.echo(
        f"moved {moved} message(s) from {mask_url(config.effective_dead_letter_queue)} "
        f"to {mask_url(config.queue)}"
    )


@main.command("iam-policy")
@click.option("--keda", is_flag=True, help="Print KEDA's read-only policy (queue depth) instead.")
@click.option("--account", help="AWS account of queues whose URL does not say it (moto, LocalStack).")
@click.option("--region", "policy_region", help="Region of queues whose URL does not say it.")
@click.option(
    "--kms-key", "kms_keys", multiple=True, help="ARN of a KMS key encrypting a queue or the bucket."
)
@click.option(
    "--read-prefix", "read_prefixes", multiple=True, help="s3://bucket/prefix/ read (default: buckets)."
)
@click.option("--write-prefix", "write_prefixes", multiple=True, help="s3://bucket/prefix/ written.")
@click.option("--dlq-redrive", is_flag=True, help="Also allow kombu-worker dlq redrive.")
@config_options
@one_line_errors
def iam_policy(keda: bool, config_name: str | None, config_dir: str | None, **options: Any) -> None:
    """Print the least-privilege IAM policy (JSON) for this step's configuration."""
    from kombu_worker_sdk.deploy.iam import PolicyOptions, keda_policy, worker_policy

    config = build_config(config_name, config_dir)
    given = PolicyOptions(region=options.pop("policy_region"), **options)
    click.echo(json.dumps((keda_policy if keda else worker_policy)(config, given), indent=2))


@main.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; beyond loopback needs a token."
)
@click.option("--port", type=int, default=8800, show_default=True)
@click.option(
    "--token", help="Require this token (Bearer header or login form); or $KOMBU_WORKER_DASHBOARD_TOKEN."
)
@click.option("--queue", "queues", multiple=True, help="Also show this step's queue (repeatable).")
@config_options
@one_line_errors
def dashboard(
    host: str,
    port: int,
    token: str | None,
    queues: tuple[str, ...],
    config_name: str | None,
    config_dir: str | None,
) -> None:
    """Serve the web dashboard: jobs, task trees, queues, dead letters and workers."""
    from kombu_worker_sdk.dashboard import run_dashboard

    run_dashboard(build_config(config_name, config_dir), host=host, port=port, token=token, queues=queues)


if __name__ == "__main__":  # pragma: no cover
    main()
