"""One supervised worker per device: availability, state, de-duplication, commands.

The driver talks to the device; this module decides what its failures mean. A driver raises,
the supervisor backs off (capped, jittered), flips availability only after ``offline_after``
consecutive failures (hysteresis), and logs an outage once when it starts and once when it ends.
Nothing a driver raises leaves this module: one device never takes another down.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from bridge.backoff import Backoff
from bridge.commands import (
    CheckedCommand,
    SnapshotArgs,
    check_command,
    is_allowed,
    parse_command,
    request_id,
)
from bridge.errors import AuthError, CommandError, DeviceError, DeviceProtocolError
from bridge.metrics import event_type_label
from bridge.model import (
    CommandResult,
    DeviceInfo,
    DeviceInfoPayload,
    Event,
    StateUpdate,
    format_time,
    utcnow,
)
from bridge.mqtt import render
from bridge.mqtt.discovery import reshapes
from bridge.mqtt.message import Message

if TYPE_CHECKING:
    from collections.abc import Callable

    from bridge.config import DeviceConfig
    from bridge.drivers.base import Ack, Driver
    from bridge.metrics import Metrics
    from bridge.mqtt.message import Received
    from bridge.mqtt.topics import Topics

log = structlog.get_logger("bridge.device")

SEEN_IDS = 2048  # per device: enough to cover any replay window of a reconnect
AUTH_RETRY = 60.0
STABLE_RUN = 30.0  # a channel that worked this long starts the next retry from a short delay


def merge(target: dict[str, Any], patch: dict[str, Any]) -> bool:
    """Deep-merge ``patch`` into ``target``; True when anything changed."""
    changed = False
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            changed |= merge(current, value)
        elif current != value or key not in target:
            target[key] = _copy(value)
            changed = True
    return changed


def _copy(value: Any) -> Any:  # noqa: ANN401 - JSON values
    return {k: _copy(v) for k, v in value.items()} if isinstance(value, dict) else value


def describe(exc: BaseException) -> str:
    """A one-line reason safe for logs and MQTT: our own messages never carry secrets."""
    if isinstance(exc, DeviceError):
        return str(exc)
    return f"internal error ({type(exc).__name__})"


class DeviceWorker:
    """Runs one driver forever and turns what it emits into MQTT messages."""

    def __init__(  # noqa: PLR0913 - keyword-only wiring from the composition root
        self,
        config: DeviceConfig,
        driver: Driver,
        *,
        publish: Callable[[Message], None],
        topics: Topics,
        metrics: Metrics,
        qos: int,
        backoff: Backoff | None = None,
        discover: Callable[[DeviceWorker], None] | None = None,
        snapshot_base64: bool = False,
    ) -> None:
        self.config = config
        self.driver = driver
        self._publish = publish
        self._topics = topics
        self._metrics = metrics
        self._qos = qos
        self._backoff = backoff or Backoff(base=0.5, cap=60.0)
        self._discover = discover
        self._snapshot_base64 = snapshot_base64
        self._ring = anyio.Event()  # set by a doorbell.pressed when snapshot_on_ring is on
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._command_lock = anyio.Lock()
        self.state: dict[str, Any] = {}
        self.info: DeviceInfo | None = None
        self.online: bool | None = None  # None until first known
        self.failures = 0
        self.last_error: str | None = None
        self._outage_started: float | None = None
        self._healthy_since_failure = False
        self._log = log.bind(device=config.id, driver=config.driver)
        self._up = metrics.device_up.labels(device=config.id, driver=config.driver)
        self._latency = metrics.event_latency.labels(driver=config.driver)

    @property
    def id(self) -> str:
        return self.config.id

    # -- what the driver emits ---------------------------------------------------------------

    async def emit(
        self, update: Event | StateUpdate | DeviceInfo, /, *, on_ack: Ack | None = None
    ) -> None:
        """The driver's ``Emit`` (see :class:`bridge.drivers.base.Emit`)."""
        if not self._healthy_since_failure:
            self._healthy_since_failure = True
            self._set_online()
        if isinstance(update, Event):
            self._publish_event(update, on_ack)
        elif isinstance(update, StateUpdate):
            reshaped = self._discover is not None and reshapes(self.state, update.values)
            if merge(self.state, update.values) or "updated" not in self.state:
                self.state["updated"] = format_time(utcnow())
                if self._discover and reshaped:
                    self._discover(self)
                self._publish(
                    render.retained_json(self._topics.state(self.id), self.state, qos=self._qos)
                )
        else:
            # Consumers (and Home Assistant buttons) see only what they may actually send.
            self.info = update.model_copy(update={"commands": self._allowed(update.commands)})
            self._publish_info()
            if self._discover:
                self._discover(self)

    def _publish_event(self, event: Event, on_ack: Ack | None) -> None:
        if event.id in self._seen:
            self._seen.move_to_end(event.id)
            self._metrics.events_duplicate.labels(device=self.id).inc()
            if on_ack is not None:
                on_ack()  # a replay of what was handed over before: nothing to wait for
            return
        self._seen[event.id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        self._publish(render.event(self._topics, event, qos=self._qos, on_ack=on_ack))
        if event.type == "doorbell.pressed" and self.config.snapshot_on_ring:
            self._ring.set()
        self._metrics.events.labels(device=self.id, type=event_type_label(event.type)).inc()
        self._latency.observe(max(0.0, (utcnow() - event.time).total_seconds()))

    def _allowed(self, commands: list[str]) -> list[str]:
        return [c for c in commands if is_allowed(c, self.config.commands)]

    def info_payload(self) -> dict[str, Any]:
        known = (
            self.info.model_dump()
            if self.info is not None
            else {
                "vendor": self.config.driver,
                "commands": self._allowed(sorted(self.driver.commands)),
            }
        )
        payload = DeviceInfoPayload(
            **known,
            id=self.id,
            driver=self.config.driver,
            name=self.config.name,
            online=bool(self.online),
            last_error=self.last_error,
        )
        return payload.model_dump(mode="json", exclude_none=True)

    def _publish_info(self) -> None:
        self._publish(
            render.retained_json(self._topics.info(self.id), self.info_payload(), qos=self._qos)
        )

    def publish_availability(self) -> None:
        if self.online is not None:
            self._publish(
                render.availability(self._topics, self.id, online=self.online, qos=self._qos)
            )

    # -- availability ------------------------------------------------------------------------

    def stopped(self) -> None:
        """The bridge is shutting down: the retained availability and info say offline."""
        self.online = False
        self.publish_availability()
        self._publish_info()

    def _set_online(self) -> None:
        # The backoff is not reset here: a device whose channel opens and breaks at once must
        # not be retried in a tight loop. ``supervise`` resets it after a stable run.
        self.failures = 0
        self._metrics.device_failures.labels(device=self.id).set(0)
        if self.online:
            return
        if self._outage_started is not None:
            self._log.info(
                "device_recovered", outage_s=round(time.monotonic() - self._outage_started, 1)
            )
        else:
            self._log.info("device_online")
        self.online, self._outage_started, self.last_error = True, None, None
        self._up.set(1)
        self.publish_availability()
        self._publish_info()

    def _failed(self, exc: BaseException) -> float:
        """Record one failure of the device channel; return how long to wait before retrying."""
        self._healthy_since_failure = False
        self.failures += 1
        self._metrics.device_failures.labels(device=self.id).set(self.failures)
        kind = _error_kind(exc)
        self._metrics.device_errors.labels(device=self.id, kind=kind).inc()
        reason = describe(exc)
        auth = isinstance(exc, AuthError)
        if isinstance(exc, DeviceProtocolError) and exc.detail:
            self._log.debug("device_reply", detail=exc.detail)
        going_offline = self.online is not False and (
            auth or self.failures >= self.config.offline_after
        )
        if going_offline:
            self._outage_started = time.monotonic()
            self.online, self.last_error = False, reason
            self._up.set(0)
            level = self._log.error if auth or kind == "internal" else self._log.warning
            level("device_offline", reason=reason, failures=self.failures)
            self.publish_availability()
            self._publish_info()
        elif self.failures == 1 and self.online:
            self._log.info("device_channel_failed", reason=reason)
        else:
            self._log.debug("device_retry_failed", reason=reason, failures=self.failures)
        return AUTH_RETRY if auth else self._backoff.next_delay()

    # -- the supervised loop -----------------------------------------------------------------

    async def supervise(self) -> None:
        """Run the driver until cancelled; nothing it raises escapes."""
        structlog.contextvars.bind_contextvars(device=self.id)
        try:
            async with anyio.create_task_group() as tg:
                if self.config.snapshot_on_ring and "snapshot" in self.driver.commands:
                    tg.start_soon(self._snapshots_on_ring)
                await self._run_driver()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await self.driver.aclose()
                except Exception:
                    self._log.exception("driver_close_failed")

    async def _snapshots_on_ring(self) -> None:
        """A snapshot after each ring, taken like a ``snapshot`` command (same lock, timeout and
        topic) but beside the event stream, so the events after a ring are not held up by the
        camera. Rings while one is being taken are covered by it."""
        checked = CheckedCommand("snapshot", SnapshotArgs(), id=None)
        while True:
            await self._ring.wait()
            self._ring = anyio.Event()
            try:
                await self._execute(checked)
            except CommandError as exc:
                self._log.info("snapshot_on_ring_failed", code=exc.code, reason=exc.message)

    async def _run_driver(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.driver.run(self.emit)
                exc: BaseException = DeviceProtocolError("driver returned", device=self.id)
            except DeviceError as err:
                exc = err
            except Exception as err:
                self._log.exception("driver_crashed")
                exc = err
            if time.monotonic() - started >= STABLE_RUN:
                self._backoff.reset()
            await anyio.sleep(self._failed(exc))

    # -- commands ----------------------------------------------------------------------------

    async def handle_command(self, message: Received) -> None:
        started = time.perf_counter()
        command: str | None = None
        id_: str | int | None = None
        try:
            request = parse_command(message.payload)
            command, id_ = request.command, request.id
            checked = check_command(
                request, supported=self.driver.commands, policy=self.config.commands
            )
            if not self.online:
                raise CommandError("offline", "the device is offline")  # noqa: TRY301
            result = await self._execute(checked)
        except CommandError as exc:
            if id_ is None:
                id_ = request_id(message.payload)
            result = CommandResult.failed(exc.code, exc.message, command=command, id_=id_)
        self._finish(message, result, started)

    async def _execute(self, checked: CheckedCommand) -> CommandResult:
        name, timeout = checked.name, self.config.command_timeout
        try:
            async with self._command_lock:
                with anyio.fail_after(timeout):
                    outcome = await self.driver.execute(checked)
        except TimeoutError:
            raise CommandError(
                "timeout", f"no answer within {timeout:g}s; the device may have acted on it"
            ) from None
        except AuthError as exc:
            raise CommandError("auth_failed", describe(exc)) from None
        except DeviceProtocolError as exc:
            raise CommandError("device_error", describe(exc)) from None
        except DeviceError as exc:
            raise CommandError("unreachable", describe(exc)) from None
        except CommandError:
            raise
        except Exception:
            self._log.exception("command_crashed", command=name)
            raise CommandError("internal", "internal error; see the bridge log") from None
        for update in outcome.updates:  # what the command changed, before its result
            await self.emit(update)
        data = dict(outcome.data)
        if outcome.image is not None:
            now = utcnow()
            self._publish(Message(self._topics.snapshot(self.id), outcome.image, self._qos, True))
            # A retained picture comes again at every (re)subscription: its time and size beside
            # it tell a subscriber whether it is new (docs/mqtt-api.md).
            about = {
                "time": format_time(now),
                "size": len(outcome.image),
                "content_type": "image/jpeg",
                "topic": self._topics.snapshot(self.id),
            }
            info_topic = self._topics.snapshot_info(self.id)
            self._publish(render.retained_json(info_topic, about, qos=self._qos))
            if self._snapshot_base64:
                encoded = base64.b64encode(outcome.image)
                topic = self._topics.snapshot_base64(self.id)
                self._publish(Message(topic, encoded, self._qos, True))
            data.update(
                {
                    "size": len(outcome.image),
                    "time": format_time(now),
                    "topic": self._topics.snapshot(self.id),
                }
            )
        return CommandResult(id=checked.id, command=name, status="ok", data=data)

    def _finish(self, message: Received, result: CommandResult, started: float) -> None:
        self._publish(render.result(self._topics.command_result(self.id), result, qos=self._qos))
        if message.response_topic:
            self._publish(
                render.result(
                    message.response_topic, result, qos=self._qos, correlation=message.correlation
                )
            )
        code = result.error.code if result.error else ""
        name = result.command if result.command in self.driver.commands else "other"
        self._metrics.commands.labels(
            device=self.id, command=name, status=result.status, code=code
        ).inc()
        self._metrics.command_duration.labels(command=name).observe(time.perf_counter() - started)
        if result.error:
            self._log.info("command_failed", command=result.command, code=code)
        else:
            self._log.debug("command_done", command=result.command)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, DeviceProtocolError):
        return "protocol"
    if isinstance(exc, DeviceError):
        return "unreachable"
    return "internal"
