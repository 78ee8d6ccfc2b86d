"""How the link connects to the broker: the TLS context of ``mqtts://`` and ``wss://``, and why
an attempt failed, said in one line.

aiomqtt turns every connection failure into an ``MqttError`` that keeps only the text of the
cause, and the cause itself as ``__context__``; a TLS error then reads ``[SSL:
CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)``.
Some failures do not reach the exception at all: a broker that refuses the client certificate
(or the lack of one) does so after the TLS 1.3 handshake, paho logs the receive error and the
attempt ends in ``Operation timed out``. :class:`ClientLog` keeps that error for the link's
one outage line instead of letting paho log it again at every retry.
"""

from __future__ import annotations

import logging
import re
import ssl
from typing import TYPE_CHECKING, Any

from bridge.errors import StartupError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from bridge.config import MqttConfig

_SSL_NOISE = re.compile(r"^\[[A-Z0-9_]+: [A-Z0-9_]+\] |^\[[A-Z0-9_]+\] | \(_ssl\.c:\d+\)$")


class TlsFileError(StartupError):
    """A file of ``mqtt.tls`` cannot be used. At start-up the bridge exits with it; at a later
    reconnect (a certificate being replaced) it is a failed attempt, retried."""

    def __init__(self, key: str, path: Path, reason: str) -> None:
        super().__init__(f"mqtt.tls.{key} {path}: {reason}")


class _ClosingSSLSocket(ssl.SSLSocket):
    """A TLS socket that closes itself when its handshake fails. paho leaves the socket of a
    refused handshake (a certificate it must not trust) open for the garbage collector, one
    per attempt. ``sslsocket_class`` is the stdlib's documented hook for this."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # not a failure: a non-blocking handshake goes on later
        except BaseException:
            self.close()
            raise


def _encrypted_key() -> bytes:
    # Without a callback OpenSSL would ask for the pass phrase on the terminal, and wait.
    msg = "the key is encrypted; give an unencrypted key (openssl pkey -in KEY -out KEY.plain)"
    raise ValueError(msg)


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The client TLS context of the broker connection; None for ``mqtt://`` and ``ws://``.

    The system CAs or ``tls.ca_file``, the client certificate of ``tls.cert_file`` and
    ``tls.key_file``; ``tls.insecure`` skips the host name check (the chain is still verified).
    Raises :class:`TlsFileError` naming the key and the file that cannot be read or used.
    """
    if not config.uses_tls:
        return None
    tls = config.tls
    for key, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file)):
        if path is not None:
            _check_readable(key, path)
    if tls.key_file is not None:
        _check_readable("key_file", tls.key_file)
    try:
        context = ssl.create_default_context(cafile=None if tls.ca_file is None else tls.ca_file)
    except ssl.SSLError as exc:
        assert tls.ca_file is not None  # noqa: S101 - the system store does not fail this way
        raise TlsFileError("ca_file", tls.ca_file, f"not a PEM CA bundle ({_clean(exc)})") from None
    if tls.cert_file is not None:
        _load_client_certificate(context, tls.cert_file, tls.key_file)
    if tls.insecure:
        context.check_hostname = False
    context.sslsocket_class = _ClosingSSLSocket
    return context


def _load_client_certificate(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        context.load_cert_chain(cert, key, password=_encrypted_key)
    except ValueError as exc:
        raise TlsFileError("key_file", key or cert, str(exc)) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH" and key is not None:
            raise TlsFileError("key_file", key, "not the key of cert_file") from None
        what = "a PEM certificate and key" if key is None else "a PEM certificate"
        where = "" if key is None else f", or key_file {key} not its key"
        raise TlsFileError("cert_file", cert, f"not {what}{where} ({_clean(exc)})") from None


def _check_readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TlsFileError(key, path, f"cannot read: {exc.strerror}") from None


def _clean(error: BaseException) -> str:
    """An ``ssl`` error's text without OpenSSL's tag and source line."""
    text = str(error.args[1]) if isinstance(error, ssl.SSLError) and len(error.args) > 1 else ""
    return _SSL_NOISE.sub("", text or str(error)).strip()


def describe_failure(exc: BaseException, socket_error: BaseException | None = None) -> str:
    """Why a connection attempt failed, in one line that never holds credentials.

    ``exc`` is what the attempt raised, ``socket_error`` what :class:`ClientLog` kept of it.
    A TLS error is said as ``TLS: certificate verify failed: <OpenSSL's reason>`` or ``TLS:
    <alert>``; another socket error as the OS says it; anything else (the broker refusing the
    credentials) as aiomqtt says it.
    """
    chain = list(_chain(exc))
    found: list[BaseException] = [e for e in chain if isinstance(e, ssl.SSLError)]
    if socket_error is not None:
        found.append(socket_error)
    found += [e for e in chain if isinstance(e, OSError) and not isinstance(e, TimeoutError)]
    if not found:
        return str(exc)
    cause = found[0]
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS: {_clean(cause)}"
    return str(cause)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class ClientLog(logging.Logger):
    """The logger handed to the MQTT client (paho, under aiomqtt). Its lines go on to
    ``parent``, except a socket error: that one is kept (:meth:`take`) for the link's outage
    line and logged at debug only, so an outage is still said once however often it is retried.
    """

    def __init__(self, parent: logging.Logger) -> None:
        super().__init__(parent.name)
        self.parent = parent
        self._error: OSError | None = None

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:  # noqa: ANN401
        error = next((a for a in args if isinstance(a, OSError)), None)
        if error is not None and level >= logging.WARNING:
            self._error, level = error, logging.DEBUG
        super().log(level, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        # Not cached: the levels of the loggers above may change (logging set up after us).
        return not self.disabled and level >= self.getEffectiveLevel()

    def take(self) -> OSError | None:
        """The socket error logged since the last call, if any."""
        error, self._error = self._error, None
        return error
