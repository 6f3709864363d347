"""Turning tracing on from the standard OpenTelemetry variables, at worker start-up.

Separate from :mod:`.tracing` (which must not know :mod:`.otel`) so the import graph stays
one-way: this module is the only one that chooses between them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kombu_worker_sdk.errors import ConfigError
from kombu_worker_sdk.observability.tracing import Tracing, active, install

ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)
MISSING_EXTRA = (
    "{var} is set but OpenTelemetry is not installed: pip install 'kombu-worker-sdk[otel]' "
    "(or unset the OTEL_* variables)"
)


def wanted(environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable that asks for tracing, or None: the standard OTEL switches decide."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    return next((name for name in ENDPOINT_VARIABLES if environ.get(name, "").strip()), None)


def install_from_env(service_name: str, environ: Mapping[str, str] = os.environ) -> Tracing:
    """Turn tracing on if the OTEL variables ask for it; a missing extra is one ConfigError."""
    variable = wanted(environ)
    if variable is None or active().enabled:
        return active()
    try:
        from kombu_worker_sdk.observability.otel import OtelTracing
    except ImportError:
        raise ConfigError(MISSING_EXTRA.format(var=variable)) from None
    install(OtelTracing.from_env(service_name))
    return active()
