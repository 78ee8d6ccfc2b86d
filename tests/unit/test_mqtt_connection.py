"""How the broker connection is set up and how its failures are said (bridge.mqtt.connection),
and the config checks of ``mqtt.tls`` and ``http.push_listen``: tables, plus one ``bridge run``
with a TLS file it cannot read."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.config import MqttConfig
from bridge.errors import ConfigError
from bridge.mqtt.connection import ClientLog, TlsFileError, describe_failure, tls_context
from bridge.settings import build_settings
from tests.pki import Pair, Pki, openssl

VERIFY = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {} (_ssl.c:1006)"


def as_aiomqtt_raises(cause: BaseException) -> aiomqtt.MqttError:
    """What aiomqtt's connect raises for ``cause`` (``raise MqttError(str(exc)) from None``):
    the cause's text, the cause itself only as the suppressed context."""
    wrapped = aiomqtt.MqttError(str(cause))
    wrapped.__context__, wrapped.__suppress_context__ = cause, True
    return wrapped


def verify_error(reason: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, VERIFY.format(reason))
    error.verify_message, error.verify_code = reason, 0
    return error


ALERT = ssl.SSLError(
    1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"
)
FAILURES: list[tuple[str, BaseException, BaseException | None, str]] = [
    (
        "an untrusted broker certificate",
        as_aiomqtt_raises(verify_error("unable to get local issuer certificate")),
        None,
        "TLS: certificate verify failed: unable to get local issuer certificate",
    ),
    (
        "an expired one",
        as_aiomqtt_raises(verify_error("certificate has expired")),
        None,
        "TLS: certificate verify failed: certificate has expired",
    ),
    (
        "the broker's alert, logged by the client, then the timeout",
        as_aiomqtt_raises(TimeoutError()),
        ALERT,
        "TLS: tlsv13 alert certificate required",
    ),
    (
        "a refused TCP connection",
        as_aiomqtt_raises(ConnectionRefusedError(111, "Connection refused")),
        None,
        "[Errno 111] Connection refused",
    ),
    (
        "a reset during the session, logged by the client",
        aiomqtt.MqttError("Disconnected during message iteration"),
        ConnectionResetError(104, "Connection reset by peer"),
        "[Errno 104] Connection reset by peer",
    ),
    (
        "a timeout and nothing else",
        as_aiomqtt_raises(TimeoutError()),
        None,
        "",  # aiomqtt's own text: str(TimeoutError()) is empty
    ),
    (
        "the broker refusing the user",
        aiomqtt.MqttError("[code:135] Not authorized"),
        None,
        "[code:135] Not authorized",
    ),
    (
        "a TLS file that cannot be read",
        TlsFileError("ca_file", Path("/x/ca.crt"), "cannot read: No such file or directory"),
        None,
        "mqtt.tls.ca_file /x/ca.crt: cannot read: No such file or directory",
    ),
]


@pytest.mark.parametrize(
    ("exc", "logged", "expected"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES]
)
def test_describe_failure(exc: BaseException, logged: BaseException | None, expected: str) -> None:
    assert describe_failure(exc, logged) == expected


