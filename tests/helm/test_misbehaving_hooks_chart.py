"""The chart's settings for hooks that misbehave, and the defaults that make a restart cheap.

A recycle (exit 0) or a hard time limit (exit 124) restarts the container in place; the
model cache is an emptyDir, which lives as long as the pod, so the reload reads local disk.
"""

from __future__ import annotations

from tests.helm.chart import BASE, render, render_error, validate_core

LIMITS = (
    "SOFT_TIME_LIMIT_SECONDS",
    "TIME_LIMIT_SECONDS",
    "MAX_TASKS_PER_WORKER",
    "MAX_MEMORY_MB",
    "RATE_LIMIT",
)


def test_by_default_no_limit_is_set_and_the_model_cache_outlives_the_process(helm: str) -> None:
    rendered = render(helm, *BASE)
    validate_core(rendered)
    env = rendered.env()
    assert not [name for name in LIMITS if f"KOMBU_WORKER_{name}" in env]
    assert env["HF_HOME"] == "/var/cache/kombu-worker/hf"
    assert env["TORCH_HOME"] == "/var/cache/kombu-worker/torch"
    assert env["XDG_CACHE_HOME"] == "/var/cache/kombu-worker/xdg-cache"
    spec = rendered.pod_spec()
    assert {"name": "model-cache", "emptyDir": {}} in spec["volumes"]
    assert {"name": "model-cache", "mountPath": "/var/cache/kombu-worker"} in rendered.container()[
        "volumeMounts"
    ]
    assert spec.get("restartPolicy", "Always") == "Always", "a Deployment restarts the container in place"
    assert rendered.container()["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_limits_render_as_worker_config_and_the_config_map_wins(helm: str) -> None:
    rendered = render(
        helm,
        *BASE,
        *("--set", "worker.softTimeLimitSeconds=540", "--set", "worker.timeLimitSeconds=600"),
        *("--set", "worker.maxTasksPerWorker=1000", "--set", "worker.maxMemoryMb=7000"),
        *("--set", "worker.rateLimit=600/m", "--set", "worker.config.max_memory_mb=6500"),
        *("--set", "modelCache.sizeLimit=20Gi", "--set", "extraVolumes[0].name=x"),
        *("--set", "extraVolumes[0].emptyDir.medium=Memory"),
    )
    validate_core(rendered)
    env = rendered.env()  # fails on a duplicate name
    assert env["KOMBU_WORKER_SOFT_TIME_LIMIT_SECONDS"] == "540"
    assert env["KOMBU_WORKER_TIME_LIMIT_SECONDS"] == "600"
    assert env["KOMBU_WORKER_MAX_TASKS_PER_WORKER"] == "1000"
    assert env["KOMBU_WORKER_RATE_LIMIT"] == "600/m"
    assert env["KOMBU_WORKER_MAX_MEMORY_MB"] == "6500", "worker.config names the key itself: it wins"
    volumes = {v["name"]: v for v in rendered.pod_spec()["volumes"]}
    assert volumes["model-cache"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert set(volumes) == {"model-cache", "x"}


def test_the_cache_can_be_turned_off_and_a_bad_rate_is_refused(helm: str) -> None:
    rendered = render(helm, *BASE, "--set", "modelCache.enabled=false")
    assert "volumes" not in rendered.pod_spec()
    assert "HF_HOME" not in rendered.env()
    assert "rateLimit" in render_error(helm, *BASE, "--set", "worker.rateLimit=fast")
