"""Driver for the generic JSON device: a long-poll event channel and JSON commands.

It is the reference driver: the demo and the core's integration tests run it against
``bridge.simulators.generic``. Vendor drivers follow the same shape.

Events are read by position (``after``: the last ``seq`` read, within one device boot). The
position is checkpointed in ``<state_dir>/<device>.generic.json`` as ``{"boot", "seq"}`` by a
:class:`~bridge.checkpoint.Cursor`, so it moves only past events the broker acknowledged and a
restarted bridge resumes at the first one it may not have (or at the start of the boot when the
device rebooted meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import Field

from bridge.commands import SetSwitchArgs, SnapshotArgs
from bridge.config import DeviceConfig, Duration
from bridge.drivers.base import Outcome
from bridge.errors import CommandError, DeviceProtocolError
from bridge.http import MAX_IMAGE
from bridge.model import utcnow
from bridge.normalize import generic as norm

log = structlog.get_logger("bridge.driver")

if TYPE_CHECKING:
    from bridge.commands import CheckedCommand
    from bridge.drivers.base import DriverContext, Emit
    from bridge.model import StateUpdate


class GenericConfig(DeviceConfig):
    driver: Literal["generic"]
    poll_timeout: Duration = Field(20.0, description="how long one long poll may wait")


class GenericDriver:
    commands = frozenset(
        {"open_door", "set_switch", "snapshot", "refresh", "reboot", "dial", "hangup"}
    )
    #: The event types it publishes (besides ``vendor.*``): what Home Assistant discovery offers.
    events = frozenset(
        {
            "device.started",
            "doorbell.pressed",
            "switch.changed",
            "input.changed",
            "motion.started",
            "motion.stopped",
        }
    )

    def __init__(self, config: GenericConfig, context: DriverContext) -> None:
        self._config = config
        self._http = context.http(config)
        self._reject = context.reject
        self._room = context.room
        self._cursor = context.cursor("generic")
        self._boot, self._after = self._load_position()

    def _load_position(self) -> tuple[int | None, int]:
        data = self._cursor.load()
        if data is None:
            return None, 0
        boot, seq = data.get("boot"), data.get("seq")
        if type(boot) is int and type(seq) is int:  # not bool, not anything else
            return boot, seq
        log.warning("checkpoint_ignored", device=self._config.id, reason="unexpected content")
        return None, 0

    async def run(self, emit: Emit) -> None:
        boot, info = norm.parse_info(
            await self._http.get_json("/api/info"), commands=sorted(self.commands)
        )
        if self._boot is not None and boot != self._boot:
            self._after = 0  # the device rebooted while we were away: its numbering restarted
        self._boot = boot
        state = norm.parse_state(await self._http.get_json("/api/state"))
        batch = await self._poll(timeout=0)
        # Only now, with the event channel answering, is the device online.
        await emit(info)
        await emit(state)
        while True:
            await self._deliver(batch, emit)
            await self._room()  # backpressure: the MQTT side keeps up before we read more
            batch = await self._poll(self._config.poll_timeout)

    async def _poll(self, timeout: float) -> norm.Batch:
        payload = await self._http.get_json(
            "/api/events",
            params={"after": self._after, "timeout": timeout},
            timeout=timeout + self._config.timeout,
            measure=False,
        )
        return norm.parse_batch(payload)

    async def _deliver(self, batch: norm.Batch, emit: Emit) -> None:
        if batch.boot != self._boot:
            await self._rebooted(batch.boot, emit)
            return
        for record, reason in batch.malformed:
            self._reject(record, reason)
        if batch.malformed and not batch.records:
            # Nothing to advance past: asking again would return the same records at once.
            raise DeviceProtocolError(
                "events: no record of the reply has a usable 'seq'", device=self._config.id
            )
        received = utcnow()
        for record in batch.records:
            seq = int(record["seq"])
            self._after = max(self._after, seq)
            position = {"boot": batch.boot, "seq": self._after}
            try:
                event, state = norm.normalize(
                    self._config.id, batch.boot, record, received=received
                )
            except DeviceProtocolError as exc:
                self._reject(record, str(exc))
                self._cursor.advance(position)
                continue
            # The checkpoint passes this record once the broker acknowledged its event.
            await emit(event, on_ack=self._cursor.stage(position))
            if state is not None:
                await emit(state)

    async def _rebooted(self, boot: int, emit: Emit) -> None:
        """A new boot: its numbering restarts at 1, its first record (``startup``) becomes the
        ``device.started`` event, and the state is read again."""
        self._boot, self._after = boot, 0
        await emit(await self._state())

    async def _state(self) -> StateUpdate:
        return norm.parse_state(await self._http.get_json("/api/state"))

    async def execute(self, command: CheckedCommand) -> Outcome:
        if command.name == "refresh":
            return Outcome(updates=(await self._state(),))
        if command.name == "snapshot":
            assert isinstance(command.args, SnapshotArgs)  # noqa: S101 - checked by the catalogue
            params = {k: v for k, v in command.args.model_dump().items() if v is not None}
            image = await self._http.request(
                "GET", "/api/snapshot", params=params, max_bytes=MAX_IMAGE
            )
            return Outcome(image=image)
        args = command.args.model_dump(exclude_none=True)
        if isinstance(command.args, SetSwitchArgs):
            args = {"switch": command.args.switch, "action": command.args.resolved_action}
        reply = await self._http.post_json("/api/command", {"command": command.name, "args": args})
        if not isinstance(reply, dict):
            raise DeviceProtocolError("command: reply is not an object", device=self._config.id)
        if not reply.get("ok"):
            raise CommandError("device_error", str(reply.get("error", "refused by the device")))
        data = reply.get("data")
        return Outcome(data=data if isinstance(data, dict) else {})

    async def aclose(self) -> None:
        self._cursor.close()
        await self._http.aclose()
