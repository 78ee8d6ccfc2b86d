"""A deliberately plain 2N fake: the standard library's threading HTTP server, no framework.

The side-by-side benchmark (``bench/sidebyside.py``) runs one copy for each side, so neither
the bridge nor its peer is measured against the project's own simulator only. It implements
what a log long poll needs (system info and status, ``log/caps``, ``log/subscribe``,
``log/pull`` with ``timeout``, ``log/unsubscribe``) and the state reads of the bridge's
baseline, with fixed answers. ``POST /_inject`` creates one ``KeyPressed`` event whose params
carry ``t``, the creation time (``time.time()``), and answers its event id. Every response is
one ``write`` on a socket with ``TCP_NODELAY``, so the fake adds no latency of its own.

    python bench/plain_2n.py PORT
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BATCH = 128  # a pull returns at most this many events (seed-2n §2.6)
STARTED = time.time()
STATIC: dict[str, dict[str, Any]] = {
    "/api/system/info": {
        "variant": "2N IP Verso",
        "serialNumber": "54-0000-0099",
        "hwVersion": "570v1",
        "swVersion": "2.42.0.62.0",
        "buildType": "release",
        "deviceName": "plain fake",
    },
    "/api/log/caps": {"events": ["KeyPressed", "KeyReleased", "DeviceState"]},
    "/api/switch/caps": {
        "switches": [{"switch": 1, "enabled": True, "mode": "monostable", "type": "normal"}]
    },
    "/api/switch/status": {
        "switches": [{"switch": 1, "active": False, "locked": False, "held": False}]
    },
    "/api/io/caps": {"ports": [{"port": "input1", "type": "input"}]},
    "/api/io/status": {"ports": [{"port": "input1", "state": 0}]},
    "/api/call/status": {"sessions": []},
    "/api/phone/status": {"accounts": []},
}


class Log:
    """The device log and its channels; one lock, one condition for parked pulls."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.channels: dict[int, int] = {}  # channel id -> index of the next event to deliver
        self.changed = threading.Condition()

    def inject(self) -> int:
        with self.changed:
            now = time.time()
            event_id = len(self.events) + 1
            self.events.append(
                {
                    "id": event_id,
                    "tzShift": 0,
                    "utcTime": int(now),
                    "upTime": int(now - STARTED),
                    "event": "KeyPressed",
                    "params": {"key": "1", "t": now},
                }
            )
            self.changed.notify_all()
            return event_id

    def subscribe(self) -> int:
        with self.changed:
            channel = len(self.channels) + 1
            self.channels[channel] = len(self.events)
            return channel

    def pull(self, channel: int, timeout: float) -> list[dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            if channel not in self.channels:
                return None
            while self.channels[channel] >= len(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.changed.wait(left)
            start = self.channels[channel]
            batch = self.events[start : start + BATCH]
            self.channels[channel] = start + len(batch)
            return batch


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # persistent connections, as a real device keeps them
    server: Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/_inject":
            self._reply(200, {"id": self.server.log.inject()})
        else:
            self._reply(404, {"error": "not found"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        log = self.server.log
        if url.path in STATIC:
            self._result(STATIC[url.path])
        elif url.path == "/api/system/status":
            now = time.time()
            self._result({"systemTime": int(now), "upTime": int(now - STARTED)})
        elif url.path == "/api/log/subscribe":
            self._result({"id": log.subscribe()})
        elif url.path == "/api/log/unsubscribe":
            self._result(None)
        elif url.path == "/api/log/pull":
            events = log.pull(int(query.get("id", "0")), float(query.get("timeout", "0")))
            if events is None:
                body = {"success": False, "error": {"code": 12, "param": "id"}}
                self._reply(200, body)
            else:
                self._result({"events": events})
        else:
            self._reply(404, {"success": False, "error": {"code": 2}})

    def _result(self, result: dict[str, Any] | None) -> None:
        body: dict[str, Any] = {"success": True}
        if result is not None:
            body["result"] = result
        self._reply(200, body)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.wfile.write(head + payload)  # one write: head and body in one segment


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.log = Log()
        super().__init__(("127.0.0.1", port), Handler)


def main() -> None:
    Server(int(sys.argv[1])).serve_forever()


if __name__ == "__main__":
    main()
