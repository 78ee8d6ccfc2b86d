"""The broker link's acknowledgements and durable outbox, against a real mosquitto.

``on_ack`` is called once the broker acknowledged a message (or it was dropped on overflow),
never for a publish the broken connection swallowed; durable messages wait in the store.
"""

from __future__ import annotations

import select
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from structlog.testing import capture_logs

from bridge.backoff import Backoff
from bridge.metrics import Metrics
from bridge.mqtt.link import MqttLink
from bridge.mqtt.message import Message
from bridge.mqtt.store import Store
from bridge.settings import build_settings
from tests.helpers import Consumer, Mosquitto, free_port, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.broker]


class Acks(Counter[str]):
    """How often each message's ``on_ack`` ran."""

    def callback(self, name: str) -> Callable[[], None]:
        def acked() -> None:
            self[name] += 1

        return acked


def make_link(url: str, store: Path | None, metrics: Metrics, **mqtt: Any) -> MqttLink:
    config = build_settings({"mqtt": {"url": url, **mqtt}}, {}).mqtt
    return MqttLink(
        config,
        client_id=f"link-test-{free_port()}",
        will=Message("t/will", b"offline", 1, True),
        subscriptions=(),
        metrics=metrics,
        backoff=Backoff(base=0.01, cap=0.05, floor=0.01),
        store=store,
    )


@asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[MqttLink]:
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        try:
            yield link
        finally:
            with anyio.fail_after(5):
                await link.close()
            link.inbound.close()


def stored(path: Path) -> list[str]:
    store = Store(path, limit=100)
    try:
        return [s.topic for s in store.load()[0]]
    finally:
        store.close()


class Proxy:
    """A TCP relay to the broker that can withhold the broker's replies (PUBACKs) and cut
    every connection: a publish the broker received but the link never saw acknowledged."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.hold = False
        self._scopes: list[anyio.CancelScope] = []

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(SocketAttribute.local_port)
        task_status.started()
        async with listener:
            await listener.serve(self._relay)

    async def _relay(self, client: SocketStream) -> None:
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            async with client, await anyio.connect_tcp("127.0.0.1", self.upstream) as upstream:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, client, upstream, False, tg.cancel_scope)
                    tg.start_soon(self._pump, upstream, client, True, tg.cancel_scope)

    async def _pump(
        self, source: SocketStream, sink: SocketStream, replies: bool, pair: anyio.CancelScope
    ) -> None:
        try:
            async for chunk in source:
                if not (replies and self.hold):
                    await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        pair.cancel()

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()
        self._scopes.clear()


async def test_on_ack_runs_once_after_the_broker_acknowledged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    proxy = Proxy(mosquitto.port)
    path = tmp_path / "outbox.sqlite3"
    acks = Acks()
    metrics = Metrics()
    async with anyio.create_task_group() as tg, Consumer(mosquitto.url, ("t/#",)) as consumer:
        await tg.start(proxy.serve)
        link = make_link(f"mqtt://127.0.0.1:{proxy.port}", path, metrics)
        async with running(link):
            await wait_until(lambda: link.connected)
            proxy.hold = True  # the broker gets the publishes; their PUBACKs never arrive
            link.publish(Message("t/replayable", b"1", 1, on_ack=acks.callback("replayable")))
            link.publish(Message("t/durable", b"2", 1, durable=True))
            link.publish(Message("t/qos0", b"3", 0, on_ack=acks.callback("qos0")))
            await consumer.wait_for(lambda seen: {s.topic for s in seen} >= {"t/durable", "t/qos0"})
            assert acks == {"qos0": 1}  # QoS 0: acknowledged once written
            backlog = link.backlog()
            assert (backlog.kept, backlog.replayable) == (1, 1)
            # The connection breaks with both in flight: requeued, not acknowledged, sent again.
            proxy.hold = False
            proxy.cut()
            await wait_until(lambda: acks["replayable"] == 1 and link.pending == 0)
            assert link.backlog().kept == 0
        tg.cancel_scope.cancel()
    assert acks == {"replayable": 1, "qos0": 1}
    topics = Counter(s.topic for s in consumer.seen)
    # At least once: the broker had the first publish, the link never saw its PUBACK.
    assert (topics["t/replayable"], topics["t/durable"], topics["t/qos0"]) == (2, 2, 1)
    assert stored(path) == []  # acknowledged, so deleted
    assert metrics.outbox_dropped._value.get() == 0


async def test_overflow_drops_the_oldest_acknowledges_and_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    acks = Acks()
    metrics = Metrics()
    link = make_link(f"mqtt://127.0.0.1:{free_port()}", path, metrics, outbox_size=2)
    async with running(link):  # nobody listens there: everything waits
        for name in ("a", "b", "c"):
            link.publish(Message(f"t/{name}", b"x", 1, durable=True))
        link.publish(Message("t/d", b"x", 1, on_ack=acks.callback("d")))
        link.publish(Message("t/e", b"x", 1, on_ack=acks.callback("e")))
        assert metrics.outbox_dropped._value.get() == 3
        assert acks == {}  # a, b, c had no on_ack; d and e wait
        link.publish(Message("t/f", b"x", 1))
        assert acks == {"d": 1}  # dropped: given up, its checkpoint may move past it
        assert link.backlog().kept == 0
    assert stored(path) == []
    assert link.backlog().pending == 2


async def test_what_a_previous_run_stored_goes_first_in_order(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    store = Store(path, limit=100)
    for i in range(5):
        store.add(f"t/old/{i}", str(i).encode(), 1)
    store.close()
    metrics = Metrics()
    async with Consumer(mosquitto.url, ("t/#",)) as consumer:
        link = make_link(mosquitto.url, path, metrics, outbox_size=3)
        async with running(link):
            link.publish(Message("t/new", b"n", 1, durable=True))
            await consumer.wait_for(lambda seen: any(s.topic == "t/new" for s in seen))
            await wait_until(lambda: link.pending == 0)
    # Three fit the outbox with the new one: the two oldest were dropped and counted.
    assert [s.topic for s in consumer.seen] == ["t/old/3", "t/old/4", "t/new"]
    assert metrics.outbox_dropped._value.get() == 3
    assert stored(path) == []


def mqtt_connect(client_id: str) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (clean session, keepalive 60 s), written by hand."""
    name = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
    payload = len(name).to_bytes(2, "big") + name
    body = variable + payload
    return b"\x10" + bytes([len(body)]) + body


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_client_id_taken_again_and_again_is_named_once(
    mosquitto: Mosquitto, protocol: str
) -> None:
    """The kind of fault: another client (a second bridge with the same config) connects with
    the bridge's client id, and each connection takes the session from the other."""
    from structlog.testing import capture_logs

    config = build_settings({"mqtt": {"url": mosquitto.url, "protocol": protocol}}, {}).mqtt
    link = MqttLink(
        config,
        client_id="bridge-twin",
        will=Message("t/will", b"offline", 1, True),
        subscriptions=("t/command",),
        metrics=Metrics(),
        backoff=Backoff(base=0.01, cap=0.05, floor=0.01),
    )
    with capture_logs() as logs:
        async with running(link):
            for _ in range(5):
                await wait_until(lambda: link.connected)
                async with await anyio.connect_tcp("127.0.0.1", mosquitto.port) as twin:
                    await twin.send(mqtt_connect("bridge-twin"))
                    assert (await twin.receive(4))[:2] == b"\x20\x02"  # CONNACK: it is in
                    await wait_until(lambda: not link.connected)  # and the link is out
    conflicts = [e for e in logs if e["event"] == "mqtt_client_id_conflict"]
    assert len(conflicts) == 1  # once, however often it was knocked off
    assert conflicts[0]["client_id"] == "bridge-twin"
    assert conflicts[0]["log_level"] == "error"


