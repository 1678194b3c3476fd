"""Observability: OpenTelemetry tracing (stored locally, exportable over OTLP) and Prometheus metrics."""
