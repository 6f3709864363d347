"""The chart's optional dashboard: off by default; when on, a token-guarded Deployment + Service
that the worker's selector never matches."""

from __future__ import annotations

from tests.helm.chart import BASE, Rendered, render, render_error, validate_core

ON = [*BASE, "--set", "dashboard.enabled=true", "--set", "dashboard.tokenSecret=dash-token"]


def _dashboard(rendered: Rendered, kind: str) -> dict:  # type: ignore[type-arg]
    (found,) = [d for d in rendered.all(kind) if d["metadata"]["name"].endswith("-dashboard")]
    return found


def test_the_dashboard_is_off_by_default(helm: str) -> None:
    rendered = render(helm, *BASE)
    assert not any(d["metadata"]["name"].endswith("-dashboard") for d in rendered.docs)


def test_the_dashboard_needs_a_token_secret(helm: str) -> None:
    assert "dashboard.tokenSecret is required" in render_error(helm, *BASE, "--set", "dashboard.enabled=true")


def test_the_dashboard_deployment_and_service(helm: str) -> None:
    rendered = render(helm, *ON)
    deployment, service = _dashboard(rendered, "Deployment"), _dashboard(rendered, "Service")
    validate_core(rendered)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["dashboard", "--host", "0.0.0.0", "--port", "8800"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["KOMBU_WORKER_DASHBOARD_TOKEN"] == {"secretKeyRef": {"name": "dash-token", "key": "token"}}
    assert env["QUEUE_URL"] == BASE[-1].split("=", 1)[1]  # the worker's own configuration
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    assert service["spec"]["type"] == "ClusterIP"
    worker = next(d for d in rendered.all("Deployment") if d is not deployment)
    worker_selector = worker["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not worker_selector.items() <= pod_labels.items(), (
        "the worker Deployment would adopt dashboard pods"
    )
