"""Topic names of the MQTT contract (spec §3). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_TOPIC_BYTES = 65535  # MQTT: a topic name is a UTF-8 string with a two-byte length


def publishable(topic: str) -> bool:
    """Whether ``topic`` can be published to (MQTT 5 §4.7): not empty, no ``+`` or ``#``
    wildcard, no NUL, at most 65,535 bytes of UTF-8. For topics a client names (a response
    topic), which the bridge must check before it publishes there."""
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        return False
    try:
        return len(topic.encode()) <= MAX_TOPIC_BYTES
    except UnicodeEncodeError:  # a lone surrogate
        return False


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an inbound topic addresses: a device command or a bridge request."""

    kind: Literal["command", "request"]
    target: str  # device id, or the request action


@dataclass(frozen=True, slots=True)
class Topics:
    """``shard`` is set when several instances share a base topic: each then has its own
    bridge-level topics under ``<base>/bridge/shard/<index>/`` (state, info, requests)."""

    base: str = "bridge"
    shard: int | None = None

    @property
    def bridge(self) -> str:
        """The root of this instance's bridge-level topics."""
        root = f"{self.base}/bridge"
        return root if self.shard is None else f"{root}/shard/{self.shard}"

    @property
    def bridge_state(self) -> str:
        return f"{self.bridge}/state"

    @property
    def bridge_info(self) -> str:
        return f"{self.bridge}/info"

    def bridge_response(self, action: str) -> str:
        return f"{self.bridge}/response/{action}"

    def availability(self, device: str) -> str:
        return f"{self.base}/{device}/availability"

    def info(self, device: str) -> str:
        return f"{self.base}/{device}/info"

    def state(self, device: str) -> str:
        return f"{self.base}/{device}/state"

    def event(self, device: str, event_type: str) -> str:
        return f"{self.base}/{device}/event/{event_type}"

    def snapshot(self, device: str) -> str:
        return f"{self.base}/{device}/snapshot"

    def snapshot_info(self, device: str) -> str:
        return f"{self.base}/{device}/snapshot/info"

    def snapshot_base64(self, device: str) -> str:
        return f"{self.base}/{device}/snapshot/base64"

    def command(self, device: str) -> str:
        return f"{self.base}/{device}/command"

    def command_result(self, device: str) -> str:
        return f"{self.base}/{device}/command/result"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """What the bridge listens to: device commands and bridge requests."""
        return (f"{self.base}/+/command", f"{self.bridge}/request/+")

    def parse(self, topic: str) -> Inbound | None:
        """Classify an inbound topic; ``None`` for anything that is not ours to act on."""
        request = f"{self.bridge}/request/"
        if topic.startswith(request):
            action = topic[len(request) :]
            return Inbound("request", action) if action and "/" not in action else None
        prefix = f"{self.base}/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == "command" and parts[0] and parts[0] != "bridge":
            return Inbound("command", parts[0])
        return None
