"""The §3 topic contract, end to end: real mosquitto, generic simulator, the bridge."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.simulators.generic import GenericSimulator
from tests.helpers import Consumer, Mosquitto
from tests.integration.harness import bridge_config, running, serving

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
SCHEMAS = Path(__file__).parents[2] / "docs" / "schema"


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


async def test_consumer_sees_the_whole_contract(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sims = {"front-door": GenericSimulator(serial="FD-1")}
    async with serving(sims), running(bridge_config(mosquitto.url, sims, tmp_path)):
        # Everything below is retained: a consumer arriving after the bridge still sees it.
        async with Consumer(mosquitto.url, ("bridge/+/availability",)) as probe:
            await probe.first("bridge/front-door/availability")
        async with Consumer(mosquitto.url) as consumer:
            state = await consumer.first("bridge/bridge/state")
            assert (state.payload, state.retain) == (b"online", True)
            info = (await consumer.first("bridge/bridge/info")).json()
            assert info["devices"] == ["front-door"]
            assert info["version"]
            avail = await consumer.first("bridge/front-door/availability")
            assert (avail.payload, avail.retain) == (b"online", True)
            dev_info = await consumer.first("bridge/front-door/info")
            assert dev_info.retain
            assert dev_info.json()["serial"] == "FD-1"
            assert "open_door" in dev_info.json()["commands"]
            jsonschema.validate(dev_info.json(), schema("device-info"))
            dev_state = await consumer.first("bridge/front-door/state")
            assert dev_state.json()["switches"]["1"] == {"active": False}

            # A doorbell press becomes a CloudEvent, not retained.
            record = sims["front-door"].press(1)
            ring = await consumer.first("bridge/front-door/event/doorbell.pressed")
            event = ring.json()
            jsonschema.validate(event, schema("event"))
            assert not ring.retain
            assert event["id"] == f"front-door/{sims['front-door'].boot}/{record['seq']}"
            assert event["source"] == "bridge/front-door"
            assert event["data"]["button"] == 1

            # A command gets a result, and the device's own reaction comes back as events.
            await consumer.publish(
                "bridge/front-door/command",
                json.dumps({"command": "open_door", "args": {"door": 1}, "id": "c1"}),
            )
            result = (await consumer.first("bridge/front-door/command/result", id="c1")).json()
            jsonschema.validate(result, schema("command-result"))
            assert result == {
                "id": "c1",
                "command": "open_door",
                "status": "ok",
                "data": {"door": 1},
                "error": None,
            }
            switches = await consumer.wait_for(
                lambda seen: (
                    [
                        s.json()["data"]
                        for s in seen
                        if s.topic == "bridge/front-door/event/switch.changed"
                    ][:2]
                    if len([s for s in seen if s.topic.endswith("switch.changed")]) >= 2
                    else None
                )
            )
            assert switches == [
                {"switch": 1, "active": True, "raw": switches[0]["raw"]},
                {"switch": 1, "active": False, "raw": switches[1]["raw"]},
            ]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "bad_request"),
        (b'["open_door"]', "bad_request"),
        (b'{"command": "fly", "id": 7}', "unknown_command"),
        (b'{"command": "ptz", "args": {"action": "left"}, "id": 7}', "unsupported"),
        (b'{"command": "reboot", "id": 7}', "denied"),
        (b'{"command": "open_door", "args": {"door": "front"}, "id": 7}', "invalid_args"),
        (b'{"command": "set_switch", "args": {"switch": 9, "on": true}, "id": 7}', "device_error"),
    ],
)
async def test_bad_commands_get_error_results(
    mosquitto: Mosquitto, tmp_path: Path, payload: bytes, code: str
) -> None:
    sims = {"front-door": GenericSimulator()}
    async with (
        serving(sims),
        Consumer(mosquitto.url, ("bridge/+/command/result", "bridge/+/availability")) as consumer,
    ):
        async with running(bridge_config(mosquitto.url, sims, tmp_path)):
            await consumer.first("bridge/front-door/availability")
            await consumer.wait_for(lambda seen: any(s.payload == b"online" for s in seen))
            await consumer.publish("bridge/front-door/command", payload)
            result = (await consumer.first("bridge/front-door/command/result")).json()
            jsonschema.validate(result, schema("command-result"))
            assert result["status"] == "error"
            assert result["error"]["code"] == code
            assert result["error"]["message"]
            if b'"id"' in payload:
                assert result["id"] == 7
            # nothing reached the device for commands refused before the HTTP call
            if code != "device_error":
                assert sims["front-door"].commands == []


async def test_retained_commands_are_ignored_and_response_topic_honoured(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator()}
    async with serving(sims), Consumer(mosquitto.url, ("bridge/#", "reply/me")) as consumer:
        async with running(bridge_config(mosquitto.url, sims, tmp_path)):
            await consumer.wait_for(
                lambda seen: any(
                    s.payload == b"online"
                    for s in seen
                    if s.topic.endswith("front-door/availability")
                )
            )
            # Left on the broker by a careless flow: must never open the door.
            await consumer.publish(
                "bridge/front-door/command",
                json.dumps({"command": "open_door", "id": "retained"}),
                retain=True,
            )
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "reply/me"
            props.CorrelationData = b"\x01corr"
            await consumer.publish(
                "bridge/front-door/command",
                json.dumps({"command": "refresh", "id": "live"}),
                properties=props,
            )
            reply = await consumer.first("reply/me")
            assert reply.correlation == b"\x01corr"
            assert reply.json()["id"] == "live"
            assert reply.json()["status"] == "ok"
            await consumer.first("bridge/front-door/command/result", id="live")
            refused = await consumer.first("bridge/front-door/command/result", id="retained")
            assert refused.json()["error"]["code"] == "retained"
            assert sims["front-door"].commands == []  # the door never opened

        # At the next start the broker replays it: refused again, never executed.
        async with running(bridge_config(mosquitto.url, sims, tmp_path)):
            await consumer.wait_for(
                lambda seen: (
                    len(
                        [
                            s
                            for s in seen
                            if s.topic.endswith("command/result") and b"retained" in s.payload
                        ]
                    )
                    >= 2
                )
            )
            assert sims["front-door"].commands == []


async def test_bridge_requests_and_http_endpoints(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sims = {"front-door": GenericSimulator()}
    async with (
        serving(sims),
        Consumer(mosquitto.url, ("bridge/bridge/response/+", "bridge/+/availability")) as consumer,
    ):
        async with running(bridge_config(mosquitto.url, sims, tmp_path)) as bridge:
            await consumer.wait_for(lambda seen: any(s.payload == b"online" for s in seen))
            await consumer.publish("bridge/bridge/request/health_check", b'{"id": 3}')
            health = (await consumer.first("bridge/bridge/response/health_check")).json()
            assert health["id"] == 3
            assert health["status"] == "ok"
            assert health["data"]["devices"] == {"front-door": True}
            await consumer.publish("bridge/bridge/request/explode", b"{}")
            nope = (await consumer.first("bridge/bridge/response/explode")).json()
            assert nope["status"] == "error"
            assert nope["error"]["code"] == "unknown_action"

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.http_port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/readyz")).json() == {"ready": True}
                metrics = (await http.get("/metrics")).text
                assert 'bridge_device_up{device="front-door",driver="generic"} 1.0' in metrics
                assert "bridge_mqtt_connected 1.0" in metrics
                assert (await http.get("/nope")).status_code == 404


async def test_home_assistant_discovery_and_birth_republish(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {"front-door": GenericSimulator(serial="FD-9")}
    topic = "homeassistant/device/bridge_front-door/config"
    async with serving(sims), Consumer(mosquitto.url, ("homeassistant/#",)) as consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path, name="Front door")
        config["homeassistant"] = {"enabled": True}
        async with running(config):
            await check_discovery(consumer, topic)
            async with Consumer(consumer_url(consumer), ("homeassistant/#",)) as late:
                assert (await late.first(topic)).retain


def consumer_url(consumer: Consumer) -> str:
    return f"mqtt://{consumer.host}:{consumer.port}"


async def check_discovery(consumer: Consumer, topic: str) -> None:
    found = await consumer.wait_for(
        lambda seen: [
            s
            for s in seen
            if s.topic == topic and "bridge_front-door_switch_1" in s.json()["components"]
        ]
    )
    discovery = found[-1].json()
    assert discovery["device"]["serial_number"] == "FD-9"
    assert discovery["device"]["name"] == "Front door"
    assert discovery["availability_mode"] == "all"
    components = discovery["components"]
    assert components["bridge_front-door_doorbell"]["p"] == "event"
    press = json.loads(components["bridge_front-door_open_door"]["payload_press"])
    assert press["command"] == "open_door"
    assert "bridge_front-door_reboot" not in components  # denied by default: no button
    camera = components["bridge_front-door_camera"]
    assert (camera["p"], camera["topic"]) == ("camera", "bridge/front-door/snapshot")

    before = len(consumer.on(topic))
    await consumer.publish("homeassistant/status", b"online")
    await consumer.wait_for(lambda _: len(consumer.on(topic)) > before)


async def test_shards_split_the_devices_and_keep_their_own_bridge_topics(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sims = {f"door-{n}": GenericSimulator() for n in range(6)}
    async with serving(sims), Consumer(mosquitto.url) as consumer:
        config = bridge_config(mosquitto.url, sims, tmp_path)
        shards = [
            {
                **config,
                "mqtt": {**config["mqtt"], "client_id": f"{config['mqtt']['client_id']}-{i}"},
                "shard": {"index": i, "count": 2},
            }
            for i in range(2)
        ]
        async with running(shards[1]):
            async with running(shards[0]):
                infos = [
                    (await consumer.first(f"bridge/bridge/shard/{i}/info")).json() for i in range(2)
                ]
                owned = [set(info["devices"]) for info in infos]
                assert not owned[0] & owned[1]
                assert owned[0] | owned[1] == set(sims)
                for device in sims:
                    await consumer.first(f"bridge/{device}/availability")
            # Shard 0 stopped: its state goes offline (waited for: it may still be on its way),
            # shard 1's is untouched.
            await consumer.wait_for(
                lambda _: (
                    [s.payload for s in consumer.on("bridge/bridge/shard/0/state")][-1:]
                    == [b"offline"]
                )
            )
            assert consumer.on("bridge/bridge/shard/1/state")[-1].payload == b"online"
        assert not consumer.on("bridge/bridge/state")
