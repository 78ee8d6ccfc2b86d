"""HTTP towards devices: sessions, authentication and error mapping.

Every vendor request goes through :class:`DeviceHttp`, the one place where aiohttp's exceptions
become :mod:`bridge.errors`, bodies are size-capped and request durations measured.

aiohttp, not httpx: one request costs the client 60-70 µs of CPU against httpx's 400-450 µs
(``bench/http_clients.py``, docs/performance.md), and device requests are most of what a polled
bridge does (issue 13: device requests per core-second >= 0.4 of the raw MQTT ceiling).
"""

from __future__ import annotations

import base64
import errno
import functools
import json
import os
import re
import ssl
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import urlsplit

import aiohttp
import anyio
from aiohttp import hdrs

from bridge.errors import AuthError, DeviceProtocolError, DeviceUnreachableError, TlsPinError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse
    from multidict import CIMultiDictProxy

    from bridge.config import DeviceConfig
    from bridge.metrics import Metrics

MAX_BODY = 4 * 1024 * 1024  # a JSON reply larger than this is a broken or hostile device
MAX_IMAGE = 16 * 1024 * 1024
MAX_CONNECTIONS = 4  # per device: embedded web servers serve a handful at a time
CLOSE_TIMEOUT = 1.0  # seconds closing a device's connections may take at shutdown
KEEPALIVE = 5.0  # seconds an idle connection is kept (httpx's default; devices close sooner)

TlsSetting = ssl.SSLContext | aiohttp.Fingerprint | bool
"""What aiohttp's ``ssl=`` takes: a context, a certificate pin, or True (verify) / False."""


class BasicAuth:
    """HTTP Basic (RFC 7617, UTF-8) on every request, as an aiohttp client middleware."""

    def __init__(self, username: str, password: str) -> None:
        self._header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        request.headers[hdrs.AUTHORIZATION] = self._header
        return await handler(request)


class AutoAuth:
    """Answer whatever the device challenges with: Digest (MD5, SHA-256, ...) or Basic.

    Vendors configure authentication per service (2N: System, Switch, Logging, ... each None,
    Basic or Digest), so the scheme is learnt per service, the first path segment after
    ``/api/``. The first request to a service goes without credentials and its 401 names the
    scheme; a Digest challenge is answered directly (one round trip, not two). Later requests
    send credentials at once; digest state (:class:`DigestAuth`) is kept per
    service, so a stale nonce is renewed. A service that changes scheme is followed on its next
    401. Digest is preferred whenever it is offered: a password never goes in clear then.
    """

    def __init__(self, username: str, password: str, *, base_path: str = "") -> None:
        self._username, self._password = username, password
        self._base_path = base_path.rstrip("/")  # the device URL's own path, if it has one
        self._schemes: dict[str, BasicAuth | DigestAuth] = {}

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        service = _service(request.url.path.removeprefix(self._base_path))
        current = self._schemes.get(service)
        response = await (handler(request) if current is None else current(request, handler))
        wanted = _challenged(response)
        if wanted is None or isinstance(current, wanted):
            return response  # accepted, or refused by the scheme we already use: wrong credentials
        scheme = wanted(self._username, self._password)
        self._schemes[service] = scheme
        response.release()
        if isinstance(scheme, DigestAuth):
            # The fresh middleware would send the request bare to get a challenge: hand it the
            # one we already have instead.
            return await scheme(request, _replaying(response, handler))
        return await scheme(request, handler)


class DigestAuth(aiohttp.DigestAuthMiddleware):
    """aiohttp's Digest (RFC 7616: MD5, SHA-256, ``-sess``), answering ``qop=auth`` where the
    device offers it beside ``auth-int``.

    aiohttp picks ``auth-int`` whenever offered; curl, requests and httpx pick ``auth``, the
    choice devices are tested against (Onetouch offers both: its HTTP API manual, "Authentication
    modes"). ``auth-int`` alone is still answered. This reads the middleware's parsed
    challenge (``_challenge``), so ``tests/unit/test_http_auth.py`` checks it on every aiohttp.
    """

    def _authenticate(self, response: ClientResponse) -> bool:
        again = super()._authenticate(response)
        offered = {q.strip() for q in self._challenge.get("qop", "").split(",")}
        if "auth" in offered:
            self._challenge["qop"] = "auth"
        return again


def _replaying(first: ClientResponse, handler: ClientHandlerType) -> ClientHandlerType:
    """A handler whose first call returns ``first`` instead of sending; later calls send."""
    pending: list[ClientResponse] = [first]

    async def send(request: ClientRequest) -> ClientResponse:
        return pending.pop() if pending else await handler(request)

    return send


def _service(path: str) -> str:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "api" else parts[1] if len(parts) > 1 else ""


