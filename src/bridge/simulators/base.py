"""What every simulator shares: serving, authentication, and injected faults."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from urllib.request import parse_http_list, parse_keqv_list

import aiohttp
import anyio
import anyio.lowlevel

from bridge.simulators.server import DropConnectionError, Request, Response, serve

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable

    from anyio.abc import TaskGroup, TaskStatus

FaultMode = Literal[
    "http500", "garbage", "truncated", "drop", "vendor_error", "unauthorized", "huge"
]
HUGE_BODY = 100 * 1024 * 1024  # what the "huge" fault streams: far beyond any client's cap


def json_response(value: Any, status: int = 200) -> Response:  # noqa: ANN401 - any JSON
    return Response(status, json.dumps(value, separators=(",", ":")).encode())


async def push(url: str, *, timeout: float, verify: bool = True) -> int | None:
    """GET ``url`` as a device's push (Action URL, alarm HTTP server) does: the HTTP status,
    or None when nothing answered in ``timeout`` seconds or the URL is not one. ``verify``:
    whether the target's certificate is checked (an embedded device often does not)."""
    client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        async with client.get(url, ssl=verify) as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    finally:
        with anyio.CancelScope(shield=True):  # a simulator stopped meanwhile
            await client.close()


@dataclass
class Fault:
    mode: FaultMode | None = None
    count: int = 0  # how many requests it applies to; -1 for all until cleared
    delay: float = 0.0  # seconds added before answering
    path_prefix: str = "/"  # only requests under this path


