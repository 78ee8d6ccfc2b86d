"""Driver for Grandstream GXV IP cameras and video encoders ("Video Surveillance HTTP API"
v1.0.0.54).

The API has no event channel (``../shared/research/seed-grandstream.md`` §4): the driver polls
``/goform/<module>?cmd=get`` and diffs, one request at a time (the HTTP/1.0 server answers 503
when busy, §6.2). Two cadences:

- *status*, every ``poll_interval`` and at once on a push (the camera's "alarm HTTP server"):
  ``device?cmd=get`` (alarm inputs and outputs) and ``motiondetect?cmd=get_md_statu`` (motion
  per channel), turned into events by the shared transition step
  (:mod:`bridge.normalize.transitions`);
- *slow*, every ``slow_interval``: ``sdrecord?cmd=get`` (recording, on models with storage) and
  ``systeminfo?cmd=get`` (uptime: a reboot; IR-cut day/night as ``vendor.DayNight``).

A read answered 503 is tried again after a short backoff (``READ_TRIES`` in all), then the run
ends; a command answered 503 is reported, never repeated. Parameter names the manual spells
unreliably are learnt at start from the device's own ``cmd=get`` replies, and ``set`` requests
use the device's spelling. Normalization is pure and lives in
:mod:`bridge.normalize.grandstream`.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog
from pydantic import Field

from bridge.backoff import Backoff
from bridge.commands import MotionDetectionArgs, PtzArgs, SetOutputArgs, SnapshotArgs
from bridge.config import Interval, PolledDeviceConfig
from bridge.drivers.base import Outcome
from bridge.drivers.polling import Cadence, ClockCheckpoint, PolledState, Poller
from bridge.errors import CommandError, DeviceProtocolError
from bridge.http import MAX_IMAGE
from bridge.model import Event, StateUpdate, utcnow
from bridge.normalize import grandstream as norm
from bridge.normalize.coerce import redact
from bridge.normalize.uptime import Clock, rebooted

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bridge.commands import CheckedCommand
    from bridge.drivers.base import DriverContext, Emit
    from bridge.normalize.text import TextReply

log = structlog.get_logger("bridge.driver")

READ_TRIES = 3  # a read answered 503 (busy): tried this often inside one poll, then it fails
READ_BACKOFF = 0.2  # seconds: the first retry's ceiling (capped exponential, full jitter)
# PtzArgs.action -> ptzcontrol (§3.11: 0 stop, 1 up, 2 down, 3 left, 4 right, 9/10 zoom,
# 15 go to preset)
PTZ_CONTROLS = {
    "stop": 0,
    "up": 1,
    "down": 2,
    "left": 3,
    "right": 4,
    "zoom_in": 9,
    "zoom_out": 10,
    "home": 15,
}
PTZ_MAX_SPEED = 63


class GrandstreamConfig(PolledDeviceConfig):
    driver: Literal["grandstream"]
    auth: Literal["auto", "basic"] = Field(
        "basic",
        description="basic: credentials on every request, as the manual says (§2.2); auto: "
        "answer the device's challenge",
    )
    slow_interval: Interval = Field(
        10.0, description="how often recording, the uptime (reboots) and day/night are read"
    )
    ptz_home_preset: int = Field(
        1, ge=0, le=127, description="the Pelco preset that ptz action 'home' goes to"
    )


class GrandstreamDriver:
    commands = frozenset(
        {
            "snapshot",
            "ptz",
            "motion_detection",
            "set_output",
            "start_recording",
            "stop_recording",
            "refresh",
            "reboot",
        }
    )
    #: The event types it publishes (besides ``vendor.*``): what Home Assistant discovery offers.
    events = frozenset(
        {
            "device.started",
            "input.changed",
            "output.changed",
            "motion.started",
            "motion.stopped",
            "recording.started",
            "recording.stopped",
        }
    )

    def __init__(self, config: GrandstreamConfig, context: DriverContext) -> None:
        self._config = config
        self._context = context
        self._http = context.http(config, serial=True)  # one request at a time (§6.2)
        self._sequence = context.sequence()
        self._boot_file = ClockCheckpoint(context.checkpoint("grandstream"))
        self._clock: Clock | None = None
        self._boot = 0
        self._state = PolledState(config.id, self._sequence)
        self._features = norm.Features("", ("0",), ptz=False, storage=False)
        self._keys: dict[str, str] = {}  # canonical name -> the device's spelling
        self._rng = random.Random()

    @property
    def id(self) -> str:
        return self._config.id

    # -- the run -------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        system = (await self._get("systeminfo")).merged()
        started = self._read_clock(system)
        model = norm.value(system, "productmode") or ""
        io_reply = await self._get("device")
        self._learn(io_reply, "alarmout.type", "alarmin.type")
        md_reply = await self._get("motiondetect")
        self._learn(md_reply, "md.active.enable")
        motion_reply = await self._get("motiondetect", cmd="get_md_statu")
        channels = tuple(sorted(norm.channel_groups(motion_reply), key=int))
        storage = await self._read_storage()
        self._features = norm.Features(model, channels, ptz=norm.has_ptz(model), storage=storage)
        if self._features.ptz:
            self._learn(await self._get("ptz"), "ptzcontrol", "ptzparam")
        io = norm.parse_io(io_reply)
        state: dict[str, Any] = {
            **io,
            **await self._channel_state(norm.parse_motion(motion_reply)),
            "motion_detection": norm.parse_md_enabled(md_reply),
            "day_night": norm.parse_day_night(system),
        }
        self._state.values = state
        info = norm.parse_info(
            system, self._features, commands=self._supported(), inputs=len(io["inputs"])
        )
        # Only now, with every status module answering, is the device online.
        await emit(info)
        await emit(StateUpdate(values=state))
        if started is not None:
            await emit(started)
        poller = Poller(
            [
                Cadence(
                    "status",
                    self._config.poll_interval,
                    lambda: self._poll_status(emit),
                    on_wake=True,
                ),
                Cadence("slow", self._config.slow_interval, lambda: self._poll_slow(emit)),
            ],
            self._context.wakeup,
            rng=self._rng,
        )
        await poller.run()

    def _supported(self) -> list[str]:
        """The commands this model has (``info.commands``): no ``ptz`` without PTZ, no
        recording without storage."""
        missing = set()
        if not self._features.ptz:
            missing.add("ptz")
        if not self._features.storage:
            missing |= {"start_recording", "stop_recording"}
        return sorted(self.commands - missing)

    def _learn(self, reply: TextReply, *names: str) -> None:
        for name in names:
            found = norm.spelling(reply.groups, name)
            if found is not None:
                self._keys[norm.canonical(name)] = found

    def _key(self, name: str) -> str:
        """The device's spelling of ``name`` where it was learnt, else the manual's."""
        return self._keys.get(norm.canonical(name), name)

    async def _read_storage(self) -> bool:
        """True when ``sdrecord`` answers with a ``state_record`` other than 4 (no storage)."""
        try:
            reply = await self._get("sdrecord")
        except DeviceProtocolError as exc:
            if exc.code == "http_404" or isinstance(exc, norm.GoformError):
                return False
            raise
        self._learn(reply, "record_start", "start_record")
        states = norm.parse_recording(reply).values()
        return any(s is not None and s != norm.NO_STORAGE for s in states)

    async def _channel_state(self, motion: dict[str, bool]) -> dict[str, Any]:
        recording: dict[str, int | None] = {}
        if self._features.storage:
            recording = norm.parse_recording(await self._get("sdrecord"))
        return norm.channel_state(motion, recording, multi=len(self._features.channels) > 1)

    async def _read_status(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Inputs, outputs and motion, and the replies they were read from (``raw``)."""
        io_reply = await self._get("device")
        motion_reply = await self._get("motiondetect", cmd="get_md_statu")
        values: dict[str, Any] = dict(norm.parse_io(io_reply))
        motion = norm.parse_motion(motion_reply)
        previous = self._state.values or {}
        if len(self._features.channels) > 1:
            channels = {
                c: {**previous.get("channels", {}).get(c, {}), "motion": m}
                for c, m in motion.items()
            }
            values["channels"] = channels
        else:
            values["motion"] = motion.get("0", False)
        raw = {"device": _raw(io_reply), "motiondetect": _raw(motion_reply)}
        return values, raw

    async def _poll_status(self, emit: Emit) -> None:
        await self._context.room()
        await self._apply(*await self._read_status(), emit)

    async def _poll_slow(self, emit: Emit) -> None:
        await self._context.room()
        system = (await self._get("systeminfo")).merged()
        started = self._read_clock(system)
        if started is not None:
            await emit(started)
        values: dict[str, Any] = {"day_night": norm.parse_day_night(system)}
        raw: dict[str, Any] = {"systeminfo": redact(system)}
        if self._features.storage:
            reply = await self._get("sdrecord")
            raw["sdrecord"] = _raw(reply)
            recorded = norm.channel_state(
                {}, norm.parse_recording(reply), multi=len(self._features.channels) > 1
            )
            if "channels" in recorded:
                previous = (self._state.values or {}).get("channels", {})
                values["channels"] = {
                    c: {**previous.get(c, {}), **entry} for c, entry in recorded["channels"].items()
                }
            else:
                values.update(recorded)
        await self._apply(values, raw, emit)

    async def _apply(self, values: dict[str, Any], raw: dict[str, Any], emit: Emit) -> None:
        """Diff ``values`` against the last reading: events (``raw``: the replies read, and
        day/night as ``vendor.DayNight``), then the state."""

        def day_night(
            previous: dict[str, Any] | None, current: dict[str, Any]
        ) -> list[tuple[str, dict[str, Any]]]:
            before, after = (previous or {}).get("day_night"), current.get("day_night")
            if before is None or after is None or before == after:
                return []
            return [("vendor.DayNight", {"mode": after, "raw": raw.get("systeminfo", {})})]

        await self._state.apply(
            values,
            emit,
            boot=self._boot,
            details=lambda change: {**change.data, "raw": raw},
            extra=day_night,
        )

    # -- reboots ---------------------------------------------------------------------------

    def _read_clock(self, system: dict[str, str]) -> Event | None:
        """A ``device.started`` when ``systemrun`` says the device rebooted since the last
        reading, also one made before a bridge restart (checkpointed). The API gives no device
        clock, so the boot epoch is the bridge's time minus the uptime."""
        uptime = norm.parse_uptime(system)
        clock = Clock(int(time.time()), uptime)
        previous = self._clock
        if previous is None and (previous := self._boot_file.load()) is not None:
            self._boot = previous.boot  # the same boot as before the restart: the same ids
        self._clock = clock
        self._boot_file.save(clock)
        if previous is None or rebooted(previous, clock):
            self._boot = clock.boot
        if not rebooted(previous, clock):
            return None
        log.info("device_rebooted", uptime=uptime)
        now = utcnow()
        return self._state.event(
            "device.started",
            {"uptime": uptime, "raw": {"systemrun": uptime}},
            boot=self._boot,
            time=now - timedelta(seconds=uptime),
            sequence="start",
        )

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, command: CheckedCommand) -> Outcome:
        try:
            return await self._execute(command)
        except norm.GoformError as exc:
            code = {"no_privilege": "forbidden", "invalid": "invalid_args"}.get(
                exc.kind, "device_error"
            )
            raise CommandError(code, f"{command.name}: {exc.word}") from None
        except DeviceProtocolError as exc:
            if exc.code == "http_503":
                raise CommandError(
                    "device_error", f"{command.name}: the device is busy (HTTP 503); not repeated"
                ) from None
            raise

    async def _execute(self, command: CheckedCommand) -> Outcome:  # noqa: C901 - a dispatch
        args = command.args
        if isinstance(args, SnapshotArgs):
            return await self._snapshot(args)
        if isinstance(args, PtzArgs):
            return await self._ptz(args)
        if isinstance(args, MotionDetectionArgs):
            needs_reboot = False
            multi = len(self._features.channels) > 1
            for channel in self._features.channels:
                params = {self._key("md.active.enable"): int(args.enabled)}
                if multi:
                    params[self._key("md.channel.index")] = int(channel)
                needs_reboot |= await self._set("motiondetect", params)
            return self._changed({"motion_detection": args.enabled}, needs_reboot)
        if isinstance(args, SetOutputArgs):
            ports = (self._state.values or {}).get("outputs", {})
            if str(args.port) not in ports:
                raise CommandError("invalid_args", f"port: this device has outputs {_list(ports)}")
            if args.on:
                raise CommandError(
                    "unsupported",
                    "set_output: the API can only stop an alarm output (on: false)",
                )
            needs_reboot = await self._set("alarmio", {"alarmout.stop": "yes"})
            self._context.wakeup.set()  # read the output at once, not at the next tick
            return self._changed({}, needs_reboot)
        if command.name in {"start_recording", "stop_recording"}:
            if not self._features.storage:
                raise CommandError("unsupported", f"{command.name}: this device has no storage")
            return await self._record(start=command.name == "start_recording")
        if command.name == "refresh":
            self._context.wakeup.set()  # the poller publishes what changed, as events too
            values, _ = await self._read_status()
            return Outcome(updates=(StateUpdate(values=values),))
        if command.name == "reboot":
            await self._reboot()
            return Outcome()
        raise CommandError("unsupported", f"this device cannot {command.name}")

    def _changed(self, values: dict[str, Any], needs_reboot: bool) -> Outcome:
        if values:
            self._state.values = {**(self._state.values or {}), **values}
        data = {"needs_reboot": True} if needs_reboot else {}
        updates = (StateUpdate(values=values),) if values else ()
        return Outcome(data=data, updates=updates)

    async def _snapshot(self, args: SnapshotArgs) -> Outcome:
        """``/snapshot/view<N>.jpg`` (§3.21): view0-3 are the channels' primary streams."""
        if args.width is not None or args.height is not None or args.time is not None:
            raise CommandError(
                "invalid_args", "snapshot: this device takes no width, height or time"
            )
        channel = args.channel if args.channel is not None else int(self._features.channels[0])
        if str(channel) not in self._features.channels:
            raise CommandError(
                "invalid_args",
                f"channel: this device has channels {_list(self._features.channels)}",
            )
        path = f"/snapshot/view{channel}.jpg"
        body = await self._http.request("GET", path, max_bytes=MAX_IMAGE)
        if not (body.startswith(b"\xff\xd8") and body.rstrip().endswith(b"\xff\xd9")):
            raise CommandError("device_error", f"snapshot: {path} is not a JPEG")
        return Outcome(data={"channel": channel}, image=body)

    async def _ptz(self, args: PtzArgs) -> Outcome:
        """``ptz?cmd=set&ptzcontrol=<c>&ptzparam=<speed or preset>`` (§3.11, §5.4)."""
        if not self._features.ptz:
            raise CommandError(
                "unsupported", f"ptz: {self._features.model or 'this model'} has no PTZ"
            )
        control = PTZ_CONTROLS[args.action]
        if args.action == "home":
            param = self._config.ptz_home_preset
        elif args.action == "stop":
            param = 0
        else:
            param = round(args.speed * PTZ_MAX_SPEED / 10)
        params = {self._key("ptzcontrol"): control, self._key("ptzparam"): param}
        needs_reboot = await self._set("ptz", params)
        outcome = self._changed({}, needs_reboot)
        return Outcome(data={"ptzcontrol": control, "ptzparam": param, **outcome.data})

    async def _record(self, *, start: bool) -> Outcome:
        """``sdrecord?cmd=set&channel=0&record_start=1|0`` (§3.28), one request: a command is
        never repeated, not even under another name. The manual's table spells the key
        ``start_record``; the device's own spelling is used when ``cmd=get`` showed one at
        start, else ``record_start``."""
        name = self._keys.get("record.start") or self._keys.get("start.record") or "record_start"
        needs_reboot = await self._set("sdrecord", {"channel": 0, name: int(start)})
        self._context.wakeup.set()
        return self._changed({}, needs_reboot)

    async def _reboot(self) -> None:
        """``maintenance?cmd=set&restart=yes`` (§5.1); the device may drop the connection
        before it answers, and an empty reply is a reboot under way too."""
        text = await self._http.get_text(
            "/goform/maintenance", params={"cmd": "set", "restart": "yes"}
        )
        if text.strip():
            norm.parse_set(text, "maintenance")

    # -- HTTP --------------------------------------------------------------------------------

    async def _get(self, module: str, *, cmd: str = "get") -> TextReply:
        """One ``cmd=get`` read; a 503 (busy) is tried again after a backoff, ``READ_TRIES``
        times in all, then raised (the run ends; the supervisor backs off)."""
        what = f"{module}?cmd={cmd}"
        backoff = Backoff(base=READ_BACKOFF, cap=READ_BACKOFF * 4, floor=READ_BACKOFF / 2)
        for attempt in range(1, READ_TRIES + 1):
            try:
                text = await self._http.get_text(f"/goform/{module}", params={"cmd": cmd})
            except DeviceProtocolError as exc:
                if exc.code != "http_503" or attempt == READ_TRIES:
                    raise
                log.debug("device_busy", request=what, attempt=attempt)
                await anyio.sleep(backoff.next_delay())
                continue
            return norm.parse_get(text, what)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _set(self, module: str, params: dict[str, Any]) -> bool:
        """One ``cmd=set`` (never repeated); True when the device needs a reboot for it."""
        text = await self._http.get_text(f"/goform/{module}", params={"cmd": "set", **params})
        return norm.parse_set(text, f"{module}?cmd=set")

    async def aclose(self) -> None:
        self._sequence.close()
        self._boot_file.close()
        await self._http.aclose()


def _raw(reply: TextReply) -> list[dict[str, str]]:
    return [redact(group) for group in reply.groups]


def _list(items: Iterable[object]) -> str:
    return ", ".join(str(i) for i in items)
