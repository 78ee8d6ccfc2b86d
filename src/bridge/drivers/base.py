"""The one small protocol every driver implements, and what the core hands to a driver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import structlog

from bridge.checkpoint import Checkpoint, Cursor, Sequence
from bridge.http import DeviceHttp

if TYPE_CHECKING:
    from pathlib import Path

    from bridge.commands import CheckedCommand
    from bridge.config import DeviceConfig
    from bridge.metrics import Metrics
    from bridge.model import Update

log = structlog.get_logger("bridge.driver")

Ack = Callable[[], None]
"""Called once the broker has acknowledged an event (PUBACK for QoS 1), or once the bridge has
decided it will never be published (a duplicate id, dropped on outbox overflow)."""


class Emit(Protocol):
    """How a driver hands over what it learnt.

    An ``Event`` emitted with ``on_ack`` is one the device can replay (it comes from a device
    log the driver reads by position): the driver moves its checkpoint in ``on_ack`` (see
    :class:`bridge.checkpoint.Cursor`), so a stop before the broker acknowledged it replays it.
    An event emitted without ``on_ack`` cannot be replayed by anyone (a state transition seen by
    polling): the bridge keeps it in its durable outbox until the broker acknowledged it.
    """

    async def __call__(self, update: Update, /, *, on_ack: Ack | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a successful command returns: result data, an image for ``snapshot``, and the state
    the command changed or re-read (published before the result)."""

    data: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None
    updates: tuple[Update, ...] = ()


async def _no_backpressure() -> None:
    return None


class Wakeup:
    """An early wake-up for a device's poller, set by a push (``/push/<device>/<token>``).

    Setting it twice before the poller looked is one wake-up: a push says "look now", and the
    poll that follows reads everything that changed.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()


@dataclass(frozen=True, slots=True)
class DriverContext:
    """Everything one device's driver may use besides its own config.

    ``room`` is the backpressure of the MQTT side: a driver awaits it before each read from the
    device, so a device faster than the broker is read no faster than events can leave.
    ``wakeup`` is set by a push for this device. Files in ``state_dir`` are named here, so two
    drivers never collide: ``<device>.<kind>.json``.
    """

    device: str
    metrics: Metrics
    state_dir: Path
    room: Callable[[], Awaitable[None]] = _no_backpressure
    wakeup: Wakeup = field(default_factory=Wakeup)

    def http(self, config: DeviceConfig, **options: Any) -> DeviceHttp:  # noqa: ANN401
        """This device's HTTP client (``options``: ``serial``, ``session``, ``forbidden``)."""
        return DeviceHttp(config, metrics=self.metrics, **options)

    def checkpoint(self, kind: str) -> Checkpoint:
        """The checkpoint file of this device for ``kind`` (the driver name, or a log name)."""
        return Checkpoint(self.state_dir / f"{self.device}.{kind}.json")

    def cursor(self, kind: str) -> Cursor:
        """A checkpointed position that moves only past events the broker acknowledged."""
        return Cursor(self.checkpoint(kind))

    def sequence(self) -> Sequence:
        """This device's event counter for events without a vendor sequence (ids of polled
        transitions): unique per occurrence, kept across restarts in ``<device>.seq.json``."""
        return Sequence(self.checkpoint("seq"))

    def reject(self, record: object, reason: str) -> None:
        """What a driver calls for a vendor record it cannot understand: the record is logged
        (its start) and counted, and the driver skips it, so it never blocks the rest."""
        log.warning("record_rejected", reason=reason, record=repr(record)[:300])
        self.metrics.records_rejected.labels(device=self.device).inc()


class Driver(Protocol):
    """One physical device. Owns its session with the device, no background tasks, no MQTT.

    ``run`` connects, emits ``DeviceInfo`` once the device's event channel works (that makes it
    online: a device that answers its info endpoint but not its events is not), then emits
    events and state until cancelled. It raises a ``DeviceError`` when the device is lost
    and never retries on its own: the supervisor owns backoff and availability. Commands never
    emit: what they change comes back in ``Outcome.updates``.
    """

    commands: frozenset[str]
    #: The event types it publishes besides ``vendor.*`` (what Home Assistant discovery offers).
    events: frozenset[str]

    async def run(self, emit: Emit) -> None: ...

    async def execute(self, command: CheckedCommand) -> Outcome:
        """Perform one checked command; raise ``CommandError`` when the device refuses."""
        ...

    async def aclose(self) -> None:
        """Release the device session (close channels, HTTP connections)."""
        ...


DriverFactory = Callable[["DeviceConfig", DriverContext], Driver]
