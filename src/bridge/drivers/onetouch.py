"""Driver for Onetouch intercoms (HTTP API manual v1.0).

The device has no event channel (``../shared/research/seed-onetouch.md`` §3.1): the driver
polls and diffs. Three cadences, one request at a time:

- *status*, every ``poll_interval`` and at once on a push: ``relay/status``, ``input/status``
  and ``call/status``, turned into events by the shared transition step
  (:mod:`bridge.normalize.transitions`);
- *logs*, every ``log_interval``: new records of ``doorlog/get`` and ``callog/get`` by record
  ``ID`` (access, cards, calls);
- *slow*, every ``slow_interval`` (30 s): ``sip/status`` and ``system/status`` (a reboot: the
  uptime went back).

Log positions are checkpointed only past events the broker acknowledged, so a bridge restart
publishes what was written meanwhile once, and nothing twice (bounded by ``replay_max_age``).
A device reboot keeps its logs and their IDs, so it changes nothing there.

Normalization is pure and lives in :mod:`bridge.normalize.onetouch`.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import Field, field_validator

from bridge.commands import DialArgs, OpenDoorArgs
from bridge.config import Duration, Interval, PolledDeviceConfig
from bridge.drivers.base import Outcome
from bridge.drivers.polling import Cadence, ClockCheckpoint, PolledState, Poller
from bridge.errors import CommandError, DeviceProtocolError
from bridge.model import Event, StateUpdate, is_event_type, utcnow
from bridge.normalize import onetouch as norm
from bridge.normalize.coerce import redact
from bridge.normalize.uptime import Clock, rebooted

if TYPE_CHECKING:
    from bridge.checkpoint import Cursor
    from bridge.commands import CheckedCommand
    from bridge.drivers.base import DriverContext, Emit

log = structlog.get_logger("bridge.driver")

CALL_LOG_PATHS = ("callog", "calllog")  # the manual's sections vs its function table (§2)
FORBIDDEN = "HTTP 403: the HTTP API is disabled on the device (web UI: Intercom > HTTP API)"


class OnetouchConfig(PolledDeviceConfig):
    driver: Literal["onetouch"]
    request_style: Literal["get", "post"] = Field(
        "get",
        description="GET /api/<target>/<action>?... or POST /api/ with a JSON envelope (§1.2-1.3)",
    )
    log_interval: Interval = Field(2.0, description="how often the door and call logs are read")
    slow_interval: Interval = Field(
        30.0, description="how often SIP registration and the uptime (reboots) are read"
    )
    replay_max_age: Duration = Field(
        300.0, description="after a restart, publish log records at most this old"
    )
    timezone: str = Field(
        "UTC", description="the device's time zone (IANA name): its log times carry none"
    )
    trig_mode: Literal[0, 1] = Field(0, description="relay/trig mode: 0 auto close, 1 manual")
    trig_level: Literal[0, 1] = Field(0, description="relay/trig level: 0 NO-COM, 1 NC-COM")
    trig_delay: int = Field(
        0, ge=0, le=65535, description="relay/trig delay in s (0: the relay's own hold delay)"
    )
    display_name: str = Field(
        "bridge", max_length=64, description="DisplayName sent with dial (shown to the callee)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as Europe/Prague"
            ) from None
        return value


class OnetouchDriver:
    commands = frozenset({"open_door", "dial", "hangup", "refresh", "reboot"})
    #: The event types it publishes (besides ``vendor.*``): what Home Assistant discovery offers.
    events = frozenset(
        {
            "device.started",
            "switch.changed",
            "input.changed",
            "call.state_changed",
            "sip.registration_changed",
            "card.read",
            "access.granted",
            "access.denied",
        }
    )

    def __init__(self, config: OnetouchConfig, context: DriverContext) -> None:
        self._config = config
        self._context = context
        self._http = context.http(
            config,
            serial=True,  # an embedded web server: one request at a time (§6.1)
            forbidden=FORBIDDEN,
        )
        self._zone = ZoneInfo(config.timezone)
        self._sequence = context.sequence()
        self._state = PolledState(config.id, self._sequence)
        self._boot_file = ClockCheckpoint(context.checkpoint("onetouch"))
        self._logs: dict[str, Cursor] = {
            "doorlog": context.cursor("onetouch.doorlog"),
            "callog": context.cursor("onetouch.callog"),
        }
        self._call_log_path: str | None = CALL_LOG_PATHS[0]
        self._clock: Clock | None = None
        self._triggers: dict[str, int] = {}
        self._rng = random.Random()

    @property
    def id(self) -> str:
        return self._config.id

    # -- the run -------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        info = norm.parse_info(await self._call("system", "info"), commands=sorted(self.commands))
        started = await self._read_clock()
        self._triggers = norm.input_triggers(await self._call("input", "get"))
        names = await self._relay_names()
        state, _ = await self._read_status()
        state["sip"] = norm.parse_sip(await self._call("sip", "status"))
        self._state.values = state
        # Only now, with every status endpoint answering, is the device online.
        await emit(info.model_copy(update={"capabilities": {**info.capabilities, **names}}))
        await emit(StateUpdate(values=state))
        if started is not None:
            await emit(started)
        for log_name in self._logs:
            await self._read_log(log_name, emit, first=True)
        poller = Poller(
            [
                Cadence(
                    "status",
                    self._config.poll_interval,
                    lambda: self._poll_status(emit),
                    on_wake=True,
                ),
                Cadence("logs", self._config.log_interval, lambda: self._poll_logs(emit)),
                Cadence("slow", self._config.slow_interval, lambda: self._poll_slow(emit)),
            ],
            self._context.wakeup,
            rng=self._rng,
        )
        await poller.run()

    async def _relay_names(self) -> dict[str, Any]:
        try:
            names = norm.relay_names(await self._call("relay", "get"))
        except norm.ApiError as exc:  # an account without config access still polls
            log.debug("relay_names_unavailable", reason=str(exc))
            return {}
        return {"switch_names": names} if names else {}

    async def _read_status(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fast part of the state, and the replies it was read from (an event's ``raw``)."""
        raw = {
            "relay": await self._call("relay", "status"),
            "input": await self._call("input", "status"),
            "call": await self._call("call", "status"),
        }
        state = {
            "switches": norm.parse_relays(raw["relay"]),
            "inputs": norm.parse_inputs(raw["input"], self._triggers),
            "call": norm.parse_call(raw["call"]),
        }
        return state, raw

    async def _poll_status(self, emit: Emit) -> None:
        await self._context.room()
        await self._apply(*await self._read_status(), emit)

    async def _poll_slow(self, emit: Emit) -> None:
        started = await self._read_clock()
        if started is not None:  # rebooted while we polled: read what a reboot resets
            await emit(started)
            self._triggers = norm.input_triggers(await self._call("input", "get"))
        sip = await self._call("sip", "status")
        await self._apply({"sip": norm.parse_sip(sip)}, {"sip": redact(sip)}, emit)

    async def _apply(self, values: dict[str, Any], raw: dict[str, Any], emit: Emit) -> None:
        """Diff ``values`` against the last reading: events (``raw``: the replies read), then
        the state."""
        await self._state.apply(
            values, emit, boot=self._boot, details=lambda change: {**change.data, "raw": raw}
        )

    @property
    def _boot(self) -> int:
        return self._clock.boot if self._clock is not None else 0

    # -- reboots ---------------------------------------------------------------------------

    async def _read_clock(self) -> Event | None:
        """Read ``system/status``; a ``device.started`` when the device rebooted since the last
        reading, also one made before a bridge restart (its boot epoch is checkpointed)."""
        system_time, uptime = norm.parse_clock(await self._call("system", "status"))
        clock = Clock(system_time, uptime)
        previous = self._clock or self._boot_file.load()
        self._clock = clock
        self._boot_file.save(clock)
        if not rebooted(previous, clock):
            return None
        log.info("device_rebooted", uptime=uptime)
        self._http.forget_session()
        now = utcnow()
        return self._state.event(
            "device.started",
            {"uptime": uptime, "raw": {"SystemTime": system_time, "UpTime": uptime}},
            boot=clock.boot,
            time=now - timedelta(seconds=uptime),
            sequence="start",
        )

    # -- the logs ----------------------------------------------------------------------------

    async def _poll_logs(self, emit: Emit) -> None:
        await self._context.room()
        for log_name in self._logs:
            await self._read_log(log_name, emit, first=False)

    async def _read_log(self, log_name: str, emit: Emit, *, first: bool) -> None:
        """Publish the records after the checkpointed ID. The first read of a run after no
        checkpoint at all is a baseline (nothing published); after a restart, records older
        than ``replay_max_age`` are skipped."""
        data = await self._log_data(log_name)
        if data is None:
            return
        records, malformed = norm.parse_log(data, f"{log_name}/get")
        for raw, reason in malformed:
            self._context.reject(raw, reason)
        cursor = self._logs[log_name]
        saved = cursor.saved if not first else cursor.load()
        newest = records[-1].id if records else 0
        last = _saved_id(saved)
        if last is None:  # never read: start from here
            cursor.reset({"id": newest, "saved": time.time()})
            return
        if newest < last:  # cleared, or a factory reset: its IDs start again
            log.warning("log_restarted", log=log_name, last_id=last, newest_id=newest)
            cursor.reset({"id": newest, "saved": time.time()})
            return
        # Ages by the device's own clock: the log's times are the device's too.
        now = datetime.fromtimestamp(self._clock.system_time, UTC) if self._clock else utcnow()
        oldest = now - timedelta(seconds=self._config.replay_max_age)
        for record in records:
            if record.id <= last:
                continue
            await self._publish_record(log_name, record, emit, oldest=oldest if first else None)
            last = record.id

    async def _publish_record(
        self, log_name: str, record: norm.LogRecord, emit: Emit, *, oldest: datetime | None
    ) -> None:
        received = utcnow()
        when = norm.record_time(record, self._zone, received)
        cursor = self._logs[log_name]
        position = {"id": record.id, "saved": time.time()}
        if oldest is not None and when < oldest:
            log.debug("record_too_old", log=log_name, id=record.id)
            cursor.advance(position)
            return
        found = norm.door_events(record) if log_name == "doorlog" else norm.call_events(record)
        events = [(t, d) for t, d in found if is_event_type(t)]
        if not events:
            cursor.advance(position)
            return
        for index, (type_, data) in enumerate(events):
            sequence = f"{record.id}.{index}"  # the log's IDs outlive device reboots
            event = self._state.event(type_, data, boot=log_name, time=when, sequence=sequence)
            # The log keeps the record: its position moves once the broker has the event.
            await emit(event, on_ack=cursor.stage(position))

    async def _log_data(self, log_name: str) -> dict[str, Any] | None:
        if log_name == "doorlog":
            return await self._call("doorlog", "get")
        if self._call_log_path is None:
            return None
        try:
            return await self._call(self._call_log_path, "get")
        except norm.ApiError as exc:
            if not exc.unsupported:
                raise
        # The manual spells it callog and calllog: try the other once, then keep what works.
        other = next(p for p in CALL_LOG_PATHS if p != self._call_log_path)
        try:
            data = await self._call(other, "get")
        except norm.ApiError as exc:
            if not exc.unsupported:
                raise
            log.warning("call_log_unavailable", tried=list(CALL_LOG_PATHS))
            self._call_log_path = None
            return None
        log.info("call_log_path", path=other)
        self._call_log_path = other
        return data

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, command: CheckedCommand) -> Outcome:
        try:
            return await self._execute(command)
        except norm.ApiError as exc:
            raise CommandError("device_error", f"{command.name}: {exc.message}") from None

    async def _execute(self, command: CheckedCommand) -> Outcome:
        args = command.args
        if isinstance(args, OpenDoorArgs):
            if args.door > len(norm.LETTERS):
                raise CommandError("invalid_args", "door: this device has doors 1 to 3")
            params = {
                "mode": self._config.trig_mode,
                "num": args.door,
                "level": self._config.trig_level,
                "delay": self._config.trig_delay,
            }
            await self._call("relay", "trig", params)
            self._context.wakeup.set()  # read the relay at once, not at the next tick
            return Outcome(data={"door": args.door})
        if isinstance(args, DialArgs):
            dial = {"Phone": args.number, "DisplayName": self._config.display_name}
            await self._call("call", "dial", dial)
            self._context.wakeup.set()
            return Outcome(data={"number": args.number})
        if command.name == "hangup":
            await self._call("call", "hangup")
            self._context.wakeup.set()
            return Outcome()
        if command.name == "refresh":
            self._context.wakeup.set()  # the poller publishes what changed, as events too
            state, _ = await self._read_status()
            return Outcome(updates=(StateUpdate(values=state),))
        if command.name == "reboot":
            await self._reboot()
            return Outcome()
        raise CommandError("unsupported", f"this device cannot {command.name}")

    async def _reboot(self) -> None:
        """``system/reboot`` (§5.5): the manual's reply has a trailing comma and a wrong
        ``action``; an HTTP 200 whose body is not even that is still a reboot under way."""
        try:
            await self._call("system", "reboot")
        except DeviceProtocolError as exc:
            if isinstance(exc, norm.ApiError):
                raise
            log.info("reboot_reply_unreadable", reason=str(exc))

    # -- HTTP --------------------------------------------------------------------------------

    async def _call(
        self, target: str, action: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One API function in the configured request style; its ``data``. Never repeated:
        a command reaches the device once (a door must not open twice)."""
        what = f"{target}/{action}"
        try:
            if self._config.request_style == "post":
                envelope: dict[str, Any] = {"target": target, "action": action}
                if params:
                    envelope["data"] = params
                reply = await self._http.post_json("/api/", envelope, lenient=True)
            else:
                reply = await self._http.get_json(f"/api/{what}", params=params, lenient=True)
        except DeviceProtocolError as exc:
            if exc.code == "http_404":  # an unknown path on some firmware: as the manual's -1
                raise norm.ApiError(what, "HTTP 404", "unsupport action") from None
            raise
        return norm.unwrap(reply, what)

    async def aclose(self) -> None:
        for cursor in self._logs.values():
            cursor.close()
        self._sequence.close()
        self._boot_file.close()
        await self._http.aclose()


def _saved_id(saved: dict[str, Any] | None) -> int | None:
    value = saved.get("id") if saved else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
