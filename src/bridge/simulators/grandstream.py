"""Simulator of a Grandstream GXV camera or video encoder, after the "Video Surveillance HTTP API"
v1.0.0.54 (references are to ``research/seed-grandstream.md``, ``§``).

Requests (§2.1): ``GET /goform/<module>?cmd=<get|set|...>&<name>=<value>`` and
``/snapshot/view<N>.jpg``; HTTP Basic on every request (§2.2; 401 otherwise). Replies (§2.3):
``key=value`` lines (``\\r\\n``), grouped by ``channel=`` on the four-channel GXV3504 (§2.5); set
replies are result words with HTTP 200: ``Successful``, ``Successful Need Reboot``,
``<param> Invalid`` (an unknown parameter or value), ``<param> Missing``; 404 for an unknown module
or snapshot; 503 while ``busy`` (§6.2). Replies go out as the HTTP/1.0 server of the manual's
examples sends them (``http10=True``): ``HTTP/1.0 200 OK``, no Content-Length, the connection
closed after the body.

Models (constructor ``model=``): ``GXV3610_HD`` (default; a single-channel camera with an SD card,
one alarm input and output, no PTZ) and ``GXV3504`` (a four-channel encoder with PTZ, four alarm
inputs and outputs, one per channel); a model name starting ``GXV3500`` has PTZ and one channel.

Modules: ``systeminfo`` (get: ``productmode``, ``mac``, versions, ``systemrun`` = uptime in s,
``ircutstatu`` 1 day / 2 night), ``device`` (get/set: ``alarmin.type``/``status``,
``alarmout.type``/``status``, ``alarm_output_time``; the status keys are read-only),
``motiondetect`` (get/set ``md.active.enable``, ``md.upload_to_alarm_server``,
``md.channel.index``; ``cmd=get_md_statu`` → ``md.alarm.statu``), ``alarmio`` (get/set
``event_upload_to_alarm_server``, ``alarmout.stop=yes``), ``sdrecord`` (get ``state_record``
0-4, set ``record_start`` 0/1 with ``channel``), ``ptz`` (PTZ models only: set ``ptzcontrol``
with ``ptzparam``, both required), ``maintenance`` (``restart=yes``), ``event_server`` (get/set
``server_name``, ``server_url``, ``server.username``, ``server.user.password`` — never returned).

Push: with a ``server_url`` set, motion starting on a channel with ``md.upload_to_alarm_server=1``,
and an alarm input becoming active with ``event_upload_to_alarm_server=1``, send a GET to that
URL with its ``%d`` placeholders filled in order with the alarm type and the channel, as a
third-party NVR manual implies (§4.2). There is no "end" request.

Invented where the manual is silent: alarm types 1 = alarm input, 2 = motion; the spelling of
the keys (dots, §0.2; ``spelling="underscores"`` spells the motion keys ``md_active_enable``
and ``md_alarm_statu`` instead, to test that clients learn names); ``record_start`` fails with
``record_start Invalid`` while an alarm or scheduled recording runs; a reboot drops connections
for ``reboot_downtime`` s, then the uptime starts at 0, motion and outputs are idle, manual
recording stops. The snapshot is a tiny constant JPEG per view (its channel in a comment).

For tests: ``hits`` counts requests per ``"<module>?<cmd>"`` (and ``"snapshot/view<N>.jpg"``),
``sets`` lists the ``cmd=set`` parameters per module, ``pushes`` the alarm-server GETs
(url, status or None), ``busy(n)`` answers the next ``n`` requests 503, ``wait_until`` waits for
a state; ``POST /_sim/<action>`` controls it (``motion``, ``input``, ``output``, ``reboot``,
``busy``, ``push``, ``clock``, ``state``).
"""

from __future__ import annotations

import base64
import hmac
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from bridge.simulators.base import DeviceClock, Simulator, push
from bridge.simulators.server import DropConnectionError, Request, Response

if TYPE_CHECKING:
    from collections.abc import Callable

Spelling = Literal["dots", "underscores"]
PUSH_TIMEOUT = 5.0
ALARM_INPUT, MOTION = 1, 2  # alarm_type of a push: invented (§4.2: not documented)
STATE_RECORD = {"none": 0, "manual": 1, "scheduled": 2, "alarm": 3}
NO_STORAGE = 4
PTZ_MODELS = ("GXV3500", "GXV3504")
OUTPUT_TIMES = {0, 5, 15, 30, 60, 180, 300, 600, 900, 1800}


