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
from pathlib import Path
from typing import Any, TypeVar

import click

from .config import WorkerConfig, load_config, mask_url
from .errors import WorkerSDKError

F = TypeVar("F", bound=Callable[..., Any])


def config_options(fn: F) -> F:
    """--config and --config-dir, shared by every command that reads the config."""
    fn = click.option(
        "--config",
        "config_name",
        envvar="WORKER_CONFIG",
        help="Config name (config/NAME.yaml) or path; same as WORKER_CONFIG.",
    )(fn)
    fn = click.option(
        "--config-dir",
        envvar="WORKER_CONFIG_DIR",
        type=click.Path(),
        help="Folder holding default.yaml, NAME.yaml and queues.yaml.",
    )(fn)
    return fn


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
    return load_config(config_name, config_dir=config_dir, overrides=overrides)


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
    """Run a pipeline step: long-poll a queue and run your hooks on each message."""
    if ctx.invoked_subcommand is not None:
        return
    if not hooks:
        click.echo(ctx.get_help())
        ctx.exit(2)
    from .runner import serve

    config = build_config(config_name, config_dir, **overrides)
    sys.exit(serve(config, hooks, max_messages=max_messages))


@main.command()
@click.argument("source", required=False)
@click.option("--job-id")
@click.option("--task-id")
@click.option("--input-uri")
@click.option("--output-prefix")
@click.option("--param", "params", multiple=True, help="key=value (value parsed as JSON if it can be).")
@click.option("--queue", help="Queue to send to; defaults to the configured input queue.")
@click.option("--no-register", is_flag=True, help="Do not record the task as PENDING first.")
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
    """Send task messages from SOURCE (a JSON file, '-' for stdin) or from flags."""
    from .sending import messages_from_flags, messages_from_text, send_messages

    config = build_config(config_name, config_dir)
    if source:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        msgs = messages_from_text(text)
    else:
        msgs = messages_from_flags(job_id, task_id, input_uri, output_prefix, params)
    target = queue or config.queue
    count = send_messages(config, msgs, target, register=not no_register)
    click.echo(f"sent {count} message(s) to {mask_url(target)}")


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job and its tasks as JSON.")
@config_options
@one_line_errors
def status(job_id: str, as_json: bool, config_name: str | None, config_dir: str | None) -> None:
    """Show a job's status and its tree of tasks, with attempts and errors."""
    from .state import open_state
    from .status_view import job_as_dict, render_job

    state = open_state(build_config(config_name, config_dir).effective_db_dsn)
    job = state.get_job(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id!r}")
    tasks = state.job_tasks(job_id)
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
    from .examples.demo import run_demo

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
    from .state import open_state

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
    from .checks import run_checks

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
    from .dlq import redrive

    config = build_config(config_name, config_dir)
    moved = redrive(config, limit=limit)
    click.echo(
        f"moved {moved} message(s) from {mask_url(config.effective_dead_letter_queue)} "
        f"to {mask_url(config.queue)}"
    )


if __name__ == "__main__":  # pragma: no cover
    main()
