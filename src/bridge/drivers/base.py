"""The one small protocol every driver implements, and what the core hands to a driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from bridge.commands import CheckedCommand
    from bridge.config import DeviceConfig
    from bridge.metrics import Metrics
    from bridge.model import Update

log = structlog.get_logger("bridge.driver")
Emit = Callable[["Update"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a successful command returns: result data, and an image for ``snapshot``."""

    data: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None


async def _no_backpressure() -> None:
    return None


@dataclass(frozen=True, slots=True)
class DriverContext:
    """Everything a driver may use besides its own config. Tests pass a transport here.

    ``room`` is the backpressure of the MQTT side: a driver awaits it before each read from the
    device, so a device faster than the broker is read no faster than events can leave.
    """

    metrics: Metrics
    state_dir: Path
    transport: httpx.AsyncBaseTransport | None = None
    room: Callable[[], Awaitable[None]] = _no_backpressure

    def rejecter(self, device: str) -> Callable[[object, str], None]:
        """What a driver calls for a vendor record it cannot understand: the record is logged
        (its start) and counted, and the driver skips it, so it never blocks the rest."""
        counter = self.metrics.records_rejected.labels(device=device)

        def reject(record: object, reason: str) -> None:
            log.warning("record_rejected", reason=reason, record=repr(record)[:300])
            counter.inc()

        return reject


class Driver(Protocol):
    """One physical device. Owns its session with the device, no background tasks, no MQTT.

    ``run`` connects, emits ``DeviceInfo`` once the device's event channel works (that makes it
    online: a device that answers its info endpoint but not its events is not), then emits
    events and state until cancelled. It raises a ``DeviceError`` when the device is lost
    and never retries on its own: the supervisor owns backoff and availability.
    """

    commands: frozenset[str]

    async def run(self, emit: Emit) -> None: ...

    async def execute(self, command: CheckedCommand) -> Outcome:
        """Perform one checked command; raise ``CommandError`` when the device refuses."""
        ...

    async def aclose(self) -> None:
        """Release the device session (close channels, HTTP connections)."""
        ...


DriverFactory = Callable[["DeviceConfig", DriverContext], Driver]
