"""kombu-worker iam-policy: queue ARNs from URLs, S3 scopes, KMS, KEDA, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kombu_worker_sdk.config import WorkerConfig
from kombu_worker_sdk.deploy.iam import PolicyOptions, keda_policy, queue_arn, worker_policy
from kombu_worker_sdk.errors import ConfigError
from tests.deploy import iam_eval

AWS = "https://sqs.eu-west-1.amazonaws.com/123456789012"
ACCOUNT_ARN = "arn:aws:sqs:eu-west-1:123456789012"


@pytest.mark.parametrize(
    ("url", "arn"),
    [
        (f"{AWS}/detection", f"{ACCOUNT_ARN}:detection"),
        (f"{AWS}/detection.fifo", f"{ACCOUNT_ARN}:detection.fifo"),
        (
            "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
            "arn:aws-cn:sqs:cn-north-1:123456789012:q",
        ),
        ("https://eu-west-1.queue.amazonaws.com/123456789012/q", f"{ACCOUNT_ARN}:q"),
    ],
)
def test_queue_arns_come_from_aws_queue_urls(url: str, arn: str) -> None:
    assert queue_arn(url) == arn


def test_a_local_endpoint_needs_the_region_and_flags_override_the_url() -> None:
    local = "http://127.0.0.1:5000/000000000000/tasks"
    with pytest.raises(ConfigError, match=r"region \(--region\)"):
        queue_arn(local)
    assert queue_arn(local, default_region="us-east-1") == "arn:aws:sqs:us-east-1:000000000000:tasks"
    assert queue_arn(local, account="123456789012", region="eu-west-1") == f"{ACCOUNT_ARN}:tasks"
    with pytest.raises(ConfigError, match=r"account \(--account\)"):
        queue_arn("http://localhost:4566/tasks", region="us-east-1")
    with pytest.raises(ConfigError, match="needs queue URLs"):
        queue_arn("tasks")


def faces(**extra: Any) -> WorkerConfig:
    return WorkerConfig(
        queue=f"{AWS}/faces-detection",
        next_queue=f"{AWS}/faces-analysis",
        bucket="faces-data",
        **extra,
    )


def test_the_worker_policy_allows_each_queue_only_its_own_calls() -> None:
    policy = worker_policy(faces())
    inp, nxt, dlq = (
        f"{ACCOUNT_ARN}:{n}" for n in ("faces-detection", "faces-analysis", "faces-detection-dlq")
    )
    assert iam_eval.allows(policy, "sqs:ReceiveMessage", inp)
    assert iam_eval.allows(policy, "sqs:DeleteMessage", inp)  # DeleteMessageBatch too
    assert not iam_eval.allows(policy, "sqs:SendMessage", inp)  # only dlq redrive sends there
    assert iam_eval.allows(policy, "sqs:SendMessage", nxt) and iam_eval.allows(policy, "sqs:SendMessage", dlq)
    assert not iam_eval.allows(policy, "sqs:ReceiveMessage", dlq)
    assert not iam_eval.allows(policy, "sqs:PurgeQueue", inp)
    assert iam_eval.allows(policy, "s3:GetObject", "arn:aws:s3:::faces-data/inputs/a.png")
    assert iam_eval.allows(policy, "s3:ListBucket", "arn:aws:s3:::faces-data")
    assert not iam_eval.allows(policy, "s3:DeleteObject", "arn:aws:s3:::faces-data/inputs/a.png")
    assert not any(action.startswith("kms:") for action, _ in iam_eval.grants(policy))


def test_redrive_adds_receive_on_the_dlq_and_send_on_the_input() -> None:
    policy = worker_policy(faces(), PolicyOptions(dlq_redrive=True))
    assert iam_eval.allows(policy, "sqs:ReceiveMessage", f"{ACCOUNT_ARN}:faces-detection-dlq")
    assert iam_eval.allows(policy, "sqs:SendMessage", f"{ACCOUNT_ARN}:faces-detection")


def test_prefixes_narrow_s3_and_kms_keys_are_granted_when_named() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/0000"
    options = PolicyOptions(
        read_prefixes=["s3://faces-data/inputs/"], write_prefixes=["s3://faces-data/jobs/"], kms_keys=[key]
    )
    policy = worker_policy(faces(allowed_buckets=["other"]), options)
    assert iam_eval.allows(policy, "s3:GetObject", "arn:aws:s3:::faces-data/inputs/a.png")
    assert not iam_eval.allows(policy, "s3:GetObject", "arn:aws:s3:::faces-data/secrets/a")
    assert iam_eval.allows(policy, "s3:PutObject", "arn:aws:s3:::faces-data/jobs/j/detection/result.json")
    assert not iam_eval.allows(policy, "s3:PutObject", "arn:aws:s3:::faces-data/inputs/a.png")
    assert not iam_eval.allows(policy, "s3:GetObject", "arn:aws:s3:::other/x")
    assert iam_eval.allows(policy, "kms:GenerateDataKey", key) and iam_eval.allows(policy, "kms:Decrypt", key)
    with pytest.raises(ConfigError, match="s3://bucket/prefix/"):
        worker_policy(faces(), PolicyOptions(read_prefixes=["inputs/"]))


def test_keda_gets_only_the_input_queue_attributes() -> None:
    assert iam_eval.grants(keda_policy(faces())) == {
        ("sqs:GetQueueAttributes", f"{ACCOUNT_ARN}:faces-detection")
    }


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``kombu-worker iam-policy`` in a new user's empty folder, configured by the environment."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "kombu-worker"), "iam-policy", *args],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_prints_the_policy_for_the_environments_queues(tmp_path: Path) -> None:
    env = {
        "QUEUE_URL": f"{AWS}/faces-detection",
        "NEXT_QUEUE_URL": f"{AWS}/faces-analysis",
        "BUCKET": "faces-data",
    }
    printed = run_cli(tmp_path, **env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == worker_policy(faces())
    keda = run_cli(tmp_path, "--keda", **env)
    assert json.loads(keda.stdout) == keda_policy(faces())


def test_the_embedded_default_queue_is_one_line_error(tmp_path: Path) -> None:
    printed = run_cli(tmp_path)
    assert printed.returncode == 1
    assert printed.stderr == "error: iam-policy needs queue URLs to name queue ARNs, got 'tasks'\n"