async def test_one_link_alone_is_no_conflict(mosquitto: Mosquitto) -> None:
    # The baseline of the test above: a broker restart (one drop) does not look like a twin.
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with running(make_link(mosquitto.url, None, Metrics())) as link:
            await wait_until(lambda: link.connected)
            mosquitto.stop()
            await wait_until(lambda: not link.connected)
            mosquitto.start()
            await wait_until(lambda: link.connected)
    assert not [e for e in logs if e["event"] == "mqtt_client_id_conflict"]


async def test_a_command_arriving_while_the_bridge_stops_is_dropped_not_fatal(
    mosquitto: Mosquitto,
) -> None:
    """At stop the router closes ``inbound`` before the final flush; a message still arriving
    then used to end the bridge with a BrokenResourceError (exit 1) instead of a clean stop."""
    config = build_settings({"mqtt": {"url": mosquitto.url}}, {}).mqtt
    link = MqttLink(
        config,
        client_id=f"link-test-{free_port()}",
        will=Message("t/will", b"offline", 1, True),
        subscriptions=("t/command",),
        metrics=Metrics(),
        store=None,
    )
    acks = Acks()
    async with running(link), Consumer(mosquitto.url, ("t/#",)) as sender:
        await wait_until(lambda: link.connected)
        link.inbound.close()  # what the router does when the bridge stops
        with capture_logs() as logs:
            await sender.publish("t/command", b'{"cmd":"open_door"}')
            await wait_until(lambda: any(e["event"] == "mqtt_message_after_stop" for e in logs))
        link.publish(Message("t/after", b"1", 1, on_ack=acks.callback("after")))
        await wait_until(lambda: acks["after"] == 1)  # the link still sends: the flush goes on


def queued_count(metrics: Metrics) -> float:
    """How many messages ``bridge_mqtt_queue_seconds`` has seen handed to the client."""
    [family] = metrics.mqtt_queue.collect()
    return next(s.value for s in family.samples if s.name.endswith("_count"))


