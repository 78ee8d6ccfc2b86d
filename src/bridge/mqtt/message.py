"""The value handed to the broker link. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. ``correlation`` is MQTT 5 correlation data for a response topic."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One inbound MQTT message, stripped of the client library's types."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None
    correlation: bytes | None = None