class Simulator:
    """Base of a simulated device. Subclasses implement ``route``."""

    #: A server context (certificate and key): set it before ``serve`` to serve HTTPS. An
    #: attribute rather than a ``serve`` argument, so subclasses that override ``serve`` and
    #: delegate to it get HTTPS too.
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        self.username = username
        self.password = password
        self.fault = Fault()
        self.requests = 0
        self.port: int | None = None
        self.tasks: TaskGroup | None = None
        self._changed = anyio.Event()

    # -- state changes a test can wait for ---------------------------------------------------

    def _notify(self) -> None:
        """The simulated device's state changed: wake every ``wait_until``."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checked at every state change the simulator
        reports (``_notify``). Give it a deadline (``fail_after``)."""
        while not predicate():
            await self._changed.wait()

    # -- serving -----------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.tasks = tg
                self.on_serve(tg)
                self.port = await tg.start(
                    partial(serve, ssl_context=self.ssl_context), self.handle, host, port
                )
                task_status.started(self.port)
        finally:
            self.tasks = None

    def on_serve(self, tasks: TaskGroup) -> None:
        """Start what the device does in the background (timers); ``self.tasks`` is the group
        of the serving simulator, cancelled with it, for work started later."""

    @property
    def url(self) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> Response:
        if request.path.startswith("/_sim/"):
            return await self.control(request)
        self.requests += 1
        fault = self.fault
        if fault.count and request.path.startswith(fault.path_prefix):
            if fault.count > 0:
                fault.count -= 1
            if fault.delay:
                await anyio.sleep(fault.delay)
            answer = self.faulty(fault.mode)
            if answer is not None:
                return answer
        denied = self.check_auth(request)
        if denied is not None:
            return denied
        return await self.route(request)

    def faulty(self, mode: FaultMode | None) -> Response | None:
        if mode == "drop":
            raise DropConnectionError
        if mode == "http500":
            return Response(500, b"<html>Internal Server Error</html>", content_type="text/html")
        if mode == "garbage":
            return Response(200, b"\x00\xffnot json{{" + secrets.token_bytes(16))
        if mode == "truncated":
            return Response(200, raw=b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"succ')
        if mode == "unauthorized":
            return Response(401, b"", headers=[("www-authenticate", 'Basic realm="sim"')])
        if mode == "vendor_error":
            return self.vendor_error()
        if mode == "huge":
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
            return Response(200, raw=head, stream=_huge_body())
        return None

    def vendor_error(self) -> Response:
        return json_response({"success": False, "error": {"code": 1, "description": "fault"}})

    def check_auth(self, request: Request) -> Response | None:
        if self.username is None:
            return None
        expected = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        if request.headers.get("authorization") == f"Basic {expected}":
            return None
        return Response(401, b"", headers=[("www-authenticate", 'Basic realm="sim"')])

    def check_digest(self, request: Request) -> Response | None:
        """None when the request's Digest credentials are right; else the 401 that
        ``digest_refused`` makes (``stale`` when only the nonce had expired)."""
        fields = digest_fields(request.headers.get("authorization", ""))
        verdict = "denied" if fields is None else self.digest_verdict(request, fields)
        if verdict == "ok":
            return None
        return self.digest_refused(stale=verdict == "stale")

    def digest_verdict(self, request: Request, fields: dict[str, str]) -> str:  # noqa: ARG002
        """``ok``, ``stale`` (right credentials, expired nonce) or ``denied``."""
        return "denied"

    def digest_refused(self, *, stale: bool) -> Response:  # noqa: ARG002
        return Response(401, b"", headers=[("www-authenticate", 'Digest realm="sim"')])

    async def route(self, request: Request) -> Response:
        raise NotImplementedError

    # -- control -----------------------------------------------------------------------------

    def set_fault(
        self,
        mode: FaultMode | None = None,
        *,
        count: int = 1,
        delay: float = 0.0,
        path_prefix: str = "/",
    ) -> None:
        self.fault = Fault(mode, count, delay, path_prefix)

    def clear_fault(self) -> None:
        self.fault = Fault()

    async def control(self, request: Request) -> Response:
        """``POST /_sim/fault`` and what subclasses add in ``control_action``."""
        try:
            body = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return json_response({"error": "body must be JSON"}, 400)
        action = request.path.removeprefix("/_sim/")
        if action == "fault":
            self.set_fault(
                body.get("mode"),
                count=int(body.get("count", 1)),
                delay=float(body.get("delay", 0)),
                path_prefix=str(body.get("path_prefix", "/")),
            )
            return json_response({"ok": True})
        if action == "clear":
            self.clear_fault()
            return json_response({"ok": True})
        try:
            result = await self.control_action(action, body)
        except (KeyError, ValueError, TypeError) as exc:
            return json_response({"error": f"{action}: bad or unknown {exc}"}, 400)
        if result is None:
            return json_response({"error": f"unknown control action {action!r}"}, 404)
        # A request the action answered (a long poll woken by an injected event) goes out
        # before this reply: a device does not delay its events by its own control channel.
        await anyio.lowlevel.checkpoint()
        return json_response(result)

    async def control_action(self, action: str, body: dict[str, Any]) -> dict[str, Any] | None:  # noqa: ARG002
        return None


async def _huge_body() -> AsyncIterator[bytes]:
    """100 MiB of JSON-looking bytes, made lazily, without a length the client could check."""
    chunk = b"[" + b"0," * (512 * 1024 - 1)
    for _ in range(HUGE_BODY // len(chunk)):
        yield chunk


def digest_fields(authorization: str) -> dict[str, str] | None:
    """The fields of a ``Digest`` Authorization header; None for another scheme or a malformed
    header (both are refused the same way by a device)."""
    kind, _, fields = authorization.partition(" ")
    if kind.lower() != "digest":
        return None
    try:
        return parse_keqv_list(parse_http_list(fields))
    except (ValueError, IndexError):
        return None


class DeviceClock:
    """Device time a test can move forward: ``clock()`` plus what ``advance`` added, and the
    uptime since ``boot_epoch`` (set it at every simulated boot). Mixed into simulators whose
    device reports an uptime; ``advanced`` is what a subclass does when time jumps."""

    clock: Callable[[], float]
    boot_epoch: float = 0.0
    _skew: float = 0.0

    def monotonic(self) -> float:
        """Device time for timers and uptime: ``clock`` plus what ``advance`` added."""
        return self.clock() + self._skew

    @property
    def uptime(self) -> int:
        return max(0, int(self.monotonic() - self.boot_epoch))

    def advance(self, seconds: float) -> None:
        """Move device time forward (never back)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._skew += seconds
        self.advanced()

    def advanced(self) -> None:
        return None
