"""Flight telemetry example app for agi_core: many per-flight files, one dataframe code path (pandas or cuDF)."""

from .app import FlightArgs, FlightTelemetry

__all__ = ["FlightArgs", "FlightTelemetry"]
