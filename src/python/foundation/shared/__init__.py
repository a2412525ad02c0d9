"""Shared service building blocks: errors, responses, settings, logging, telemetry, health, server."""
