"""The worker contract the chart renders: environment, probes, shutdown grace, Service."""

from __future__ import annotations

from tests.helm.chart import (
    BASE,
    QUEUE,
    check_keda,
    render,
    validate_core,
)


def test_environment_from_values(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "hooks=analysis.hooks:AnalysisHooks",
        "--set",
        "workerConfig=vastra",
        "--set",
        "queues.next=https://sqs/next",
        "--set",
        "queues.deadLetter=https://sqs/dlq",
        "--set",
        "bucket=results",
        "--set",
        "aws.region=eu-west-1",
        "--set",
        "brokerUrl=sqs://@localhost:4566",
        "--set",
        "worker.concurrency=4",
        "--set",
        "worker.visibilityTimeout=600",
        "--set",
        "worker.config.max_attempts=5",
        "--set",
        "worker.config.log_level=DEBUG",
        "--set-json",
        'extraArgs=["--concurrency","4"]',
        "--set-json",
        'env=[{"name":"EXTRA","value":"1"}]',
        "--set-json",
        'envFrom=[{"configMapRef":{"name":"shared"}}]',
    )
    container = rendered.container()
    assert container["args"] == ["--hooks", "analysis.hooks:AnalysisHooks", "--concurrency", "4"]
    env = rendered.env()
    expected = {
        "QUEUE_URL": QUEUE,
        "NEXT_QUEUE_URL": "https://sqs/next",
        "DLQ_URL": "https://sqs/dlq",
        "BUCKET": "results",
        "WORKER_CONFIG": "vastra",
        "BROKER_URL": "sqs://@localhost:4566",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "KOMBU_WORKER_CONCURRENCY": "4",
        "KOMBU_WORKER_VISIBILITY_TIMEOUT": "600",
        "KOMBU_WORKER_MAX_ATTEMPTS": "5",
        "KOMBU_WORKER_LOG_LEVEL": "DEBUG",
        "EXTRA": "1",
    }
    assert expected.items() <= env.items()
    assert all(isinstance(v, str) for v in env.values() if not isinstance(v, dict))
    assert container["envFrom"] == [{"configMapRef": {"name": "shared"}}]
    assert check_keda(rendered)["metadata"]["awsRegion"] == "eu-west-1"
    validate_core(rendered)


def test_health_port_and_probes(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "worker.healthPort=9000")
    container = rendered.container()
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert rendered.env()["KOMBU_WORKER_HEALTH_PORT"] == "9000"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = rendered.pod_template()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_can_be_disabled(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        "--set",
        "probes.startup.enabled=false",
        "--set",
        "probes.readiness.enabled=false",
        "--set",
        "metrics.podAnnotations=false",
    )
    container = rendered.container()
    assert "startupProbe" not in container and "readinessProbe" not in container
    assert "livenessProbe" in container
    assert "prometheus.io/scrape" not in (rendered.pod_template()["metadata"]["annotations"] or {})


def test_termination_grace_follows_shutdown_grace(helm: str) -> None:
    default = render(helm, *BASE)
    assert default.pod_spec()["terminationGracePeriodSeconds"] == 30 + 15
    assert default.env()["KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS"] == "30"
    custom = render(
        helm,
        *BASE,
        "--set",
        "worker.shutdownGraceSeconds=120",
        "--set",
        "worker.terminationMarginSeconds=10",
    )
    assert custom.pod_spec()["terminationGracePeriodSeconds"] == 130
    assert custom.env()["KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS"] == "120"


def test_service_and_service_monitor(helm: str) -> None:
    assert "Service" not in render(helm, *BASE).kinds()
    rendered = render(helm, *BASE, "--set", "metrics.serviceMonitor.enabled=true")
    service = rendered.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = rendered.pod_template()["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    validate_core(rendered)
