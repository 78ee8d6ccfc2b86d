"""Who may open the door: the broker's access control, tested with a real mosquitto.

The broker loads ``deploy/mosquitto/acl`` as it is (``acl_file``), or gets the same users and
rights from ``deploy/mosquitto/dynsec.sh`` (the dynamic-security plugin); its password users are
made by the commands docs/security.md shows, run as written. The bridge works fully as the
``bridge`` user; ``automation`` commands the front door and reaches nothing of the back door;
``dashboard`` reaches nothing at all; ``homeassistant`` sees discovery and commands every device.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from structlog.testing import capture_logs

from bridge.app import Bridge
from bridge.simulators.generic import GenericSimulator
from tests.doctext import blocks, file_commands
from tests.helpers import Mosquitto, wait_until
from tests.integration.harness import bridge_config, running, serving
from tests.integration.secure import ACL_FILE, DYNSEC_SCRIPT, ROOT, User, broker, dynsec_plugin

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
DOC = "docs/security.md"
PASSWORDS = {
    "bridge": "bridge-Pw-1c9e",
    "automation": "automation-Pw-77d0",
    "dashboard": "dashboard-Pw-3b5a",
    "homeassistant": "homeassistant-Pw-e41f",
    "admin": "admin-Pw-0aa2",
}
OPEN = {"command": "open_door", "args": {"door": 1}}


def environment(**extra: str) -> dict[str, str]:
    """What the documented commands read: the users' passwords, as docs/security.md names them."""
    names = {f"{user.upper()}_PASSWORD": password for user, password in PASSWORDS.items()}
    return {"PATH": os.environ["PATH"], **names, **extra}


def run_documented(prefix: str, cwd: Path, env: dict[str, str]) -> list[str]:
    """Run, as written, every command of docs/security.md that starts with ``prefix``."""
    commands = [c.text for c in file_commands(ROOT, DOC) if c.text.startswith(prefix)]
    assert commands, f"{DOC} shows no `{prefix}` command"
    for command in commands:
        subprocess.run(command, shell=True, cwd=cwd, env=env, check=True, capture_output=True)  # noqa: S602 - the docs' shell commands
    return commands


def test_the_docs_show_the_acl_file_as_it_is() -> None:
    text = (ROOT / DOC).read_text(encoding="utf-8")
    shown = [b.lines for b in blocks(text) if b.lines and b.lines[0].startswith("# Least priv")]
    assert shown == [tuple(ACL_FILE.read_text(encoding="utf-8").splitlines())]


def acl_file_broker(workdir: Path) -> Mosquitto:
    run_documented("mosquitto_passwd ", workdir, environment())
    return broker(
        workdir,
        "allow_anonymous false",
        f"password_file {workdir / 'passwd'}",
        f"acl_file {ACL_FILE}",
    )


def dynsec_broker(workdir: Path) -> Mosquitto:
    """The plugin initialised as docs/security.md says; the users made by its script, which
    reaches the broker through mosquitto_ctrl's options file."""
    run_documented("mosquitto_ctrl dynsec init ", workdir, environment())
    state = workdir / "dynamic-security.json"
    return broker(
        workdir,
        "allow_anonymous false",
        f"plugin {dynsec_plugin()}",
        f"plugin_opt_config_file {state}",
    )


def admin_environment(mosquitto: Mosquitto) -> dict[str, str]:
    """mosquitto_ctrl's options file, as docs/security.md shows it, for this broker."""
    config_home = mosquitto.workdir / "config"
    config_home.mkdir(exist_ok=True)
    options = f"-h 127.0.0.1\n-p {mosquitto.port}\n-u admin\n-P {PASSWORDS['admin']}\n"
    (config_home / "mosquitto_ctrl").write_text(options)
    return environment(XDG_CONFIG_HOME=str(config_home))


def make_dynsec_users(mosquitto: Mosquitto) -> None:
    assert DYNSEC_SCRIPT.exists()
    run_documented("sh deploy/mosquitto/dynsec.sh", ROOT, admin_environment(mosquitto))


