#!/usr/bin/env python3
"""Run the face-redaction demo as three kombu-worker processes on SQS, S3 and PostgreSQL.

Against the local stand-ins started by the test harness::

    .venv/bin/python scripts/services.py -- .venv/bin/python scripts/faces_on_sqs.py --jobs 3

It creates fresh queues (detection, analysis, completion, dead letters), a bucket
and a database, uploads the shipped image, starts one worker per step, submits
jobs with ``kombu-worker send``, waits, prints each job's status and result.png
URI, checks the redaction, and stops the workers with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kombu_worker_sdk.examples.faces import sample_image
from kombu_worker_sdk.examples.faces.verify import check_redaction
from tests.integration.stack import Stack, new_stack

STEPS = (("detection", "DetectionHooks", "analysis"), ("analysis", "AnalysisHooks", "completion"),
         ("completion", "CompletionHooks", None))  # fmt: skip
HOOKS = "kombu_worker_sdk.examples.faces.hooks:"


def start(stack: Stack) -> None:
    for queue, cls, nxt in STEPS:
        stack.start_worker(HOOKS + cls, env=stack.env(queue, nxt), log_name=queue)


def submit(stack: Stack, jobs: int) -> list[str]:
    stack.s3.put_object(
        Bucket=stack.bucket, Key="inputs/astronaut.png", Body=sample_image(), ContentType="image/png"
    )
    job_ids = [f"faces-{int(time.time())}-{i}" for i in range(jobs)]
    lines = "\n".join(
        json.dumps({"job_id": j, "task_id": f"{j}-detection", "input_uri": f"s3://{stack.bucket}/inputs/astronaut.png",
                    "output_prefix": f"s3://{stack.bucket}/jobs/{j}/detection/"})
        for j in job_ids
    )  # fmt: skip
    sent = stack.cli("send", "-", env=stack.env("detection", "analysis"), stdin=lines)
    if sent.returncode != 0:
        raise SystemExit(sent.stderr)
    return job_ids


def wait_done(stack: Stack, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [stack.job(j) for j in job_ids]
        if all(s is not None and s[0] != "RUNNING" for s in states):
            return
        time.sleep(0.3)
    raise SystemExit(f"jobs not finished after {timeout}s: {[stack.job(j) for j in job_ids]}")


def report(stack: Stack, job_ids: list[str]) -> None:
    for job in job_ids:
        key = f"jobs/{job}/completion/result.png"
        result = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        detection = json.loads(
            stack.s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job}/detection/result.json")["Body"].read()
        )
        figures = check_redaction(sample_image(), result, detection["boxes"])
        print(f"job {job}: {stack.job(job)} → s3://{stack.bucket}/{key} {figures}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = new_stack(Path(tmp), "detection", "analysis", "completion")
        try:
            start(stack)
            job_ids = submit(stack, args.jobs)
            wait_done(stack, job_ids, args.timeout)
            report(stack, job_ids)
            codes = stack.stop_workers()
            print(f"workers stopped with exit codes {codes}")
            return 0 if codes == [0, 0, 0] else 1
        finally:
            stack.kill_workers()


if __name__ == "__main__":
    sys.exit(main())
