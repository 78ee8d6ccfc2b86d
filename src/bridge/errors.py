"""The exception tree of bridge.

Foreign exceptions (aiohttp, aiomqtt, pydantic) are translated into these at the module that talks
to the foreign library, so the rest of the code only ever sees this tree::

    BridgeError                    root, never raised directly
    ├── ConfigError                the configuration is wrong; the CLI exits with status 2
    ├── StartupError               a resource the bridge needs is unavailable (port in use)
    ├── DeviceError                the device is unusable right now; the supervisor backs off
    │   ├── DeviceUnreachableError transport failure: connect, read, timeout, reset, TLS
    │   │   └── TlsPinError        the device's certificate is not the pinned one
    │   ├── AuthError              credentials refused; retried slowly, logged once
    │   └── DeviceProtocolError    the device answered something we cannot use
    └── CommandError               one command failed; reported as an error result
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error bridge raises on purpose."""


class ConfigError(BridgeError):
    """Raised when the configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StartupError(BridgeError):
    """Raised when the bridge cannot start, for a reason the operator must fix."""


class DeviceError(BridgeError):
    """Raised by a driver when its device cannot be used; the supervisor decides what next."""

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(message)
        self.device = device


class DeviceUnreachableError(DeviceError):
    """Raised when the device cannot be reached (connect, read or timeout failure)."""


class TlsPinError(DeviceUnreachableError):
    """Raised when the device's TLS certificate does not match ``tls.fingerprint``.

    The connection is refused right after the handshake, before any request is sent.
    """


class AuthError(DeviceError):
    """Raised when the device refuses the configured credentials."""


class DeviceProtocolError(DeviceError):
    """Raised when the device's reply is malformed or carries a vendor error."""

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, device=device)
        self.code = code
        self.detail = detail


class CommandError(BridgeError):
    """Raised when one command fails; ``code`` is a stable error code of the result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