async def test_a_message_to_an_idle_link_is_written_before_publish_returns(
    mosquitto: Mosquitto,
) -> None:
    """The event path: with nothing queued, ``publish`` writes the PUBLISH itself (no pass of
    the event loop to wake the sender first); once the in-flight window is full, messages
    queue behind, and all arrive in order."""
    metrics = Metrics()
    link = make_link(mosquitto.url, None, metrics, max_inflight=2)
    async with running(link), Consumer(mosquitto.url, ("t/#",)) as consumer:
        await wait_until(lambda: link.connected and link.pending == 0)
        await anyio.wait_all_tasks_blocked()  # the sender waits for work
        before = queued_count(metrics)
        for i in range(5):
            link.publish(Message(f"t/{i}", str(i).encode(), 1))
        assert queued_count(metrics) == before + 2  # the window's two are out, without a yield
        assert link.pending == 5  # three in the outbox, two in flight
        await consumer.wait_for(lambda seen: len(seen) >= 5)
        await wait_until(lambda: link.pending == 0)
    assert [s.topic for s in consumer.seen] == [f"t/{i}" for i in range(5)]
    assert queued_count(metrics) == before + 5


def block_until(sock: socket.socket, events: int, timeout: float = 5.0) -> None:
    """Block the event loop (on purpose: it must not see the socket first) until ``sock`` has
    ``events`` (``select.poll`` flags; 0 waits for an error or hang-up), or fail."""
    poller = select.poll()
    poller.register(sock, events)
    assert poller.poll(timeout * 1000), "the socket did not change in time"


async def test_publishing_into_a_connection_the_broker_reset_neither_raises_nor_loses(
    tmp_path: Path,
) -> None:
    """The broker dies while the link is idle and the event loop has not noticed yet: the first
    write goes out and draws a reset, the second fails inside paho, which closes the socket.
    Both messages are kept and delivered after the reconnect; ``publish`` raises nothing
    (it used to raise ``ValueError: Invalid file descriptor: -1`` from watching that socket)."""
    broker = Mosquitto(tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    acks = Acks()
    link = make_link(broker.url, None, Metrics())
    try:
        async with running(link):
            await wait_until(lambda: link.connected and link.pending == 0)
            await anyio.wait_all_tasks_blocked()  # the sender is idle
            assert link._idle_sender is not None
            sock = link._idle_sender[0]._client.socket()  # the connection's socket, to watch
            assert sock is not None
            assert broker.process is not None
            broker.process.kill()
            broker.process.wait()
            raw = cast("socket.socket", sock)
            block_until(raw, select.POLLIN)  # the broker's FIN is in
            link.publish(Message("t/a", b"1", 1, on_ack=acks.callback("a")))
            block_until(raw, 0)  # its answer, a reset: an error (and hang-up) on the socket
            link.publish(Message("t/b", b"2", 1, on_ack=acks.callback("b")))
            assert link.pending == 2
            broker.start()
            async with Consumer(broker.url, ("t/#",)) as consumer:
                await wait_until(lambda: acks == {"a": 1, "b": 1})
                await consumer.wait_for(lambda seen: {s.topic for s in seen} >= {"t/a", "t/b"})
    finally:
        broker.stop()


async def test_a_response_topic_with_a_wildcard_is_not_answered_and_harms_nothing(
    mosquitto: Mosquitto,
) -> None:
    """A client's ``replies/#`` as response topic: the request arrives without it (logged),
    and a message to such a topic published anyway is given up, counted, and the link goes on
    (paho refused it with a ValueError that ended the bridge)."""
    config = build_settings({"mqtt": {"url": mosquitto.url}}, {}).mqtt
    metrics = Metrics()
    link = MqttLink(
        config,
        client_id=f"link-test-{free_port()}",
        will=Message("t/will", b"offline", 1, True),
        subscriptions=("t/request",),
        metrics=metrics,
        store=None,
    )
    acks = Acks()
    async with running(link), Consumer(mosquitto.url, ("t/#",)) as sender:
        await wait_until(lambda: link.connected)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = "replies/#"
        with capture_logs() as logs:
            await sender.publish("t/request", b"{}", properties=properties)
            with anyio.fail_after(5):
                received = await link.inbound.receive()
        assert received.response_topic is None
        assert [e["event"] for e in logs if e["event"].startswith("mqtt_response")] == [
            "mqtt_response_topic_refused"
        ]
        with capture_logs() as logs:
            link.publish(Message("replies/#", b"x", 1, on_ack=acks.callback("refused")))
            link.publish(Message("t/after", b"1", 1, on_ack=acks.callback("after")))
            await wait_until(lambda: acks["after"] == 1 and link.pending == 0)
        assert acks == {"refused": 1, "after": 1}  # given up, so its driver may move on
        assert [e["event"] for e in logs if e["event"] == "mqtt_message_refused"] == [
            "mqtt_message_refused"
        ]
        assert metrics.outbox_dropped._value.get() == 1
