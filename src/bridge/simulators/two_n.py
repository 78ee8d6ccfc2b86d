"""Simulator of a 2N IP intercom's HTTP API, after the vendor manual (FW 2.42, or 2.15).

Replies use the manual's envelope (``{"success": true, "result": {...}}`` or ``{"success":
false, "error": {"code", "param", "description"}}``), errors come with HTTP 200 except 401
"authorisation required". Authentication is none, Basic or Digest (MD5 or SHA-256, qop=auth,
expiring nonces answered with ``stale=true``), per device or per path prefix.

Events: a device-global id counter restarting at 1 on every boot, whose first event is
``DeviceState startup``; a history ring (10000 events, 500 on 2.15); one queue per subscription
channel with its filter (events hidden by default need naming on 2.42); ``log/pull`` long-polls
and returns at most 128 events; a channel closes ``duration`` seconds after its last pull unless
a pull is in progress, and after a reboot. Unknown or closed channel ids answer error 12 ``id``
(the manual only says "an error"). Wall time comes from an injectable clock; timers (monostable
switch-off, hold timeouts) and pull timeouts run on real time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import anyio

from bridge.simulators.base import Simulator, json_response
from bridge.simulators.generic import JPEG
from bridge.simulators.server import DropConnectionError, Request, Response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


AuthScheme = Literal["none", "basic", "digest"]
Firmware = Literal["2.42", "2.15"]
DigestAlgorithm = Literal["MD5", "SHA-256"]
Event = dict[str, Any]
Result = dict[str, Any] | Response | None

BATCH = 128
MAX_DURATION = 3600
UINT32 = 2**32 - 1
REALM = "HTTP API"
HISTORY: dict[Firmware, int] = {"2.42": 10_000, "2.15": 500}
ERRORS = {
    1: "function is not supported",
    2: "invalid request path",
    3: "invalid request method",
    4: "function is disabled",
    5: "function is licensed",
    8: "invalid authentication method",
    9: "authorisation required",
    11: "missing mandatory parameter",
    12: "invalid parameter value",
    14: "unspecified processing error",
    17: "parameter shouldn't be present",
}
# Only delivered when named in the subscription filter (2.42; 2.15 hides nothing).
HIDDEN = frozenset(
    {
        "FingerEnrollState", "DirectorySaved", "DirectoryChanged", "HardwareChanged",
        "DisplayTouched", "PairingStateChanged", "LiftConfigChanged", "CapabilitiesChanged",
        "ConfigurationChanged", "ExtCameraStateChanged", "ExternalCameraStateChanged",
    }
)  # fmt: skip
EVENTS_215 = (
    "DeviceState", "AudioLoopTest", "MotionDetected", "NoiseDetected", "KeyPressed",
    "KeyReleased", "CodeEntered", "CardEntered", "InputChanged", "OutputChanged",
    "SwitchStateChanged", "CallStateChanged", "RegistrationStateChanged",
    "TamperSwitchActivated", "UnauthorizedDoorOpen", "DoorOpenTooLong", "LoginBlocked",
)  # fmt: skip
EVENTS_242 = (
    *EVENTS_215, "DoorStateChanged", "UserAuthenticated", "UserRejected", "SwitchesBlocked",
    "SwitchOperationChanged", "CapabilitiesChanged", "ConfigurationChanged", "HardwareChanged",
)  # fmt: skip
FREE_215 = ("/api/system/info", "/api/camera/", "/api/log/")  # no licence needed on 2.15
RESPONSE_PARAM_PATHS = frozenset({"/api/switch/ctrl", "/api/io/ctrl"})
RESOLUTIONS = ((160, 120), (176, 144), (320, 240), (352, 272), (352, 288), (640, 480), (1280, 960))
SWITCH_ACTIONS: dict[Firmware, tuple[str, ...]] = {
    "2.42": ("on", "off", "trigger", "lock", "unlock", "hold", "release"),
    "2.15": ("on", "off", "trigger"),
}


class ApiError(Exception):
    """A ``success: false`` reply; handlers raise it and ``route`` renders the envelope."""

    def __init__(self, code: int, param: str | None = None, description: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.param = param
        self.description = description or ERRORS[code]

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code}
        if self.param is not None:
            error["param"] = self.param
        error["description"] = self.description
        return {"success": False, "error": error}


class ActionFailedError(ApiError):
    """Error 14 as ``switch/ctrl`` words it: the requested state cannot be reached."""

    def __init__(self) -> None:
        super().__init__(14, None, "action failed")


class Params:
    """Request parameters (query, then form body: the last occurrence wins) with typed reads."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def text(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def required(self, name: str) -> str:
        if name not in self.values:
            raise ApiError(11, name)
        return self.values[name]

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        """An integer in [low, high]; ``default`` None makes the parameter mandatory."""
        if name not in self.values and default is not None:
            return default
        try:
            value = int(self.required(name))
        except ValueError:
            raise ApiError(12, name) from None
        if not low <= value <= high:
            raise ApiError(12, name)
        return value

    def seconds(self, name: str, default: float) -> float:
        """Non-negative seconds; fractions are accepted so tests can use short timeouts."""
        try:
            value = float(self.values.get(name, default))
        except ValueError:
            raise ApiError(12, name) from None
        if not 0 <= value <= UINT32:
            raise ApiError(12, name)
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(name, default)
        if value is None:
            raise ApiError(11, name)
        if value not in options:
            raise ApiError(12, name)
        return value