@pytest.fixture(params=["acl_file", "dynsec"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto with the documented users and rights, by either mechanism."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    dynsec = request.param == "dynsec"
    mosquitto = dynsec_broker(workdir) if dynsec else acl_file_broker(workdir)
    mosquitto.start()
    try:
        if dynsec:
            make_dynsec_users(mosquitto)
        yield mosquitto
    finally:
        mosquitto.stop()


def user(mosquitto: Mosquitto, name: str, *topics: str) -> User:
    return User(mosquitto.port, topics, username=name, password=PASSWORDS[name])


def received(bridge: Bridge, outcome: str) -> float:
    """Inbound messages the bridge counted with ``outcome`` (``command``, ``request``)."""
    value = bridge.metrics.registry.get_sample_value(
        "bridge_mqtt_received_total", {"outcome": outcome}
    )
    return value or 0.0


def response_topic(topic: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = topic
    return props


def ids(consumer: User, topic: str) -> list[Any]:
    return [s.json().get("id") for s in consumer.on(topic)]


async def test_each_user_reaches_what_its_entry_allows(secured: Mosquitto, tmp_path: Path) -> None:
    front, back = GenericSimulator(), GenericSimulator()
    sims = {"front-door": front, "back-door": back}
    watching = ("bridge/front-door/#", "bridge/bridge/#", "replies/automation/#")
    async with (
        serving(sims),
        user(secured, "dashboard", "bridge/#") as dashboard,
        user(secured, "automation", *watching) as automation,
        user(secured, "homeassistant", "homeassistant/#", "bridge/#") as ha,
    ):
        config = bridge_config(secured.url, sims, tmp_path / "state")
        config["mqtt"] |= {"username": "bridge", "password": PASSWORDS["bridge"]}
        config["homeassistant"] = {"enabled": True}
        with capture_logs() as logs:
            async with running(config) as bridge:
                # The bridge, least privileged: state, availability, info, discovery, events.
                await dashboard.first("bridge/bridge/state")
                await dashboard.first("bridge/bridge/info")
                for device in sims:
                    await dashboard.first(f"bridge/{device}/availability")
                    await dashboard.first(f"bridge/{device}/state")
                    await ha.first(f"homeassistant/device/bridge_{device}/config")
                assert dashboard.on("bridge/bridge/state")[-1].payload == b"online"
                front.press()
                ring = await dashboard.first("bridge/front-door/event/doorbell.pressed")
                assert ring.json()["device"] == "front-door"

                # The automation commands its device, and asks the bridge (MQTT 5 reply too).
                assert (await automation.command("front-door", "open_door", "a1"))["status"] == "ok"
                assert [c["command"] for c in front.commands] == ["open_door"]
                await automation.publish(
                    "bridge/bridge/request/health_check",
                    json.dumps({"id": "a2"}),
                    properties=response_topic("replies/automation/1"),
                )
                reply = await automation.first("replies/automation/1", id="a2")
                assert reply.json()["data"]["devices"] == {"front-door": True, "back-door": True}
                await dashboard.first("bridge/bridge/response/health_check", id="a2")
                # A reply the bridge may not publish: the broker refuses it, the bridge goes on.
                await automation.publish(
                    "bridge/bridge/request/info",
                    json.dumps({"id": "a2b"}),
                    properties=response_topic("elsewhere/automation"),
                )
                await dashboard.first("bridge/bridge/response/info", id="a2b")

                # What each may not do. The broker refuses the publish: nothing reaches the
                # bridge, so nothing reaches the device.
                await automation.publish(
                    "bridge/back-door/command", json.dumps(OPEN | {"id": "a3"})
                )
                await dashboard.publish(
                    "bridge/front-door/command", json.dumps(OPEN | {"id": "d1"})
                )
                await dashboard.publish("bridge/bridge/request/info", json.dumps({"id": "d2"}))
                # A reply aimed at the back door's command topic is no command: refused there.
                await automation.publish(
                    "bridge/front-door/command",
                    json.dumps({"command": "refresh", "id": "a4"}),
                    properties=response_topic("bridge/back-door/command"),
                )
                looped = await dashboard.first("bridge/back-door/command/result", id="a4")
                assert looped.json()["error"]["code"] == "bad_request"
                # Published after the refused ones, so delivered after them, had they been.
                await automation.command("front-door", "refresh", "a5")

                assert back.commands == []
                assert [c["command"] for c in front.commands] == ["open_door"]
                assert ids(dashboard, "bridge/front-door/command/result") == ["a1", "a4", "a5"]
                assert ids(dashboard, "bridge/back-door/command/result") == ["a4"]
                assert ids(dashboard, "bridge/bridge/response/info") == ["a2b"]  # not d2
                # a1, a4, a4's reply on the back door, a5; and the two requests.
                assert (received(bridge, "command"), received(bridge, "request")) == (4.0, 2.0)
                # Nothing of the back door reached the automation.
                assert not [s for s in automation.seen if s.topic.startswith("bridge/back-door")]

                # Home Assistant: its birth brings discovery again; it commands every device.
                configs = len(ha.on("homeassistant/device/bridge_back-door/config"))
                await ha.publish("homeassistant/status", b"online")
                await ha.wait_for(
                    lambda _: len(ha.on("homeassistant/device/bridge_back-door/config")) > configs
                )
                assert (await ha.command("back-door", "open_door", "h1"))["status"] == "ok"
                assert [c["command"] for c in back.commands] == ["open_door"]
    assert not [e for e in logs if e["event"] == "mqtt_subscription_refused"]
    assert not [e for e in logs if e["event"] == "mqtt_unavailable"]


async def test_a_refused_subscription_is_logged_once(tmp_path: Path) -> None:
    """The dynamic-security plugin refuses a subscription outright (acl_file never does): the
    bridge, logged in as a user without the right, says so once instead of waiting for commands
    that never come."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    mosquitto = dynsec_broker(workdir)
    mosquitto.start()
    try:
        # A user that may publish the bridge's topics (its last will included: the broker
        # refuses a connection whose will it would not accept) and subscribe to nothing.
        env = admin_environment(mosquitto)
        for call in (
            "createRole publisher",
            "addRoleACL publisher publishClientSend bridge/# allow",
            "createClient publisher -p publisher-Pw",
            "addClientRole publisher publisher",
        ):
            command = ["mosquitto_ctrl", "dynsec", *call.split()]
            await anyio.run_process(command, env=env, check=True)
        config = bridge_config(mosquitto.url, {}, tmp_path / "state")
        config["mqtt"] |= {"username": "publisher", "password": "publisher-Pw"}
        with capture_logs() as logs:
            async with running(config) as bridge:

                def refused() -> list[MutableMapping[str, Any]]:
                    return [e for e in logs if e["event"] == "mqtt_subscription_refused"]

                def published() -> float:
                    return sum(
                        bridge.metrics.registry.get_sample_value(
                            "bridge_mqtt_publishes_total", {"retained": retained}
                        )
                        or 0.0
                        for retained in ("true", "false")
                    )

                await wait_until(lambda: len(refused()) == 2 and published() >= 2)
                # Reconnected, the bridge subscribes again (refused again) before it publishes.
                before = published()
                mosquitto.stop()
                mosquitto.start()
                await wait_until(lambda: any(e["event"] == "mqtt_recovered" for e in logs))
                await wait_until(lambda: published() > before)
    finally:
        mosquitto.stop()
    assert [(e["topic"], e["reason"], e["log_level"]) for e in refused()] == [
        ("bridge/+/command", "Not authorized", "error"),
        ("bridge/bridge/request/+", "Not authorized", "error"),
    ]
    assert all(e["broker"] == f"127.0.0.1:{mosquitto.port}" for e in refused())
