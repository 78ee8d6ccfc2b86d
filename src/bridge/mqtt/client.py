"""aiomqtt's client, with a queued packet written to the socket on the spot.

paho (under aiomqtt) queues every outgoing packet and asks its host loop to watch the socket
for writing. aiomqtt answers with ``loop.call_soon_threadsafe(loop.add_writer, ...)``, because
paho may ask from the executor thread that connects. On the event loop's own thread that costs
a wake-up through the loop's self-pipe and two passes of the loop before a PUBLISH reaches the
socket, and whatever else is ready meanwhile goes first (in the 2N driver, the next
``log/pull`` request: issue #13's strace of one event). On the loop's thread this client
writes at once, with paho's ``loop_write`` (what paho itself does when no host loop is
registered), and watches the socket only for what the kernel did not take.

``publish_nowait`` hands a message over without a task of its own: aiomqtt's ``publish``
awaits the acknowledgement with ``asyncio.wait_for`` (a task and a timer per message) and counts
every pending call (a list of them per message), which the outbox's stream of QoS 1 events does
not need. Its ``on_ack`` runs on the event loop after paho's callback returns, so it may publish
again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as mqtt

if TYPE_CHECKING:
    from collections.abc import Callable

    from paho.mqtt.client import SocketLike
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode


class Client(aiomqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - aiomqtt's own
        super().__init__(*args, **kwargs)
        self._acks: dict[int, Callable[[], None]] = {}  # message id -> its on_ack
        self._watching_write = False  # a writer for the socket may be registered with the loop

    def publish_nowait(  # noqa: PLR0913 - paho's publish, plus what to call on the ack
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        properties: Properties | None,
        on_ack: Callable[[], None],
    ) -> None:
        """Queue a PUBLISH (written at once on the loop's thread); ``on_ack`` is called soon
        after the broker's PUBACK (QoS 1), PUBCOMP (QoS 2), or once written (QoS 0). A
        connection that breaks first never calls it: the caller requeues what is unacknowledged.

        Raises ``aiomqtt.MqttCodeError`` when paho refuses it (not connected).
        """
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if info.is_published():  # QoS 0, written already
            self._loop.call_soon(on_ack)
        else:
            self._acks[info.mid] = on_ack

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ANN401 - paho's callback signature
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        on_ack = self._acks.pop(mid, None)
        if on_ack is None:  # one of aiomqtt's own publishes
            super()._on_publish(client, userdata, mid, reason_code, properties)
        else:  # outside paho's locks
            self._loop.call_soon(on_ack)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ANN401 - paho's callback signature
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        # Lost before the broker's CONNACK (it refused our client certificate, say): aiomqtt
        # ignores that and lets the connect wait out its timeout. Fail the connect now.
        if self._connected.done():
            super()._on_disconnect(client, userdata, flags, reason_code, properties)
            return
        error = aiomqtt.MqttCodeError(reason_code, "Connection lost before the broker's CONNACK")
        if self._on_loop_thread():
            self._refuse(error)
        else:
            self._loop.call_soon_threadsafe(self._refuse, error)

    def _refuse(self, error: aiomqtt.MqttCodeError) -> None:
        if not self._connected.done():
            self._connected.set_exception(error)

    def _on_socket_register_write(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ANN401 - paho's callback signature
        sock: SocketLike,
    ) -> None:
        # In a paho callback (its lock held by this thread), a write could call back into paho
        # and wait for that lock: take aiomqtt's way, as from any other thread.
        in_callback = client._in_callback_mutex.locked()  # noqa: SLF001 - paho's own guard
        if in_callback or not self._on_loop_thread():
            self._watching_write = True
            super()._on_socket_register_write(client, userdata, sock)
            return
        self._write(client)
        # The kernel's buffer is full: the rest when it has room. Unless the write failed and
        # paho closed the socket (the broker reset it): the connection's end is on its way then,
        # and what was not acknowledged is sent again after the reconnect.
        if client.want_write() and sock.fileno() >= 0:
            self._watching_write = True
            self._loop.add_writer(sock.fileno(), self._write, client)

    def _on_socket_unregister_write(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ANN401 - paho's callback signature
        sock: SocketLike,
    ) -> None:
        # paho unregisters after every write it was asked for; asyncio's remove_writer then
        # rewrites the socket's epoll entry (a system call) even when no writer was added.
        if self._watching_write:
            self._watching_write = False
            super()._on_socket_unregister_write(client, userdata, sock)

    def _write(self, client: mqtt.Client) -> None:
        # As aiomqtt's writer: an error here is a broken connection.
        try:
            client.loop_write()
        except Exception as exc:  # handed to the connection's waiter
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False
