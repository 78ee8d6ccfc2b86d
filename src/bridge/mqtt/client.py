"""aiomqtt's client, with a queued packet written to the socket on the spot.

paho (under aiomqtt) queues every outgoing packet and asks its host loop to watch the socket
for writing. aiomqtt answers with ``loop.call_soon_threadsafe(loop.add_writer, ...)``, because
paho may ask from the executor thread that connects. On the event loop's own thread that costs
a wake-up through the loop's self-pipe and two passes of the loop before a PUBLISH reaches the
socket, and whatever else is ready meanwhile goes first (in the 2N driver, the next
``log/pull`` request: issue #13's strace of one event). On the loop's thread this client
writes at once, with paho's ``loop_write`` (what paho itself does when no host loop is
registered), and watches the socket only for what the kernel did not take.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiomqtt

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.client import SocketLike


class Client(aiomqtt.Client):
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
            super()._on_socket_register_write(client, userdata, sock)
            return
        self._write(client)
        if client.want_write():  # the kernel's buffer is full: the rest when it has room
            self._loop.add_writer(sock.fileno(), self._write, client)

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