def _challenged(response: ClientResponse) -> type[DigestAuth | BasicAuth] | None:
    if response.status != 401:
        return None
    offered = {
        scheme.lower()
        for value in response.headers.getall(hdrs.WWW_AUTHENTICATE, [])
        for scheme in _SCHEME.findall(value)
    }
    if "digest" in offered:  # never send a password in clear when the device takes a digest
        return DigestAuth
    return BasicAuth if "basic" in offered else None


# An auth scheme in a WWW-Authenticate value (RFC 9110 §11.6.1): a token at the start or after a
# comma, followed by white space, a comma or the end (an auth-param's name is followed by "=").
_SCHEME = re.compile(r"(?:^|,)\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?=\s|,|$)")


def build_auth(config: DeviceConfig) -> ClientMiddlewareType | None:
    """The aiohttp client middleware answering the device's authentication, or None."""
    if config.auth == "none" or config.username is None:
        return None
    password = config.password.get_secret_value() if config.password else ""
    if config.auth == "basic":
        return BasicAuth(config.username, password)
    if config.auth == "digest":
        return DigestAuth(config.username, password)
    return AutoAuth(config.username, password, base_path=urlsplit(config.url).path)


def format_fingerprint(digest: bytes) -> str:
    """``aa:bb:...``, the lower-case form of ``openssl x509 -fingerprint -sha256``."""
    return digest.hex(":")


def build_verify(config: DeviceConfig) -> TlsSetting:
    """How a device's certificate is checked (``tls`` in its config).

    ``tls.fingerprint``: exactly the certificate whose SHA-256 that is (aiohttp checks it right
    after the handshake, before a byte of the request, credentials included, is sent; chain and
    hostname are not verified: a pinned device is typically self-signed for no useful name).
    ``verify: false``: nothing is checked. ``ca_file``: that CA bundle, loaded once per file for
    all devices (a context costs about 15 ms and 0.8 MiB); otherwise the system's CAs.
    Raises ``ssl.SSLError`` / ``OSError`` for an unusable ``ca_file``.
    """
    tls = config.tls
    if tls.fingerprint is not None:
        return aiohttp.Fingerprint(bytes.fromhex(tls.fingerprint))
    if not tls.verify:
        return False
    return True if tls.ca_file is None else _ca_context(str(tls.ca_file))


