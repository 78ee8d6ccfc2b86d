"""The value handed to the broker link. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. ``correlation`` is MQTT 5 correlation data for a response topic.

    ``on_ack`` is called once the broker acknowledged the message (or the link gave it up:
    dropped on overflow). A ``durable`` message is kept in the link's store in ``state_dir``
    until then, so it survives any stop of the bridge.
    """

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    correlation: bytes | None = None
    on_ack: Callable[[], None] | None = None
    durable: bool = False


@dataclass(frozen=True, slots=True)
class Received:
    """One inbound MQTT message, stripped of the client library's types."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None
    correlation: bytes | None = None
