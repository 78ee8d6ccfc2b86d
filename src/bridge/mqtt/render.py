"""Normalized values to MQTT messages (spec §3). Pure."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bridge.mqtt.message import Message

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.model import BridgeResponse, CommandResult, Event
    from bridge.mqtt.topics import Topics


def dumps(value: Any) -> bytes:  # noqa: ANN401 - any JSON value
    """Compact UTF-8 JSON, as the contract asks."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def availability(topics: Topics, device: str, *, online: bool, qos: int) -> Message:
    return Message(topics.availability(device), b"online" if online else b"offline", qos, True)


def bridge_state(topics: Topics, *, online: bool, qos: int) -> Message:
    return Message(topics.bridge_state, b"online" if online else b"offline", qos, True)


def retained_json(topic: str, value: dict[str, Any], *, qos: int) -> Message:
    return Message(topic, dumps(value), qos, True)


def event(
    topics: Topics, value: Event, *, qos: int, on_ack: Callable[[], None] | None = None
) -> Message:
    """An event; without ``on_ack`` (nothing can replay it) it is durable until acknowledged."""
    topic = topics.event(value.device, value.type)
    return Message(topic, value.to_json(), qos, False, on_ack=on_ack, durable=on_ack is None)


def result(
    topic: str, value: CommandResult | BridgeResponse, *, qos: int, correlation: bytes | None = None
) -> Message:
    return Message(topic, value.to_json(), qos, False, correlation)
