"""Simulator of the generic JSON device (API in ``bridge.normalize.generic``).

Long-poll semantics: ``/api/events`` answers at once when events newer than ``after`` are
queued (at most 128 per reply), else waits up to ``timeout`` seconds for one. A reboot starts a
new boot epoch whose numbering restarts at 1 with a ``startup`` record.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from datetime import UTC, datetime
from typing import Any

import anyio

from bridge.simulators.base import Simulator, json_response
from bridge.simulators.server import Request, Response

BATCH = 128
HISTORY = 10_000
# A valid 1x1 baseline JPEG, so consumers that decode the snapshot can.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQAB"
    "PxA="
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class GenericSimulator(Simulator):
    def __init__(  # noqa: PLR0913 - keyword-only knobs of the simulated device
        self,
        *,
        serial: str = "SIM-0001",
        switches: int = 2,
        inputs: int = 2,
        boot: int = 1_700_000_000,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(username=username, password=password)
        self.serial = serial
        self.boot = boot
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.switches = {str(i): False for i in range(1, switches + 1)}
        self.inputs = {str(i): False for i in range(1, inputs + 1)}
        self.commands: list[dict[str, Any]] = []
        self._new_event = anyio.Event()

    # -- device behaviour --------------------------------------------------------------------

    def push(self, kind: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401
        """Record one device event and wake the long polls."""
        self.seq += 1
        record = {"seq": self.seq, "time": _now(), "kind": kind, **fields}
        self.history.append(record)
        self._new_event.set()
        self._new_event = anyio.Event()
        return record

    def press(self, button: int = 1) -> dict[str, Any]:
        return self.push("button", button=button)

    def set_switch(self, number: str, active: bool) -> None:
        if number not in self.switches:
            raise KeyError(number)
        if self.switches[number] != active:
            self.switches[number] = active
            self.push("switch", switch=int(number), active=active)

    def set_input(self, number: str, active: bool) -> None:
        if self.inputs.get(number) != active:
            self.inputs[number] = active
            self.push("input", input=int(number), active=active)

    def reboot(self) -> None:
        """Start a new boot: numbering restarts, old history is gone, ``startup`` comes first."""
        self.boot += 1
        self.seq = 0
        self.history.clear()
        self.switches = dict.fromkeys(self.switches, False)
        self.push("startup", uptime=0)

    # -- HTTP --------------------------------------------------------------------------------

    async def route(self, request: Request) -> Response:
        key = (request.method, request.path)
        if key == ("GET", "/api/info"):
            return json_response(
                {
                    "vendor": "Simulated",
                    "model": "Generic JSON device",
                    "serial": self.serial,
                    "firmware": "1.0.0",
                    "boot": self.boot,
                    "switches": len(self.switches),
                    "inputs": len(self.inputs),
                }
            )
        if key == ("GET", "/api/state"):
            return json_response({"switches": self.switches, "inputs": self.inputs})
        if key == ("GET", "/api/events"):
            return await self._events(request)
        if key == ("POST", "/api/command"):
            return self._command(request)
        if key == ("GET", "/api/snapshot"):
            return Response(200, JPEG, content_type="image/jpeg")
        return json_response({"error": "not found"}, 404)

    async def _events(self, request: Request) -> Response:
        try:
            after = int(request.query.get("after", "0"))
            timeout = min(float(request.query.get("timeout", "0")), 60.0)
        except ValueError:
            return json_response({"error": "after and timeout must be numbers"}, 400)
        pending = self._after(after)
        if not pending and timeout > 0:
            with anyio.move_on_after(timeout):
                await self._new_event.wait()
            pending = self._after(after)
        return json_response({"boot": self.boot, "events": pending[:BATCH]})

    def _after(self, after: int) -> list[dict[str, Any]]:
        if after > self.seq:  # the caller numbers from another boot
            after = 0
        return [r for r in self.history if r["seq"] > after]

    def _command(self, request: Request) -> Response:
        try:
            body = json.loads(request.body)
            name, args = body["command"], body.get("args", {})
        except (ValueError, KeyError, TypeError):
            return json_response({"ok": False, "error": "malformed command"}, 400)
        self.commands.append(body)
        if name == "open_door":
            door = str(args.get("door", 1))
            if door not in self.switches:
                return json_response({"ok": False, "error": f"no door {door}"})
            self.set_switch(door, True)
            self.set_switch(door, False)
            return json_response({"ok": True, "data": {"door": int(door)}})
        if name == "set_switch":
            number, action = str(args.get("switch", 1)), args.get("action")
            if number not in self.switches:
                return json_response({"ok": False, "error": f"no switch {number}"})
            if action == "trigger":
                self.set_switch(number, True)
                self.set_switch(number, False)
            elif action in {"on", "off", "hold", "release"}:
                self.set_switch(number, action in {"on", "hold"})
            else:
                return json_response({"ok": False, "error": f"unsupported action {action}"})
            return json_response({"ok": True, "data": {"switch": int(number)}})
        if name == "reboot":
            self.reboot()
            return json_response({"ok": True})
        if name in {"dial", "hangup"}:
            return json_response({"ok": True})
        return json_response({"ok": False, "error": f"unknown command {name}"})

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if action == "press":
            return self.press(int(body.get("button", 1)))
        if action == "event":
            kind = str(body.pop("kind", "button"))
            return self.push(kind, **body)
        if action == "reboot":
            self.reboot()
            return {"boot": self.boot}
        if action == "switch":
            self.set_switch(str(body.get("switch", 1)), bool(body.get("active")))
            return {"switches": self.switches}
        return None
