"""The bridge's MQTT client against a real mosquitto: a PUBLISH is on the socket when
``publish_nowait`` returns, and its ``on_ack`` follows the broker's acknowledgement."""

from __future__ import annotations

import asyncio
from functools import partial

import aiomqtt
import anyio
import pytest

from bridge.mqtt.client import Client
from tests.helpers import Mosquitto

pytestmark = [pytest.mark.anyio, pytest.mark.broker]


async def test_stock_aiomqtt_leaves_the_publish_queued(mosquitto: Mosquitto) -> None:
    """The baseline the bridge's client improves on: after aiomqtt hands a message to paho,
    the PUBLISH waits for a later pass of the event loop."""
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        client._client.publish("t/stock", b"x", 1)
        assert client._client.want_write()


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_publish_is_written_at_once_and_acknowledged(mosquitto: Mosquitto, qos: int) -> None:
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port) as consumer,
        Client("127.0.0.1", mosquitto.port) as client,
    ):
        await consumer.subscribe("t/#", qos=2)
        acks: list[int] = []
        all_acked = anyio.Event()

        def acknowledged(n: int) -> None:
            acks.append(n)
            if len(acks) == 3:
                all_acked.set()

        for n in range(3):
            client.publish_nowait(
                f"t/{n}",
                b"x",
                qos=qos,
                retain=False,
                properties=None,
                on_ack=partial(acknowledged, n),
            )
            assert not client._client.want_write()  # nothing left for the loop to write
        assert acks == []  # never inside the call: the caller may not be ready for it
        with anyio.fail_after(5):
            received = [(await anext(aiter(consumer.messages))).topic.value for _ in range(3)]
            await all_acked.wait()
        assert received == ["t/0", "t/1", "t/2"]
        assert acks == [0, 1, 2]


async def test_a_refused_publish_raises(mosquitto: Mosquitto) -> None:
    client = Client("127.0.0.1", mosquitto.port)
    async with client:
        pass  # disconnected again
    with pytest.raises(aiomqtt.MqttCodeError):
        client.publish_nowait("t/x", b"x", qos=1, retain=False, properties=None, on_ack=print)


async def test_a_publish_larger_than_the_socket_buffer_is_finished_by_the_loop(
    mosquitto: Mosquitto,
) -> None:
    """What the kernel does not take at once is written when the socket has room, and the
    loop stops watching the socket afterwards (a writer left behind would spin the loop)."""
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port) as consumer,
        Client("127.0.0.1", mosquitto.port) as client,
    ):
        await consumer.subscribe("t/big", qos=1)
        payload = bytes(range(256)) * (64 * 1024)  # 16 MiB
        acked = anyio.Event()
        client.publish_nowait(
            "t/big", payload, qos=1, retain=False, properties=None, on_ack=acked.set
        )
        assert client._client.want_write()  # the kernel took a part of it
        with anyio.fail_after(20):
            message = await anext(aiter(consumer.messages))
            await acked.wait()
        assert message.payload == payload
        socket = client._client.socket()
        assert socket is not None
        assert not asyncio.get_running_loop().remove_writer(socket.fileno())  # none was left
