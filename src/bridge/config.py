"""Configuration models shared by the core and the drivers.

The root ``Settings`` lives in :mod:`bridge.settings` because it needs the union of every
driver's device model; drivers import their base class from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import SplitResult, urlsplit

from annotated_types import Ge, Gt
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Turn ``"2s"``, ``"500ms"``, ``"5m"``, ``"1h"`` or a plain number into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 2s, 500ms or 5m")  # noqa: TRY004
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # pydantic reports ValueError, but lets OverflowError escape
            raise ValueError("duration too large") from None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"invalid duration {value!r}: use a number with ms, s, m, h or d")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


def _check_device_id(value: str) -> str:
    if value == "bridge":
        raise ValueError('"bridge" is reserved for the bridge itself')
    return value


def _check_topic_base(value: str) -> str:
    """What MQTT forbids in a topic name (wildcards, NUL), what breaks brokers and consumers
    (control characters: mosquitto refuses the connection whose will carries one) and empty
    levels (``a//b``, a leading or trailing ``/``)."""
    if not value:
        raise ValueError("must not be empty")
    if any(c in value for c in "+#"):
        raise ValueError("must not contain the wildcards '+' or '#'")
    if any(not c.isprintable() for c in value):
        raise ValueError("must not contain control characters (a tab, a line break, NUL)")
    if "" in value.split("/"):
        raise ValueError("must not have empty levels ('//', or a leading or trailing '/')")
    return value


# The constraints come first so they stay in the JSON Schema (``minimum``); the parser still
# runs before them.
Duration = Annotated[
    float, Ge(0), AllowInfNan(allow_inf_nan=False), BeforeValidator(parse_duration)
]
# A poll period: 0 would be a tight loop of requests against the device.
Interval = Annotated[Duration, Ge(0.05)]
DeviceId = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64),
    AfterValidator(_check_device_id),
]
TopicBase = Annotated[str, AfterValidator(_check_topic_base)]


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable.

    A secret field ``x`` may instead be given as ``x_file``: the path of a file holding it
    (Docker and Kubernetes secrets, systemd credentials). A trailing newline is removed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:  # noqa: ANN401 - pydantic hands us raw input
        if not isinstance(data, dict):
            return data
        for name in cls.secret_fields:
            path = data.get(f"{name}_file")
            if path is None:
                continue
            # ValueError, not TypeError: pydantic reports the one and lets the other escape
            if not isinstance(path, str):
                raise ValueError(f"{name}_file: expected the path of a file")  # noqa: TRY004
            data = {k: v for k, v in data.items() if k != f"{name}_file"}
            if data.get(name) is not None:
                raise ValueError(f"give either {name} or {name}_file, not both")
            try:
                data[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{name}_file: cannot read {path!r}: {exc.strerror}") from None
        return data


def _as_text(value: object) -> object:
    """YAML reads ``protocol: 5`` as a number; the version is a name, so accept both."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _url_parts(url: str) -> SplitResult:
    """``urlsplit`` plus the checks it leaves to first use: credentials, a valid port."""
    parts = urlsplit(url)
    if parts.password or parts.username or "@" in parts.netloc or "@" in parts.path:
        raise ValueError("url: put credentials in username/password, not in the URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
    except ValueError:
        raise ValueError("url: the port must be a number from 1 to 65535") from None
    return parts


class MqttTlsConfig(ConfigModel):
    """The broker's TLS (``mqtts://``, ``wss://``). The files are read at every connection
    attempt, so a renewed certificate is used at the next reconnect without a restart."""

    ca_file: Path | None = Field(None, description="CA bundle that signed the broker certificate")
    cert_file: Path | None = Field(
        None, description="client certificate (PEM) for mutual TLS; may hold the key too"
    )
    key_file: Path | None = Field(
        None, description="private key (PEM, not encrypted) of the client certificate"
    )
    insecure: bool = Field(
        default=False,
        description="skip broker hostname verification (the chain is still verified)",
    )

    @model_validator(mode="after")
    def _check_key(self) -> MqttTlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file, the certificate it belongs to")
        return self


class MqttConfig(ConfigModel):
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    url: str = Field("mqtt://localhost:1883", description="mqtt://, mqtts://, ws:// or wss://")
    username: str | None = None
    password: SecretStr | None = None
    base_topic: TopicBase = "bridge"
    client_id: str | None = Field(None, description="default: bridge-<hostname>[-<shard>]")
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_as_text)] = Field(
        "5", description="MQTT protocol version"
    )
    keepalive: Duration = 30.0
    tls: MqttTlsConfig = MqttTlsConfig()
    outbox_size: int = Field(10_000, ge=1, description="events kept while the broker is away")
    max_inflight: int = Field(100, ge=1, le=65535, description="QoS>0 publishes in flight")
    snapshot_base64: bool = Field(
        default=False,
        description="also publish snapshots base64-encoded at <device>/snapshot/base64",
    )

    @model_validator(mode="after")
    def _check_url(self) -> MqttConfig:
        parts = _url_parts(self.url)
        if parts.scheme not in {"mqtt", "mqtts", "ws", "wss"}:
            raise ValueError(f"url: scheme must be mqtt, mqtts, ws or wss, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("url: missing host")
        if self.tls != MqttTlsConfig() and not self.uses_tls:
            # Silently ignored, a CA or client certificate would leave the connection in clear.
            raise ValueError(
                f"tls: only used with mqtts:// or wss:// URLs, and url is {parts.scheme}://"
            )
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        default = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}[parts.scheme]
        return parts.port or default

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme in {"mqtts", "wss"}


class HomeAssistantConfig(ConfigModel):
    enabled: bool = False
    prefix: TopicBase = "homeassistant"


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


Listen = Annotated[str, AfterValidator(_check_listen)]


def listen_host(listen: str) -> str:
    """The host of a ``host:port`` (an IPv6 address without its brackets)."""
    return listen.rpartition(":")[0].strip("[]")


def listen_port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


class HttpConfig(ConfigModel):
    enabled: bool = True
    listen: Listen = Field(
        "127.0.0.1:9880",
        description="host:port of /metrics, /healthz, /readyz, and of the push receivers "
        "/push/... unless push_listen is set",
    )
    push_listen: Listen | None = Field(
        None,
        description="host:port of a second listener serving only the push receivers /push/..., "
        "for the devices' network; listen then serves no /push/",
    )
    timeout: Annotated[Duration, Gt(0)] = Field(
        5.0,
        description="deadline of a request's head (from the connection's start or the previous "
        "response: also the idle keep-alive time), of its body, and of sending the response",
    )
    max_connections: int = Field(
        100, ge=1, description="connections served at once; more wait in the listen backlog"
    )

    @model_validator(mode="after")
    def _check_push_listen(self) -> HttpConfig:
        if self.push_listen == self.listen and listen_port(self.listen) != 0:
            raise ValueError("push_listen: must differ from listen (or leave it out)")
        return self

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)


class ShardConfig(ConfigModel):
    index: int = Field(0, ge=0)
    count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check_index(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        return self


class LogConfig(ConfigModel):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


def _check_fingerprint(value: str) -> str:
    """Accept ``AB:CD:...`` as openssl prints it, or bare hex; keep lower-case bare hex."""
    digits = value.strip().replace(":", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(
            "expected a SHA-256 fingerprint: 64 hex digits, colons optional "
            "(openssl x509 -noout -fingerprint -sha256)"
        )
    return digits


class DeviceTlsConfig(ConfigModel):
    verify: bool = True
    ca_file: Path | None = None
    fingerprint: Annotated[str, AfterValidator(_check_fingerprint)] | None = Field(
        None, description="SHA-256 pin of the device certificate; replaces chain verification"
    )

    @model_validator(mode="after")
    def _check_pin(self) -> DeviceTlsConfig:
        if self.fingerprint is not None and self.ca_file is not None:
            raise ValueError("give either ca_file or fingerprint, not both")
        if self.fingerprint is not None and not self.verify:
            raise ValueError("fingerprint: a pinned certificate is verified; remove verify: false")
        return self


class CommandPolicy(ConfigModel):
    allow: list[str] | None = Field(
        None, description="commands allowed; null means every non-destructive one"
    )
    deny: list[str] = Field(default_factory=list, description="commands always refused")


class DeviceConfig(ConfigModel):
    """What every device has; a driver subclasses it with ``driver: Literal[...]``."""

    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    id: DeviceId
    driver: str
    name: str | None = Field(None, description="human name, used for Home Assistant")
    enabled: bool = True
    url: str
    username: str | None = None
    password: SecretStr | None = None
    auth: Literal["auto", "none", "basic", "digest"] = "auto"
    tls: DeviceTlsConfig = DeviceTlsConfig()
    timeout: Duration = Field(10.0, description="timeout of one ordinary HTTP request")
    offline_after: int = Field(3, ge=1, description="consecutive failures before offline")
    command_timeout: Duration = 10.0
    commands: CommandPolicy = CommandPolicy()
    snapshot_on_ring: bool = Field(
        default=False,
        description="take a snapshot (to <device>/snapshot) on every doorbell.pressed",
    )

    @model_validator(mode="after")
    def _check_url(self) -> DeviceConfig:
        parts = _url_parts(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            # The URL is not echoed: a mistyped one may still hold a password.
            raise ValueError("url: expected http(s)://host[:port]")
        if self.username is not None and ":" in self.username:
            raise ValueError(
                "username: must not contain ':' (HTTP Basic and Digest cannot carry it)"
            )
        return self


def _check_push_token(value: SecretStr) -> SecretStr:
    # The token is a URL path segment the device sends in clear text: long, and nothing that
    # needs escaping. The message never repeats it.
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", value.get_secret_value()):
        raise ValueError("expected 16 to 128 letters, digits, '-' or '_' (openssl rand -hex 16)")
    return value


class PolledDeviceConfig(DeviceConfig):
    """What a device without an event channel adds: the poll period and a push receiver.

    With ``push_token`` set, ``GET``/``POST /push/<id>/<token>`` on the bridge's HTTP server wakes
    the device's poller at once (spec §6); the device calls it on a trigger (Onetouch Action URL,
    Grandstream alarm HTTP server).
    """

    secret_fields: ClassVar[tuple[str, ...]] = ("password", "push_token")

    poll_interval: Interval = Field(1.0, description="how often the device's status is read")
    push_token: Annotated[SecretStr, AfterValidator(_check_push_token)] | None = Field(
        None, description="secret path part of /push/<id>/<token>: 16 to 128 of [A-Za-z0-9_-]"
    )
