"""The broker link: the only module that imports aiomqtt.

Outgoing messages take one of two paths:

* retained topics (state, availability, info, discovery, snapshots) live in a table, last value
  wins. Every entry is published after each (re)connect, so the broker always ends up with the
  current value even if it lost its retained store, and nothing stale is replayed over it;
* everything else (events, command results, responses) waits in a bounded FIFO outbox while the
  broker is away. When it overflows the oldest message is dropped and counted.

A message leaves the outbox or table only when the broker has acknowledged it; whatever was in
flight when the connection broke goes back to the front in its original order (at least once:
consumers de-duplicate events by id). Up to ``max_inflight`` QoS 1 publishes are in flight at
once: each is handed to the client in order, and their acknowledgements are awaited in parallel.

Nothing taken from a device is lost at a stop (spec §7). For an outbox message:

* ``on_ack`` is called exactly once: when the broker acknowledged the message (PUBACK for QoS 1,
  PUBCOMP for QoS 2, once written for QoS 0), or when the message is dropped on overflow
  (counted). A message requeued after a broken connection is not acknowledged: its ``on_ack``
  waits for the publish that succeeds. Drivers move their checkpoints in ``on_ack``, so after
  any stop a device replays what the broker may not have;
* a ``durable`` message (an event nobody can replay) is written to the store
  (:mod:`bridge.mqtt.store`, in ``state_dir``) before ``publish`` returns and deleted when it is
  acknowledged or dropped. ``run`` first loads what a previous run left there and publishes it
  before anything else, in its original order.

``on_ack`` and ``durable`` apply to outbox messages (events); retained messages are rebuilt from
live state after a restart and ignore both.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiomqtt
import anyio
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.backoff import Backoff
from bridge.mqtt.client import Client
from bridge.mqtt.connection import ClientLog, TlsFileError, describe_failure, tls_context
from bridge.mqtt.message import Message, Received
from bridge.mqtt.store import Store
from bridge.mqtt.topics import publishable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from pathlib import Path

    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from bridge.config import MqttConfig
    from bridge.metrics import Metrics

log = structlog.get_logger("bridge.mqtt")
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code
QUICK_DROP = 5.0  # seconds: a connection lost this soon after it was made
QUICK_DROPS, QUICK_DROP_WINDOW = 3, 60.0  # so many of them within this many seconds
SUBACK_FAILURE = 0x80  # a SUBACK return code from here on refuses the subscription
BACKPRESSURE_AT = 1000  # outbox depth at which drivers stop reading from devices


@dataclass(slots=True)
class _Entry:
    """An outbox message, its row in the durable store (None: not stored) and when it was
    queued (``time.perf_counter()``)."""

    message: Message
    row: int | None
    queued: float


@dataclass(slots=True)
class _Flight:
    seq: int
    message: Message
    from_table: bool
    row: int | None = None
    queued: float | None = None  # outbox messages: when they were queued


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the broker has not acknowledged, by what becomes of it if the bridge stops now."""

    kept: int  # durable events in the store: published at the next start
    replayable: int  # events with ``on_ack``: their device replays them after a restart
    lost: int  # other outbox messages (command results, responses): gone with the process
    pending: int  # all of it, plus retained values (republished from live state at the start)