class GoformRefusal(Exception):  # noqa: N818 - a reply, not a failure of the simulator
    """A result word the device answers with HTTP 200 (``<param> Invalid``, ...)."""

    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


@dataclass
class Channel:
    """One video channel with its alarm input and output (the GXV3504 has one of each per
    channel; a camera has one channel)."""

    motion: bool = False
    md_enabled: bool = True
    md_upload: bool = False
    input_type: int = 0  # 0 normally open, 1 normally closed
    input_closed: bool = False  # the contact: status 1 closed
    input_upload: bool = False
    output_type: int = 0
    output_closed: bool = False
    record: int = 0  # state_record
    ptz: tuple[int, int] | None = None  # the last (ptzcontrol, ptzparam)

    @property
    def input_active(self) -> bool:
        return self.input_closed != bool(self.input_type)

    @property
    def output_active(self) -> bool:
        return self.output_closed != bool(self.output_type)


def jpeg(view: int) -> bytes:
    """A tiny valid-looking JPEG: SOI, a COM segment naming the view, EOI."""
    comment = f"grandstream view{view}".encode()
    return b"\xff\xd8\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + b"\xff\xd9"


class GrandstreamSimulator(DeviceClock, Simulator):
    """A Grandstream GXV camera or encoder. See the module docstring."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs of the simulated device
        self,
        *,
        model: str = "GXV3610_HD",
        username: str = "admin",
        password: str = "admin",  # noqa: S107 - the manual's example credentials (§2.2)
        storage: bool = True,
        spelling: Spelling = "dots",
        http10: bool = True,
        reboot_downtime: float = 0.0,
        mac: str = "000B8211A4C3",
        firmware: str = "1.0.4.28",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(username=username, password=password)
        self.model = model
        self.multi = model.upper().startswith("GXV3504")
        self.has_ptz = model.upper().startswith(PTZ_MODELS)
        self.storage = storage
        self.spelling: Spelling = spelling
        self.http10 = http10
        self.reboot_downtime = reboot_downtime
        self.mac, self.firmware = mac, firmware
        self.clock = clock
        self.channels = [
            Channel(record=0 if storage else NO_STORAGE) for _ in range(4 if self.multi else 1)
        ]
        self.ircut = 1
        self.alarm_output_time = 0
        self.server = {"server_name": "", "server_url": "", "server.username": ""}
        self.server_password = ""
        self.hits: Counter[str] = Counter()
        self.sets: list[tuple[str, dict[str, str]]] = []
        self.pushes: list[tuple[str, int | None]] = []
        self.busy_left = 0
        self.boot = 1
        self.boot_epoch = self.monotonic()
        self._down_until = -math.inf

    # -- time and state ----------------------------------------------------------------------

    def advanced(self) -> None:
        self._notify()

    def _channel(self, channel: int) -> Channel:
        if not 0 <= channel < len(self.channels):
            raise ValueError(f"channel {channel!r}")
        return self.channels[channel]

    def set_motion(self, channel: int = 0, active: bool = True) -> None:
        """Motion on ``channel`` starts (pushed when configured) or stops (never pushed)."""
        entry = self._channel(channel)
        active = active and entry.md_enabled
        if entry.motion == active:
            return
        entry.motion = active
        self._notify()
        if active and entry.md_upload:
            self._push(MOTION, channel)

    def set_input(self, port: int = 1, active: bool = True) -> None:
        """Alarm input ``port`` (1-based; channel ``port - 1``) to its active or idle contact."""
        entry = self._channel(port - 1)
        closed = active != bool(entry.input_type)
        if entry.input_closed == closed:
            return
        entry.input_closed = closed
        self._notify()
        if active and entry.input_upload:
            self._push(ALARM_INPUT, port - 1)

    def set_output(self, port: int = 1, active: bool = True) -> None:
        """Alarm output ``port`` driven by an alarm action (the API cannot switch it on)."""
        entry = self._channel(port - 1)
        entry.output_closed = active != bool(entry.output_type)
        self._notify()

    def set_recording(self, channel: int = 0, mode: str = "alarm") -> None:
        """``state_record`` of ``channel``: none, manual, scheduled or alarm."""
        entry = self._channel(channel)
        if entry.record == NO_STORAGE:
            raise ValueError("no storage")
        entry.record = STATE_RECORD[mode]
        self._notify()

    def set_day_night(self, night: bool) -> None:
        self.ircut = 2 if night else 1
        self._notify()

    def configure_push(self, url: str, *, motion: bool = True, inputs: bool = True) -> None:
        """What the installer does in the web UI: Alarm HTTP server URL, upload enabled."""
        self.server["server_url"] = url
        for entry in self.channels:
            entry.md_upload, entry.input_upload = motion, inputs

    def busy(self, count: int = 1) -> None:
        """The next ``count`` requests answer 503 Service Unavailable (§2.3)."""
        self.busy_left = count

    def reboot(self, downtime: float | None = None) -> None:
        """Unreachable for ``downtime`` s, then uptime from 0; motion, outputs and manual
        recording reset, configuration kept."""
        downtime = self.reboot_downtime if downtime is None else downtime
        self.boot += 1
        self._down_until = self.monotonic() + downtime
        self.boot_epoch = self._down_until
        for entry in self.channels:
            entry.motion = False
            entry.output_closed = bool(entry.output_type)
            if entry.record == STATE_RECORD["manual"]:
                entry.record = 0
        self._notify()

    def _push(self, alarm_type: int, channel: int) -> None:
        template = self.server["server_url"]
        if not template:
            return
        url = _fill(template, alarm_type, channel)
        if self.tasks is None:
            self.pushes.append((url, None))
            self._notify()
            return
        self.tasks.start_soon(self._send_push, url)

    async def _send_push(self, url: str) -> None:
        status = await push(url, timeout=PUSH_TIMEOUT)
        self.pushes.append((url, status))
        self._notify()

    # -- serving -----------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if not request.path.startswith("/_sim/") and self.monotonic() < self._down_until:
            raise DropConnectionError  # still rebooting
        return await super().handle(request)

    def check_auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if hmac.compare_digest(header.encode(), f"Basic {token}".encode()):
            return None
        return Response(
            401,
            b"401 Unauthorized\r\n",
            "text/plain",
            headers=[("www-authenticate", 'Basic realm="GXV"')],
        )

    def _text(self, body: str, status: int = 200) -> Response:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "Error")
        data = body.encode("utf-8")
        if self.http10:
            head = f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\n\r\n".encode()
            return Response(status, raw=head + data)
        return Response(status, data, "text/plain")

    async def route(self, request: Request) -> Response:
        try:
            return self._route(request)
        finally:
            self._notify()

    def _route(self, request: Request) -> Response:  # noqa: C901 - the device's URL space
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 2 and parts[0] == "snapshot":
            self.hits[f"snapshot/{parts[1]}"] += 1
            if self.busy_left:
                self.busy_left -= 1
                return self._text("", 503)
            return self._snapshot(parts[1])
        if len(parts) != 2 or parts[0] != "goform":
            self.hits[request.path] += 1
            return self._text("404 Not Found\r\n", 404)
        module = parts[1]
        query = dict(request.query)
        if request.method == "POST" and request.body:
            query.update(parse_qsl(request.body.decode("latin-1"), keep_blank_values=True))
        cmd = query.pop("cmd", "")
        self.hits[f"{module}?{cmd}"] += 1
        if self.busy_left:
            self.busy_left -= 1
            return self._text("", 503)
        handlers: dict[str, Callable[[str, dict[str, str]], str]] = {
            "systeminfo": self._systeminfo,
            "device": self._device,
            "motiondetect": self._motiondetect,
            "alarmio": self._alarmio,
            "maintenance": self._maintenance,
            "event_server": self._event_server,
        }
        if self.storage:
            handlers["sdrecord"] = self._sdrecord
        if self.has_ptz:
            handlers["ptz"] = self._ptz
        handler = handlers.get(module)
        if handler is None:
            return self._text("404 Not Found\r\n", 404)
        if not cmd:
            return self._text("cmd Missing\r\n")
        try:
            return self._text(handler(cmd, query))
        except GoformRefusal as refusal:
            return self._text(f"{refusal.word}\r\n")

    def _snapshot(self, name: str) -> Response:
        """``view0``-``view3`` primary, ``view4``-``view7`` secondary streams (§3.21)."""
        views = len(self.channels)
        if name.startswith("view") and name.endswith(".jpg"):
            number = name.removeprefix("view").removesuffix(".jpg")
            if number.isdigit() and int(number) % 4 < views and int(number) < 8:
                return Response(200, jpeg(int(number)), "image/jpeg")
        return self._text("404 Not Found\r\n", 404)

    # -- modules -----------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        if self.spelling == "underscores" and name.startswith("md."):
            return name.replace(".", "_")
        return name

    def _lines(self, per_channel: Callable[[Channel], list[tuple[str, object]]]) -> str:
        lines: list[str] = []
        for number, entry in enumerate(self.channels):
            if self.multi:
                lines.append(f"channel={number}")
            lines += [f"{key}={value}" for key, value in per_channel(entry)]
        return "".join(f"{line}\r\n" for line in lines)

    @staticmethod
    def _only_get(cmd: str, *allowed: str) -> None:
        if cmd not in {"get", *allowed}:
            raise GoformRefusal("cmd Invalid")

    def _check_set(self, query: dict[str, str], known: set[str]) -> None:
        for key in query:
            if key not in known:
                raise GoformRefusal(f"{key} Invalid")

    def _target(self, query: dict[str, str], key: str = "channel") -> list[Channel]:
        if key not in query:
            return self.channels if key != "channel" else [self.channels[0]]
        try:
            return [self._channel(int(query[key]))]
        except ValueError:
            raise GoformRefusal(f"{key} Invalid") from None

    def _systeminfo(self, cmd: str, query: dict[str, str]) -> str:  # noqa: ARG002
        self._only_get(cmd)
        pairs = {
            "productmode": self.model,
            "hardwareversion": "V1.2A",
            "partnumber": "9610001312A",
            "bootloaderversion": "1.0.0.5",
            "coreversion": "1.0.4.11",
            "baseversion": "1.0.4.28",
            "firmwareversion": self.firmware,
            "systemrun": self.uptime,
            "mac": self.mac,
            "ircutstatu": self.ircut,
        }
        return "".join(f"{k}={v}\r\n" for k, v in pairs.items())

    def _device(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            head = "devicename=GXV\r\n"
            return head + self._lines(
                lambda c: [
                    ("alarmin.type", c.input_type),
                    ("alarmout.type", c.output_type),
                    ("alarmin.status", int(c.input_closed)),
                    ("alarmout.status", int(c.output_closed)),
                    ("alarm_output_time", self.alarm_output_time),
                ]
            )
        self._check_set(
            query, {"channel", "devicename", "alarmin.type", "alarmout.type", "alarm_output_time"}
        )
        targets = self._target(query)
        for key in ("alarmin.type", "alarmout.type"):
            if key in query and query[key] not in {"0", "1"}:
                raise GoformRefusal(f"{key} Invalid")
        if "alarm_output_time" in query:
            if (
                not query["alarm_output_time"].isdigit()
                or int(query["alarm_output_time"]) not in OUTPUT_TIMES
            ):
                raise GoformRefusal("alarm_output_time Invalid")
            self.alarm_output_time = int(query["alarm_output_time"])
        for entry in targets:
            if "alarmin.type" in query:
                entry.input_type = int(query["alarmin.type"])
            if "alarmout.type" in query:
                entry.output_type = int(query["alarmout.type"])
        self.sets.append(("device", query))
        return "Successful\r\n"

    def _motiondetect(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set", "get_md_statu")
        enable, upload, index = (
            self._key("md.active.enable"),
            self._key("md.upload_to_alarm_server"),
            self._key("md.channel.index"),
        )
        if cmd == "get_md_statu":
            return self._lines(lambda c: [(self._key("md.alarm.statu"), int(c.motion))])
        if cmd == "get":
            head = f"{self._key('md.channel.count')}={len(self.channels)}\r\n"
            return head + self._lines(
                lambda c: [
                    (enable, int(c.md_enabled)),
                    (upload, int(c.md_upload)),
                    ("md_retrigger_interval", 1),
                    ("md_trigger_interval", 0),
                ]
            )
        self._check_set(query, {enable, upload, index, "channel"})
        for key in (enable, upload):
            if key in query and query[key] not in {"0", "1"}:
                raise GoformRefusal(f"{key} Invalid")
        targets = self._target(query, index) if self.multi else self.channels
        for entry in targets:
            if enable in query:
                entry.md_enabled = query[enable] == "1"
                if not entry.md_enabled:
                    entry.motion = False
            if upload in query:
                entry.md_upload = query[upload] == "1"
        self.sets.append(("motiondetect", query))
        return "Successful\r\n"

    def _alarmio(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            return f"alarmin.count={len(self.channels)}\r\n" + "".join(
                f"alarmin.index={n}\r\nevent_upload_to_alarm_server={int(c.input_upload)}\r\n"
                for n, c in enumerate(self.channels)
            )
        self._check_set(query, {"alarmout.stop", "alarmin.index", "event_upload_to_alarm_server"})
        if "alarmout.stop" in query:
            if query["alarmout.stop"] != "yes":
                raise GoformRefusal("alarmout.stop Invalid")
            for entry in self.channels:
                entry.output_closed = bool(entry.output_type)
        if "event_upload_to_alarm_server" in query:
            for entry in self._target(query, "alarmin.index"):
                entry.input_upload = query["event_upload_to_alarm_server"] == "1"
        self.sets.append(("alarmio", query))
        return "Successful\r\n"

    def _sdrecord(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            return self._lines(
                lambda c: [
                    ("state_record", c.record),
                    ("enable_time_table", 0),
                    ("record_full_handle", 1),
                ]
            )
        self._check_set(query, {"channel", "record_start", "enable_time_table"})
        entry = self._target(query)[0]
        if "record_start" in query:
            start = query["record_start"]
            if start not in {"0", "1"} or entry.record in {
                STATE_RECORD["alarm"],
                STATE_RECORD["scheduled"],
            }:
                raise GoformRefusal("record_start Invalid")
            entry.record = STATE_RECORD["manual"] if start == "1" else STATE_RECORD["none"]
        self.sets.append(("sdrecord", query))
        return "Successful\r\n"

    def _ptz(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            return "protocol=0\r\nbaudrate=2400\r\nptzcontrol=0\r\nptzparam=0\r\naddressid1=0\r\n"
        self._check_set(query, {"ptzcontrol", "ptzparam", "channel"})
        for key in ("ptzcontrol", "ptzparam"):
            if key not in query:
                raise GoformRefusal(f"{key} Missing")  # both are required (§3.11)
        control, param = query["ptzcontrol"], query["ptzparam"]
        if not control.isdigit() or int(control) > 19:
            raise GoformRefusal("ptzcontrol Invalid")
        if not param.isdigit() or int(param) > 127:
            raise GoformRefusal("ptzparam Invalid")
        self._target(query)[0].ptz = (int(control), int(param))
        self.sets.append(("ptz", query))
        return "Successful\r\n"

    def _maintenance(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            return "update.viatype=2\r\nupgrade.automatic=0\r\n"
        self._check_set(query, {"restart"})
        if query.get("restart") != "yes":
            raise GoformRefusal("restart Invalid")
        self.sets.append(("maintenance", query))
        self.reboot()
        return "Successful\r\n"

    def _event_server(self, cmd: str, query: dict[str, str]) -> str:
        self._only_get(cmd, "set")
        if cmd == "get":
            return "".join(f"{k}={v}\r\n" for k, v in self.server.items())  # no password
        self._check_set(query, {*self.server, "server.user.password", "channel"})
        for key in self.server:
            if key in query:
                self.server[key] = query[key]
        self.server_password = query.get("server.user.password", self.server_password)
        self.sets.append(("event_server", {k: v for k, v in query.items() if "password" not in k}))
        return "Successful\r\n"

    # -- control API -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "boot": self.boot,
            "uptime": self.uptime,
            "channels": [
                {
                    "motion": c.motion,
                    "input": c.input_active,
                    "output": c.output_active,
                    "record": c.record,
                    "ptz": c.ptz,
                }
                for c in self.channels
            ],
            "hits": dict(self.hits),
            "pushes": len(self.pushes),
        }

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /_sim/<action>``; answers ``{"state": state()}``."""
        actions: dict[str, Callable[[], object]] = {
            "motion": lambda: self.set_motion(
                int(body.get("channel", 0)), bool(body.get("active", True))
            ),
            "input": lambda: self.set_input(
                int(body.get("port", 1)), bool(body.get("active", True))
            ),
            "output": lambda: self.set_output(
                int(body.get("port", 1)), bool(body.get("active", True))
            ),
            "recording": lambda: self.set_recording(
                int(body.get("channel", 0)), str(body.get("mode", "alarm"))
            ),
            "reboot": lambda: self.reboot(
                None if body.get("downtime") is None else float(body["downtime"])
            ),
            "busy": lambda: self.busy(int(body.get("count", 1))),
            "push": lambda: self.configure_push(str(body["url"])),
            "clock": lambda: self.advance(float(body.get("advance", 0))),
            "state": lambda: None,
        }
        if action not in actions:
            return None
        actions[action]()
        return {"state": self.state()}


def _fill(template: str, *numbers: int) -> str:
    """``%d`` placeholders filled in order (``%%`` is a percent sign)."""
    out: list[str] = []
    values = iter(numbers)
    index = 0
    while index < len(template):
        if template.startswith("%%", index):
            out.append("%")
            index += 2
        elif template.startswith("%d", index):
            out.append(str(next(values, 0)))
            index += 2
        else:
            out.append(template[index])
            index += 1
    return "".join(out)
