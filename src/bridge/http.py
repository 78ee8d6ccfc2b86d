"""HTTP towards devices: client construction, authentication and error mapping.

Every vendor request goes through :class:`DeviceHttp`, which is the one place where httpx
exceptions become :mod:`bridge.errors`, bodies are size-capped and request durations measured.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import ssl
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import httpx

from bridge.errors import AuthError, DeviceProtocolError, DeviceUnreachableError, TlsPinError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Generator, Mapping

    from bridge.config import DeviceConfig
    from bridge.metrics import Metrics

_E = TypeVar("_E", bound=BaseException)

MAX_BODY = 4 * 1024 * 1024  # a JSON reply larger than this is a broken or hostile device
MAX_IMAGE = 16 * 1024 * 1024
_CLOSED = httpx.ByteStream(b"")  # what a finished response's stream is replaced with


class AutoAuth(httpx.Auth):
    """Answer whatever the device challenges with: Digest (MD5, SHA-256) or Basic.

    Vendors configure authentication per service (2N: System, Switch, Logging, ... each None,
    Basic or Digest), so the scheme is learnt per service, the first path segment after
    ``/api/``. The first request to a service goes without credentials and its 401 names the
    scheme; that challenge is answered directly (one round trip, not two). Later requests send
    credentials at once; digest state is kept per service, so a stale nonce is renewed. A
    service that changes scheme is followed on its next 401.
    """

    def __init__(self, username: str, password: str) -> None:
        self._username, self._password = username, password
        self._schemes: dict[str, httpx.Auth] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        service = _service(request.url.path)
        response = yield from self._run(self._schemes.get(service), request, None)
        wanted = _challenged(response)
        current = self._schemes.get(service)
        if wanted is None or isinstance(current, wanted):
            return  # accepted, or refused by the scheme we already use: wrong credentials
        auth = wanted(self._username, self._password)
        self._schemes[service] = auth
        yield from self._run(auth, request, response)

    @staticmethod
    def _run(
        auth: httpx.Auth | None, request: httpx.Request, challenge: httpx.Response | None
    ) -> Generator[httpx.Request, httpx.Response, httpx.Response]:
        """Drive ``auth``'s flow to its last response; with ``challenge``, answer that 401
        instead of letting a fresh digest flow send the request bare once more."""
        if auth is None:
            response: httpx.Response = yield request
            return response
        flow = auth.auth_flow(request)
        outgoing = next(flow)
        if challenge is not None and isinstance(auth, httpx.DigestAuth):
            outgoing = flow.send(challenge)
        while True:
            response = yield outgoing
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return response


def _service(path: str) -> str:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "api" else parts[1] if len(parts) > 1 else ""


def _challenged(response: httpx.Response) -> type[httpx.DigestAuth | httpx.BasicAuth] | None:
    if response.status_code != 401:
        return None
    offered = {h.split(" ", 1)[0].lower() for h in response.headers.get_list("www-authenticate")}
    if "digest" in offered:  # never send a password in clear when the device takes a digest
        return httpx.DigestAuth
    return httpx.BasicAuth if "basic" in offered else None


def build_auth(config: DeviceConfig) -> httpx.Auth | None:
    if config.auth == "none" or config.username is None:
        return None
    password = config.password.get_secret_value() if config.password else ""
    if config.auth == "basic":
        return httpx.BasicAuth(config.username, password)
    if config.auth == "digest":
        return httpx.DigestAuth(config.username, password)
    return AutoAuth(config.username, password)


def format_fingerprint(digest: bytes) -> str:
    """``aa:bb:...``, the lower-case form of ``openssl x509 -fingerprint -sha256``."""
    return digest.hex(":")


class PinMismatchError(ssl.SSLCertVerificationError):
    """The server's certificate is not the pinned one.

    An ``ssl.SSLError``, so every layer under httpx treats it as the failed handshake it is
    (the connection is closed and nothing is sent); :class:`DeviceHttp` turns it into a
    :class:`~bridge.errors.TlsPinError`.
    """

    def __init__(self, expected: bytes, got: bytes | None) -> None:
        actual = format_fingerprint(got) if got is not None else "no certificate"
        self.message = (
            "TLS certificate fingerprint mismatch: "
            f"expected {format_fingerprint(expected)}, got {actual}"
        )
        super().__init__(self.message)
        self.verify_code, self.verify_message = 0, self.message

    def __str__(self) -> str:  # SSLError's own shows the args tuple
        return self.message


def pinned_context(fingerprint: str) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate whose SHA-256 is ``fingerprint``.

    Chain and hostname are not verified: a pinned device is typically self-signed with a
    certificate naming nothing useful. Instead the SSL object checks the leaf certificate (DER)
    the moment the handshake completes, so a wrong certificate fails the connection before a
    byte of the request, credentials included, is sent; every new connection is checked.
    ``sslobject_class`` is the stdlib's documented hook for this; anyio, asyncio and trio all
    create their SSL objects through ``SSLContext.wrap_bio``.
    """
    pin = bytes.fromhex(fingerprint.replace(":", ""))

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # SSLWantReadError etc. propagate until it completes
            der = self.getpeercert(binary_form=True)
            got = hashlib.sha256(der).digest() if der is not None else None
            if got != pin:
                raise PinMismatchError(pin, got)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # secure defaults, and no CA is trusted
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.sslobject_class = PinnedSSLObject
    return context


