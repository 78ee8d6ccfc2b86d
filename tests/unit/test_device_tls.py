"""Device HTTPS, end to end through the driver's HTTP layer.

The generic simulator serves HTTPS with a self-signed certificate for 127.0.0.1 made at test time
by the ``openssl`` CLI, and every request goes through ``DeviceHttp`` as in the
driver: default verification, ``tls.ca_file``, ``tls.fingerprint`` pins and ``verify: false``.
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from bridge.app import Bridge
from bridge.config import DeviceConfig
from bridge.errors import DeviceUnreachableError, TlsPinError
from bridge.http import DeviceHttp
from bridge.metrics import Metrics
from bridge.settings import build_settings
from bridge.simulators.generic import GenericSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

PASSWORD = "hunter2-not-for-logs"


class Config(DeviceConfig):
    driver: str = "generic"


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    sha256: bytes  # of the DER certificate
    openssl_fingerprint: str  # what the documented openssl command prints after "="


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    if shutil.which("openssl") is None:
        msg = "openssl is not installed: run `make test`, which installs it"
        raise RuntimeError(msg)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "device.crt", folder / "device.key"
    request = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    subject = "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        ["openssl", *request.split(), *subject.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    printed = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return Cert(cert, key, hashlib.sha256(der).digest(), printed.strip().partition("=")[2])


@asynccontextmanager
async def https_simulator(cert: Cert) -> AsyncIterator[GenericSimulator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)
    sim = GenericSimulator(username="api", password=PASSWORD)
    sim.ssl_context = context
    async with anyio.create_task_group() as tg:
        await tg.start(sim.serve)
        yield sim
        tg.cancel_scope.cancel()


async def get_info(sim: GenericSimulator, tls: dict[str, Any]) -> Any:
    """``GET /api/info`` as the driver does it; Basic auth sends the password at once."""
    config = Config(
        id="d", url=sim.url, username="api", password=PASSWORD, auth="basic", tls=tls, timeout=5
    )
    async with DeviceHttp(config, metrics=Metrics()) as device:
        return await device.get_json("/api/info")


async def test_a_self_signed_device_is_refused_by_default(cert: Cert) -> None:
    async with https_simulator(cert) as sim:
        assert sim.url.startswith("https://")
        with pytest.raises(DeviceUnreachableError) as caught:
            await get_info(sim, {})
        assert not isinstance(caught.value, TlsPinError)
        assert caught.value.device == "d"
        message = str(caught.value)
        assert message.startswith("GET /api/info: TLS certificate not trusted (")
        assert "self-signed" in message
        assert "tls.ca_file or tls.fingerprint" in message
        assert sim.requests == 0


async def test_ca_file_trusts_the_device(cert: Cert) -> None:
    async with https_simulator(cert) as sim:
        info = await get_info(sim, {"ca_file": str(cert.cert)})
        assert info["serial"] == "SIM-0001"
        assert sim.requests == 1


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda c: c.openssl_fingerprint, id="as-openssl-prints-it"),
        pytest.param(lambda c: c.sha256.hex(":"), id="colons-lower"),
        pytest.param(lambda c: c.sha256.hex().upper(), id="bare-upper"),
        pytest.param(lambda c: c.sha256.hex(), id="bare-lower"),
        pytest.param(lambda c: c.sha256.hex()[:32] + c.sha256.hex(":")[48:].upper(), id="mixed"),
    ],
)
async def test_the_right_fingerprint_is_trusted_in_any_spelling(cert: Cert, form: Any) -> None:
    pin = form(cert)
    assert Config(id="d", url="https://x", tls={"fingerprint": pin}).tls.fingerprint == (
        cert.sha256.hex()
    )
    async with https_simulator(cert) as sim:
        info = await get_info(sim, {"fingerprint": pin})
        assert info["serial"] == "SIM-0001"
        # Keep-alive requests reuse the checked connection; a new one is checked again.
        assert await get_info(sim, {"fingerprint": pin}) == info


async def test_a_wrong_fingerprint_fails_before_anything_is_sent(cert: Cert) -> None:
    wrong = hashlib.sha256(b"some other certificate").digest()
    async with https_simulator(cert) as sim:
        with pytest.raises(TlsPinError) as caught:
            await get_info(sim, {"fingerprint": wrong.hex(":")})
        assert isinstance(caught.value, DeviceUnreachableError)  # backed off like one
        assert caught.value.device == "d"
        assert str(caught.value) == (
            "GET /api/info: TLS certificate fingerprint mismatch: "
            f"expected {wrong.hex(':')}, got {cert.sha256.hex(':')}"
        )
        assert PASSWORD not in str(caught.value)
        # The handshake was refused before the request, and so the Basic credentials, went out.
        assert sim.requests == 0


async def test_verify_false_connects_and_warns_at_start(cert: Cert) -> None:
    async with https_simulator(cert) as sim:
        info = await get_info(sim, {"verify": False})
        assert info["serial"] == "SIM-0001"
    device = {"driver": "generic", "url": "https://192.0.2.10"}
    settings = build_settings(
        {
            "devices": [
                {**device, "id": "unverified", "tls": {"verify": False}},
                {**device, "id": "pinned", "tls": {"fingerprint": cert.sha256.hex()}},
                {**device, "id": "ca", "tls": {"ca_file": str(cert.cert)}},
            ]
        },
        {},
    )
    bridge = Bridge(settings)  # built, not run: nothing connects
    try:
        with capture_logs() as logs:
            bridge._warn_insecure()  # what Bridge.run logs at every start
    finally:
        bridge.link.inbound.close()
        bridge.link._inbound_send.close()
    warned = [entry["device"] for entry in logs if entry["event"] == "device_tls_unverified"]
    assert warned == ["unverified"]
