"""Driver for 2N IP intercoms (current firmware, and 2N Helios IP on the 2.15 manual).

Events come from the device's log channel: ``/api/log/subscribe`` opens a channel, a long-poll
loop on ``/api/log/pull`` reads it, ``/api/log/unsubscribe`` closes it. Event ids count from 1
after every device boot, so an event is identified by (boot epoch, id) and the driver keeps a
*position*: the boot, id, uptime and device time of the last event it handed over.

When the channel is lost (expired, invalid, device rebooted) the driver subscribes again with
``include=-<seconds>`` reaching back to just before that position, and drops what it already
handed over. The checkpoint in ``state_dir`` (a :class:`~bridge.checkpoint.Cursor`) moves only
past events the broker acknowledged, so a bridge restarted after any stop resumes at the first
event the broker may not have; ``replay_max_age`` bounds how far back it reaches, so a doorbell
from an hour ago never rings.

Normalization is pure and lives in :mod:`bridge.normalize.two_n`; the API is summarised in
``docs/drivers.md`` and the vendor's quirks in ``../shared/research/seed-2n.md``.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog
from pydantic import Field

from bridge.checkpoint import all_of
from bridge.commands import (
    DialArgs,
    OpenDoorArgs,
    SetOutputArgs,
    SetSwitchArgs,
    SnapshotArgs,
)
from bridge.config import DeviceConfig, Duration
from bridge.drivers.base import Outcome
from bridge.errors import AuthError, CommandError, DeviceProtocolError
from bridge.http import MAX_IMAGE
from bridge.model import DOOR_STATION_EVENTS, Event, StateUpdate, make_event, utcnow
from bridge.normalize import two_n as norm

if TYPE_CHECKING:
    from bridge.commands import CheckedCommand
    from bridge.drivers.base import DriverContext, Emit

log = structlog.get_logger("bridge.driver")

BOOT_SLACK = 2  # seconds: utcTime - upTime of one boot wobbles by a second
REPLAY_MARGIN = 2  # seconds added before the position when replaying, for clock granularity
ADVANCED_SWITCH_FIRMWARE = (2, 36)  # lock/unlock/hold/release and the switch timeout
SWITCH_OPERATION_EVENTS = frozenset({"SwitchOperationChanged", "SwitchesBlocked"})


class TwoNConfig(DeviceConfig):
    driver: Literal["2n"]
    pull_timeout: Duration = Field(
        20.0, gt=0, description="how long one /api/log/pull may wait for an event"
    )
    channel_duration: Duration = Field(
        90.0, ge=1, le=3600, description="the device closes a channel not pulled for this long"
    )
    extra_events: list[str] = Field(
        default_factory=list,
        description="event names added to the filter from /api/log/caps, e.g. hidden ones",
    )
    exclude_events: list[str] = Field(
        default_factory=list, description="event names removed from the filter"
    )
    doorbell_keys: list[str] = Field(
        default_factory=lambda: ["%1"], description="KeyPressed keys that are call buttons"
    )
    doorbell_on_call: bool = Field(
        default=False, description="an outgoing call starting is a doorbell press too"
    )
    replay_max_age: Duration = Field(
        300.0, description="after a gap or a restart, replay events at most this old"
    )
    refresh_interval: Duration = Field(
        600.0, description="re-read the status endpoints this often (0: only on events)"
    )
    snapshot_width: int = Field(640, ge=16, le=4096)
    snapshot_height: int = Field(480, ge=16, le=4096)


@dataclass(frozen=True, slots=True)
class Position:
    """The last event handed over: its boot epoch, id, uptime and device time."""

    boot: int
    id: int
    up: int
    utc: int


def _same_boot(a: int, b: int) -> bool:
    return abs(a - b) <= BOOT_SLACK


def _checkpoint(position: Position, since: float) -> dict[str, Any]:
    """The checkpoint content: the position and ``saved``, the bridge's wall time before which
    no event after the position happened (the replay window when the device clock is unknown).
    """
    # Not dataclasses.asdict: it deep-copies, 20-40 µs on every event's way to the broker.
    p = position
    return {"boot": p.boot, "id": p.id, "up": p.up, "utc": p.utc, "saved": since}


class TwoNDriver:
    commands = frozenset(
        {
            "open_door",
            "set_switch",
            "set_output",
            "dial",
            "answer",
            "hangup",
            "snapshot",
            "audio_test",
            "refresh",
            "reboot",
        }
    )
    #: The event types it publishes (besides ``vendor.*``): what Home Assistant discovery offers.
    events = DOOR_STATION_EVENTS

    def __init__(self, config: TwoNConfig, context: DriverContext) -> None:
        self._config = config
        self._http = context.http(config)
        self._doorbell = norm.Doorbell(
            keys=frozenset(config.doorbell_keys), on_outgoing_call=config.doorbell_on_call
        )
        self._reject = context.reject
        self._room = context.room
        self._rng = random.Random()
        # Saved only past acknowledged events; the same file and content as ever.
        self._cursor = context.cursor("2n")
        # Our wall time before which no event after the position happened: what the replay
        # window reaches back to when the device clock is unknown.
        self._since: float | None = None
        self._position = self._load_position()  # the last event handed over
        self._boot: int | None = self._position.boot if self._position else None
        self._channel: int | None = None
        self._pulled = False  # the current channel answered a pull
        self._filter: list[str] = []
        self._firmware: tuple[int, ...] = ()
        self._refreshed_at = 0.0
        self._dialed: deque[object] = deque(maxlen=16)  # call sessions the bridge placed
        self._dialing = 0

    # -- the event channel -------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        info = await self._get("/api/system/info")
        self._firmware = norm.firmware_version(str(info.get("swVersion") or ""))
        caps = norm.parse_caps(await self._get("/api/log/caps"))
        # Events hidden by default stay hidden unless named in extra_events, as on the device.
        shown = [name for name in caps if name not in norm.HIDDEN_BY_DEFAULT]
        self._filter = norm.event_filter(
            shown, self._config.extra_events, self._config.exclude_events
        )
        restarted = await self._subscribe()
        state = await self._baseline()
        # Only now, with the channel open, is the device online.
        await emit(
            norm.parse_info(
                info,
                commands=sorted(self.commands),
                capabilities={"events": self._filter},
            )
        )
        await emit(state)
        if restarted is not None:
            await emit(restarted)
        while True:
            await self._room()  # backpressure: the MQTT side keeps up before we read more
            sent = time.time()
            records = await self._pull(emit)
            if records is None:
                continue
            if records:
                await self._deliver(records, emit)
            # What this pull did not return happened after it was sent (a reply cut short by the
            # device's batch size makes this an estimate, as the device clock path is not).
            self._since = sent
            if self._refresh_due():  # also under steady traffic
                await emit(await self._baseline())

    async def _subscribe(self) -> Event | None:
        """Open a channel reaching back to the position; return a ``device.started`` to emit
        when the device rebooted while its start is beyond the replay window, else None."""
        clock = await self._device_clock()
        include, started = self._resume(clock)
        params: dict[str, Any] = {
            "include": include,
            "duration": math.ceil(self._config.channel_duration),
        }
        if self._filter:
            params["filter"] = ",".join(self._filter)
        result = await self._get("/api/log/subscribe", params)
        channel = result.get("id")
        if not isinstance(channel, int) or isinstance(channel, bool):
            raise DeviceProtocolError("log/subscribe: 'id' must be an integer", device=self.id)
        self._channel, self._pulled = channel, False
        log.debug("channel_opened", channel=channel, include=include)
        if self._position is not None:
            # From here on, a restart replays what it missed; behind what is still pending.
            self._cursor.advance(_checkpoint(self._position, self._since_or_now()))
        return started

    async def _device_clock(self) -> tuple[int, int] | None:
        """``(systemTime, upTime)`` from system/status, or None where the account may not read it
        (it needs the System *Control* privilege)."""
        try:
            return norm.parse_uptime(await self._get("/api/system/status"))
        except norm.ApiError as exc:
            log.debug("system_status_unavailable", reason=str(exc))
            return None

    def _resume(self, clock: tuple[int, int] | None) -> tuple[str, Event | None]:
        """Decide the boot and the ``include`` of the next subscription."""
        max_age = self._config.replay_max_age
        position = self._position
        if clock is None:  # no device clock: measure the gap with ours, records tell reboots
            if self._since is None:  # the first subscription ever: listen from now on
                self._since = time.time()
                return "new", None
            window = time.time() - self._since + REPLAY_MARGIN
            return _include(min(window, max_age)), None
        if position is None:
            # Nothing handed over yet: the position is "listening since now", so a channel lost
            # before the first event still replays what came after this moment.
            system_time, up_time = clock
            self._boot = system_time - up_time
            self._position = Position(self._boot, id=0, up=up_time, utc=system_time)
            self._since = time.time()
            return "new", None
        system_time, up_time = clock
        boot = system_time - up_time
        # A reboot: the uptime went back, or a new boot epoch that began after our last event.
        # (A device clock stepped back, or forward by less than that event's uptime, is not.)
        later = not _same_boot(boot, position.boot) and boot > position.utc
        if up_time >= position.up and not later:
            return _include(min(system_time - position.utc + REPLAY_MARGIN, max_age)), None
        log.info("device_rebooted", uptime=up_time)
        self._boot = boot
        self._position = Position(boot=boot, id=0, up=0, utc=boot)
        self._since = time.time() - up_time
        window = up_time + REPLAY_MARGIN
        started = None
        if window > max_age:  # its DeviceState startup is too old to replay: say it ourselves
            now = utcnow()
            started = make_event(
                self.id,
                "device.started",
                {"uptime": up_time, "raw": {"upTime": up_time}},
                time=now,
                boot=boot,
                sequence="start",
                received=now,
            )
        return _include(min(window, max_age)), started

    async def _pull(self, emit: Emit) -> list[norm.Record] | None:
        """One long poll: the records read, or None when the channel had to be reopened."""
        # Up to 10 % shorter, at random: devices started together do not stay in lock step.
        timeout = math.ceil(self._config.pull_timeout * (1 - self._rng.random() / 10))
        try:
            result = await self._get(
                "/api/log/pull",
                {"id": self._channel, "timeout": timeout},
                timeout=timeout + self._config.timeout,
                measure=False,
            )
        except norm.ApiError as exc:
            # An expired or unknown channel: the manual leaves the code open, so any refusal.
            # A channel refused before it ever answered is a device problem, not an expiry:
            # the supervisor backs off instead of this loop subscribing again and again.
            if not self._pulled:
                raise
            log.info("channel_lost", reason=str(exc))
            started = await self._subscribe()
            await emit(await self._baseline())
            if started is not None:
                await emit(started)
            return None
        self._pulled = True
        records, malformed = norm.parse_events(result)
        for raw, reason in malformed:
            self._reject(raw, reason)
        return records

    async def _deliver(self, records: list[norm.Record], emit: Emit) -> None:
        received = utcnow()
        since = self._since_or_now()  # every record of this batch happened after it
        rebooted = switches_changed = False
        for record in records:
            boot, new_boot = self._follow_boot(record)
            rebooted |= new_boot
            if self._handed_over(boot, record):
                continue  # already handed over before the channel was reopened
            normalized = norm.normalize(
                self.id, boot, record, doorbell=self._doorbell, received=received
            )
            position = Position(boot, record.id, record.up_time, record.utc_time)
            events = [event for event in normalized.events if not self._our_call(event)]
            if events:
                # The checkpoint passes this record once the broker has all of its events.
                ack = all_of(self._cursor.stage(_checkpoint(position, since)), len(events))
                for event in events:
                    await emit(event, on_ack=ack)
            else:
                self._cursor.advance(_checkpoint(position, since))
            if normalized.state is not None:
                await emit(normalized.state)  # retained state: rebuilt after a restart
            self._position = position
            switches_changed |= record.name in SWITCH_OPERATION_EVENTS
        if rebooted:
            await emit(await self._baseline())
        elif switches_changed:  # locked/held are in no event: read them
            await self._emit_all(emit, await self._read_switches())

    def _follow_boot(self, record: norm.Record) -> tuple[int, bool]:
        """The boot ``record`` belongs to, and whether it is a reboot seen in the records."""
        if self._is_new_boot(record):
            log.info("device_rebooted", uptime=record.up_time)
            self._boot = record.boot
            self._position = Position(boot=record.boot, id=0, up=0, utc=record.boot)
            return record.boot, True
        if self._boot is None:
            self._boot = record.boot
        return self._boot, False

    def _handed_over(self, boot: int, record: norm.Record) -> bool:
        position = self._position
        return position is not None and _same_boot(position.boot, boot) and record.id <= position.id

    def _our_call(self, event: Event) -> bool:
        """A ``doorbell_on_call`` press that is really a call the bridge placed (``dial``)."""
        if event.type != "doorbell.pressed" or event.data.get("button") != "call":
            return False
        return self._dialing > 0 or event.data.get("session") in self._dialed

    def _is_new_boot(self, record: norm.Record) -> bool:
        position = self._position
        if position is None or self._boot is None:
            return False
        startup = record.name == "DeviceState" and record.params.get("state") == "startup"
        if startup:  # new unless replayed, or the start ``_resume`` already detected (id 0)
            known = record.id <= position.id or position.id == 0
            return not (known and _same_boot(record.boot, self._boot))
        if record.id <= position.id:
            return not _same_boot(record.boot, self._boot)
        return record.up_time < position.up  # the uptime went backwards

    # -- checkpoints ---------------------------------------------------------------------------

    def _load_position(self) -> Position | None:
        data = self._cursor.load()
        if data is None:
            return None
        try:
            position = Position(**{k: int(data[k]) for k in ("boot", "id", "up", "utc")})
            self._since = float(data["saved"])
        except (KeyError, TypeError, ValueError):
            log.warning("checkpoint_ignored", device=self.id, reason="unexpected content")
            return None
        return position

    def _since_or_now(self) -> float:
        return self._since if self._since is not None else time.time()

    # -- state -----------------------------------------------------------------------------

    def _refresh_due(self) -> bool:
        interval = self._config.refresh_interval
        return interval > 0 and time.monotonic() - self._refreshed_at >= interval

    async def _baseline(self) -> StateUpdate:
        """Read every status endpoint this device and account allow, merged into one update."""
        values: dict[str, Any] = {}
        readers = (
            ("switches", self._switches),
            ("io", self._io),
            ("call", self._calls),
            ("phone", self._phone),
        )
        for name, read in readers:
            try:
                update = await read()
            except norm.ApiError as exc:
                log.debug("status_unavailable", part=name, reason=str(exc))
                continue
            values.update(update.values)
        self._refreshed_at = time.monotonic()
        return StateUpdate(values=values)

    @staticmethod
    async def _emit_all(emit: Emit, updates: tuple[StateUpdate, ...]) -> None:
        for update in updates:
            await emit(update)

    async def _read_switches(self) -> tuple[StateUpdate, ...]:
        try:
            return (await self._switches(),)
        except norm.ApiError as exc:
            log.debug("status_unavailable", part="switches", reason=str(exc))
            return ()

    async def _switches(self) -> StateUpdate:
        caps = await self._get("/api/switch/caps")
        return norm.parse_switches(caps, await self._get("/api/switch/status"))

    async def _io(self) -> StateUpdate:
        caps = await self._get("/api/io/caps")
        return norm.parse_io(caps, await self._get("/api/io/status"))

    async def _calls(self) -> StateUpdate:
        return norm.parse_calls(await self._get("/api/call/status"))

    async def _phone(self) -> StateUpdate:
        return norm.parse_phone(await self._get("/api/phone/status"))

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, command: CheckedCommand) -> Outcome:
        try:
            return await self._execute(command)
        except norm.ApiError as exc:
            raise norm.command_error(exc, command.name) from None

    async def _execute(self, command: CheckedCommand) -> Outcome:
        args = command.args
        if isinstance(args, OpenDoorArgs):
            await self._get("/api/switch/ctrl", {"switch": args.door, "action": "trigger"})
            return Outcome(data={"door": args.door})
        if isinstance(args, SetSwitchArgs):
            return await self._set_switch(args)
        if isinstance(args, SetOutputArgs):
            action = "on" if args.on else "off"
            await self._get("/api/io/ctrl", {"port": args.port, "action": action})
            return Outcome(data={"port": args.port, "on": args.on})
        if isinstance(args, DialArgs):
            self._dialing += 1  # its events may arrive before its answer does
            try:
                result = await self._get("/api/call/dial", {"number": args.number})
            finally:
                self._dialing -= 1
            session = result.get("session")
            self._dialed.append(session)
            return Outcome(data={"session": session})
        if isinstance(args, SnapshotArgs):
            return await self._snapshot(args)
        if command.name in {"answer", "hangup"}:
            return await self._call_command(command.name)
        if command.name == "refresh":
            return Outcome(updates=(await self._baseline(),))
        path = {"audio_test": "/api/audio/test", "reboot": "/api/system/restart"}.get(command.name)
        if path is None:
            raise CommandError("unsupported", f"this device cannot {command.name}")
        await self._get(path)
        return Outcome()

    async def _set_switch(self, args: SetSwitchArgs) -> Outcome:
        action = args.resolved_action
        advanced = action not in {"on", "off", "trigger"} or args.timeout is not None
        if advanced and self._firmware and self._firmware[:2] < ADVANCED_SWITCH_FIRMWARE:
            version = ".".join(map(str, self._firmware))
            raise CommandError(
                "unsupported",
                f"firmware {version} knows only on, off and trigger without a timeout (2.36+)",
            )
        params: dict[str, Any] = {"switch": args.switch, "action": action}
        if args.timeout is not None:
            params["timeout"] = min(max(1, math.ceil(args.timeout)), 86_400)
        await self._get("/api/switch/ctrl", params)
        updates: tuple[StateUpdate, ...] = ()
        if action not in {"on", "off", "trigger"}:  # locked/held are in no event: read them
            updates = await self._read_switches()
        return Outcome(data={"switch": args.switch, "action": action}, updates=updates)

    async def _call_command(self, name: str) -> Outcome:
        sessions = (await self._get("/api/call/status")).get("sessions")
        calls = [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []
        if name == "answer":
            calls = [
                s for s in calls if s.get("direction") == "incoming" and s.get("state") == "ringing"
            ]
        if not calls:
            what = "no incoming call is ringing" if name == "answer" else "no call in progress"
            raise CommandError("no_call", what)
        session = calls[0].get("session")
        await self._get(f"/api/call/{name}", {"session": session})
        return Outcome(data={"session": session})

    async def _snapshot(self, args: SnapshotArgs) -> Outcome:
        params: dict[str, Any] = {
            "width": args.width or self._config.snapshot_width,
            "height": args.height or self._config.snapshot_height,
        }
        if args.time is not None:
            params["time"] = max(args.time, -30)
        body = await self._http.request(
            "GET", "/api/camera/snapshot", params=params, max_bytes=MAX_IMAGE
        )
        if body.startswith(b"\xff\xd8"):
            return Outcome(image=body)
        norm.unwrap(
            self._http.decode_json(body, "GET /api/camera/snapshot", lenient=True),
            "camera/snapshot",
        )
        raise DeviceProtocolError("camera/snapshot: the reply is not a JPEG", device=self.id)

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._config.id

    async def _get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        measure: bool = True,
    ) -> dict[str, Any]:
        """GET a 2N function and return its ``result``; vendor refusals raise ``ApiError``."""
        reply = await self._http.get_json(
            path, params=params, timeout=timeout, measure=measure, lenient=True
        )
        try:
            return norm.unwrap(reply, path.removeprefix("/api/"))
        except norm.ApiError as exc:
            if exc.number in {8, 9}:  # wrong scheme or missing authorisation: credentials
                raise AuthError(f"GET {path}: {exc}", device=self.id) from None
            raise

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with anyio.move_on_after(1):
                try:
                    await self._get("/api/log/unsubscribe", {"id": channel})
                except Exception as exc:
                    log.debug("unsubscribe_failed", reason=str(exc))
        self._cursor.close()
        await self._http.aclose()


def _include(window: float) -> str:
    return "new" if window <= 0 else f"-{math.ceil(window)}"
