"""``kombu-worker iam-policy``: the least-privilege IAM policy for one step's configuration.

Built from :data:`~kombu_worker_sdk.deploy.actions.CALLS`, so it grants what the code calls
and nothing else. Queue ARNs come from the queue URLs; S3 objects from the buckets (or
the prefixes given); KMS only when a key is named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kombu_worker_sdk.config import WorkerConfig, is_sqs_queue_url
from kombu_worker_sdk.deploy.actions import (
    KEDA_ACTIONS,
    KMS_ACTIONS,
    POD_CALLERS,
    Caller,
    Target,
    actions_for,
)
from kombu_worker_sdk.errors import ConfigError

POLICY_VERSION = "2012-10-17"
# https://sqs.us-east-1.amazonaws.com/..., https://sqs.cn-north-1.amazonaws.com.cn/...,
# and the legacy https://us-east-1.queue.amazonaws.com/... form.
_AWS_SQS_HOST = re.compile(
    r"^(?:sqs\.(?P<region>[a-z0-9-]+)|(?P<legacy>[a-z0-9-]+)\.queue)\.amazonaws\.com(?P<cn>\.cn)?$"
)
_ACCOUNT = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class PolicyOptions:
    """What the configuration cannot say: the account and region of non-AWS URLs, keys, prefixes."""

    account: str | None = None
    region: str | None = None
    kms_keys: Sequence[str] = ()
    read_prefixes: Sequence[str] = ()
    write_prefixes: Sequence[str] = ()
    dlq_redrive: bool = False


def queue_arn(
    url: str, *, account: str | None = None, region: str | None = None, default_region: str | None = None
) -> str:
    """``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`` → ``arn:aws:sqs:REGION:ACCOUNT:NAME``.

    Other endpoints (moto, LocalStack) put ``/ACCOUNT/NAME`` in the path but not the region:
    ``region`` and ``account`` override the URL; ``default_region`` fills only a missing one.
    """
    if not is_sqs_queue_url(url):
        raise ConfigError(f"iam-policy needs queue URLs to name queue ARNs, got {url!r}")
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    match = _AWS_SQS_HOST.match(parts.hostname or "")
    partition = "aws-cn" if match and match["cn"] else "aws"
    url_region = (match["region"] or match["legacy"]) if match else None
    url_account = segments[-2] if len(segments) >= 2 and _ACCOUNT.match(segments[-2]) else None
    found_region, found_account = region or url_region or default_region, account or url_account
    if not segments or not found_region or not found_account:
        missing = "region (--region)" if not found_region else "account (--account)"
        raise ConfigError(f"cannot tell the {missing} of queue {url}: pass it to iam-policy")
    return f"arn:{partition}:sqs:{found_region}:{found_account}:{segments[-1]}"


def s3_arn(bucket: str, key_pattern: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key_pattern is None else f"arn:aws:s3:::{bucket}/{key_pattern}"


def prefix_arn(prefix: str) -> tuple[str, str]:
    """``s3://bucket/jobs/`` → (bucket, ``arn:aws:s3:::bucket/jobs/*``)."""
    if not prefix.startswith("s3://") or not prefix[5:].split("/", 1)[0]:
        raise ConfigError(f"prefixes are s3://bucket/prefix/, got {prefix!r}")
    bucket, _, key = prefix[5:].partition("/")
    return bucket, s3_arn(bucket, f"{key}*")


def worker_policy(config: WorkerConfig, options: PolicyOptions = PolicyOptions()) -> dict[str, Any]:
    """The policy document for a worker pod of this step (plus redrive when asked)."""
    callers = POD_CALLERS | {Caller.REDRIVE} if options.dlq_redrive else POD_CALLERS
    statements = [*_queue_statements(config, options, callers), *_s3_statements(config, options)]
    if options.kms_keys:
        statements.append(_statement("UseKmsKeys", KMS_ACTIONS, options.kms_keys))
    return {"Version": POLICY_VERSION, "Statement": statements}


def keda_policy(config: WorkerConfig, options: PolicyOptions = PolicyOptions()) -> dict[str, Any]:
    """KEDA's read-only role: queue attributes of the input queue (the depth it scales on)."""
    arn = _arn(config.queue, config, options)
    # No KMS: GetQueueAttributes reads no message, so an encrypted queue needs no key for it.
    return {"Version": POLICY_VERSION, "Statement": [_statement("ReadQueueDepth", KEDA_ACTIONS, [arn])]}


def _arn(url: str, config: WorkerConfig, options: PolicyOptions) -> str:
    fallback = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return queue_arn(url, account=options.account, region=options.region, default_region=fallback)


def _queue_statements(
    config: WorkerConfig, options: PolicyOptions, callers: frozenset[Caller]
) -> list[dict[str, Any]]:
    queues = [
        ("InputQueue", Target.INPUT, config.queue),
        ("NextQueue", Target.NEXT, config.next_queue),
        ("DeadLetterQueue", Target.DEAD_LETTER, config.effective_dead_letter_queue),
    ]
    # GetQueueUrl only finds the RedrivePolicy's target, which an explicit DLQ_URL replaces.
    skip = {"sqs:GetQueueUrl"} if config.dead_letter_queue else set()
    return [
        _statement(
            sid, [a for a in actions_for(target, callers) if a not in skip], [_arn(url, config, options)]
        )
        for sid, target, url in queues
        if url
    ]


def _s3_statements(config: WorkerConfig, options: PolicyOptions) -> list[dict[str, Any]]:
    buckets = _unique([b for b in [config.bucket, *config.allowed_buckets] if b])
    if not buckets and not (options.read_prefixes or options.write_prefixes):
        return []  # no S3 in this configuration (file:// storage)
    reads = [prefix_arn(p) for p in options.read_prefixes] or [(b, s3_arn(b, "*")) for b in buckets]
    writes = [prefix_arn(p) for p in options.write_prefixes] or [(b, s3_arn(b, "*")) for b in buckets]
    listed = _unique([bucket for bucket, _ in [*reads, *writes]])
    return [
        _statement("ReadObjects", actions_for(Target.READ), [arn for _, arn in reads]),
        _statement("WriteObjects", actions_for(Target.WRITE), [arn for _, arn in writes]),
        _statement("ListBuckets", actions_for(Target.BUCKET), [s3_arn(b) for b in listed]),
    ]


def _statement(sid: str, actions: Iterable[str], resources: Iterable[str]) -> dict[str, Any]:
    found = _unique(resources)
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(set(actions)),
        "Resource": found[0] if len(found) == 1 else found,
    }


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
