"""OpenTelemetry set-up: traces to an OTLP endpoint or the console, by setting.

With neither configured, nothing is exported and the instrumentation costs next to nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

_provider: Any = None

# FastAPI's own OpenTelemetry support, off: tracing is set up here, with OpenTelemetry's
# FastAPI instrumentation, and only when an exporter is configured. Left on, FastAPI asks for
# the global tracer, meter and logger providers on every request to learn whether it should
# record anything (environment lookups while they are unset): about 3 % of the gateway's CPU
# per proxied request in a profile. Pass it as ``FastAPI(telemetry=NATIVE_TELEMETRY_OFF)``.
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def configure_tracing(app: FastAPI, service: str, otlp_endpoint: str | None, console: bool = False) -> bool:
    """Instrument ``app``; returns whether spans are exported anywhere."""
    global _provider
    if not otlp_endpoint and not console:
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if console:
            _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(_provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="health,ready")
    return True
