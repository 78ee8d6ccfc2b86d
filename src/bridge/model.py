"""The normalized data that flows through bridge: events, state, device info, commands.

Drivers produce ``Update`` values (``Event``, ``StateUpdate``, ``DeviceInfo``); the MQTT side
consumes ``CommandRequest`` and answers with ``CommandResult``. Every model here renders to the
JSON published on MQTT and has a JSON Schema in ``docs/schema/``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StrictInt, StrictStr

#: What a door station reports (spec §4.1); the 2N driver publishes every one of them.
DOOR_STATION_EVENTS: frozenset[str] = frozenset(
    {
        "device.started",
        "doorbell.pressed",
        "call.state_changed",
        "key.pressed",
        "code.entered",
        "card.read",
        "access.granted",
        "access.denied",
        "door.opened",
        "door.closed",
        "door.open_too_long",
        "door.forced",
        "switch.changed",
        "input.changed",
        "output.changed",
        "motion.started",
        "motion.stopped",
        "noise.detected",
        "tamper.changed",
        "login.blocked",
        "sip.registration_changed",
    }
)
#: What a video encoder reports besides ``device.started`` (spec §4.1, Ultra Stream).
ENCODER_EVENTS: frozenset[str] = frozenset(
    {
        "recording.started",
        "recording.stopped",
        "streaming.started",
        "streaming.stopped",
        "video_signal.lost",
        "video_signal.restored",
        "storage.changed",
    }
)
#: The event vocabulary: every type but ``vendor.*``.
EVENT_TYPES: frozenset[str] = DOOR_STATION_EVENTS | ENCODER_EVENTS
VENDOR_PREFIX = "vendor."


def is_event_type(value: str) -> bool:
    """True for a type of the §4.1 vocabulary or ``vendor.<Name>`` with a topic-safe name."""
    if value in EVENT_TYPES:
        return True
    name = value.removeprefix(VENDOR_PREFIX)
    return value.startswith(VENDOR_PREFIX) and bool(name) and not any(c in name for c in "/+#\0 ")


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, milliseconds only when there are any."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


UtcTime = Annotated[datetime, PlainSerializer(format_time, return_type=str)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(_Frozen):
    """A CloudEvents 1.0 structured-mode event (§4.1)."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="<device>/<boot epoch>/<vendor sequence or content hash>")
    source: str = Field(description="bridge/<device>")
    type: str = Field(description="a §4.1 type or vendor.<Name>")
    time: UtcTime = Field(description="when the device says it happened")
    datacontenttype: Literal["application/json"] = "application/json"
    device: str
    received: UtcTime | None = Field(None, description="when the bridge received it")
    data: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def event_id(device: str, boot: int | str, sequence: int | str | None, raw: object = None) -> str:
    """The deterministic id of one device occurrence.

    ``sequence`` is the vendor's event number within one boot; without one, a hash of the raw
    record stands in, so the same record replayed gives the same id.
    """
    if sequence is None:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
        sequence = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"{device}/{boot}/{sequence}"


def make_event(  # noqa: PLR0913 - every field of an event is a keyword
    device: str,
    type_: str,
    data: dict[str, Any],
    *,
    time: datetime,
    boot: int | str,
    sequence: int | str | None = None,
    received: datetime | None = None,
) -> Event:
    if not is_event_type(type_):
        raise ValueError(f"not an event type: {type_!r}")
    return Event(
        id=event_id(device, boot, sequence, data.get("raw", data)),
        source=f"bridge/{device}",
        type=type_,
        time=time,
        device=device,
        received=received,
        data=data,
    )


class StateUpdate(_Frozen):
    """A partial state (§4.2): these keys changed; nested objects are merged."""

    values: dict[str, Any]


class DeviceInfo(_Frozen):
    """What the device told us about itself; published retained on ``<device>/info``.

    A driver emits it once its channel to the device works: that is what makes the device
    ``online``.
    """

    vendor: str
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    capabilities: dict[str, Any] = Field(default_factory=dict)
    commands: list[str] = Field(default_factory=list)


Update = Event | StateUpdate | DeviceInfo


class DeviceInfoPayload(DeviceInfo):
    """The retained ``<device>/info`` payload: what the device said plus what the bridge knows.

    Before the device first answered, only ``vendor`` is known from the driver (the driver name)
    and ``commands`` from the driver's catalogue.
    """

    id: str
    driver: str
    name: str | None = None
    online: bool
    last_error: str | None = Field(None, description="why the device is offline, when it is")


class CommandRequest(_Frozen):
    """A command as received on ``<device>/command``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    id: StrictStr | StrictInt | None = Field(None, description="echoed in the result")


class ErrorInfo(_Frozen):
    code: str
    message: str


class CommandResult(_Frozen):
    """The answer on ``<device>/command/result`` (and on an MQTT 5 response topic)."""

    id: str | int | None = None
    command: str | None = None
    status: Literal["ok", "error"]
    data: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None

    @classmethod
    def failed(
        cls, code: str, message: str, *, command: str | None = None, id_: str | int | None = None
    ) -> CommandResult:
        return cls(
            id=id_, command=command, status="error", error=ErrorInfo(code=code, message=message)
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class BridgeResponse(_Frozen):
    """The answer on ``bridge/response/<action>``."""

    id: str | int | None = None
    status: Literal["ok", "error"]
    data: dict[str, Any] = Field(default_factory=dict)
    error: ErrorInfo | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()
