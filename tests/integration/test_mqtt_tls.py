"""The broker connection over TLS (server verification, client certificates) and websockets,
against a real mosquitto whose certificates the test makes with openssl: the bridge connects and
delivers; a certificate it must refuse gives one clear line naming the broker and the reason,
then retries with growing delays; ``tls.insecure`` warns at every start."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from bridge.backoff import Backoff
from bridge.metrics import Metrics
from bridge.mqtt.link import MqttLink
from bridge.mqtt.message import Message
from bridge.settings import build_settings
from bridge.simulators.generic import GenericSimulator
from tests.helpers import Consumer, Seen
from tests.integration.harness import bridge_config, running, serving
from tests.integration.secure import Broker, Listener, broker
from tests.pki import Pair, Pki

pytestmark = [pytest.mark.anyio, pytest.mark.broker]
EXPIRED = ("20190101000000Z", "20200101000000Z")
SLOW_ATTEMPT = 30.0  # seconds: a refused client certificate ends an attempt only at its timeout


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server: Pair  # for 127.0.0.1 and localhost
    expired: Pair  # the same, expired in 2020
    elsewhere: Pair  # for broker.example only
    client: Pair  # the bridge's
    other_ca: Path  # a CA that signed none of these


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("pki")
    pki, other = Pki(folder / "ca"), Pki(folder / "other", name="some-other-ca")
    local = ("127.0.0.1", "localhost")
    return Certificates(
        ca=pki.ca.cert,
        server=pki.issue("broker", hosts=local),
        expired=pki.issue("expired-broker", hosts=local, valid=EXPIRED),
        elsewhere=pki.issue("broker.example", hosts=("broker.example",)),
        client=pki.issue("bridge"),
        other_ca=other.ca.cert,
    )


@dataclass
class TlsBroker:
    """A mosquitto with a plain listener (for the test's consumer) and one of each kind."""

    mosquitto: Broker
    ports: dict[str, int]


@pytest.fixture
def tls_broker(certs: Certificates, tmp_path: Path) -> Iterator[TlsBroker]:
    ca, server = certs.ca, certs.server
    listeners = {
        "tls": Listener(ca, server),
        "tls-client-certificate": Listener(ca, server, require_certificate=True),
        "ws": Listener(websockets=True),
        "wss": Listener(ca, server, websockets=True),
        "wss-client-certificate": Listener(ca, server, require_certificate=True, websockets=True),
        "tls-expired": Listener(ca, certs.expired),
        "tls-elsewhere": Listener(ca, certs.elsewhere),
    }
    mosquitto = broker(tmp_path / "broker", listeners=tuple(listeners.values()))
    mosquitto.start()
    try:
        yield TlsBroker(mosquitto, dict(zip(listeners, mosquitto.ports, strict=True)))
    finally:
        mosquitto.stop()


def client_tls(
    certs: Certificates, *, client_certificate: bool = False, **options: Any
) -> dict[str, Any]:
    """``mqtt.tls`` trusting the test CA, with the bridge's client certificate, plus ``options``."""
    tls = {"ca_file": str(certs.ca)}
    if client_certificate:
        tls |= {"cert_file": str(certs.client.cert), "key_file": str(certs.client.key)}
    return tls | options


CONNECTIONS = {
    # case: (listener, URL scheme, client certificate)
    "mqtts": ("tls", "mqtts", False),
    "mqtts-client-certificate": ("tls-client-certificate", "mqtts", True),
    "ws": ("ws", "ws", False),
    "wss": ("wss", "wss", False),
    "wss-client-certificate": ("wss-client-certificate", "wss", True),
}


@pytest.mark.parametrize("case", CONNECTIONS)
async def test_the_bridge_connects_and_delivers(
    case: str, certs: Certificates, tls_broker: TlsBroker, tmp_path: Path
) -> None:
    listener, scheme, with_client_certificate = CONNECTIONS[case]
    url = f"{scheme}://127.0.0.1:{tls_broker.ports[listener]}"
    sim = GenericSimulator()
    async with serving({"front-door": sim}), Consumer(tls_broker.mosquitto.url) as consumer:
        config = bridge_config(url, {"front-door": sim}, tmp_path)
        if scheme in {"mqtts", "wss"}:
            config["mqtt"]["tls"] = client_tls(certs, client_certificate=with_client_certificate)
        with capture_logs() as logs:
            async with running(config):
                await consumer.first("bridge/front-door/availability")
                info = (await consumer.first("bridge/bridge/info")).json()
                sim.press()
                ring = await consumer.first("bridge/front-door/event/doorbell.pressed")
                result = await consumer.command("front-door", "open_door", "t1")
    assert info["config"]["mqtt"]["broker"] == url
    assert ring.json()["device"] == "front-door"
    assert result["status"] == "ok"
    assert [c["command"] for c in sim.commands] == ["open_door"]
    connected = [e for e in logs if e["event"] == "mqtt_connected"]
    assert [e["broker"] for e in connected] == [url.partition("://")[2]]
    assert not [e for e in logs if e["event"] == "mqtt_unavailable"]


class Highest(random.Random):
    """Backoff at its ceiling: 0.05 s, 0.1 s, 0.2 s, 0.4 s, 0.4 s... instead of a random part."""

    def uniform(self, a: float, b: float) -> float:
        return b


FAILURES = {
    # case: (listener, mqtt.tls, the error logged; None: any certificate verify failure)
    "an unknown CA": ("tls", {"ca_file": "other"}, None),
    "an expired broker certificate": (
        "tls-expired",
        {},
        "TLS: certificate verify failed: certificate has expired",
    ),
    "another host's certificate": (
        "tls-elsewhere",
        {},
        (
            "TLS: certificate verify failed: IP address mismatch, certificate is not valid for "
            "'127.0.0.1'."
        ),
    ),
    "an unknown CA over websockets": ("wss", {"ca_file": "other"}, None),
}


def failing_link(url: str, tls: dict[str, Any]) -> MqttLink:
    config = build_settings({"mqtt": {"url": url, "tls": tls}}, {}).mqtt
    return MqttLink(
        config,
        client_id="tls-test",
        will=Message("bridge/bridge/state", b"offline", 1, True),
        subscriptions=(),
        metrics=Metrics(),
        backoff=Backoff(base=0.05, cap=0.4, floor=0.01, rng=Highest()),
    )


async def attempts(link: MqttLink, count: int, timeout: float) -> list[MutableMapping[str, Any]]:
    """Run ``link`` until it has failed ``count`` times; what it logged about the broker."""
    with capture_logs() as logs, link.inbound:
        async with anyio.create_task_group() as tg:
            await tg.start(link.run)
            with anyio.fail_after(timeout):
                while len([e for e in logs if e["event"].startswith("mqtt_")]) < count:  # noqa: ASYNC110 - log lines have no event to wait on
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    return [e for e in logs if e["event"].startswith("mqtt_")]


@pytest.mark.parametrize("case", FAILURES)
async def test_a_refused_certificate_is_one_clear_line_then_retries_with_backoff(
    case: str, certs: Certificates, tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    listener, tls, expected = FAILURES[case]
    scheme = "wss" if listener.startswith("wss") else "mqtts"
    endpoint = f"127.0.0.1:{tls_broker.ports[listener]}"
    ca = certs.other_ca if tls.get("ca_file") == "other" else certs.ca
    link = failing_link(f"{scheme}://{endpoint}", {"ca_file": str(ca)})
    logged = await attempts(link, 5, timeout=10)
    [first, *retries] = logged[:5]
    assert first["event"] == "mqtt_unavailable"
    assert (first["log_level"], first["broker"]) == ("warning", endpoint)
    if expected is None:
        assert first["error"].startswith("TLS: certificate verify failed: ")
        assert first["error"].endswith(
            (
                "unable to get local issuer certificate",
                "self-signed certificate in certificate chain",
            )
        )
    else:
        assert first["error"] == expected
    assert [(e["event"], e["log_level"], e["error"]) for e in retries] == [
        ("mqtt_retry_failed", "debug", first["error"])
    ] * 4
    # Attempts spaced by delays that double up to the cap (here 0.4 s), not by a fixed one.
    assert [e["retry_in"] for e in logged[:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]
    assert [e["attempt"] for e in retries] == [2, 3, 4, 5]
    # The client library said nothing on its own at warning or above.
    assert not [r for r in caplog.records if r.levelno >= 30 and r.name.startswith("bridge.mqtt")]


async def test_a_missing_client_certificate_is_one_clear_line(
    certs: Certificates, tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker refuses the missing certificate after the TLS 1.3 handshake: the client only
    logs the error and the attempt times out. The outage line still gives the reason."""
    endpoint = f"127.0.0.1:{tls_broker.ports['tls-client-certificate']}"
    link = failing_link(f"mqtts://{endpoint}", {"ca_file": str(certs.ca)})
    [first] = await attempts(link, 1, timeout=SLOW_ATTEMPT)
    assert (first["event"], first["broker"]) == ("mqtt_unavailable", endpoint)
    assert first["error"] == "TLS: tlsv13 alert certificate required"
    assert not [r for r in caplog.records if r.levelno >= 30 and r.name.startswith("bridge.mqtt")]


def more_than(count: int, topic: str) -> Callable[[list[Seen]], bool]:
    return lambda seen: sum(s.topic == topic for s in seen) > count


async def test_insecure_connects_to_another_hosts_certificate_and_warns_at_every_start(
    certs: Certificates, tls_broker: TlsBroker, tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{tls_broker.ports['tls-elsewhere']}"
    sim = GenericSimulator()
    warnings: list[MutableMapping[str, Any]] = []
    async with serving({"front-door": sim}), Consumer(tls_broker.mosquitto.url) as consumer:
        config = bridge_config(f"mqtts://{endpoint}", {"front-door": sim}, tmp_path)
        config["mqtt"]["tls"] = client_tls(certs, insecure=True)
        for start in ("s1", "s2"):
            infos = len(consumer.on("bridge/bridge/info"))
            with capture_logs() as logs:
                async with running(config):
                    # Published once the bridge has subscribed: it then hears commands.
                    await consumer.wait_for(more_than(infos, "bridge/bridge/info"))
                    result = await consumer.command("front-door", "refresh", start)
            assert result["status"] == "ok"
            warnings += [e for e in logs if e["event"] == "mqtt_tls_insecure"]
    assert [(w["log_level"], w["broker"]) for w in warnings] == [("warning", endpoint)] * 2