@functools.cache
def _ca_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """Per step, not a bound on the whole exchange: getting a connection (waiting for the pool
    included), then each wait for bytes of the reply. A long poll passes its own."""
    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Query values as text (aiohttp refuses booleans and None)."""
    return None if params is None else {key: _text(value) for key, value in params.items()}


def _text(value: object) -> str:
    """``True`` is ``true``, ``None`` is empty, anything else its ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


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

    One keep-alive connection pool per device (at most ``MAX_CONNECTIONS``), made at the first
    request (inside the running event loop), closed by :meth:`aclose` (or ``async with``).
    ``config.timeout`` is the default per-request timeout. No redirects are followed, no proxy
    from the environment is used and no cookies are kept: a device is reached directly and a
    vendor session is explicit (``session``).

    ``serial`` makes every request wait for the one before it: devices with a small embedded
    web server get one request at a time, whoever sends it (poller or command). ``session``
    plugs in a vendor login (see :class:`Session`). ``forbidden`` is what an HTTP 403 means on
    this device (Onetouch: the HTTP API is disabled).
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        metrics: Metrics,
        serial: bool = False,
        session: Session | None = None,
        forbidden: str = "HTTP 403: credentials refused",
    ) -> None:
        self.device = config.id
        self._base = config.url.rstrip("/")
        self._auth = build_auth(config)
        self._verify = build_verify(config)
        self._untrusted_hint = (
            "set tls.ca_file or tls.fingerprint"
            if config.tls.ca_file is None
            else "tls.ca_file does not vouch for it"
        )
        self._timeout = _timeout(config.timeout)
        self._client: aiohttp.ClientSession | None = None
        self._closed = False
        self._histogram = metrics.device_requests.labels(driver=config.driver)
        # ``serial``: each request waits for the one before it.
        self._turn: AbstractAsyncContextManager[Any] = anyio.Lock() if serial else nullcontext()
        self._session = session
        self._session_headers: Mapping[str, str] | None = None
        self._forbidden = forbidden

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the device's connections, for good: a request after this is a
        ``DeviceUnreachableError``. Runs to its end even in a cancelled scope (a shutdown),
        within ``CLOSE_TIMEOUT``."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await client.close()

    def _connections(self, what: str) -> aiohttp.ClientSession:
        if self._closed:  # a task still running at shutdown would leave a session unclosed
            raise DeviceUnreachableError(f"{what}: closed", device=self.device)
        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS, ssl=self._verify, keepalive_timeout=KEEPALIVE
                ),
                middlewares=() if self._auth is None else (self._auth,),
                timeout=self._timeout,
                headers={hdrs.USER_AGENT: "bridge"},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            # aiohttp sends a GET, PUT or DELETE once more when its connection closes before a
            # reply, fresh connections included; devices take commands as GETs (2N
            # switch/ctrl, Grandstream goform set, Ultra Stream start-rec): a door must not open
            # twice. There is no public switch; tests/unit/test_simulator_and_http.py checks it.
            self._client._retry_connection = False  # noqa: SLF001
        return self._client

    @asynccontextmanager
    async def _mapped(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise DeviceUnreachableError(f"{what}: timed out", device=self.device) from exc
        except aiohttp.ServerFingerprintMismatch as exc:
            raise TlsPinError(
                f"{what}: TLS certificate fingerprint mismatch: expected "
                f"{format_fingerprint(exc.expected)}, got {format_fingerprint(exc.got)}",
                device=self.device,
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            cause = exc.certificate_error
            reason = getattr(cause, "verify_message", None) or str(cause)
            raise DeviceUnreachableError(
                f"{what}: TLS certificate not trusted ({reason}); {self._untrusted_hint}",
                device=self.device,
            ) from exc
        except aiohttp.ClientError as exc:
            if type(exc) is aiohttp.ClientError:  # DigestAuthMiddleware: an unusable challenge
                raise AuthError(
                    f"{what}: cannot answer the device's Digest challenge ({exc})",
                    device=self.device,
                ) from exc
            raise DeviceUnreachableError(f"{what}: {_reason(exc)}", device=self.device) from exc

    def _check_status(self, response: ClientResponse, what: str) -> None:
        if response.status == 401:
            raise AuthError(f"{what}: HTTP 401: credentials refused", device=self.device)
        if response.status == 403:
            raise AuthError(f"{what}: {self._forbidden}", device=self.device)
        if response.status >= 300:
            raise DeviceProtocolError(
                f"{what}: HTTP {response.status}",
                device=self.device,
                code=f"http_{response.status}",
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
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """``send`` with the reply's headers too (a login whose session is a ``Set-Cookie``).

        ``path`` is appended to the device's ``url``; ``timeout`` (seconds) replaces
        ``config.timeout`` for this request (a long poll).
        """
        what = f"{method} {path}"
        started = time.perf_counter()
        client = self._connections(what)
        async with (
            self._mapped(what),
            client.request(
                method,
                self._base + path,
                params=_query(params),
                json=json_body,
                headers=headers,
                timeout=self._timeout if timeout is None else _timeout(timeout),
                allow_redirects=False,
            ) as response,
        ):
            self._check_status(response, what)
            body = await self._read(response, what, max_bytes)
        if measure:
            self._histogram.observe(time.perf_counter() - started)
        return body, response.headers

    async def _read(self, response: ClientResponse, what: str, max_bytes: int) -> bytes:
        length = response.content_length
        if length is not None and length > max_bytes:
            raise DeviceProtocolError(
                f"{what}: body of {length} bytes exceeds {max_bytes}",
                device=self.device,
                code="too_large",
            )
        if length is not None and hdrs.CONTENT_ENCODING not in response.headers:
            return await response.read()  # the parser stops at Content-Length
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():  # chunked, or decompressed
            size += len(chunk)
            if size > max_bytes:
                raise DeviceProtocolError(
                    f"{what}: body exceeds {max_bytes} bytes",
                    device=self.device,
                    code="too_large",
                )
            chunks.append(chunk)
        return b"".join(chunks)

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


def _reason(exc: aiohttp.ClientError) -> str:
    """A transport failure in our words (shown as the device's ``last_error``)."""
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return "TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve the host name ({exc.os_error.strerror or 'no address'})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = exc.os_error.errno
        return f"cannot connect ({os.strerror(code) if code else type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed before the reply"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "reply cut short"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "malformed HTTP reply"
    if isinstance(exc, aiohttp.ClientConnectionResetError) or (
        isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET
    ):
        return "connection reset"
    if type(exc) is aiohttp.ClientConnectionError:  # closed under the request (a shutdown)
        return "connection closed"
    return type(exc).__name__


_TRAILING_COMMA = re.compile(rb",(\s*[}\]])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _loads(body: bytes) -> Any:  # noqa: ANN401 - JSON
    value = json.loads(body)
    # A lone surrogate (UnicodeEncodeError here) comes from a \u escape, or from its UTF-8
    # bytes (0xED), which json.loads lets through: only then is the value checked.
    if b"\\u" in body or b"\xed" in body:
        json.dumps(value, ensure_ascii=False).encode()
    return value