class Records(logging.Handler):
    """What reaches a parent logger."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record)


def test_client_log_keeps_a_socket_error_and_says_it_at_debug_only() -> None:
    parent = logging.getLogger("test.client-log")
    records = Records()
    parent.addHandler(records)
    parent.setLevel(logging.DEBUG)
    try:
        log = ClientLog(parent)
        log.log(logging.ERROR, "failed to receive on socket: %s", ALERT)
        log.log(logging.WARNING, "Could not gracefully disconnect: %d", 7)
        log.log(logging.DEBUG, "Sending CONNECT")
        assert log.take() is ALERT
        assert log.take() is None
    finally:
        parent.removeHandler(records)
    assert [(r.levelno, r.getMessage()) for r in records.seen] == [
        (logging.DEBUG, f"failed to receive on socket: {ALERT}"),
        (logging.WARNING, "Could not gracefully disconnect: 7"),
        (logging.DEBUG, "Sending CONNECT"),
    ]


def test_client_log_follows_its_parents_level_changes() -> None:
    parent = logging.getLogger("test.client-log-level")
    parent.setLevel(logging.INFO)
    log = ClientLog(parent)
    assert not log.isEnabledFor(logging.DEBUG)
    parent.setLevel(logging.DEBUG)
    assert log.isEnabledFor(logging.DEBUG)


# -- TLS files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pair, Path]:
    folder = tmp_path_factory.mktemp("pki")
    pki = Pki(folder / "ca")
    client = pki.issue("bridge")
    garbage = folder / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return pki, client, garbage


def mqtt_tls(**tls: Any) -> MqttConfig:
    return build_settings({"mqtt": {"url": "mqtts://broker:8883", "tls": tls}}, {}).mqtt


def test_the_context_trusts_the_ca_and_presents_the_client_certificate(
    pki: tuple[Pki, Pair, Path],
) -> None:
    ca, client = pki[0].ca, pki[1]
    context = tls_context(
        mqtt_tls(ca_file=str(ca.cert), cert_file=str(client.cert), key_file=str(client.key))
    )
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "bridge-test-ca"),),)
    ]
    insecure = tls_context(mqtt_tls(ca_file=str(ca.cert), insecure=True))
    assert insecure is not None
    assert (insecure.verify_mode, insecure.check_hostname) == (ssl.CERT_REQUIRED, False)
    plain = build_settings({"mqtt": {"url": "ws://broker/mqtt"}}, {}).mqtt
    assert tls_context(plain) is None


def test_unusable_tls_files_are_one_line_naming_the_key_and_file(
    pki: tuple[Pki, Pair, Path], tmp_path: Path
) -> None:
    ca, client, garbage = pki[0].ca, pki[1], pki[2]
    encrypted = tmp_path / "encrypted.key"
    openssl("pkey", "-in", client.key, "-aes256", "-passout", "pass:x", "-out", encrypted)
    missing = tmp_path / "missing.crt"
    cases = [
        (
            {"ca_file": missing},
            f"mqtt.tls.ca_file {missing}: cannot read: No such file or directory",
        ),
        (
            {"ca_file": garbage},
            f"mqtt.tls.ca_file {garbage}: not a PEM CA bundle (no certificate or crl found)",
        ),
        (
            {"cert_file": client.cert, "key_file": ca.key},
            f"mqtt.tls.key_file {ca.key}: not the key of cert_file",
        ),
        (
            {"cert_file": client.cert, "key_file": encrypted},
            f"mqtt.tls.key_file {encrypted}: the key is encrypted; give an unencrypted key (openssl pkey -in KEY -out KEY.plain)",
        ),
        (
            {"cert_file": client.cert},
            f"mqtt.tls.cert_file {client.cert}: not a PEM certificate and key (PEM lib)",
        ),
        (
            {"cert_file": client.cert, "key_file": missing},
            f"mqtt.tls.key_file {missing}: cannot read: No such file or directory",
        ),
    ]
    for tls, expected in cases:
        with pytest.raises(TlsFileError) as caught:
            tls_context(mqtt_tls(**{k: str(v) for k, v in tls.items()}))
        assert str(caught.value) == expected


def test_bridge_run_with_an_unreadable_ca_file_exits_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"mqtt: {{url: 'mqtts://127.0.0.1:1', tls: {{ca_file: '{missing}'}}}}\n"
        f"http: {{enabled: false}}\nstate_dir: '{tmp_path}'\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    expected = f"bridge: mqtt.tls.ca_file {missing}: cannot read: No such file or directory"
    assert result.stderr.splitlines()[-1] == expected
    assert "Traceback" not in result.stderr


# -- config checks ------------------------------------------------------------------------------

PROBLEMS = [
    (
        {"mqtt": {"url": "mqtt://broker", "tls": {"ca_file": "/etc/ca.crt"}}},
        "mqtt.tls: only used with mqtts:// or wss:// URLs, and url is mqtt://",
    ),
    (
        {"mqtt": {"url": "ws://broker/mqtt", "tls": {"insecure": True}}},
        "mqtt.tls: only used with mqtts:// or wss:// URLs, and url is ws://",
    ),
    (
        {"mqtt": {"url": "mqtts://broker", "tls": {"key_file": "/etc/bridge.key"}}},
        "mqtt.tls.key_file: needs cert_file, the certificate it belongs to",
    ),
    (
        {"http": {"listen": "0.0.0.0:9880", "push_listen": "0.0.0.0:9880"}},
        "http.push_listen: must differ from listen (or leave it out)",
    ),
    ({"http": {"push_listen": "9881"}}, "http.push_listen: expected host:port, got '9881'"),
    ({"http": {"listen": "9880"}}, "http.listen: expected host:port, got '9880'"),
]


@pytest.mark.parametrize(("data", "problem"), PROBLEMS)
def test_config_problems(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings(data, {})
    assert caught.value.problems == [problem]


def test_push_listen_is_optional_and_two_ephemeral_ports_may_share_a_host() -> None:
    assert build_settings({}, {}).http.push_listen is None
    http = build_settings({"http": {"listen": "127.0.0.1:0", "push_listen": "127.0.0.1:0"}}, {})
    assert http.http.push_listen == "127.0.0.1:0"