def build_verify(config: DeviceConfig) -> ssl.SSLContext:
    """The client TLS context of a device. Devices with the same TLS settings share one: a
    context costs about 15 ms and 0.8 MiB to build (loading the CA store), which for a thousand
    devices was most of the bridge's start-up time and memory."""
    tls = config.tls
    ca_file = None if tls.ca_file is None else str(tls.ca_file)
    return _context(tls.fingerprint, verify=tls.verify, ca_file=ca_file)


@functools.cache
def _context(fingerprint: str | None, *, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if fingerprint is not None:
        return pinned_context(fingerprint)
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


def make_client(
    config: DeviceConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One keep-alive client per device; the timeout is per request and overridable."""
    return httpx.AsyncClient(
        base_url=config.url,
        auth=build_auth(config),
        verify=build_verify(config),
        timeout=httpx.Timeout(config.timeout),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        transport=transport,
        follow_redirects=False,
        headers={"user-agent": "bridge"},
    )


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in the chain that caused ``exc`` (httpx wraps httpcore
    wraps the original), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class Session(Protocol):
    """A vendor login that the device keeps as a session (Ultra Stream: ``login`` with the md5
    of the password, then a ``sid`` cookie on every request).

    :class:`DeviceHttp` logs in before the first request, sends ``headers`` with every request,
    and when ``expired`` says a reply means "session invalid" it logs in again and repeats the
    request once. ``login`` sends with ``http.send`` (no session, no lock: it runs inside a
    request) and raises ``AuthError`` for refused credentials.
    """

    async def login(self, http: DeviceHttp) -> Mapping[str, str]:
        """Log in; return the headers that carry the session (e.g. ``{"cookie": "sid=..."}``)."""
        ...

    def expired(self, body: bytes) -> bool:
        """True when ``body`` (an HTTP 2xx reply) says the session is no longer valid."""
        ...


class DeviceHttp:
    """A device's HTTP client with typed errors, size caps and request metrics.

    ``serial`` makes every request wait for the one before it: devices with a small embedded
    web server get one request at a time, whoever sends it (poller or command). ``session``
    plugs in a vendor login (see :class:`Session`). ``forbidden`` is what an HTTP 403 means on
    this device (Onetouch: the HTTP API is disabled).
    """

    def __init__(  # noqa: PLR0913 - keyword-only options
        self,
        client: httpx.AsyncClient,
        *,
        device: str,
        driver: str,
        metrics: Metrics,
        serial: bool = False,
        session: Session | None = None,
        forbidden: str = "HTTP 403: credentials refused",
    ) -> None:
        self.client = client
        self.device = device
        self._histogram = metrics.device_requests.labels(driver=driver)
        # ``serial``: each request waits for the one before it.
        self._turn: AbstractAsyncContextManager[Any] = anyio.Lock() if serial else nullcontext()
        self._session = session
        self._session_headers: Mapping[str, str] | None = None
        self._forbidden = forbidden

    @asynccontextmanager
    async def _mapped(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except NotImplementedError as exc:  # httpx's DigestAuth meeting qop="auth-int" only
            raise AuthError(
                f"{what}: the device asks for Digest with qop=auth-int only, which bridge does "
                "not support; let the device offer qop=auth (or Basic over HTTPS)",
                device=self.device,
            ) from exc
        except httpx.TimeoutException as exc:
            raise DeviceUnreachableError(f"{what}: timed out", device=self.device) from exc
        except httpx.TransportError as exc:
            pin = _cause(exc, PinMismatchError)
            if pin is not None:
                raise TlsPinError(f"{what}: {pin}", device=self.device) from exc
            untrusted = _cause(exc, ssl.SSLCertVerificationError)
            if untrusted is not None:
                raise DeviceUnreachableError(
                    f"{what}: TLS certificate not trusted ({untrusted.verify_message}); "
                    "set tls.ca_file or tls.fingerprint",
                    device=self.device,
                ) from exc
            reason = type(exc).__name__
            raise DeviceUnreachableError(f"{what}: {reason}", device=self.device) from exc

    def _check_status(self, response: httpx.Response, what: str) -> None:
        if response.status_code == 401:
            raise AuthError(f"{what}: HTTP 401: credentials refused", device=self.device)
        if response.status_code == 403:
            raise AuthError(f"{what}: {self._forbidden}", device=self.device)
        if response.status_code >= 300:
            raise DeviceProtocolError(
                f"{what}: HTTP {response.status_code}",
                device=self.device,
                code=f"http_{response.status_code}",
            )

    async def request(  # noqa: PLR0913 - keyword-only options of one request
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,  # noqa: ANN401 - any JSON value
        timeout: float | None = None,
        max_bytes: int = MAX_BODY,
        measure: bool = True,
        login: bool = True,
    ) -> bytes:
        """Send one request and return the body; every failure is a ``DeviceError``.

        With a session: logged in first, and logged in again and repeated once when the reply
        says the session expired; ``login=False`` sends a request that needs no session (still
        in its turn with ``serial``).
        """
        options: dict[str, Any] = {
            "params": params,
            "json_body": json_body,
            "timeout": timeout,
            "max_bytes": max_bytes,
            "measure": measure,
        }
        async with self._turn:
            if self._session is None or not login:
                return await self.send(method, path, **options)
            if self._session_headers is None:
                self._session_headers = await self._session.login(self)
            body = await self.send(method, path, headers=self._session_headers, **options)
            if not self._session.expired(body):
                return body
            self._session_headers = await self._session.login(self)
            return await self.send(method, path, headers=self._session_headers, **options)

    def forget_session(self) -> None:
        """Log in again before the next request (after a device reboot, say)."""
        self._session_headers = None

    async def send(self, method: str, path: str, **options: Any) -> bytes:  # noqa: ANN401
        """One request as it is: no session, no turn (what a ``Session.login`` uses)."""
        body, _ = await self.exchange(method, path, **options)
        return body

    async def exchange(  # noqa: PLR0913 - keyword-only options of one request
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,  # noqa: ANN401 - any JSON value
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_bytes: int = MAX_BODY,
        measure: bool = True,
    ) -> tuple[bytes, httpx.Headers]:
        """``send`` with the reply's headers too (a login whose session is a ``Set-Cookie``)."""
        what = f"{method} {path}"
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout)
        if headers:
            extra["headers"] = dict(headers)
        async with (
            self._mapped(what),
            self.client.stream(method, path, params=params, json=json_body, **extra) as response,
        ):
            self._check_status(response, what)
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise DeviceProtocolError(
                    f"{what}: body of {length} bytes exceeds {max_bytes}",
                    device=self.device,
                    code="too_large",
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise DeviceProtocolError(
                        f"{what}: body exceeds {max_bytes} bytes",
                        device=self.device,
                        code="too_large",
                    )
                chunks.append(chunk)
        # A closed httpx response still refers to itself through its stream: left so, every
        # request leaves ~37 objects only the cycle collector frees, and at 1,000 devices a full
        # collection stalled everything for 75-90 ms (docs/performance.md, bench/scale gcwatch).
        response.stream = _CLOSED
        if measure:
            self._histogram.observe(time.perf_counter() - started)
        return b"".join(chunks), response.headers

    async def get_json(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        measure: bool = True,
        lenient: bool = False,
    ) -> Any:  # noqa: ANN401 - JSON
        body = await self.request("GET", path, params=params, timeout=timeout, measure=measure)
        return self.decode_json(body, f"GET {path}", lenient=lenient)

    async def post_json(self, path: str, body: Any, *, lenient: bool = False) -> Any:  # noqa: ANN401 - JSON
        reply = await self.request("POST", path, json_body=body)
        return self.decode_json(reply, f"POST {path}", lenient=lenient)

    async def get_text(
        self, path: str, *, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> str:
        """GET a plain-text reply (``key=value`` lines: see :mod:`bridge.normalize.text`).

        UTF-8, or Latin-1 where the bytes are not UTF-8 (embedded devices send either); NUL
        and other control characters but tab and line ends are refused as a malformed reply.
        """
        body = await self.request("GET", path, params=params, timeout=timeout)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("latin-1")
        if _CONTROL.search(text):
            raise DeviceProtocolError(
                f"GET {path}: reply holds control characters",
                device=self.device,
                code="bad_text",
                detail=text[:200],
            )
        return text

    def decode_json(self, body: bytes, what: str, *, lenient: bool = False) -> Any:  # noqa: ANN401 - JSON
        """The body as JSON, or a ``DeviceProtocolError`` with the start of the body.

        Refused too: what could not be published again (a lone surrogate from ``"\\ud800"``),
        nesting deep enough to exhaust the recursion limit, integers of thousands of digits.
        ``lenient`` also accepts trailing commas, as some vendors' own examples have them.
        """
        try:
            return _loads(body)
        except (ValueError, RecursionError) as exc:
            if lenient:
                try:
                    return _loads(_TRAILING_COMMA.sub(rb"\1", body))
                except (ValueError, RecursionError):
                    pass
            raise DeviceProtocolError(
                f"{what}: reply is not JSON ({type(exc).__name__})",
                device=self.device,
                code="bad_json",
                detail=body[:200].decode("utf-8", "replace"),
            ) from None


_TRAILING_COMMA = re.compile(rb",(\s*[}\]])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _loads(body: bytes) -> Any:  # noqa: ANN401 - JSON
    value = json.loads(body)
    json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate: UnicodeEncodeError
    return value
