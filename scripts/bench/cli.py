"""``scripts/bench.py``'s command line: the parent runs each section in a child of its own.

The child is the same script with ``--section KEY --child-out FILE``; it writes the section's
result as JSON and leaves with ``os._exit``, so that worker threads (Celery's, Kombu's) cannot
hold it open. The parent gathers the results, prints the table, writes the JSON and the chart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import __doc__ as PACKAGE_DOC
from .common import quiet_logging
from .report import draw_chart, measured, print_table, table_rows
from .sections import load, targets
from .settings import Settings, log

ENTRY = Path(__file__).resolve().parents[1] / "bench.py"
REPO = ENTRY.parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(PACKAGE_DOC or "").split("\n\n")[0])
    parser.add_argument("--out-dir", default="bench-out", help="where bench.json and bench.png go")
    parser.add_argument("--only", default="", help="comma-separated sections, e.g. a,c (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute in all)")
    parser.add_argument("--messages", type=int, default=0, help="messages per consumer in section a")
    parser.add_argument("--repeats", type=int, default=0, help="repeats of section a (median reported)")
    parser.add_argument("--sqs-concurrency", default="", help="kombu-worker concurrencies in b, e.g. 1,10")
    parser.add_argument("--device-backlog", type=int, default=0, help="messages queued per run in f (400)")
    parser.add_argument("--no-moto", action="store_true", help="skip f's run over moto")
    parser.add_argument("--profile", action="store_true", help="py-spy hot spots of a's kombu-worker")
    parser.add_argument("--no-chart", action="store_true", help="skip bench.png")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # child mode: run one section
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args: argparse.Namespace) -> int:
    quiet_logging()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s bench %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    settings = Settings.from_args(args)
    out_dir = Path(args.out_dir)
    started = time.perf_counter()
    result = load()[args.section].run(settings, out_dir)
    result["section_seconds"] = time.perf_counter() - started
    Path(args.child_out).write_text(json.dumps(result, indent=1, default=str))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # worker threads (Celery's, Kombu's) must not hold the child open


def child_argv(args: argparse.Namespace, section: str, child_out: Path) -> list[str]:
    argv = [
        sys.executable,
        str(ENTRY),
        "--section",
        section,
        "--child-out",
        str(child_out),
        "--out-dir",
        str(args.out_dir),
    ]
    for flag in ("quick", "profile", "no_moto"):
        if getattr(args, flag):
            argv.append(f"--{flag.replace('_', '-')}")
    for opt in ("messages", "repeats", "sqs_concurrency", "device_backlog"):
        value = getattr(args, opt)
        if value:
            argv += [f"--{opt.replace('_', '-')}", str(value)]
    return argv


def run_section(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """One section in a child process; its result, or an ``error`` the table shows."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        child_out = Path(handle.name)
    try:
        proc = subprocess.run(child_argv(args, section, child_out), cwd=REPO, timeout=900, check=False)
        if proc.returncode == 0 and child_out.stat().st_size:
            result: dict[str, Any] = json.loads(child_out.read_text())
            return result
        return {"error": f"section {section} exited with code {proc.returncode}"}
    except subprocess.TimeoutExpired:
        return {"error": f"section {section} timed out"}
    finally:
        child_out.unlink(missing_ok=True)


def meta(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import celery
    import kombu

    return {
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "python": platform.python_version(),
        "kombu": kombu.__version__,
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "moto": "KWS_TEST_MOTO_URL" if os.environ.get("KWS_TEST_MOTO_URL") else "started by bench",
        "git": git_head(),
        "uncommitted_package_files": git_dirty(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.section:
        return run_child(args)
    sections = load()
    only = [x.strip() for x in args.only.split(",") if x.strip()] or list(sections)
    unknown = [x for x in only if x not in sections]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {','.join(sections)}", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": meta(args, argv)}
    began = time.perf_counter()
    for section in only:
        print(f"== {section}: {sections[section].title}", file=sys.stderr, flush=True)
        results[section] = run_section(args, section)
    results["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)
    results["targets"] = targets(sections)
    print()
    results["table"] = print_table(table_rows(results, sections))
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nJSON: {json_path}")
    if not args.no_chart:
        png = out_dir / "bench.png"
        draw_chart(results, sections, png)
        print(f"chart: {png}")
    print(f"total: {results['meta']['total_seconds']} s")
    for key, section in sections.items():  # last, so that a script can take the final line
        result = measured(results, key)
        if section.summary is not None and result is not None:
            print(section.summary(result))
    return 0 if not any(isinstance(v, dict) and "error" in v for v in results.values()) else 1


def git_output(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return out.stdout


def git_dirty() -> list[str]:
    """Package files with uncommitted edits: others change the consumer while this runs."""
    return [line[3:] for line in git_output("status", "--porcelain", "--", "kombu_worker_sdk").splitlines()]


def git_head() -> str:
    return git_output("rev-parse", "--short", "HEAD").strip() or "?"
