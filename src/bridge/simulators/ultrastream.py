"""Simulator of a Magewell Ultra Stream HDMI/SDI encoder's ``usapi`` HTTP API.

References are to the extraction ``research/seed-ultrastream.md`` (``§``). Every call is
``GET /usapi?method=<m>&...`` answering JSON with HTTP 200 and ``{"result": <code>, ...}``
(§1.1, §1.3). ``login&id=<user>&pass=<md5 hex>`` answers ``{"result": 0}`` with a
``Set-Cookie: sid=<32 hex>``, or ``{"result": 36}`` for a wrong user or password (§1.2); every
method but ``ping`` and ``login`` needs a live ``sid`` cookie, else ``{"result": -17}``. Sessions
expire after ``idle_timeout`` seconds without a request (the manual gives no lifetime: invented),
on ``expire_sessions()``, on ``logout`` and on a reboot.

Device model: the ``cur-status`` mask (§1.5) from the state below; recording (``start-rec``,
``stop-rec``: 1 when already in that state); live (``start-live``, ``stop-live``) to the
enabled servers, at most two, whose live status goes 28 (DNS) -> 23 (connecting) -> 22
(connected) one ``step`` apart (or to 30 with ``live_auth_error``); ``enable-server`` (refused
with -9 while live, §1.7); signal loss; USB and SD ``disk-status`` (§1.6; recording stops when
no medium can take it); USB format and USB test with progress in ``format-status`` /
``disk-test``, and any long operation set by hand (``set_operation``); a reboot: ``ping`` shows
statusReboot for ``reboot_announce`` seconds (or until ``boot_up()`` with ``hold``), then
connections are dropped for ``reboot_downtime`` seconds, then the device is up again with no
sessions, recording and live off and ``uptime`` from 0 (the API has no uptime: it is for tests).

For tests: ``hits`` counts requests per method, ``logins`` the login attempts (``failed_logins``
the refused ones), ``wait_until`` waits for a state. Faults: the base ones, ``unavailable(n)``
(HTTP 503 for the next n requests) and slow replies via ``set_fault(None, delay=...)``.

Invented where the manual is silent: which live slot belongs to which server (the first two
enabled servers in list order), ``input-signal`` values with a signal (status 1, 1920x1080,
60.0), and -10 for an unknown method.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from bridge.simulators.base import Simulator, json_response
from bridge.simulators.server import DropConnectionError, Request, Response

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskGroup

Phase = Literal["up", "rebooting", "down"]
OPERATIONS = ("upgrade-status", "check-upgrade", "format-status", "disk-test", "living-test")
BITS = {  # operation -> its cur-status bit (§1.5)
    "upgrade-status": 0x4000,
    "check-upgrade": 0x2000000,
    "format-status": 0x100000,
    "disk-test": 0x1000,
    "living-test": 0x8000,
}
PASSWORD_SET = 0x10000
PREVIEW = "/tmp/sbox-snapshot/sbox-quarter.jpg"  # noqa: S108 - the device's own path (get-info)
PREVIEW_JPEG = b"\xff\xd8\xff\xfe\x00\x0bultrastream\xff\xd9"  # SOI, a comment, EOI
DISK_READY = 0x10
RTMP_READY = 0x20


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the device's own scheme


@dataclass
class Server:
    id: int
    name: str
    type: int
    url: str
    key: str
    passwd: str = ""
    is_use: bool = False


class UltraStreamSimulator(Simulator):
    def __init__(  # noqa: PLR0913 - the device's knobs
        self,
        *,
        username: str = "Admin",
        password: str = "admin",  # noqa: S107 - a simulator's default
        idle_timeout: float | None = None,
        step: float = 0.05,
        reboot_announce: float = 0.3,
        reboot_downtime: float = 0.3,
        serial: str = "C301181214002",
    ) -> None:
        super().__init__()  # no HTTP auth: the session is the sid cookie
        self.user, self.secret = username, password
        self.idle_timeout = idle_timeout
        self.step = step
        self.reboot_announce, self.reboot_downtime = reboot_announce, reboot_downtime
        self.serial = serial
        self.hits: Counter[str] = Counter()
        self.logins = 0
        self.failed_logins = 0
        self.sessions: dict[str, float] = {}
        self.recording = False
        self.living = False
        self.live_codes = [0, 0]
        self.live_auth_error = False
        self.servers = [
            Server(
                1, "YouTube", 2, "rtmp://a.rtmp.youtube.com/live2", "yt-key-5ecret", is_use=True
            ),
            Server(2, "Twitch", 1, "rtmp://live.twitch.tv/app", "tw-key-5ecret", "rtmp-pw-5ecret"),
        ]
        self.softap_passwd = "ap-pw-5ecret"  # noqa: S105 - fake, to prove redaction
        self.signal = True
        self.disks = {"usb": 1, "sd": 1}
        self.operations: dict[str, dict[str, Any]] = {k: _idle(k) for k in OPERATIONS}
        self.last_rec_status = 0
        self.phase: Phase = "up"
        self.boot = 0
        self.booted_at = time.monotonic()
        self.unavailable_count = 0
        self._phase_until: float | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.booted_at

    def on_serve(self, tasks: TaskGroup) -> None:
        tasks.start_soon(self._ticker)

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(self.step)
            self.tick()

    def tick(self) -> None:
        """One step of the device's own progress: live connection, running operations and the
        reboot phases."""
        if self.living:
            for slot, code in enumerate(self.live_codes):
                if code == 28:
                    self.live_codes[slot] = 30 if self.live_auth_error else 23
                elif code == 23:
                    self.live_codes[slot] = 22
        for key in ("format-status", "disk-test"):
            op = self.operations[key]
            if op["result"] == 2 and op.get("auto"):
                op["percent"] = min(100, op["percent"] + 25)
                if op["percent"] >= 100:
                    op["result"] = 0
        self._advance_phase()
        self._notify()

    def _advance_phase(self) -> None:
        now = time.monotonic()
        if self._phase_until is not None and now >= self._phase_until:
            if self.phase == "rebooting":
                self.phase, self._phase_until = "down", now + self.reboot_downtime
            elif self.phase == "down":
                self.boot_up()

    async def handle(self, request: Request) -> Response:
        if request.path.startswith("/_sim/"):
            return await super().handle(request)
        if self.phase == "down":
            raise DropConnectionError
        if self.unavailable_count > 0:
            self.unavailable_count -= 1
            return Response(503, b"<html>Service Unavailable</html>", content_type="text/html")
        return await super().handle(request)

    def check_auth(self, request: Request) -> Response | None:  # noqa: ARG002
        return None  # the session is checked per method

    # -- the API -----------------------------------------------------------------------------

    def mask(self) -> int:
        mask = PASSWORD_SET
        if self.disks.get("usb") in {1, 5}:
            mask |= DISK_READY
        if any(s.is_use for s in self.servers):
            mask |= RTMP_READY
        if self.recording:
            mask |= 0x02
        if self.living:
            mask |= 0x04
        for key, bit in BITS.items():
            if self.operations[key]["result"] == 2:
                mask |= bit
        if self.phase == "rebooting":
            mask |= 0x20000000
        return mask

    async def route(self, request: Request) -> Response:
        if request.path == PREVIEW:
            # Served as a file (the inference the driver relies on): no session needed.
            self.hits["preview"] += 1
            return Response(200, PREVIEW_JPEG, content_type="image/jpeg")
        if request.path != "/usapi":
            return Response(404, b"not found", content_type="text/plain")
        method = request.query.get("method", "")
        self.hits[method] += 1
        try:
            reply = self._call(method, request)
        finally:
            self._notify()
        response = json_response(reply)
        if method == "login" and reply.get("result") == 0:
            sid = secrets.token_hex(16)
            self.sessions[sid] = time.monotonic()
            response.headers.append(("set-cookie", f"sid={sid}; path=/"))
        return response

    def _session_ok(self, request: Request) -> bool:
        cookies = dict(
            part.strip().split("=", 1)
            for part in request.headers.get("cookie", "").split(";")
            if "=" in part
        )
        sid = cookies.get("sid")
        now = time.monotonic()
        if sid is None or sid not in self.sessions:
            return False
        if self.idle_timeout is not None and now - self.sessions[sid] > self.idle_timeout:
            del self.sessions[sid]
            return False
        self.sessions[sid] = now
        return True

    def _call(self, method: str, request: Request) -> dict[str, Any]:
        query = request.query
        if method == "ping":
            return {"result": 0, "cur-status": self.mask()}
        if method == "login":
            self.logins += 1
            if query.get("id") == self.user and query.get("pass") == md5(self.secret):
                return {"result": 0}
            self.failed_logins += 1
            return {"result": 36}
        if not self._session_ok(request):
            return {"result": -17}
        handlers: dict[str, Callable[[], dict[str, Any]]] = {
            "logout": lambda: self._logout(request),
            "get-info": self._info,
            "get-status": self._status,
            "get-settings": self._settings,
            "start-rec": self._start_rec,
            "stop-rec": self._stop_rec,
            "start-live": self._start_live,
            "stop-live": self._stop_live,
            "enable-server": lambda: self._enable_server(query),
            "reboot": self._reboot_request,
            "start-format-usb": lambda: self._start_operation("format-status"),
            "start-format-sd": lambda: self._start_operation("format-status"),
            "start-test-usb": lambda: self._start_operation("disk-test"),
            "clear-format-usb": lambda: self._clear("format-status"),
            "clear-test-usb": lambda: self._clear("disk-test"),
        }
        handler = handlers.get(method)
        if handler is None:
            return {"result": -10}
        if self.phase == "rebooting" and not method.startswith(("get-", "logout")):
            return {"result": -9}
        return handler()

    def _logout(self, request: Request) -> dict[str, Any]:
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "sid":
                self.sessions.pop(value, None)
        return {"result": 0}

    def _info(self) -> dict[str, Any]:
        return {
            "result": 0,
            "mac-addr": {"eth": "70:b3:d5:75:d5:fc"},
            "snapshot": PREVIEW,
            "product": {
                "sn": self.serial,
                "product-id": 769,
                "hardware-ver": "C",
                "firmware-ver-s": "1.2.122",
                "product-name": "Ultra Stream",
                "module-name": "Ultra Stream HDMI",
                "manu-name": "MAGEWELL",
                "max-lock-count": 2,
            },
            "codec-cap": {},
        }

    def _disk(self, medium: str) -> dict[str, Any]:
        status = self.disks.get(medium, 0)
        present = status != 0
        return {
            "disk-status": status,
            "total-size": 61638148096 if present else 0,
            "free-size": (0 if status == 3 else 57944440832) if present else 0,
            "usage": (100 if status == 3 else 6) if present else 0,
            "beign-time" if medium == "usb" else "begin-time": "2019-09-24 08:04:39",
        }

    def _status(self) -> dict[str, Any]:
        signal = (
            {"status": 1, "cx": 1920, "cy": 1080, "interlaced": 0, "frame-rate": 60.0}
            if self.signal
            else {"status": 0, "cx": 0, "cy": 0, "interlaced": 0, "frame-rate": 0.0}
        )
        return {
            "result": 0,
            "cur-status": self.mask(),
            "last-rec-status": self.last_rec_status,
            "cur-time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "box-name": f"Ultra Stream {self.serial}",
            "lock-user": [],
            "rec-status": {"result": 2 if self.recording else 0, "run-ms": 0, "client-id": ""},
            "live-status": {
                "result": self.live_codes[0],
                "result2": self.live_codes[1],
                "run-ms": 0,
                "cur-bps": 0,
                "cur-bps2": 0,
                "client-id": "",
            },
            **{
                k: {kk: v for kk, v in op.items() if kk != "auto"}
                for k, op in self.operations.items()
            },
            "input-signal": signal,
            "usb": self._disk("usb"),
            "sd": self._disk("sd"),
            "eth": {"ip": "10.10.107.212"},
        }

    def _settings(self) -> dict[str, Any]:
        return {
            "result": 0,
            "name": f"Ultra Stream {self.serial}",
            "softap": {
                "is-softap": 1,
                "softap-ssid": self.serial,
                "softap-passwd": self.softap_passwd,
            },
            "stream-server": [
                {
                    "id": s.id,
                    "type": s.type,
                    "url": s.url,
                    "key": s.key,
                    "is-auth": int(bool(s.passwd)),
                    "user": "streamer" if s.passwd else "",
                    "passwd": s.passwd,
                    "is-use": int(s.is_use),
                    "token": "",
                    "net-mode": 1,
                    "name": s.name,
                }
                for s in self.servers
            ],
        }

    def _usable(self) -> bool:
        return any(status in {1, 5} for status in self.disks.values())

    def _start_rec(self) -> dict[str, Any]:
        if self.recording:
            return {"result": 1}
        if any(self.operations[k]["result"] == 2 for k in ("format-status", "disk-test")):
            return {"result": -9}
        if not self._usable():
            return {"result": -16 if 3 in self.disks.values() else -5}
        self.recording = True
        return {"result": 0}

    def _stop_rec(self) -> dict[str, Any]:
        if not self.recording:
            return {"result": 1}
        self.recording = False
        return {"result": 0}

    def _start_live(self) -> dict[str, Any]:
        if self.living:
            return {"result": 1}
        enabled = [s for s in self.servers if s.is_use]
        if not enabled:
            return {"result": 29}
        if len(enabled) > 2:
            return {"result": -29}
        self.living = True
        self.live_codes = [28 if slot < len(enabled) else 0 for slot in range(2)]
        return {"result": 0}

    def _stop_live(self) -> dict[str, Any]:
        if not self.living:
            return {"result": 1}
        self.living = False
        self.live_codes = [0, 0]
        return {"result": 0}

    def _enable_server(self, query: dict[str, str]) -> dict[str, Any]:
        if self.living:
            return {"result": -9}
        try:
            server_id, use = int(query["id"]), int(query["is-use"])
        except (KeyError, ValueError):
            return {"result": -10}
        server = next((s for s in self.servers if s.id == server_id), None)
        if server is None:
            return {"result": -14}
        if use and not server.is_use and sum(s.is_use for s in self.servers) >= 2:
            return {"result": -29}
        server.is_use = bool(use)
        return {"result": 0}

    def _start_operation(self, key: str) -> dict[str, Any]:
        op = self.operations[key]
        if op["result"] == 2:
            return {"result": 1}
        if self.recording or self.disks.get("usb") not in {1, 5}:
            return {"result": -9 if self.recording else -5}
        op.update(result=2, percent=0, auto=True)
        return {"result": 0}

    def _clear(self, key: str) -> dict[str, Any]:
        self.operations[key] = _idle(key)
        return {"result": 0}

    def _reboot_request(self) -> dict[str, Any]:
        self.reboot()
        return {"result": 0}

    # -- what happens to the device ----------------------------------------------------------

    def expire_sessions(self) -> None:
        """Every session is gone (what the device does after an undocumented lifetime)."""
        self.sessions.clear()
        self._notify()

    def unavailable(self, count: int = 1) -> None:
        """HTTP 503 for the next ``count`` API requests."""
        self.unavailable_count = count

    def set_signal(self, present: bool) -> None:
        self.signal = present
        self._notify()

    def set_disk(self, medium: str, status: int) -> None:
        """``disk-status`` of ``usb`` or ``sd``: 0 removed, 1 valid, 3 full, 4 not writable,
        5 low, 6 invalid (§1.6). Recording stops when no medium can take it."""
        if medium not in self.disks:
            raise ValueError(f"medium {medium!r}")
        self.disks[medium] = int(status)
        if self.recording and not self._usable():
            self.recording = False
            self.last_rec_status = -16
        self._notify()

    def set_operation(self, key: str, *, result: int, percent: int = 0) -> None:
        """A long operation's progress as the device reports it (27 idle, 2 running, 0 done)."""
        if key not in self.operations:
            raise ValueError(f"operation {key!r}")
        self.operations[key].update(result=int(result), percent=int(percent), auto=False)
        self._notify()

    def reboot(self, *, hold: bool = False) -> None:
        """Announce a reboot (statusReboot), then drop connections, then come up fresh; with
        ``hold`` the announcement lasts until ``boot_up()``."""
        self.phase = "rebooting"
        self._phase_until = None if hold else time.monotonic() + self.reboot_announce
        self._notify()

    def boot_up(self) -> None:
        self.phase, self._phase_until = "up", None
        self.boot += 1
        self.booted_at = time.monotonic()
        self.sessions.clear()
        self.recording = self.living = False
        self.live_codes = [0, 0]
        self.operations = {k: _idle(k) for k in OPERATIONS}
        self._notify()

    def state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "boot": self.boot,
            "mask": self.mask(),
            "recording": self.recording,
            "living": self.living,
            "live_codes": list(self.live_codes),
            "servers": {str(s.id): s.is_use for s in self.servers},
            "signal": self.signal,
            "disks": dict(self.disks),
            "sessions": len(self.sessions),
            "logins": self.logins,
            "hits": dict(self.hits),
        }

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /_sim/<action>``; answers ``{"state": state()}``."""
        actions: dict[str, Callable[[], object]] = {
            "signal": lambda: self.set_signal(bool(body.get("present", False))),
            "disk": lambda: self.set_disk(str(body["medium"]), int(body["status"])),
            "operation": lambda: self.set_operation(
                str(body["operation"]),
                result=int(body["result"]),
                percent=int(body.get("percent", 0)),
            ),
            "expire": self.expire_sessions,
            "unavailable": lambda: self.unavailable(int(body.get("count", 1))),
            "reboot": lambda: self.reboot(hold=bool(body.get("hold", False))),
            "boot_up": self.boot_up,
            "live_auth_error": lambda: setattr(self, "live_auth_error", bool(body.get("on", True))),
            "state": lambda: None,
        }
        if action not in actions:
            return None
        actions[action]()
        return {"state": self.state()}


def _idle(key: str) -> dict[str, Any]:
    if key == "check-upgrade":
        return {"result": 27, "client-id": ""}
    if key == "upgrade-status":
        return {"step": 0, "percent": 0, "result": 27, "client-id": "", "mode": "none"}
    return {"percent": 0, "result": 27, "client-id": ""}
