"""Simulator of an Onetouch intercom's HTTP API, after its "HTTP API Manual v1.0" (2021-09).

References are to the extraction ``research/seed-onetouch.md`` (``§``), which quotes the manual
(seed 000) by line (``000:L<n>``).

Requests (§1.2, §1.3; 000:L119-L183): ``GET /api/<target>/<action>?k=v`` or ``POST /api/`` with
the JSON envelope ``{"target", "action", "data"}``; a POST to ``/api/<target>/<action>`` with the
envelope or with the ``data`` object alone is accepted too (the function table's paths, §2). The
manual's own request examples carry trailing commas (§6.5), so request bodies are parsed leniently.
Replies (§1.4): ``{"retcode": 0, "action", "message": "OK"[, "data"]}``; errors come with HTTP 200
as ``{"retcode": -1, "action": "unknow", "message": "unsupport action"}`` for an unknown target or
action, and ``retcode -1`` with a message naming the parameter for bad parameters. The manual's
quirks are kept on purpose (§6.3-6.5): the wrong ``action`` of ``system/reboot`` (``"status"``),
``callog/clear`` (``"upgrade"``) and ``log/set`` (``"get"``, echoing the data); trailing commas in
the ``system/reboot`` and ``config/get`` replies (``quirks=True``, the default); ``system/info``
values all strings while ``system/status``, ``relay/status`` and ``input/status`` give integers.

Access (§1.6, §1.7; 000:L229-L302): auth none, Basic or Digest (the device default: MD5 only,
``realm="HTTPAPI"``, ``qop="auth,auth-int"``, nonce and opaque; ``auth`` and ``auth-int`` responses
are verified, a nonce older than ``nonce_lifetime`` or expired by the control API answers 401 with
``stale=true``), default credentials admin / httpapi. With the API disabled every request answers
403 Forbidden (000:L264). The call log answers under one spelling only (``callog`` as in the
sections, or ``calllog`` as in the function table, §2); the other one is an unknown target.

Device model: three relays A-C (§4.5, §5.1, §5.2), three inputs A-C with raw GPIO levels whose
active level is ``OptionX`` (§4.6, §5.3), one call at a time (§4.7, §5.4), two SIP accounts
(§4.8, §5.7), a door log and a call log (§3.2, §5.10, §5.11) holding at most ``log_size`` records
(oldest dropped), whose ids grow and are never reused, not even after ``clear`` or a reboot (the
device stores them). An input going to its active level with ``EnableX`` on sends an HTTP GET to
``ActionUrlX`` when ``HttpEnableX`` is ``"1"`` (§3.1; 000:L939-L949) and, after ``DelayX``
seconds, pulses relay ``RelayIdX``. Device time = an injectable ``clock`` plus what the control
API advanced; relay timers run on that time (a background task follows real time while serving,
and ``advance`` fires what fell due at once). For tests: ``hits`` counts API requests per
``"<target>/<action>"`` (both styles), ``relays[n].trigs`` the ``relay/trig`` calls per relay,
``pushes`` / ``push_failures`` the Action URL GETs, and ``wait_until`` waits for a state.

Invented where the manual is silent or garbled:

- ``call/status`` ``Status`` is documented only as ``"READY"`` (§4.7). Other values here:
  ``"CALLING"`` (outgoing, not answered yet), ``"RINGING"`` (incoming, not answered) and
  ``"TALKING"`` (connected). A ``call/dial`` while a call is up answers ``retcode -1`` "line busy";
  an incoming call meeting a busy line is logged as Missed at once.
- ``doorlog/get`` has no real example (§3.2). Records are ``{"ID", "Type", "Name", "Status",
  "Code", "Date", "Time"}``, oldest first; ``doorlog_format="names"`` gives ``Type`` as
  ``Card``/``Password``/``Public``/``Face``/``Unknow`` and ``Status`` as ``Success``/``Failed``,
  ``"numbers"`` gives the table's codes as strings (``Type`` ``"0"``-``"4"``, ``Status`` ``"0"``
  success / ``"1"`` failed).
- Call log records: ``Name`` is the remote display name (``DisplayName`` of a dial, else the
  number), ``Num`` the number, ``LocalIdentity`` ``user@server`` of the account (or ``ip@ip``).
- ``relay/trig``: ``num`` is required; ``mode``, ``level``, ``delay`` default to 0. ``mode=0``
  pulses the relay for ``delay`` seconds, or ``HoldDelayX`` when ``delay`` is 0; ``mode=1`` sets
  it to ``level`` until the next command. ``TriggerDelayX`` delays access and input openings only.
- ``RelayIdX`` ``"0"`` means "no relay". ``*/set`` refuses unknown keys and out-of-range values
  with ``retcode -1`` naming the key; ``*/set``, ``*/del`` over GET answer "unsupport action".
- Deleting an unknown log ``ID`` answers ``retcode -1`` "invalid param: ID"; an unparsable body
  ``retcode -1`` "invalid json"; 401 replies carry ``retcode -1`` "Unauthorized".
- The Action URL is requested verbatim (the "Action URL document" with its variables is not in the
  manual). A reboot makes the device drop connections for ``downtime`` seconds (closed, not
  refused), then uptime starts at 0; relays, inputs and the call are reset, logs kept.

Not implemented: WhiteList, Normal and Token auth; HTTPS selection by the device (use
``ssl_context``); ``firmware`` prepare/upload/upgrade, ``config`` export/import/reset_factory,
``rfkey``, ``dialreplace``, ``pcap``, ``log`` export/clear, ``callog``/``doorlog`` export and the
undocumented modules (all answer "unsupport action"); SIP auto answer; digest ``nc`` replay checks.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import re
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from bridge.simulators.base import DeviceClock, Simulator, json_response, push
from bridge.simulators.server import DropConnectionError, Request, Response

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

AuthMode = Literal["none", "basic", "digest"]
CallLogPath = Literal["callog", "calllog"]
DoorlogFormat = Literal["names", "numbers"]
AccessType = Literal["Unknow", "Card", "Password", "Public", "Face"]
CallType = Literal["Dialed", "Received", "Missed", "Forwarded"]
CallStatus = Literal["READY", "CALLING", "RINGING", "TALKING"]
Key = tuple[str, str]  # (target, action)
Data = dict[str, Any] | None

REALM = "HTTPAPI"
LETTERS = ("A", "B", "C")
MAX_NONCES = 1024
PUSH_TIMEOUT = 5.0
UNSUPPORTED: dict[str, Any] = {"retcode": -1, "action": "unknow", "message": "unsupport action"}
DOOR_TYPES: dict[AccessType, str] = {
    "Unknow": "0",
    "Card": "1",
    "Password": "2",
    "Public": "3",
    "Face": "4",
}  # §3.2 door log table
CALL_TYPES = ("All", "Dialed", "Received", "Missed", "Forwarded", "Unknow")  # §3.2: index = code
WRONG_ACTION: dict[Key, str] = {  # §6.4: the reply ``action`` as the manual prints it
    ("system", "reboot"): "status",
    ("callog", "clear"): "upgrade",
    ("log", "set"): "get",
}
TRAILING_COMMAS = frozenset({("system", "reboot"), ("config", "get")})  # §6.5
POST_ONLY = frozenset(
    {
        ("relay", "set"), ("input", "set"), ("sip", "set"), ("log", "set"), ("config", "set"),
        ("callog", "del"), ("doorlog", "del"),
    }
)  # fmt: skip
# Value checks of ``*/set`` (§5.2, §5.3, §5.7, §5.9): key pattern -> allowed integer range.
RANGES: tuple[tuple[re.Pattern[str], int, int], ...] = tuple(
    (re.compile(pattern), low, high)
    for pattern, low, high in (
        (r"RELAY\.(Type[ABC]|HttpTrig)$|DTMF\.Enable$|GENERAL\.Enable$", 0, 1),
        (r"INPUT\.(Enable|Option|FtpEnable|HttpEnable|SipEnable|SmtpEnable)[ABC]$", 0, 1),
        (r"RELAY\.(HoldDelay|TriggerDelay)[ABC]$", 0, 60),
        (r"INPUT\.Delay[ABC]$", 0, 65535),
        (r"INPUT\.RelayId[ABC]$", 0, 3),
        (r"LOGLEVEL\.Level$", 0, 7),
        (r"DTMF\.Option$", 0, 4),
    )
)
RELAY = "Config.DoorSetting.RELAY."
INPUT = "Config.DoorSetting.INPUT."
LOG_LEVEL = "Config.Settings.LOGLEVEL.Level"


class ApiError(Exception):
    """A ``retcode -1`` reply; ``route`` renders it with the function's ``action``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Args:
    """A function's parameters: the GET query or the POST ``data`` (values str or number)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def first(self, *names: str) -> Any:  # noqa: ANN401 - JSON value
        for name in names:
            if name in self.values:
                return self.values[name]
        return None

    def text(self, name: str, default: str | None = None) -> str:
        value = self.values.get(name, default)
        if value is None:
            raise ApiError(f"missing param: {name}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ApiError(f"invalid param: {name}")
        return str(value)

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        """An integer in [low, high], from a JSON number or a decimal string."""
        if name not in self.values and default is not None:
            return default
        value = _integer(self.text(name))
        if value is None or not low <= value <= high:
            raise ApiError(f"invalid param: {name}")
        return value


def _integer(value: str) -> int | None:
    text = value.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


@dataclass(eq=False)
class Relay:
    """One relay (§4.5): ``state`` 0/1 as ``relay/status`` reports it."""

    letter: str
    state: int = 0
    trigs: int = 0  # ``relay/trig`` requests that addressed it
    activations: int = 0  # times it went to 1, whatever the cause (trig, card, code, input)
    generation: int = 0  # bumped by every command; pending timers of older ones do nothing


@dataclass(frozen=True)
class DoorRecord:
    """A door log record (§3.2): an access attempt."""

    id: int
    type: AccessType
    name: str
    success: bool
    code: str
    at: float  # device wall time


@dataclass(frozen=True)
class CallRecord:
    """A call log record (§3.2)."""

    id: int
    type: CallType
    name: str
    number: str
    local_identity: str
    at: float


LogRecord = TypeVar("LogRecord", DoorRecord, CallRecord)


@dataclass(eq=False)
class Call:
    """The call in progress; the device has one line."""

    direction: Literal["incoming", "outgoing"]
    number: str
    name: str
    account: int
    started: float
    answered: bool = False

    @property
    def status(self) -> CallStatus:
        if self.answered:
            return "TALKING"
        return "CALLING" if self.direction == "outgoing" else "RINGING"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _with_trailing_commas(value: Any) -> str:  # noqa: ANN401 - any JSON
    """JSON with a comma after the last member of every object, as the manual prints it."""
    if isinstance(value, dict) and value:
        members = "".join(f"{json.dumps(k)}:{_with_trailing_commas(v)}," for k, v in value.items())
        return "{" + members + "}"
    return json.dumps(value, separators=(",", ":"))


def _lenient_json(body: bytes) -> Any:  # noqa: ANN401 - any JSON
    """Strict JSON, else JSON with trailing commas removed (the manual's request examples)."""
    text = body.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(re.sub(r",\s*([}\]])", r"\1", text))


def default_config(relay_password: str, sip_password: str) -> dict[str, str]:
    """The device configuration, with the manual's example values (§5.2, §5.3, §5.7, §5.9)."""
    config: dict[str, str] = {}
    for key, values in (
        ("Type", ("0", "0", "0")),
        ("HoldDelay", ("5", "5", "5")),
        ("TriggerDelay", ("0", "0", "0")),
        ("Name", ("RelayA", "RelayB", "RelayC")),
    ):
        config |= {f"{RELAY}{key}{x}": v for x, v in zip(LETTERS, values, strict=True)}
    config |= {f"{RELAY}HttpTrig": "0", f"{RELAY}UserName": "", f"{RELAY}Password": relay_password}
    dtmf = {"Enable": "1", "Option": "0", "Code1": "0", "Code2": "1", "Code3": "2"}
    dtmf |= {"MultiCode1": "010", "MultiCode2": "012", "MultiCode3": "013"}
    config |= {f"Config.DoorSetting.DTMF.{k}": v for k, v in dtmf.items()}
    for key, values in (
        ("Enable", ("1", "1", "1")),
        ("Option", ("0", "0", "0")),
        ("Delay", ("0", "0", "0")),
        ("RelayId", ("1", "2", "3")),
        ("FtpEnable", ("0", "0", "0")),
        ("HttpEnable", ("0", "0", "0")),
        ("SipEnable", ("0", "0", "0")),
        ("SmtpEnable", ("0", "0", "0")),
        ("ActionUrl", ("", "", "")),
    ):
        config |= {f"{INPUT}{key}{x}": v for x, v in zip(LETTERS, values, strict=True)}
    for n, user, server, pwd in ((1, "130", "192.168.1.115", sip_password), (2, "", "", "")):
        account = {
            "ADVANCED.ShowMissedCall": "1",
            "ANONYMOUS_CALL.Enable": "0",
            "ANONYMOUS_CALL.OffCode": "",
            "ANONYMOUS_CALL.OnCode": "",
            "ANONYMOUS_CALL.PrivacyHeaderValue": "id",
            "AUTO_ANSWER.Enable": "1",
            "GENERAL.AuthName": user,
            "GENERAL.DisplayName": user,
            "GENERAL.EditEnable": "",
            "GENERAL.Enable": "1" if user else "0",
            "GENERAL.Label": user,
            "GENERAL.Pwd": pwd,
            "GENERAL.UserAgent": "",
            "GENERAL.UserName": user,
            "NAT.Rport": "0",
            "NAT.UdpKeepEnable": "1",
            "NAT.UdpKeepInterval": "30",
            "OUTPROXY.BakPort": "5060",
            "OUTPROXY.BakServer": "",
            "OUTPROXY.DHCPOption": "0",
            "OUTPROXY.Enable": "0",
            "OUTPROXY.Port": "5060",
            "OUTPROXY.Server": "",
            "REJECT_ANONYMOUSCALL.Enable": "0",
            "REJECT_ANONYMOUSCALL.OffCode": "",
            "REJECT_ANONYMOUSCALL.OnCode": "",
            "SIP.ListenPortMax": str(5061 + n),
            "SIP.ListenPortMin": str(5061 + n),
            "SIP.Port": "5060",
            "SIP.Port2": "5060",
            "SIP.Server": server,
            "SIP.Server2": "",
            "SIP.TransType": "0",
            "STUN.Enable": "0",
            "STUN.Port": "3478",
            "STUN.Server": "",
        }
        config |= {f"Config.Account{n}.{k}": v for k, v in account.items()}
    config[LOG_LEVEL] = "3"
    return config


class OnetouchSimulator(DeviceClock, Simulator):
    """An Onetouch intercom (model OT-IP-LP-C9 by default). See the module docstring."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs of the simulated device
        self,
        *,
        auth: AuthMode = "digest",
        username: str = "admin",
        password: str = "httpapi",  # noqa: S107 - the device default (§1.6)
        api_enabled: bool = True,
        calllog_path: CallLogPath = "callog",
        quirks: bool = True,
        doorlog_format: DoorlogFormat = "names",
        log_size: int = 100,
        nonce_lifetime: float = 300.0,
        reboot_downtime: float = 0.0,
        model: str = "OT-IP-LP-C9",
        mac: str = "0C:11:05:08:93:C6",
        firmware: str = "29.31.1.617",
        hardware: str = "29.3.0",
        ip: str = "192.168.35.29",
        relay_password: str = "relay-secret-7",  # noqa: S107 - fake, for redaction tests
        sip_password: str = "sip-secret-130",  # noqa: S107 - fake, for redaction tests
        tz_offset: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(username=username, password=password)
        if log_size < 1:
            raise ValueError("log_size must be at least 1")
        self.auth: AuthMode = auth
        self.api_enabled = api_enabled
        self.calllog_path: CallLogPath = calllog_path
        self.quirks = quirks
        self.doorlog_format: DoorlogFormat = doorlog_format
        self.nonce_lifetime = nonce_lifetime
        self.reboot_downtime = reboot_downtime
        self.model, self.mac, self.firmware, self.hardware = model, mac, firmware, hardware
        self.ip = ip
        self.tz_offset = tz_offset  # seconds east of UTC of the log Date/Time (local time)
        self.clock = clock
        self.config = default_config(relay_password, sip_password)
        self.relays = {n: Relay(letter) for n, letter in enumerate(LETTERS, 1)}
        self.levels = {letter: self._inactive_level(letter) for letter in LETTERS}
        self.registration = {1: 2, 2: 0}  # sip/status Status per account (§4.8)
        self.call: Call | None = None
        self.doorlog: deque[DoorRecord] = deque(maxlen=log_size)
        self.callog: deque[CallRecord] = deque(maxlen=log_size)
        # API requests that passed auth and faults, per "<target>/<action>" as the client
        # spelled it (both request styles), and the last ones: (method, "<target>/<action>", data)
        self.hits: Counter[str] = Counter()
        self.log: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=10_000)
        self.pushes: list[tuple[str, int | None]] = []  # Action URL GETs: (url, status or None)
        self.push_failures = 0
        self.boot = 1
        self._wall_shift = 0.0  # what ``set_time`` added to the wall clock only
        self.boot_epoch = self.monotonic()
        self._down_until = -math.inf
        self._next_door_id = 1
        self._next_call_id = 1
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._timer_wake = anyio.Event()
        self._nonces: dict[str, float] = {}  # nonce -> issue time (monotonic device time)
        self._opaque = secrets.token_hex(16)
        self._functions: dict[Key, Callable[[Args], Data]] = {
            ("system", "info"): self._system_info,
            ("system", "status"): self._system_status,
            ("system", "reboot"): self._system_reboot,
            ("firmware", "status"): self._firmware_status,
            ("config", "get"): lambda _: dict(sorted(self.config.items())),
            ("config", "set"): lambda args: self._set_config(args, "Config."),
            ("relay", "get"): lambda _: self._config_section(RELAY, "Config.DoorSetting.DTMF."),
            ("relay", "set"): lambda args: self._set_config(
                args, RELAY, "Config.DoorSetting.DTMF."
            ),
            ("relay", "status"): lambda _: {f"Relay{r.letter}": r.state for r in self._relays},
            ("relay", "trig"): self._relay_trig,
            ("input", "get"): lambda _: self._config_section(INPUT),
            ("input", "set"): lambda args: self._set_config(args, INPUT),
            ("input", "status"): lambda _: {f"Input{x}": self.levels[x] for x in LETTERS},
            ("call", "status"): lambda _: {"Status": self.call_status},
            ("call", "dial"): self._call_dial,
            ("call", "hangup"): self._call_hangup,
            ("sip", "get"): self._sip_get,
            ("sip", "set"): lambda args: self._set_config(
                args, "Config.Account1.", "Config.Account2."
            ),
            ("sip", "status"): lambda _: self._accounts(),
            ("log", "get"): lambda _: {LOG_LEVEL: self.config[LOG_LEVEL]},
            ("log", "set"): self._log_set,
            ("callog", "get"): self._callog_get,
            ("callog", "del"): lambda args: self._delete(self.callog, args),
            ("callog", "clear"): self._callog_clear,
            ("doorlog", "get"): self._doorlog_get,
            ("doorlog", "del"): lambda args: self._delete(self.doorlog, args),
            ("doorlog", "clear"): lambda _: self.doorlog.clear(),
        }

    # -- time --------------------------------------------------------------------------------

    def now(self) -> float:
        """Device wall time (Unix): ``SystemTime`` and the log dates (§4.3)."""
        return self.monotonic() + self._wall_shift

    def advanced(self) -> None:
        """Device time jumped: relay timers that fell due fire now."""
        self._tick()
        self._timer_wake.set()

    def set_time(self, epoch: float) -> None:
        """Set the device's wall clock (``SystemTime``, log dates); uptime and timers keep on."""
        self._wall_shift = epoch - self.monotonic()
        self._notify()

    def _schedule(self, delay: float, callback: Callable[[], None]) -> None:
        if delay <= 0:
            callback()
            return
        self._timer_seq += 1
        heapq.heappush(self._timers, (self.monotonic() + delay, self._timer_seq, callback))
        self._timer_wake.set()

    def _tick(self) -> None:
        while self._timers and self._timers[0][0] <= self.monotonic():
            heapq.heappop(self._timers)[2]()

    async def _run_timers(self) -> None:
        """Fire timers as device time reaches them (real time passing, or ``advance``)."""
        while True:
            self._tick()
            self._timer_wake = anyio.Event()
            wait = self._timers[0][0] - self.monotonic() if self._timers else math.inf
            with anyio.move_on_after(wait):
                await self._timer_wake.wait()

    # -- serving, access ---------------------------------------------------------------------

    def on_serve(self, tasks: TaskGroup) -> None:
        tasks.start_soon(self._run_timers)

    async def handle(self, request: Request) -> Response:
        if not request.path.startswith("/_sim/"):
            if self.monotonic() < self._down_until:
                raise DropConnectionError  # still rebooting
            self._tick()
        return await super().handle(request)

    def check_auth(self, request: Request) -> Response | None:
        """403 while the API is disabled (000:L264), then the auth mode (§1.7)."""
        if not self.api_enabled:
            return Response(403, b"403 Forbidden: HTTP API disabled", "text/plain")
        if self.auth == "none":
            return None
        header = request.headers.get("authorization", "")
        if self.auth == "basic":
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if hmac.compare_digest(header.encode(), f"Basic {token}".encode()):
                return None
            return self._unauthorized(f'Basic realm="{REALM}"')
        return self.check_digest(request)

    def digest_refused(self, *, stale: bool) -> Response:
        return self._unauthorized(self._digest_challenge(stale=stale))

    def digest_verdict(self, request: Request, fields: dict[str, str]) -> str:
        """``ok``, ``stale`` (right credentials, expired nonce) or ``denied`` (RFC 2617, MD5)."""
        issued = self._nonces.get(fields.get("nonce", ""))
        qop = fields.get("qop", "")
        if (
            issued is None
            or fields.get("username") != self.username
            or fields.get("realm") != REALM
            or fields.get("opaque") != self._opaque
            or fields.get("algorithm", "MD5").upper() != "MD5"
            or qop not in {"auth", "auth-int"}
            or fields.get("uri") != request.target
        ):
            return "denied"
        ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = _md5(f"{request.method}:{fields['uri']}")
        if qop == "auth-int":
            body = hashlib.md5(request.body, usedforsecurity=False).hexdigest()
            ha2 = _md5(f"{request.method}:{fields['uri']}:{body}")
        nc, cnonce = fields.get("nc", ""), fields.get("cnonce", "")
        expected = _md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:{qop}:{ha2}")
        if not hmac.compare_digest(expected, fields.get("response", "")):
            return "denied"
        return "stale" if self.monotonic() - issued > self.nonce_lifetime else "ok"

    def _digest_challenge(self, *, stale: bool) -> str:
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = self.monotonic()
        if len(self._nonces) > MAX_NONCES:
            del self._nonces[next(iter(self._nonces))]
        challenge = f'Digest realm="{REALM}", qop="auth,auth-int", nonce="{nonce}", '
        challenge += f'opaque="{self._opaque}"'
        return challenge + (", stale=true" if stale else "")

    def _unauthorized(self, challenge: str) -> Response:
        body = json_response({"retcode": -1, "action": "unknow", "message": "Unauthorized"}).body
        return Response(401, body, headers=[("www-authenticate", challenge)])

    def expire_nonces(self) -> int:
        """Every nonce handed out so far is now stale: the next request meets ``stale=true``."""
        for nonce in self._nonces:
            self._nonces[nonce] = -math.inf
        return len(self._nonces)

    def set_api_enabled(self, enabled: bool) -> None:
        """``Intercom -> HTTP API`` Enabled / Disabled (§1.6)."""
        self.api_enabled = enabled

    def vendor_error(self) -> Response:
        return self._reply(dict(UNSUPPORTED))

    # -- routing -----------------------------------------------------------------------------

    def _reply(self, envelope: dict[str, Any], *, trailing: bool = False) -> Response:
        if trailing and self.quirks:
            return Response(200, _with_trailing_commas(envelope).encode())
        return json_response(envelope)

    async def route(self, request: Request) -> Response:
        if request.path != "/api" and not request.path.startswith("/api/"):
            self.hits[request.path] += 1
            return Response(404, b"404 Not Found", "text/plain")
        try:
            target, action, values = self._parse(request)
        except ApiError as error:
            self.hits[request.path] += 1
            return self._reply({"retcode": -1, "action": "unknow", "message": error.message})
        function_path = f"{target}/{action}"
        self.hits[function_path] += 1
        self.log.append((request.method, function_path, values))
        key = (target, action)
        if target in {"callog", "calllog"}:  # only the device's spelling is known (§2)
            key = ("callog", action) if target == self.calllog_path else ("", "")
        function = self._functions.get(key)
        if function is None or (request.method != "POST" and key in POST_ONLY):
            return self._reply(dict(UNSUPPORTED))
        reply_action = WRONG_ACTION.get(key, action)
        try:
            data = function(Args(values))
        except ApiError as error:
            return self._reply({"retcode": -1, "action": action, "message": error.message})
        envelope: dict[str, Any] = {"retcode": 0, "action": reply_action, "message": "OK"}
        if data is not None:
            envelope["data"] = data
        return self._reply(envelope, trailing=key in TRAILING_COMMAS)

    def _parse(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        """Target, action and parameters of both request styles (§1.2, §1.3)."""
        parts = [p for p in request.path.removeprefix("/api").split("/") if p]
        if request.method not in {"GET", "POST"} or len(parts) not in {0, 2}:
            raise ApiError("unsupport action")
        if request.method == "GET":
            if not parts:
                raise ApiError("unsupport action")
            return parts[0], parts[1], dict(request.query)
        body: Any = {}
        if request.body.strip():
            try:
                body = _lenient_json(request.body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError("invalid json") from None
        if not isinstance(body, dict):
            raise ApiError("invalid json")
        envelope = not parts or bool({"target", "action", "data"} & body.keys())
        data = body.get("data") if envelope else body
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ApiError("invalid json")
        if parts:
            target, action = parts
        else:
            target, action = str(body.get("target", "")), str(body.get("action", ""))
        return target, action, {**request.query, **data}

    # -- API functions -----------------------------------------------------------------------

    @property
    def _relays(self) -> list[Relay]:
        return list(self.relays.values())

    def _system_info(self, _: Args) -> Data:
        """§4.2: every value a string."""
        return {
            "Status": {
                "Model": self.model,
                "MAC": self.mac,
                "FirmwareVersion": self.firmware,
                "HardwareVersion": self.hardware,
            },
            "Lan": {
                "PortType": "0",
                "LinkStatus": "1",
                "IPAddress": self.ip,
                "SubnetMask": "255.255.255.0",
                "Gateway": self.ip.rsplit(".", 1)[0] + ".1",
                "DNS1": "192.168.1.1",
                "DNS2": "192.168.1.1",
            },
            **self._accounts(),
        }

    def _system_status(self, _: Args) -> Data:
        """§4.3: integers."""
        return {"SystemTime": int(self.now()), "UpTime": self.uptime}

    def _system_reboot(self, _: Args) -> Data:
        """§5.5: the reply still goes out; the next requests meet the rebooting device."""
        self.reboot()
        return None

    def _firmware_status(self, _: Args) -> Data:
        """§4.4."""
        return {
            "FirmwareVersion": self.firmware,
            "HardwareVersion": self.hardware,
            "MAC": self.mac,
            "Model": self.model,
        }

    def _config_section(self, *prefixes: str) -> Data:
        return {k: v for k, v in self.config.items() if k.startswith(prefixes)}

    def _set_config(self, args: Args, *prefixes: str) -> Data:
        """``relay/set``, ``input/set``, ``sip/set``, ``config/set``: only known keys of the
        module, values as strings (numbers accepted), all checked before any is stored."""
        changes: dict[str, str] = {}
        for key in args.values:
            if key not in self.config or not key.startswith(prefixes):
                raise ApiError(f"invalid param: {key}")
            value = args.text(key)
            for pattern, low, high in RANGES:
                number = _integer(value)
                if pattern.search(key) and (number is None or not low <= number <= high):
                    raise ApiError(f"invalid param: {key}")
            changes[key] = value
        self.config.update(changes)
        self._notify()
        return None

    def _relay_trig(self, args: Args) -> Data:
        """§5.1; the interpretation is in the module docstring."""
        number = args.integer("num", 1, 3)
        mode = args.integer("mode", 0, 1, 0)
        level = args.integer("level", 0, 1, 0)
        delay = args.integer("delay", 0, 65535, 0)
        self.trig(number, mode=mode, level=level, delay=delay)
        return None

    def _call_dial(self, args: Args) -> Data:
        """§5.4: ``Phone`` and ``DisplayName``."""
        phone = args.text("Phone")
        if not phone:
            raise ApiError("invalid param: Phone")
        if self.call is not None:
            raise ApiError("line busy")
        self.outgoing_call(phone, args.text("DisplayName", ""))
        return None

    def _call_hangup(self, _: Args) -> Data:
        self.end_call()
        return None

    def _accounts(self) -> dict[str, Any]:
        """``sip/status`` (§4.8) and the Account part of ``system/info``: strings."""
        return {
            f"Account{n}": {
                "UserName": self.config[f"Config.Account{n}.GENERAL.UserName"],
                "SipServer": self.config[f"Config.Account{n}.SIP.Server"],
                "Status": str(self.registration[n]),
            }
            for n in (1, 2)
        }

    def _sip_get(self, _: Args) -> Data:
        """§5.7: both accounts (not the ADVANCED keys, which only ``config/get`` shows)."""
        data = self._config_section("Config.Account1.", "Config.Account2.") or {}
        return {k: v for k, v in data.items() if ".ADVANCED." not in k}

    def _log_set(self, args: Args) -> Data:
        """§5.9: the reply says ``action: "get"`` and echoes the level."""
        self._set_config(args, LOG_LEVEL)
        return {LOG_LEVEL: self.config[LOG_LEVEL]}

    def _call_type(self, args: Args) -> str:
        """``Type`` (or ``type``, as the GET example of clear has it) as a name (§3.2, §5.10)."""
        value = args.first("Type", "type")
        if value is None:
            return "All"
        text = str(value)
        if text.isdigit() and int(text) < len(CALL_TYPES):
            return CALL_TYPES[int(text)]
        if text not in CALL_TYPES:
            raise ApiError("invalid param: Type")
        return text

    def _callog_get(self, args: Args) -> Data:
        wanted = self._call_type(args)
        items = [self.render_call(r) for r in self.callog if wanted in {"All", r.type}]
        return {"num": len(items), "item": items}

    def _callog_clear(self, args: Args) -> Data:
        wanted = self._call_type(args)
        kept = [r for r in self.callog if wanted not in {"All", r.type}]
        self.callog.clear()
        self.callog.extend(kept)
        self._notify()
        return None

    def _doorlog_get(self, _: Args) -> Data:
        items = [self.render_door(r) for r in self.doorlog]
        return {"num": len(items), "item": items}

    def _delete(self, records: deque[LogRecord], args: Args) -> Data:
        """§5.10, §5.11: one record by ``ID``."""
        wanted = _integer(args.text("ID"))
        for record in records:
            if record.id == wanted:
                records.remove(record)
                self._notify()
                return None
        raise ApiError("invalid param: ID")

    # -- records -----------------------------------------------------------------------------

    def _date_time(self, at: float) -> tuple[str, str]:
        local = datetime.fromtimestamp(at + self.tz_offset, UTC)
        return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")

    def render_door(self, record: DoorRecord) -> dict[str, str]:
        """A ``doorlog/get`` item in the configured ``doorlog_format``."""
        date, clock = self._date_time(record.at)
        if self.doorlog_format == "numbers":
            kind, status = DOOR_TYPES[record.type], "0" if record.success else "1"
        else:
            kind, status = record.type, "Success" if record.success else "Failed"
        return {
            "ID": str(record.id),
            "Type": kind,
            "Name": record.name,
            "Status": status,
            "Code": record.code,
            "Date": date,
            "Time": clock,
        }

    def render_call(self, record: CallRecord) -> dict[str, str]:
        """A ``callog/get`` item (§3.2)."""
        date, clock = self._date_time(record.at)
        return {
            "Date": date,
            "ID": str(record.id),
            "LocalIdentity": record.local_identity,
            "Name": record.name,
            "Num": record.number,
            "Time": clock,
            "Type": record.type,
        }

    # -- relays and inputs (in-process and through the control API) ---------------------------

    def _relay(self, number: int) -> Relay:
        if number not in self.relays:
            raise ValueError(f"relay {number}")
        return self.relays[number]

    def _set_relay(self, relay: Relay, state: int) -> None:
        if relay.state == state:
            return
        relay.state = state
        if state:
            relay.activations += 1
        self._notify()

    def pulse(self, number: int, seconds: float) -> None:
        """Relay ``number`` to 1, back to 0 after ``seconds`` unless another command came."""
        relay = self._relay(number)
        relay.generation += 1
        generation = relay.generation
        self._set_relay(relay, 1)

        def close() -> None:
            if relay.generation == generation:
                self._set_relay(relay, 0)

        self._schedule(seconds, close)

    def hold_delay(self, number: int) -> int:
        return int(self.config[f"{RELAY}HoldDelay{LETTERS[number - 1]}"])

    def trig(self, number: int, *, mode: int = 0, level: int = 0, delay: int = 0) -> None:
        """``relay/trig`` (§5.1): counted in ``relays[n].trigs``."""
        relay = self._relay(number)
        relay.trigs += 1
        if mode == 0:
            self.pulse(number, delay or self.hold_delay(number))
        else:
            relay.generation += 1
            self._set_relay(relay, level)

    def open_door(self, number: int) -> None:
        """What an access or an input does: after ``TriggerDelayX``, pulse for ``HoldDelayX``."""
        relay = self._relay(number)
        generation = relay.generation

        def fire() -> None:
            if relay.generation == generation:
                self.pulse(number, self.hold_delay(number))

        self._schedule(int(self.config[f"{RELAY}TriggerDelay{relay.letter}"]), fire)

    @staticmethod
    def _letter(port: int | str) -> str:
        if isinstance(port, int) and 1 <= port <= 3:
            return LETTERS[port - 1]
        if isinstance(port, str) and port.upper() in LETTERS:
            return port.upper()
        raise ValueError(f"port {port!r}")

    def _active_level(self, letter: str) -> int:
        """``OptionX``: 0 Low Trig, 1 High Trig (§5.3)."""
        return 1 if self.config[f"{INPUT}Option{letter}"] == "1" else 0

    def _inactive_level(self, letter: str) -> int:
        return 1 - self._active_level(letter)

    def input_active(self, port: int | str) -> bool:
        letter = self._letter(port)
        return self.levels[letter] == self._active_level(letter)

    def set_input(self, port: int | str, active: bool) -> None:
        """Input ``port`` (1-3 or A-C) to its active or idle level, per ``OptionX``."""
        letter = self._letter(port)
        level = self._active_level(letter) if active else self._inactive_level(letter)
        self.set_input_level(letter, level)

    def set_input_level(self, port: int | str, level: int) -> None:
        """The raw GPIO level (§4.6). Reaching the active level triggers the input."""
        letter = self._letter(port)
        if level not in {0, 1}:
            raise ValueError(f"level {level!r}")
        if self.levels[letter] == level:
            return
        self.levels[letter] = level
        self._notify()
        if level == self._active_level(letter):
            self._input_triggered(letter)

    def _input_triggered(self, letter: str) -> None:
        """§3.1, §5.3: Action URL GET, and relay ``RelayIdX`` after ``DelayX`` seconds."""
        if self.config[f"{INPUT}Enable{letter}"] != "1":
            return
        url = self.config[f"{INPUT}ActionUrl{letter}"]
        if self.config[f"{INPUT}HttpEnable{letter}"] == "1" and url:
            self._push(url)
        relay = int(self.config[f"{INPUT}RelayId{letter}"])
        if relay in self.relays:
            delay = int(self.config[f"{INPUT}Delay{letter}"])
            self._schedule(delay, partial(self.open_door, relay))

    def _push(self, url: str) -> None:
        if self.tasks is None:  # not serving: nothing can be sent
            self.push_failures += 1
            self.pushes.append((url, None))
            self._notify()
            return
        self.tasks.start_soon(self._send_push, url)

    async def _send_push(self, url: str) -> None:
        # An embedded device does not check the certificate of its Action URL target.
        status = await push(url, timeout=PUSH_TIMEOUT, verify=False)
        if status is None or status >= 400:
            self.push_failures += 1
        self.pushes.append((url, status))
        self._notify()

    # -- access, calls, SIP ------------------------------------------------------------------

    def access(
        self,
        kind: AccessType,
        *,
        code: str = "",
        name: str = "",
        valid: bool = True,
        door: int = 1,
    ) -> DoorRecord:
        """A door log record; a valid one opens relay ``door`` (0: none) like the device."""
        if door:
            self._relay(door)
        record = DoorRecord(self._next_door_id, kind, name, valid, code, self.now())
        self._next_door_id += 1
        self.doorlog.append(record)
        self._notify()
        if valid and door:
            self.open_door(door)
        return record

    def swipe(
        self, uid: str = "00B4161D", *, valid: bool = True, name: str = "", door: int = 1
    ) -> DoorRecord:
        """An RF card: Type Card, Code = the card SN (§3.2)."""
        return self.access("Card", code=uid, name=name, valid=valid, door=door)

    def enter_code(
        self,
        code: str = "1234",
        *,
        valid: bool = True,
        public: bool = False,
        name: str = "",
        door: int = 1,
    ) -> DoorRecord:
        """A private PIN (Type Password) or the public code (Type Public)."""
        kind: AccessType = "Public" if public else "Password"
        return self.access(kind, code=code, name=name, valid=valid, door=door)

    def face(self, name: str = "", *, valid: bool = True, door: int = 1) -> DoorRecord:
        return self.access("Face", name=name, valid=valid, door=door)

    @property
    def call_status(self) -> CallStatus:
        return "READY" if self.call is None else self.call.status

    def _local_identity(self, account: int) -> str:
        user = self.config[f"Config.Account{account}.GENERAL.UserName"]
        server = self.config[f"Config.Account{account}.SIP.Server"]
        return f"{user}@{server}" if user and server else f"{self.ip}@{self.ip}"

    def _log_call(
        self, kind: CallType, number: str, name: str, account: int, at: float
    ) -> CallRecord:
        record = CallRecord(
            self._next_call_id, kind, name, number, self._local_identity(account), at
        )
        self._next_call_id += 1
        self.callog.append(record)
        self._notify()
        return record

    def incoming_call(
        self, number: str = "192.168.1.48", name: str = "", account: int = 1
    ) -> CallRecord | None:
        """Someone calls the device: RINGING. A busy line logs it as Missed at once (returned)."""
        if account not in self.registration:
            raise ValueError(f"account {account!r}")
        if self.call is not None:
            return self._log_call("Missed", number, name or number, account, self.now())
        self.call = Call("incoming", number, name or number, account, self.now())
        self._notify()
        return None

    def outgoing_call(self, phone: str, name: str = "", account: int = 1) -> None:
        """The device calls ``phone`` (``call/dial``): CALLING until answered or ended."""
        if self.call is not None:
            raise ValueError("line busy")
        self.call = Call("outgoing", phone, name or phone, account, self.now())
        self._notify()

    def answer_call(self) -> None:
        """The call connects (the far end answered, or the incoming call was picked up)."""
        if self.call is None:
            raise ValueError("no call")
        self.call.answered = True
        self._notify()

    def end_call(self, *, forwarded: bool = False) -> CallRecord | None:
        """Back to READY; logs Dialed, Received, Missed (never answered) or Forwarded."""
        call, self.call = self.call, None
        if call is None:
            return None
        kind: CallType = "Dialed" if call.direction == "outgoing" else "Received"
        if forwarded:
            kind = "Forwarded"
        elif call.direction == "incoming" and not call.answered:
            kind = "Missed"
        return self._log_call(kind, call.number, call.name, call.account, call.started)

    def set_registration(self, account: int, status: int) -> None:
        """SIP registration (§4.8): -1 unknow, 0 disable, 1 registering, 2 registred, 3 failed."""
        if account not in self.registration or not -1 <= status <= 3:
            raise ValueError(f"account {account!r} status {status!r}")
        self.registration[account] = status
        self._notify()

    def reboot(self, downtime: float | None = None) -> None:
        """Reboot: unreachable (connections dropped) for ``downtime`` s, then uptime from 0.
        Relays, inputs, the call and nonces are reset; door and call logs are kept."""
        downtime = self.reboot_downtime if downtime is None else downtime
        self.boot += 1
        self._down_until = self.monotonic() + downtime
        self.boot_epoch = self._down_until
        self._timers.clear()
        for relay in self._relays:
            relay.generation += 1
            relay.state = 0
        self.levels = {letter: self._inactive_level(letter) for letter in LETTERS}
        self.call = None
        self._nonces.clear()
        self._opaque = secrets.token_hex(16)
        self._notify()

    # -- control API -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What the simulated device is doing, for tests and for the control API's replies."""
        return {
            "boot": self.boot,
            "time": int(self.now()),
            "uptime": self.uptime,
            "api_enabled": self.api_enabled,
            "relays": {
                r.letter: {"state": r.state, "trigs": r.trigs, "activations": r.activations}
                for r in self._relays
            },
            "inputs": {
                x: {"level": self.levels[x], "active": self.input_active(x)} for x in LETTERS
            },
            "call": self.call_status,
            "sip": {str(n): status for n, status in self.registration.items()},
            "doorlog": [r.id for r in self.doorlog],
            "callog": [r.id for r in self.callog],
            "hits": dict(self.hits),
            "pushes": {"sent": len(self.pushes), "failed": self.push_failures},
        }

    def _clock_control(self, body: dict[str, Any]) -> None:
        """``{"set": <unix time>}`` and/or ``{"advance": <seconds>}``."""
        if "set" in body:
            self.set_time(float(body["set"]))
        self.advance(float(body.get("advance", 0)))

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /_sim/<action>``; answers ``{"result": ..., "state": state()}``."""
        door = int(body.get("door", 1))
        actions: dict[str, Callable[[], object]] = {
            "input": lambda: (
                self.set_input_level(body["port"], int(body["level"]))
                if "level" in body
                else self.set_input(body["port"], bool(body.get("active", True)))
            ),
            "card": lambda: self.swipe(
                str(body.get("uid", "00B4161D")),
                valid=bool(body.get("valid", True)),
                name=str(body.get("name", "")),
                door=door,
            ),
            "code": lambda: self.enter_code(
                str(body.get("code", "1234")),
                valid=bool(body.get("valid", True)),
                public=bool(body.get("public", False)),
                name=str(body.get("name", "")),
                door=door,
            ),
            "face": lambda: self.face(
                str(body.get("name", "")), valid=bool(body.get("valid", True)), door=door
            ),
            "access": lambda: self.access(
                _access_type(body.get("type", "Unknow")),
                code=str(body.get("code", "")),
                name=str(body.get("name", "")),
                valid=bool(body.get("valid", True)),
                door=door,
            ),
            "incoming": lambda: self.incoming_call(
                str(body.get("number", "192.168.1.48")),
                str(body.get("name", "")),
                int(body.get("account", 1)),
            ),
            "outgoing": lambda: self.outgoing_call(
                str(body["phone"]), str(body.get("name", "")), int(body.get("account", 1))
            ),
            "answer": self.answer_call,
            "end": lambda: self.end_call(forwarded=bool(body.get("forwarded", False))),
            "sip": lambda: self.set_registration(int(body["account"]), int(body["status"])),
            "reboot": lambda: self.reboot(
                None if body.get("downtime") is None else float(body["downtime"])
            ),
            "api": lambda: self.set_api_enabled(bool(body.get("enabled", True))),
            "expire_nonces": self.expire_nonces,
            "clock": lambda: self._clock_control(body),
            "state": lambda: None,
        }
        if action not in actions:
            return None
        result = actions[action]()
        if isinstance(result, DoorRecord):
            result = self.render_door(result)
        elif isinstance(result, CallRecord):
            result = self.render_call(result)
        elif not isinstance(result, int):
            result = None
        return {"result": result, "state": self.state()}


def _access_type(value: object) -> AccessType:
    for kind, number in DOOR_TYPES.items():
        if value in {kind, number}:
            return kind
    raise ValueError(f"type {value!r}")