@dataclass(eq=False)
class Channel:
    """One ``log/subscribe`` channel: its filter, queue and expiry."""

    filter: frozenset[str] | None  # None: every event that is not hidden by default
    duration: int
    expires: float
    queue: deque[Event]
    pulls: int = 0  # pulls in progress; the channel does not expire meanwhile
    closed: bool = False

    def expired(self, now: float) -> bool:
        return self.pulls == 0 and now >= self.expires


@dataclass(eq=False)
class Switch:
    """A switch as ``switch/caps`` and ``switch/status`` describe it; tests may edit the knobs."""

    number: int
    enabled: bool = True
    mode: Literal["monostable", "bistable"] = "monostable"
    on_duration: float = 0.0  # switchOnDuration of a monostable trigger, seconds
    type: Literal["normal", "security"] = "normal"
    active: bool = False
    locked: bool = False
    held: bool = False
    hold_until: float | None = None
    generation: int = 0  # bumped by every command; pending timers of older ones do nothing


@dataclass(eq=False)
class Call:
    session: int
    direction: Literal["incoming", "outgoing"]
    peer: str
    state: str = "connecting"


class TwoNSimulator(Simulator):
    """A 2N IP intercom. ``auth`` defaults to Digest (the device default) when a username is
    given, else none; ``service_auth`` overrides it per path prefix (e.g. ``{"/api/log/":
    "none"}``), the longest prefix winning."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs of the simulated device
        self,
        *,
        firmware: Firmware = "2.42",
        licensed: bool = True,
        username: str | None = None,
        password: str | None = None,
        auth: AuthScheme | None = None,
        digest_algorithm: DigestAlgorithm = "MD5",
        service_auth: dict[str, AuthScheme] | None = None,
        nonce_lifetime: float = 300.0,
        serial: str = "54-0000-0001",
        switches: int = 4,
        switch_on_duration: float = 0.0,
        inputs: tuple[str, ...] = ("input1", "input2"),
        outputs: tuple[str, ...] = ("relay1", "relay2"),
        tz_shift: int = 0,
        restart_downtime: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(username=username, password=password)
        self.firmware: Firmware = firmware
        self.licensed = licensed
        self.auth: AuthScheme = auth or ("digest" if username is not None else "none")
        self.service_auth = dict(service_auth or {})
        if username is None and {self.auth, *self.service_auth.values()} != {"none"}:
            raise ValueError("basic or digest authentication needs a username")
        self.digest_algorithm: DigestAlgorithm = digest_algorithm
        self.nonce_lifetime = nonce_lifetime
        self.serial = serial
        self.switches = {
            n: Switch(n, on_duration=switch_on_duration) for n in range(1, switches + 1)
        }
        self.inputs = dict.fromkeys(inputs, False)
        self.outputs = dict.fromkeys(outputs, False)
        self.tz_shift = tz_shift
        self.restart_downtime = restart_downtime
        self.clock = clock
        self.log: list[tuple[str, str, dict[str, str]]] = []  # (method, path, params) served
        self.history: deque[Event] = deque(maxlen=HISTORY[firmware])
        self.channels: dict[int, Channel] = {}
        self.calls: dict[int, Call] = {}
        self.boot = 0
        self.boot_epoch = clock()
        self._next_id = 1
        self._sessions = 0  # call sessions and access-point sessions of this boot
        self._down_until = 0.0
        self._secret = b""
        self._changed = anyio.Event()  # set (and replaced) on every event and channel closure
        self._parked = anyio.Event()  # set (and replaced) whenever a pull starts waiting
        self._routes: dict[str, Callable[[Params], Awaitable[Result]]] = {
            "/api/system/info": self._system_info,
            "/api/system/status": self._system_status,
            "/api/system/restart": self._system_restart,
            "/api/log/caps": self._log_caps,
            "/api/log/subscribe": self._subscribe,
            "/api/log/pull": self._pull,
            "/api/log/unsubscribe": self._unsubscribe,
            "/api/switch/caps": self._switch_caps,
            "/api/switch/status": self._switch_status,
            "/api/switch/ctrl": self._switch_ctrl,
            "/api/io/caps": self._io_caps,
            "/api/io/status": self._io_status,
            "/api/io/ctrl": self._io_ctrl,
            "/api/phone/status": self._phone_status,
            "/api/call/status": self._call_status,
            "/api/call/dial": self._call_dial,
            "/api/call/answer": self._call_answer,
            "/api/call/hangup": self._call_hangup,
            "/api/camera/caps": self._camera_caps,
            "/api/camera/snapshot": self._camera_snapshot,
            "/api/audio/test": self._audio_test,
        }
        self.reboot()

    @property
    def modern(self) -> bool:
        """The 2.42 manual generation (False: 2.15)."""
        return self.firmware != "2.15"

    @property
    def sw_version(self) -> str:
        return "2.42.0.62.0" if self.modern else "2.15.0.24.1"

    @property
    def up_time(self) -> int:
        return int(self.clock() - self.boot_epoch)

    @property
    def waiting_pulls(self) -> int:
        """``log/pull`` requests waiting for an event."""
        return sum(channel.pulls for channel in self.channels.values())

    async def wait_parked(self, count: int = 1) -> None:
        """Return once ``count`` pulls wait for events: a test injects an event after this to
        prove a long poll is answered by the event rather than by its timeout."""
        while self.waiting_pulls < count:
            await self._parked.wait()

    # -- serving and authentication ----------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if not request.path.startswith("/_sim/") and self.clock() < self._down_until:
            raise DropConnectionError  # still restarting
        return await super().handle(request)

    def scheme_for(self, path: str) -> AuthScheme:
        prefixes = [p for p in self.service_auth if path.startswith(p)]
        return self.service_auth[max(prefixes, key=len)] if prefixes else self.auth

    def check_auth(self, request: Request) -> Response | None:
        scheme = self.scheme_for(request.path)
        if scheme == "none":
            return None
        if scheme == "basic":
            if super().check_auth(request) is None:
                return None
            return self._unauthorized(f'Basic realm="{REALM}"')
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):  # Digest-only: "invalid authentication method"
            return self._unauthorized(self._digest_challenge(stale=False), code=8)
        return self.check_digest(request)

    def digest_refused(self, *, stale: bool) -> Response:
        return self._unauthorized(self._digest_challenge(stale=stale))

    def digest_verdict(self, request: Request, fields: dict[str, str]) -> str:
        """``ok``, ``stale`` (right credentials, expired nonce) or ``denied`` (RFC 7616)."""
        nonce = fields.get("nonce", "")
        issued = self._nonce_issued(nonce)
        if (
            issued is None
            or fields.get("username") != self.username
            or fields.get("realm") != REALM
            or fields.get("algorithm", "MD5").upper() != self.digest_algorithm
            or fields.get("qop") != "auth"
            or fields.get("uri") != request.target
        ):
            return "denied"
        algorithm = hashlib.md5 if self.digest_algorithm == "MD5" else hashlib.sha256

        def digest(*parts: str) -> str:
            return algorithm(":".join(parts).encode()).hexdigest()

        ha1 = digest(self.username or "", REALM, self.password or "")
        ha2 = digest(request.method, fields["uri"])
        nc, cnonce = fields.get("nc", ""), fields.get("cnonce", "")
        expected = digest(ha1, nonce, nc, cnonce, "auth", ha2)
        if not hmac.compare_digest(expected, fields.get("response", "")):
            return "denied"
        return "stale" if self.clock() - issued > self.nonce_lifetime else "ok"

    def _digest_challenge(self, *, stale: bool) -> str:
        """A fresh nonce: its issue time, signed, so no table of nonces is needed."""
        stamp = f"{self.clock():.6f}"
        nonce = base64.urlsafe_b64encode(f"{stamp}:{self._sign(stamp)}".encode()).decode()
        return (
            f'Digest realm="{REALM}", qop="auth", algorithm={self.digest_algorithm}, '
            f'nonce="{nonce}", stale={"true" if stale else "false"}'
        )

    def _nonce_issued(self, nonce: str) -> float | None:
        try:
            stamp, mac = base64.urlsafe_b64decode(nonce.encode()).decode().split(":")
            issued = float(stamp)
        except ValueError:  # also binascii.Error and UnicodeDecodeError
            return None
        return issued if hmac.compare_digest(mac, self._sign(stamp)) else None

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]

    def _unauthorized(self, challenge: str, code: int = 9) -> Response:
        body = json_response(ApiError(code).envelope()).body
        return Response(401, body, headers=[("www-authenticate", challenge), self._server])

    @property
    def _server(self) -> tuple[str, str]:
        return ("server", f"HIP{self.sw_version}")

    def vendor_error(self) -> Response:
        return self._json(ApiError(14).envelope())

    def _json(self, value: dict[str, Any]) -> Response:
        return Response(200, json_response(value).body, headers=[self._server])

    # -- routing -----------------------------------------------------------------------------

    async def route(self, request: Request) -> Response:
        values = dict(request.query)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            values.update(
                parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            )
        self.log.append((request.method, request.path, values))
        try:
            result = await self._function(request)(Params(values))
        except ApiError as error:
            reply = error.envelope()
        else:
            if isinstance(result, Response):
                return result
            reply = {"success": True} if result is None else {"success": True, "result": result}
        if "response" in values and request.path in RESPONSE_PARAM_PATHS:
            # The manual's quirk: the given text replaces the JSON reply.
            return Response(200, values["response"].encode(), "text/plain", [self._server])
        return self._json(reply)

    def _function(self, request: Request) -> Callable[[Params], Awaitable[Result]]:
        """The handler of an API function, or why it cannot be called (errors 2, 3, 5)."""
        handler = self._routes.get(request.path)
        if handler is None:
            raise ApiError(2)
        if request.method not in {"GET", "POST"}:
            raise ApiError(3)
        if not (self.modern or self.licensed or request.path.startswith(FREE_215)):
            raise ApiError(5)
        return handler

    # -- events ------------------------------------------------------------------------------

    def emit(self, name: str, params: dict[str, Any] | None = None) -> Event:
        """Record one device event in the history and every channel whose filter takes it."""
        now = self.clock()
        event: Event = {
            "id": self._next_id,
            "tzShift": self.tz_shift,
            "utcTime": int(now),
            "upTime": int(now - self.boot_epoch),
            "event": name,
            "params": dict(params or {}),
        }
        self._next_id += 1
        self.history.append(event)
        self.channels = {k: c for k, c in self.channels.items() if not c.expired(now)}
        for channel in self.channels.values():
            if self._accepts(channel, name):
                channel.queue.append(event)
        self._wake()
        return event

    def _device_event(self, name: str, params: dict[str, Any]) -> None:
        """An event the simulated firmware generation knows; 2.15 lacks the newer ones."""
        if self.modern or name in EVENTS_215:
            self.emit(name, params)

    def _accepts(self, channel: Channel, name: str) -> bool:
        if channel.filter is not None:
            return name in channel.filter
        return not self.modern or name not in HIDDEN

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _channel(self, args: Params) -> Channel:
        """The channel named by ``id``; unknown, closed and expired ones are error 12."""
        key = args.integer("id", None, 0, UINT32)
        channel = self.channels.get(key)
        if channel is None or channel.expired(self.clock()):
            self.channels.pop(key, None)
            raise ApiError(12, "id")
        return channel

    def _replay(self, include: str) -> list[Event]:
        """History events that ``include`` (``new``, ``all`` or ``-<seconds>``) asks for."""
        if include == "new":
            return []
        if include == "all":
            return list(self.history)
        if not include.startswith("-") or not include[1:].isdigit():
            raise ApiError(12, "include")
        since = int(self.clock()) - int(include[1:])
        return [event for event in self.history if event["utcTime"] >= since]

    def close_channels(self) -> int:
        """Close every channel as if its duration had passed; parked pulls answer at once."""
        closed = len(self.channels)
        for channel in self.channels.values():
            channel.closed = True
        self.channels.clear()
        self._wake()
        return closed

    def reboot(self) -> None:
        """A new boot: ids and upTime restart, history and channels are gone, ``DeviceState
        startup`` comes first. Pulls parked in the old boot lose their connection."""
        self.boot += 1
        self.boot_epoch = self.clock()
        self._down_until = self.boot_epoch + self.restart_downtime if self.boot > 1 else 0.0
        self.close_channels()
        self.history.clear()
        self.calls.clear()
        self._next_id = 1
        self._sessions = 0
        self._secret = secrets.token_bytes(16)  # nonces of the last boot are unknown
        self.outputs = dict.fromkeys(self.outputs, False)
        for switch in self.switches.values():
            switch.active = switch.locked = switch.held = False
            switch.hold_until = None
            switch.generation += 1
        self.emit("DeviceState", {"state": "startup"})

    # -- device behaviour (in-process and through the control API) ---------------------------

    def press(self, key: str = "%1", *, call: bool = False, number: str = "sip:4000@pbx") -> int:
        """A button: ``KeyPressed`` + ``KeyReleased``; a quick-dial button can also call out.
        Returns the call session, 0 without a call."""
        self.emit("KeyPressed", {"key": key})
        self.emit("KeyReleased", {"key": key})
        return self.start_call("outgoing", number).session if call else 0

    def swipe(self, uid: str = "4BD9E903", *, valid: bool = True, reader: str = "internal") -> None:
        """A card on the reader; a valid one authenticates the user and pulses switch 1."""
        self._sessions += 1
        params: dict[str, Any] = {"direction": "in", "reader": reader, "uid": uid, "valid": valid}
        user = {"ap": 0, "session": self._sessions, "name": "Alice", "uuid": f"user-{uid}"}
        if self.modern:
            params = {"ap": 0, "session": self._sessions, **params, "uuid": user["uuid"]}
        self.emit("CardEntered", params)
        if not valid:
            self._device_event("UserRejected", {**user, "reason": "invalidCredential"})
            return
        self._device_event("UserAuthenticated", {**user, "apbBroken": False})
        door = self.switches.get(1)
        if door is not None:
            with contextlib.suppress(ApiError):  # a locked or disabled door stays shut
                self.operate(door, "trigger", originator="ap")

    def enter_code(self, code: str = "1234", *, valid: bool = True) -> None:
        self._sessions += 1
        params: dict[str, Any] = {"code": code, "valid": valid}
        if self.modern:
            params = {"ap": 0, "session": self._sessions, "direction": "in", "type": "user"}
            params |= {"code": code, "valid": valid}
        self.emit("CodeEntered", params)

    def door(self, opened: bool) -> None:
        self._device_event("DoorStateChanged", {"state": "opened" if opened else "closed"})

    def set_input(self, port: str, state: bool) -> None:
        if port not in self.inputs:
            raise KeyError(port)
        if self.inputs[port] != state:
            self.inputs[port] = state
            self.emit("InputChanged", {"port": port, "state": state})

    def motion(self, active: bool = True) -> None:
        self.emit("MotionDetected", {"state": "in" if active else "out"})

    def tamper(self, active: bool = True) -> None:
        self.emit("TamperSwitchActivated", {"state": "in" if active else "out"})

    def start_call(self, direction: Literal["incoming", "outgoing"], peer: str) -> Call:
        """A new call: outgoing goes connecting then ringing, incoming rings."""
        self._sessions += 1
        call = Call(self._sessions, direction, peer)
        self.calls[call.session] = call
        if direction == "outgoing":
            self.set_call_state(call, "connecting")
        self.set_call_state(call, "ringing")
        return call

    def set_call_state(self, call: Call, state: str, reason: str | None = None) -> None:
        """Move a call on (``connected`` when the peer answers, ``terminated`` ends it)."""
        call.state = state
        params: dict[str, Any] = {"direction": call.direction, "state": state, "peer": call.peer}
        params |= {"session": call.session, "call": call.session}
        if reason is not None:
            params["reason"] = reason
        if state == "terminated":
            self.calls.pop(call.session, None)
        self.emit("CallStateChanged", params)

    def operate(
        self, switch: Switch, action: str, *, timeout: int = 0, originator: str = "api"
    ) -> None:
        """``switch/ctrl`` semantics. Lock beats hold; a held switch cannot be switched off."""
        toggle = action == "trigger" and switch.mode == "bistable"
        if not switch.enabled or (action in {"on", "trigger"} and switch.locked):
            raise ActionFailedError
        if switch.held and not switch.locked and (action == "off" or toggle):
            raise ActionFailedError  # held on: it cannot be switched off
        switch.generation += 1
        if toggle:
            self._set_switch(switch, not switch.active, originator)
        elif action in {"on", "trigger"}:
            self._set_switch(switch, True, originator)
            delay = switch.on_duration if action == "trigger" else timeout
            if action == "trigger" or timeout:
                self._later(delay, switch, "off", originator)
        elif action == "off":
            self._set_switch(switch, False, originator)
        else:
            self._set_operation(switch, action, originator)
            if action == "hold" and timeout:
                switch.hold_until = self.clock() + timeout
                self._later(timeout, switch, "release", originator)

    def _set_operation(self, switch: Switch, action: str, originator: str) -> None:
        if action in {"lock", "unlock"}:
            switch.locked = action == "lock"
        else:
            switch.held = action == "hold"
            switch.hold_until = None
        operation = {"switch": switch.number, "locked": switch.locked, "held": switch.held}
        self._device_event("SwitchOperationChanged", {**operation, "originator": originator})
        self._set_switch(switch, switch.held and not switch.locked, originator)

    def _set_switch(self, switch: Switch, active: bool, originator: str) -> None:
        if switch.active == active:
            return
        switch.active = active
        params: dict[str, Any] = {"switch": switch.number, "state": active}
        if self.modern:
            params["originator"] = originator
        self.emit("SwitchStateChanged", params)

    def _later(self, delay: float, switch: Switch, action: str, originator: str) -> None:
        """Run ``action`` after ``delay`` s unless another command came first; at once if
        the delay is 0 or the simulator is not serving."""
        generation = switch.generation

        def fire() -> None:
            if switch.generation != generation:
                return
            if action == "release":
                self._set_operation(switch, "release", originator)
            elif not switch.held:
                self._set_switch(switch, False, originator)

        async def wait_then_fire() -> None:
            await anyio.sleep(delay)
            fire()

        if delay <= 0 or self.tasks is None:
            fire()
        else:
            self.tasks.start_soon(wait_then_fire)

    # -- HTTP API functions ------------------------------------------------------------------

    async def _system_info(self, _: Params) -> Result:
        info: dict[str, Any] = {
            "variant": "2N IP Verso" if self.modern else "2N Helios IP Vario",
            "serialNumber": self.serial,
            "hwVersion": "570v1",
            "swVersion": self.sw_version,
            "buildType": "release" if self.modern else "",
            "deviceName": "2N IP Verso" if self.modern else "2N Helios IP Vario",
        }
        if self.modern:
            digits = self.serial.replace("-", "")[-6:]
            mac = "7C-1E-B3-" + "-".join(digits[i : i + 2] for i in (0, 2, 4))
            info |= {"devType": "2-14-0-0", "variantId": 14, "customerId": 0, "macAddr": mac}
            info["firmwarePackage"] = "verso"
        return info

    async def _system_status(self, _: Params) -> Result:
        return {"systemTime": int(self.clock()), "upTime": self.up_time}

    async def _system_restart(self, _: Params) -> Result:
        self.reboot()  # the reply still goes out; later requests meet the new boot
        return None

    async def _log_caps(self, _: Params) -> Result:
        return {"events": list(EVENTS_242 if self.modern else EVENTS_215)}

    async def _subscribe(self, args: Params) -> Result:
        include = args.text("include", "new") or "new"
        names = {name.strip() for name in (args.text("filter") or "").split(",")} - {""}
        duration = args.integer("duration", 90, 1, MAX_DURATION)
        channel = Channel(
            filter=frozenset(names) or None,
            duration=duration,
            expires=self.clock() + duration,
            queue=deque(maxlen=self.history.maxlen),  # overflow drops the oldest (undocumented)
        )
        channel.queue.extend(e for e in self._replay(include) if self._accepts(channel, e["event"]))
        key = secrets.randbelow(UINT32) + 1
        while key in self.channels:
            key = secrets.randbelow(UINT32) + 1
        self.channels[key] = channel
        return {"id": key}

    async def _pull(self, args: Params) -> Result:
        """Answer at once when events are queued, else wait up to ``timeout`` for one."""
        channel = self._channel(args)
        timeout = args.seconds("timeout", 0)
        boot = self.boot
        channel.pulls += 1
        try:
            with anyio.move_on_after(timeout):
                while not channel.queue and not channel.closed and timeout > 0:
                    self._parked.set()
                    self._parked = anyio.Event()
                    await self._changed.wait()
        finally:
            channel.pulls -= 1
            channel.expires = self.clock() + channel.duration
        if self.boot != boot:
            raise DropConnectionError  # the device restarted under this request
        return {"events": [channel.queue.popleft() for _ in range(min(BATCH, len(channel.queue)))]}

    async def _unsubscribe(self, args: Params) -> Result:
        channel = self._channel(args)
        channel.closed = True
        self.channels = {k: c for k, c in self.channels.items() if c is not channel}
        self._wake()
        return None

    def _switches(self, args: Params) -> list[Switch]:
        if "switch" not in args.values:
            return list(self.switches.values())
        number = args.integer("switch", None, 0, UINT32)
        if number not in self.switches:
            raise ApiError(12, "switch")
        return [self.switches[number]]

    async def _switch_caps(self, args: Params) -> Result:
        caps: list[dict[str, Any]] = []
        for s in self._switches(args):
            entry: dict[str, Any] = {"switch": s.number, "enabled": s.enabled}
            if s.enabled:
                entry["mode"] = s.mode
                if s.mode == "monostable":
                    entry["switchOnDuration"] = s.on_duration
                entry["type"] = s.type
            caps.append(entry)
        return {"switches": caps}

    async def _switch_status(self, args: Params) -> Result:
        status: list[dict[str, Any]] = []
        for s in self._switches(args):
            entry: dict[str, Any] = {"switch": s.number, "active": s.active}
            if self.modern:
                entry |= {"locked": s.locked, "held": s.held}
                if s.hold_until is not None:
                    entry["holdTimeout"] = max(0, round(s.hold_until - self.clock()))
            status.append(entry)
        return {"switches": status}

    async def _switch_ctrl(self, args: Params) -> Result:
        args.required("switch")
        (switch,) = self._switches(args)
        action = args.choice("action", SWITCH_ACTIONS[self.firmware])
        timeout = args.integer("timeout", 0, 1, 86_400) if self.modern else 0
        self.operate(switch, action, timeout=timeout)
        return None

    def _ports(self, args: Params) -> list[tuple[str, str, bool]]:
        ports = [(p, "input", s) for p, s in self.inputs.items()]
        ports += [(p, "output", s) for p, s in self.outputs.items()]
        wanted = args.text("port")
        if wanted is None:
            return ports
        chosen = [port for port in ports if port[0] == wanted]
        if not chosen:
            raise ApiError(12, "port")
        return chosen

    async def _io_caps(self, args: Params) -> Result:
        return {"ports": [{"port": p, "type": kind} for p, kind, _ in self._ports(args)]}

    async def _io_status(self, args: Params) -> Result:
        return {"ports": [{"port": p, "state": int(state)} for p, _, state in self._ports(args)]}

    async def _io_ctrl(self, args: Params) -> Result:
        port = args.required("port")
        if port not in self.outputs:
            raise ApiError(12, "port")
        state = args.choice("action", ("on", "off")) == "on"
        if self.outputs[port] != state:
            self.outputs[port] = state
            self.emit("OutputChanged", {"port": port, "state": state})
        return None

    async def _phone_status(self, _: Params) -> Result:
        registered = {"registered": True, "registerTime": int(self.boot_epoch)}
        first = {"account": 1, "enabled": True, "sipNumber": "5207", "registrationEnabled": True}
        second = {"account": 2, "enabled": False, "sipNumber": "", "registrationEnabled": False}
        return {"accounts": [first | registered, second | {"registered": False}]}

    def _call(self, args: Params) -> Call:
        call = self.calls.get(args.integer("session", None, 0, UINT32))
        if call is None:
            raise ApiError(12, "session")
        return call

    async def _call_status(self, args: Params) -> Result:
        calls = [self._call(args)] if "session" in args.values else list(self.calls.values())
        return {
            "sessions": [
                {"session": c.session, "direction": c.direction, "state": c.state} for c in calls
            ]
        }

    async def _call_dial(self, args: Params) -> Result:
        """Call ``number``, or (2.42) ``users``; one of them, never both."""
        number, users = args.text("number"), args.text("users") if self.modern else None
        if number is not None and users is not None:
            raise ApiError(17, "users")
        peer = number if number is not None else users
        if peer is None:
            raise ApiError(11, "number")
        return {"session": self.start_call("outgoing", peer).session}

    async def _call_answer(self, args: Params) -> Result:
        call = self._call(args)
        if call.direction != "incoming" or call.state != "ringing":
            raise ApiError(12, "session")
        self.set_call_state(call, "connected")
        return None

    async def _call_hangup(self, args: Params) -> Result:
        """Hang up ``session``, or every call when it is omitted (the manual is silent)."""
        reason = args.choice("reason", ("normal", "rejected", "busy"), "normal")
        calls = [self._call(args)] if "session" in args.values else list(self.calls.values())
        for call in calls:
            self.set_call_state(call, "terminated", reason)
        return None

    async def _camera_caps(self, _: Params) -> Result:
        return {
            "jpegResolution": [{"width": w, "height": h} for w, h in RESOLUTIONS],
            "sources": [{"source": "internal"}, {"source": "external"}],
        }

    async def _camera_snapshot(self, args: Params) -> Result:
        width = args.integer("width", None, 0, UINT32)
        height = args.integer("height", None, 0, UINT32)
        if (width, height) not in RESOLUTIONS:
            raise ApiError(12, "width" if width not in dict(RESOLUTIONS) else "height")
        args.choice("source", ("internal", "external"), "internal")
        args.integer("time", 0, -30, 0)
        return Response(200, JPEG, content_type="image/jpeg", headers=[self._server])

    async def _audio_test(self, _: Params) -> Result:
        self.emit("AudioLoopTest", {"result": "passed"})
        return None

    # -- control API -------------------------------------------------------------------------

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /_sim/<action>``; answers with the events it caused."""
        params = body.get("params") or {}
        actions: dict[str, Callable[[], object]] = {
            "press": lambda: self.press(
                str(body.get("key", "%1")),
                call=bool(body.get("call")),
                number=str(body.get("number", "sip:4000@pbx")),
            ),
            "card": lambda: self.swipe(
                str(body.get("uid", "4BD9E903")),
                valid=bool(body.get("valid", True)),
                reader=str(body.get("reader", "internal")),
            ),
            "code": lambda: self.enter_code(
                str(body.get("code", "1234")), valid=bool(body.get("valid", True))
            ),
            "door": lambda: self.door(bool(body.get("opened", True))),
            "input": lambda: self.set_input(
                str(body.get("port", "input1")), bool(body.get("state"))
            ),
            "motion": lambda: self.motion(bool(body.get("active", True))),
            "tamper": lambda: self.tamper(bool(body.get("active", True))),
            "incoming": lambda: self.start_call("incoming", str(body.get("peer", "sip:100@pbx"))),
            "call": lambda: self.set_call_state(
                self.calls[int(body["session"])], str(body["state"]), body.get("reason")
            ),
            "event": lambda: self.emit(str(body.get("event") or body["name"]), dict(params)),
            "reboot": self.reboot,
            "expire": self.close_channels,
        }
        if action not in actions:
            return None
        boot, first = self.boot, self._next_id
        actions[action]()
        caused = [e for e in self.history if self.boot != boot or e["id"] >= first]
        return {"boot": self.boot, "events": caused}
