"""The normalized command catalogue (§5) and the checks made before any driver sees a command.

Pure: parsing, policy (allow/deny, destructive commands) and argument validation. A command
that passes :func:`check_command` reaches the driver with validated, typed arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.config import Duration
from bridge.errors import CommandError
from bridge.model import CommandRequest
from bridge.validation import say

if TYPE_CHECKING:
    from collections.abc import Collection

    from bridge.config import CommandPolicy


class Args(BaseModel):
    """Base of command arguments: unknown arguments are refused, not ignored, and every value
    must have the type the catalogue names: no ``true`` for a door number, no ``"yes"`` for
    ``on``, no ``"2"`` or ``2.0`` for an integer (docs/commands.md promises ``invalid_args``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArgs(Args):
    pass


class OpenDoorArgs(Args):
    door: int = Field(1, ge=1, le=64)


SwitchAction = Literal["on", "off", "trigger", "lock", "unlock", "hold", "release"]


class SetSwitchArgs(Args):
    switch: int = Field(1, ge=1, le=64)
    on: bool | None = None
    action: SwitchAction | None = None
    timeout: Duration | None = Field(None, description="for on/hold: switch back after this")

    @model_validator(mode="after")
    def _one_of(self) -> SetSwitchArgs:
        if (self.on is None) == (self.action is None):
            raise ValueError("give exactly one of 'on' or 'action'")
        return self

    @property
    def resolved_action(self) -> SwitchAction:
        if self.action is not None:
            return self.action
        return "on" if self.on else "off"


class SetOutputArgs(Args):
    port: str | int
    on: bool


class DialArgs(Args):
    number: str = Field(min_length=1, max_length=128)


class SnapshotArgs(Args):
    width: int | None = Field(None, ge=16, le=4096)
    height: int | None = Field(None, ge=16, le=4096)
    time: int | None = Field(None, le=0, description="seconds into the past, where supported")
    channel: int | None = Field(
        None,
        ge=0,
        le=63,
        description="the camera channel of a multi-channel device (default: its first)",
    )


class StreamingArgs(Args):
    server: str | int | None = None


class PtzArgs(Args):
    action: Literal["left", "right", "up", "down", "zoom_in", "zoom_out", "stop", "home"]
    speed: int = Field(5, ge=1, le=10)


class MotionDetectionArgs(Args):
    enabled: bool


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    args: type[Args]
    destructive: bool = False
    doc: str = ""


CATALOGUE: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("open_door", OpenDoorArgs, doc="pulse the door strike"),
        CommandSpec("set_switch", SetSwitchArgs, doc="drive a switch (relay)"),
        CommandSpec("set_output", SetOutputArgs, doc="set a logical output"),
        CommandSpec("dial", DialArgs, doc="place a call"),
        CommandSpec("answer", NoArgs, doc="answer the ringing call"),
        CommandSpec("hangup", NoArgs, doc="end the current call"),
        CommandSpec("snapshot", SnapshotArgs, doc="publish a JPEG to <device>/snapshot"),
        CommandSpec("audio_test", NoArgs, doc="run the device's audio loop test"),
        CommandSpec("start_recording", NoArgs),
        CommandSpec("stop_recording", NoArgs),
        CommandSpec("start_streaming", StreamingArgs),
        CommandSpec("stop_streaming", StreamingArgs),
        CommandSpec("ptz", PtzArgs, doc="pan/tilt/zoom"),
        CommandSpec("motion_detection", MotionDetectionArgs),
        CommandSpec("refresh", NoArgs, doc="re-read the device state"),
        CommandSpec("reboot", NoArgs, destructive=True, doc="restart the device"),
    )
}


@dataclass(frozen=True, slots=True)
class CheckedCommand:
    """A command that passed every check: what the driver receives."""

    name: str
    args: Args
    id: str | int | None


def _loads(payload: bytes) -> Any:  # noqa: ANN401 - JSON
    """JSON that can be echoed back: ``ValueError`` (or ``RecursionError``) if not.

    Besides malformed JSON, ``json.loads`` raises plain ``ValueError`` for an integer of more
    than 4300 digits and ``RecursionError`` for deep nesting, and it decodes ``"\\ud800"`` to
    a lone surrogate, which cannot be encoded into the UTF-8 of a result: refused here, once.
    """
    raw = json.loads(payload)
    json.dumps(raw, ensure_ascii=False).encode()
    return raw


def parse_command(payload: bytes) -> CommandRequest:
    """Parse a command payload; anything unusable is a ``bad_request``."""
    try:
        raw = _loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeError are ValueErrors
        raise CommandError("bad_request", f"payload is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CommandError("bad_request", 'payload must be a JSON object with "command"')
    try:
        return CommandRequest.model_validate(raw)
    except ValidationError as exc:
        raise CommandError("bad_request", describe_validation(exc, unknown="unknown key")) from None


def request_id(payload: bytes) -> str | int | None:
    """Best-effort id of a request that failed to parse, so its error result can be matched."""
    try:
        raw = _loads(payload)
    except (ValueError, RecursionError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def is_allowed(name: str, policy: CommandPolicy) -> bool:
    """Deny wins; an explicit allow list is exhaustive; destructive commands need an allow."""
    if name in policy.deny:
        return False
    if policy.allow is not None:
        return name in policy.allow
    return not CATALOGUE[name].destructive


def check_command(
    request: CommandRequest, *, supported: Collection[str], policy: CommandPolicy
) -> CheckedCommand:
    """Run every check a command must pass before the device is touched."""
    spec = CATALOGUE.get(request.command)
    if spec is None:
        raise CommandError("unknown_command", f"unknown command {request.command!r}")
    if spec.name not in supported:
        raise CommandError("unsupported", f"this device cannot {spec.name}")
    if not is_allowed(spec.name, policy):
        raise CommandError("denied", f"{spec.name} is not allowed by this device's commands policy")
    try:
        args = spec.args.model_validate(request.args)
    except ValidationError as exc:
        raise CommandError("invalid_args", describe_validation(exc)) from None
    return CheckedCommand(name=spec.name, args=args, id=request.id)


_UNION_MEMBERS = {"str", "int", "float", "bool"}


def describe_validation(exc: ValidationError, *, unknown: str = "unknown argument") -> str:
    """One line per problem, naming the field, never echoing the input value; the members of
    a union (``id``: text or a whole number) said as one. ``unknown`` names an extra key."""
    said: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) > 1 and loc[-1] in _UNION_MEMBERS:
            loc.pop()  # pydantic names the member it tried; the user wrote one field
        message = unknown if err["type"] == "extra_forbidden" else say(err)
        said.setdefault(".".join(loc), []).append(message)
    parts = []
    for where, messages in said.items():
        message = " or ".join([messages[0], *(m.removeprefix("expected ") for m in messages[1:])])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def args_schema(name: str) -> dict[str, Any]:
    return CATALOGUE[name].args.model_json_schema()