class MqttLink:
    """Keeps one connection to the broker alive and moves messages both ways."""

    def __init__(  # noqa: PLR0913 - all keyword-only settings of one connection
        self,
        config: MqttConfig,
        *,
        client_id: str,
        will: Message,
        subscriptions: Iterable[str],
        metrics: Metrics,
        backoff: Backoff | None = None,
        inbound_buffer: int = 1000,
        store: Path | None = None,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._will = will
        self._subscriptions = tuple(subscriptions)
        self._metrics = metrics
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._client_log = ClientLog(logging.getLogger("bridge.mqtt.client"))
        self._refusals_logged: set[str] = set()  # subscriptions the broker refused, said once
        self._table: dict[str, Message] = {}
        self._dirty: dict[str, None] = {}  # ordered set of table topics to (re)publish
        self._outbox: deque[_Entry] = deque()
        # What waits plus what is in flight never exceeds outbox_size + max_inflight + 1 (one
        # flight waits for a window slot), so the store only trims what a previous run left.
        limit = config.outbox_size + config.max_inflight + 1
        self._store = Store(store, limit) if store is not None else None
        self._inflight: dict[int, _Flight] = {}
        self._seq = 0
        # While the sender waits with nothing queued: its client and window, for publish to
        # write a message at once instead of waking it (one pass of the event loop less).
        self._idle_sender: tuple[Client, anyio.Semaphore] | None = None
        self._wake = anyio.Event()
        self._room = anyio.Event()  # set when the outbox drains below the low-water mark
        self._high_water = max(1, min(BACKPRESSURE_AT, config.outbox_size // 2))
        self._closing = False
        self._connected_at: float | None = None
        self._quick_drops: deque[float] = deque()
        self._takeover_logged = False
        self._closed = anyio.Event()
        self._connected = False
        self._dropped_since_log = 0
        send, receive = anyio.create_memory_object_stream[Received](inbound_buffer)
        self._inbound_send: MemoryObjectSendStream[Received] = send
        self.inbound: MemoryObjectReceiveStream[Received] = receive

    # -- the producer side -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def publish(self, message: Message) -> None:
        """Queue a message; never blocks. Retained messages replace their topic's last value.

        A durable message is in the store when this returns (unless the store failed, which is
        logged): see :mod:`bridge.mqtt.store` for what that survives.
        """
        if self._closed.is_set():
            return
        if message.retain:
            self._table[message.topic] = message
            self._dirty[message.topic] = None
        else:
            if len(self._outbox) >= self._config.outbox_size:
                self._drop(self._outbox.popleft())
            row = None
            if message.durable and self._store is not None:
                row, trimmed = self._store.add(
                    message.topic, message.payload, message.qos, message.correlation
                )
                self._count_dropped(trimmed)
            if self._publish_now(message, row):
                return
            self._outbox.append(_Entry(message, row, time.perf_counter()))
            self._metrics.outbox_depth.set(len(self._outbox))
        self._wake.set()

    def _publish_now(self, message: Message, row: int | None) -> bool:
        """Write ``message`` to the socket from the caller's task when the sender is idle and
        nothing waits before it (order kept); False when it has to be queued instead.

        An event then reaches the broker inside the driver's ``emit``, before the driver does
        anything else: no pass of the event loop to wake the sender, and none of the driver's
        remaining work, comes first (docs/performance.md, "Beside a Node-RED flow").
        """
        idle = self._idle_sender
        if idle is None or self._outbox or self._dirty or self._closing:
            return False
        client, window = idle
        try:
            window.acquire_nowait()
        except anyio.WouldBlock:
            return False
        self._seq += 1
        flight = _Flight(self._seq, message, from_table=False, row=row, queued=time.perf_counter())
        self._inflight[flight.seq] = flight
        try:
            self._publish_one(client, flight, window)
        except aiomqtt.MqttError:  # the connection is going: the sender will find out
            del self._inflight[flight.seq]
            window.release()
            self._idle_sender = None
            return False
        return True

    def _drop(self, entry: _Entry) -> None:
        """Give up the oldest outbox message: counted, logged once per outage, acknowledged
        (its driver's checkpoint may move past it: it will never be published)."""
        self._count_dropped(1)
        self._settle(entry.message, entry.row)

    def _count_dropped(self, count: int) -> None:
        if count <= 0:
            return
        self._metrics.outbox_dropped.inc(count)
        if self._dropped_since_log == 0:
            log.warning("outbox_overflow", size=self._config.outbox_size)
        self._dropped_since_log += count

    def _settle(self, message: Message, row: int | None) -> None:
        """The message is done with (acknowledged or dropped): out of the store, ``on_ack``."""
        if row is not None and self._store is not None:
            self._store.delete(row)
        if message.on_ack is not None:
            try:
                message.on_ack()
            except Exception:  # a driver's bug must not break the link
                log.exception("on_ack_failed", topic=message.topic)

    def republish(self, prefix: str = "") -> None:
        """Publish retained topics under ``prefix`` again (e.g. on ``homeassistant/status``)."""
        for topic in self._table:
            if topic.startswith(prefix):
                self._dirty[topic] = None
        self._wake.set()

    async def room(self) -> None:
        """Backpressure for drivers: wait while the broker is connected but the outbox is backed
        up (the device is faster than the broker), before reading more from the device. With the
        broker away it returns at once: the outbox then buffers, bounded, as documented."""
        if self._connected and self._outbox:
            # Give the sender its turn first: what the driver just handed over goes out on the
            # socket before the driver reads on (fewer milliseconds per event, not more CPU).
            await self._room.wait()
        while self._connected and len(self._outbox) >= self._high_water:
            await self._room.wait()

    def _check_room(self) -> None:
        if not self._connected or len(self._outbox) < self._high_water // 2:
            self._room.set()
            self._room = anyio.Event()

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._outbox) + len(self._dirty) + len(self._inflight)

    def backlog(self) -> Backlog:
        """``pending`` broken down by what a stop now does to it (walks the outbox: for the
        shutdown log, not for a hot path)."""
        kept = replayable = lost = 0
        entries = [(e.message, e.row) for e in self._outbox]
        entries += [(f.message, f.row) for f in self._inflight.values() if not f.from_table]
        for message, row in entries:
            if row is not None:
                kept += 1
            elif message.on_ack is not None:
                replayable += 1
            else:
                lost += 1
        return Backlog(kept=kept, replayable=replayable, lost=lost, pending=self.pending)

    async def close(self) -> None:
        """Flush what is queued (while connected), disconnect cleanly and stop ``run``.

        Bound it with a timeout: with the broker away nothing can be flushed.
        """
        self._closing = True
        self._wake.set()
        await self._closed.wait()

    # -- the connection ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, keep connected, and serve until ``close`` or cancellation.

        Reports started at once: the bridge comes up with the broker down. What a previous run
        left in the store is queued first.
        """
        tls_context(self._config)  # unusable TLS files stop the start (TlsFileError)
        self._restore()
        task_status.started()
        outage_logged = False
        try:
            while True:
                try:
                    async with self._client() as client:
                        self._on_connected(outage_logged=outage_logged)
                        outage_logged = False
                        await self._session(client)
                except (aiomqtt.MqttError, TlsFileError) as exc:
                    self._on_lost()
                    if self._closing:  # nobody left to wait for
                        return
                    self._check_takeover(exc)
                    delay = self._backoff.next_delay()
                    self._log_failure(exc, delay, first=not outage_logged)
                    outage_logged = True
                else:
                    return  # a session returns only once close() has flushed it
                with anyio.move_on_after(delay):
                    while not self._closing:
                        await self._wait_wake()
                if self._closing:
                    return
        finally:
            self._connected = False
            self._metrics.mqtt_connected.set(0)
            self._inbound_send.close()
            if self._store is not None:
                self._store.close()
            self._closed.set()

    def _restore(self) -> None:
        """Queue what the store holds, oldest first, ahead of anything published so far."""
        if self._store is None:
            return
        stored, trimmed = self._store.load()
        self._count_dropped(trimmed)
        if not stored:
            return
        entries = [
            _Entry(
                Message(s.topic, s.payload, s.qos, False, s.correlation, durable=True),
                s.row,
                time.perf_counter(),
            )
            for s in stored
        ]
        self._outbox.extendleft(reversed(entries))
        while len(self._outbox) > self._config.outbox_size:
            self._drop(self._outbox.popleft())
        self._metrics.outbox_depth.set(len(self._outbox))
        log.info("outbox_restored", count=len(stored), path=str(self._store.path))

    @property
    def _endpoint(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    def _log_failure(self, exc: Exception, delay: float, *, first: bool) -> None:
        """An outage is said once (warning), each further failed attempt at debug."""
        error = describe_failure(exc, self._client_log.take())
        retry_in = round(delay, 2)
        if first:
            log.warning("mqtt_unavailable", broker=self._endpoint, error=error, retry_in=retry_in)
        else:
            attempt = self._backoff.attempt
            log.debug("mqtt_retry_failed", error=error, attempt=attempt, retry_in=retry_in)

    def _client(self) -> Client:
        """A client for one connection attempt; the TLS files are read again for each."""
        cfg = self._config
        context = tls_context(cfg)
        v5 = cfg.protocol == "5"
        url = urlsplit(cfg.url)
        websockets = url.scheme in {"ws", "wss"}
        client = Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=self._client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(
                self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain
            ),
            clean_session=None if v5 else True,
            transport="websockets" if websockets else "tcp",
            websocket_path=(url.path or "/mqtt") if websockets else None,
            keepalive=max(5, math.ceil(cfg.keepalive)),
            timeout=10.0,
            max_inflight_messages=cfg.max_inflight,
            tls_context=context,
            tls_insecure=cfg.tls.insecure if context else None,
            logger=self._client_log,
            # Small QoS 1 publishes must not wait for Nagle to coalesce them.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        client.pending_calls_threshold = cfg.max_inflight + 10
        return client

    def _check_takeover(self, exc: Exception) -> None:
        """Two clients with one client id knock each other off the broker again and again, and
        each only sees "disconnected": say the likely cause once, naming the id."""
        now = time.monotonic()
        lived = now - self._connected_at if self._connected_at is not None else None
        self._connected_at = None
        code = getattr(getattr(exc, "rc", None), "value", getattr(exc, "rc", None))
        if lived is not None and lived < QUICK_DROP:
            self._quick_drops.append(now)
        while self._quick_drops and now - self._quick_drops[0] > QUICK_DROP_WINDOW:
            self._quick_drops.popleft()
        if not self._takeover_logged and (
            code == SESSION_TAKEN_OVER or len(self._quick_drops) >= QUICK_DROPS
        ):
            self._takeover_logged = True
            log.error(
                "mqtt_client_id_conflict",
                client_id=self._client_id,
                broker=self._endpoint,
                hint="another client (a second bridge?) connects with the same mqtt.client_id; "
                "each connection takes the session from the other",
            )

    def _on_connected(self, *, outage_logged: bool) -> None:
        self._connected_at = time.monotonic()
        self._connected = True
        self._metrics.mqtt_connected.set(1)
        for topic in self._table:  # the broker may have lost its retained store
            self._dirty[topic] = None
        if outage_logged:
            log.info("mqtt_recovered", broker=self._endpoint, queued=len(self._outbox))
        else:
            log.info("mqtt_connected", broker=self._endpoint, client_id=self._client_id)
        if self._dropped_since_log:
            log.warning("outbox_dropped", count=self._dropped_since_log)
            self._dropped_since_log = 0

    def _on_lost(self) -> None:
        # Only a connection that lasted starts the next outage from the shortest delay: one
        # dropped at once (a second client with our client id) backs off further each time.
        if self._connected_at is not None and time.monotonic() - self._connected_at >= QUICK_DROP:
            self._backoff.reset()
        if self._connected:
            self._metrics.mqtt_reconnects.inc()
        self._connected = False
        self._metrics.mqtt_connected.set(0)
        self._requeue_inflight()
        self._check_room()  # nobody waits for a broker that is away

    def _requeue_inflight(self) -> None:
        flights = sorted(self._inflight.values(), key=lambda f: f.seq, reverse=True)
        self._inflight.clear()
        for flight in flights:
            if flight.from_table:
                if self._table.get(flight.message.topic) is flight.message:
                    self._dirty[flight.message.topic] = None
            else:
                self._outbox.appendleft(_Entry(flight.message, flight.row, flight.queued or 0.0))
        self._metrics.outbox_depth.set(len(self._outbox))

    def _check_granted(self, topic: str, granted: Sequence[int | ReasonCode]) -> None:
        """A broker's ACL may refuse a subscription (SUBACK 0x80 and up: mosquitto's dynamic
        security does, its ``acl_file`` does not): the bridge then never hears of the commands
        or requests on it. Said once per topic and run."""
        refused = [
            str(code)
            for code in granted
            if (code.is_failure if isinstance(code, ReasonCode) else code >= SUBACK_FAILURE)
        ]
        if refused and topic not in self._refusals_logged:
            self._refusals_logged.add(topic)
            broker = self._endpoint
            log.error("mqtt_subscription_refused", topic=topic, broker=broker, reason=refused[0])

    async def _session(self, client: Client) -> None:
        """Serve one connection; raise ``MqttError`` when it breaks, return when closed."""
        for topic in self._subscriptions:
            if self._config.protocol == "5":
                # Retain-as-published: a command published with retain is recognisable even
                # when it arrives live, not only when the broker replays it at subscribe time.
                options = SubscribeOptions(qos=1, retainAsPublished=True)
                granted = await client.subscribe(topic, options=options)
            else:
                granted = await client.subscribe(topic, qos=1)
            self._check_granted(topic, granted)
        failure: list[aiomqtt.MqttError] = []
        async with anyio.create_task_group() as tg:

            async def guarded(job: Callable[[], Awaitable[None]]) -> None:
                try:
                    await job()
                except aiomqtt.MqttError as exc:
                    failure.append(exc)
                    tg.cancel_scope.cancel()

            tg.start_soon(guarded, partial(self._receive, client))
            await guarded(partial(self._send, client))
            tg.cancel_scope.cancel()
        if failure:
            raise failure[0]

    async def _wait_wake(self) -> None:
        await self._wake.wait()
        self._wake = anyio.Event()

    def _next(self) -> _Flight | None:
        if self._dirty:
            topic = next(iter(self._dirty))
            del self._dirty[topic]
            self._seq += 1
            return _Flight(self._seq, self._table[topic], from_table=True)
        if self._outbox:
            entry = self._outbox.popleft()
            self._metrics.outbox_depth.set(len(self._outbox))
            self._seq += 1
            return _Flight(
                self._seq, entry.message, from_table=False, row=entry.row, queued=entry.queued
            )
        return None

    async def _send(self, client: Client) -> None:
        """Hand messages to the client in order, up to ``max_inflight`` unacknowledged; each is
        on the socket before the driver that queued it reads on (``room``)."""
        # fast_acquire: a free slot is taken without yielding, so a backlog leaves at full speed
        # instead of one message per pass of the event loop.
        window = anyio.Semaphore(self._config.max_inflight, fast_acquire=True)
        while True:
            flight = self._next()
            if flight is None:
                if self._closing and not self._inflight:
                    return
                self._idle_sender = (client, window)
                try:
                    await self._wait_wake()
                finally:
                    self._idle_sender = None
                continue
            self._inflight[flight.seq] = flight
            await window.acquire()
            self._publish_one(client, flight, window)
            self._check_room()  # after the write: the driver reads on once it is out

    def _publish_one(self, client: Client, flight: _Flight, window: anyio.Semaphore) -> None:
        message = flight.message
        now = time.perf_counter()
        properties = None
        if message.correlation is not None and self._config.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = message.correlation
        try:
            client.publish_nowait(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=properties,
                on_ack=partial(self._acknowledged, flight, window),
            )
        except ValueError as exc:  # paho refuses the message itself: it can never be sent
            log.error("mqtt_message_refused", topic=message.topic, reason=str(exc))  # noqa: TRY400 - no traceback: the reason says it
            window.release()
            self._inflight.pop(flight.seq, None)
            self._metrics.outbox_dropped.inc()
            if not flight.from_table:
                self._settle(message, flight.row)
            return
        if flight.queued is not None:  # after the write: not on the event's way out
            self._metrics.mqtt_queue.observe(now - flight.queued)

    def _acknowledged(self, flight: _Flight, window: anyio.Semaphore) -> None:
        window.release()
        # Not found: the connection broke meanwhile and the flight went back to the outbox; the
        # publish that succeeds then acknowledges it (at least once, on_ack once).
        if self._inflight.pop(flight.seq, None) is not None and not flight.from_table:
            self._settle(flight.message, flight.row)
        self._metrics.mqtt_publishes.labels(retained=str(flight.message.retain).lower()).inc()
        if self._closing:
            self._wake.set()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for raw in client.messages:
            props = raw.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            if response_topic is not None and not publishable(response_topic):
                # A wildcard there ("replies/#") is the client's mistake: answered on the result
                # topic only. paho would refuse to publish to it (it used to end the bridge).
                log.info("mqtt_response_topic_refused", topic=raw.topic.value)
                response_topic = None
            correlation = getattr(props, "CorrelationData", None) if props else None
            payload = raw.payload if isinstance(raw.payload, bytes | bytearray) else b""
            received = Received(
                topic=raw.topic.value,
                payload=bytes(payload),
                retain=raw.retain,
                response_topic=response_topic,
                correlation=correlation,
            )
            try:
                await self._inbound_send.send(received)
            except anyio.BrokenResourceError:
                # The bridge is stopping and nothing takes commands any more: one that arrives
                # during the final flush is not executed and gets no result.
                log.debug("mqtt_message_after_stop", topic=received.topic)
                return
