"""Driver for Magewell Ultra Stream HDMI/SDI encoders (the ``usapi`` HTTP API).

The device has no event channel (``../shared/research/seed-ultrastream.md`` §2.1): the driver
polls and diffs. Three cadences, one request at a time (the driver's own lock, which the
session-less ``ping`` shares):

- *ping*, every ``poll_interval`` and at once on a push or after a command: ``ping`` (no login)
  gives the ``cur-status`` mask; ``get-status`` follows when the mask changed, and on every
  tick while a long operation (upgrade, format, disk or network test) runs;
- *status*, every ``status_interval``: ``get-status`` whatever the mask says (what the mask does
  not show: signal, storage, live connection states);
- *settings*, every ``settings_interval`` and when live starts or stops: ``get-settings`` for
  the streaming servers (ids, names, ``is-use``; keys and passwords are never kept).

The session is the ``sid`` cookie of ``login`` (md5 of the password), sent as a header by
:class:`bridge.http.DeviceHttp` (which logs in again and repeats once on result -17). A reboot is
seen as the statusReboot/statusReset bit of the mask (or requested by ``reboot``); the device
is back when ``ping`` answers without it: ``device.started``, a new login, and the state diffed
(recording and live end with a reboot). The "restarting" mark is checkpointed, so a reboot
during which the run failed is still reported once by the next run.

Normalization is pure and lives in :mod:`bridge.normalize.ultrastream`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from typing import TYPE_CHECKING, Any, Literal

import anyio
import structlog
from pydantic import Field

from bridge.commands import StreamingArgs
from bridge.config import Duration, Interval, PolledDeviceConfig
from bridge.drivers.base import Outcome
from bridge.drivers.polling import Cadence, PolledState, Poller
from bridge.errors import AuthError, CommandError, DeviceError, DeviceProtocolError
from bridge.http import MAX_IMAGE
from bridge.model import ENCODER_EVENTS, StateUpdate, utcnow
from bridge.normalize import ultrastream as norm
from bridge.normalize.coerce import as_int

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from bridge.commands import CheckedCommand
    from bridge.drivers.base import DriverContext, Emit
    from bridge.http import DeviceHttp
    from bridge.normalize.transitions import Change

log = structlog.get_logger("bridge.driver")

PATH = "/usapi"
Reboot = Literal["requested", "seen"] | None


class UltraStreamConfig(PolledDeviceConfig):
    driver: Literal["ultrastream"]
    status_interval: Interval = Field(
        5.0, description="how often get-status is read even when the ping mask did not change"
    )
    settings_interval: Interval = Field(
        60.0, description="how often get-settings (the streaming servers) is read"
    )
    confirm_timeout: Duration = Field(
        5.0, description="how long a command waits for get-status to show what it asked for"
    )
    logout_timeout: Duration = Field(1.0, description="bound of the logout on shutdown")


class UltraStreamLogin:
    """The ``usapi`` session (§1.2): ``login&id=<user>&pass=<md5 hex>``, then ``sid``."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._digest = hashlib.md5(password.encode()).hexdigest()  # noqa: S324 - the vendor's scheme
        self.headers: dict[str, str] | None = None
        self.logins = 0

    async def login(self, http: DeviceHttp) -> Mapping[str, str]:
        self.logins += 1
        params = {"method": "login", "id": self._username, "pass": self._digest}
        body, headers = await http.exchange("GET", PATH, params=params)
        result = norm.result_of(http.decode_json(body, "login"), "login")
        if result in norm.BAD_CREDENTIALS:
            self.headers = None
            raise AuthError(
                f"login: wrong user name or password (result {result})", device=http.device
            )
        if result != 0:
            raise norm.ApiError("login", result)
        sid = _sid(headers.getall("set-cookie", []))
        if sid is None:
            raise DeviceProtocolError("login: no sid cookie in the reply", code="bad_shape")
        self.headers = {"cookie": f"sid={sid}"}
        return self.headers

    def expired(self, body: bytes) -> bool:
        try:
            reply = json.loads(body)
        except ValueError:
            return False
        return isinstance(reply, dict) and as_int(reply.get("result")) == norm.NEED_AUTH


def _sid(cookies: list[str]) -> str | None:
    for cookie in cookies:
        name, _, rest = cookie.partition("=")
        if name.strip().lower() == "sid":
            value = rest.split(";", 1)[0].strip()
            return value or None
    return None


class UltraStreamDriver:
    commands = frozenset(
        {
            "start_recording",
            "stop_recording",
            "start_streaming",
            "stop_streaming",
            "snapshot",
            "refresh",
            "reboot",
        }
    )
    #: The event types it publishes (besides ``vendor.*``): what Home Assistant discovery offers.
    events = ENCODER_EVENTS | {"device.started"}

    def __init__(self, config: UltraStreamConfig, context: DriverContext) -> None:
        self._config = config
        self._context = context
        password = config.password.get_secret_value() if config.password else ""
        self._session = UltraStreamLogin(config.username or "Admin", password)
        # One request at a time, ping (which needs no session) included.
        self._http = context.http(config, session=self._session, serial=True)
        self._sequence = context.sequence()
        self._marks = context.checkpoint("ultrastream")
        self._state = PolledState(config.id, self._sequence)
        self._mask: int | None = None
        self._servers: list[dict[str, Any]] = []
        self._preview: str | None = None  # get-info's snapshot path
        self._reboot: Reboot = None
        self._rng = random.Random()

    @property
    def id(self) -> str:
        return self._config.id

    @property
    def logins(self) -> int:
        return self._session.logins

    # -- the run -------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._http.forget_session()  # a new run may follow a reboot: never trust an old sid
        mask = await self._ping()
        about = await self._call("get-info")
        info = norm.parse_info(about, commands=sorted(self.commands))
        preview = about.get("snapshot")
        self._preview = preview if isinstance(preview, str) and preview.startswith("/") else None
        self._servers = norm.parse_servers(await self._call("get-settings"))
        status = await self._call("get-status")
        self._mask = norm.mask_of(status, "get-status")
        self._state.values = norm.parse_state(status, self._servers)
        await emit(info)
        await emit(StateUpdate(values=self._state.values))
        saved = self._marks.load() or {}
        if saved.get("restarting"):
            if mask & norm.RESTARTING:
                self._reboot = "seen"
            else:  # it went down and came back between two runs
                await self._started(emit, "restarted while unreachable")
        poller = Poller(
            [
                Cadence(
                    "ping", self._config.poll_interval, lambda: self._poll_ping(emit), on_wake=True
                ),
                Cadence("status", self._config.status_interval, lambda: self._poll_status(emit)),
                Cadence(
                    "settings", self._config.settings_interval, lambda: self._poll_settings(emit)
                ),
            ],
            self._context.wakeup,
            rng=self._rng,
        )
        await poller.run()

    async def _poll_ping(self, emit: Emit) -> None:
        await self._context.room()
        mask = await self._ping()
        if mask & norm.RESTARTING:
            if self._reboot != "seen":
                log.info("device_rebooting", mask=mask)
                self._mark_reboot("seen")
            self._mask = mask
            return
        if self._reboot == "seen":
            await self._started(emit, "statusReboot cleared")
            self._servers = norm.parse_servers(await self._call("get-settings"))
            await self._read(emit)
            return
        previous = self._mask
        if previous is not None and mask == previous and not mask & norm.LONG_OPERATIONS:
            return
        if previous is None or (mask ^ previous) & norm.LIVING:
            self._servers = norm.parse_servers(await self._call("get-settings"))
        await self._read(emit)

    async def _poll_status(self, emit: Emit) -> None:
        if self._reboot == "seen":
            return
        await self._context.room()
        await self._read(emit)

    async def _poll_settings(self, emit: Emit) -> None:
        if self._reboot == "seen":
            return
        servers = norm.parse_servers(await self._call("get-settings"))
        if servers != self._servers:
            self._servers = servers
            await self._read(emit)

    async def _read(self, emit: Emit) -> None:
        status = await self._call("get-status")
        self._mask = norm.mask_of(status, "get-status")
        await self._apply(norm.parse_state(status, self._servers), status, emit)

    async def _apply(self, values: dict[str, Any], status: dict[str, Any], emit: Emit) -> None:
        """Diff ``values`` against the last reading: events with the status codes behind them
        and the long operations' progress, then the state."""

        def details(change: Change) -> dict[str, Any]:
            if change.type.startswith("streaming."):
                return norm.stream_details(change.data, status, self._servers)
            return norm.details(change.type, change.data, status)

        await self._state.apply(values, emit, boot=0, details=details, extra=norm.operation_events)

    # -- reboots -------------------------------------------------------------------------------

    def _mark_reboot(self, phase: Reboot) -> None:
        self._reboot = phase
        self._marks.save({"restarting": phase is not None})
        if phase is not None:
            self._http.forget_session()

    async def _started(self, emit: Emit, how: str) -> None:
        log.info("device_rebooted", how=how)
        self._mark_reboot(None)
        self._http.forget_session()
        await emit(self._state.event("device.started", {"detected": how}, boot=0, time=utcnow()))

    # -- commands ------------------------------------------------------------------------------

    async def execute(self, command: CheckedCommand) -> Outcome:
        try:
            return await self._execute(command)
        except norm.ApiError as exc:
            raise CommandError(_error_code(exc.result), f"{command.name}: {exc}") from None

    async def _execute(self, command: CheckedCommand) -> Outcome:
        name = command.name
        if name in {"start_recording", "stop_recording"}:
            wanted = name == "start_recording"
            await self._call("start-rec" if wanted else "stop-rec", repeat_ok=True)
            state = await self._confirm(name, lambda s: s["recording"] == wanted)
            return Outcome(
                data={"recording": wanted},
                updates=(StateUpdate(values={"recording": state["recording"]}),),
            )
        if isinstance(command.args, StreamingArgs) and name == "start_streaming":
            return await self._start_streaming(command.args.server)
        if isinstance(command.args, StreamingArgs) and name == "stop_streaming":
            return await self._stop_streaming(command.args.server)
        if name == "snapshot":
            return await self._snapshot()
        if name == "refresh":
            self._servers = norm.parse_servers(await self._call("get-settings"))
            state = norm.parse_state(await self._call("get-status"), self._servers)
            self._context.wakeup.set()
            return Outcome(updates=(StateUpdate(values=state),))
        if name == "reboot":
            await self._call("reboot")
            self._mark_reboot("requested")
            return Outcome()
        raise CommandError("unsupported", f"this device cannot {name}")

    async def _snapshot(self) -> Outcome:
        """The preview JPEG at the path ``get-info`` names (``snapshot``). The manual gives the
        path only; fetching it over HTTP from the device, with a cache-busting query, is read
        from its example and a third-party script (seed §1, ``get-info``)."""
        if self._preview is None:
            raise CommandError("unsupported", "snapshot: the device names no preview image")
        body = await self._http.request(
            "GET", self._preview, params={"v": time.monotonic_ns()}, max_bytes=MAX_IMAGE
        )
        if not body.startswith(b"\xff\xd8"):
            raise DeviceProtocolError("snapshot: the preview is not a JPEG", device=self.id)
        return Outcome(image=body)

    async def _servers_now(
        self, server: str | int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        servers = norm.parse_servers(await self._call("get-settings"))
        self._servers = servers
        if server is None:
            return servers, None
        key = str(server)
        if not any(s["id"] == key for s in servers):
            known = ", ".join(s["id"] for s in servers) or "none"
            raise CommandError("invalid_args", f"server: no streaming server {key} (has: {known})")
        return servers, key

    async def _start_streaming(self, server: str | int | None) -> Outcome:
        servers, key = await self._servers_now(server)
        if key is not None and not any(s["id"] == key and s.get("enabled") for s in servers):
            status = await self._call("get-status")
            if norm.mask_of(status, "get-status") & norm.LIVING:
                raise CommandError(
                    "rejected",
                    f"start_streaming: server {key} is not enabled and the device is live; "
                    "servers cannot be changed while live: stop streaming first",
                )
            await self._call("enable-server", {"id": key, "is-use": 1})
            servers, key = await self._servers_now(key)
        await self._call("start-live", repeat_ok=True)
        targets = [key] if key is not None else [s["id"] for s in servers if s.get("enabled")]
        state = await self._confirm(
            "start_streaming", lambda s: all(s["streaming"].get(t) for t in targets)
        )
        data: dict[str, Any] = {"servers": {t: state["live_status"][t] for t in targets}}
        if key is not None:
            data = {"server": as_int(key) if key.isdigit() else key, "status": data["servers"][key]}
        return Outcome(data=data, updates=(StateUpdate(values=_live_part(state)),))

    async def _stop_streaming(self, server: str | int | None) -> Outcome:
        _, key = await self._servers_now(server)
        status = await self._call("get-status")
        state = norm.parse_state(status, self._servers)
        live = [s for s, on in state["streaming"].items() if on]
        if key is not None and key in live and len(live) > 1:
            raise CommandError(
                "unsupported",
                f"stop_streaming: the device streams to servers {', '.join(live)} at once and "
                "cannot stop one of them while live; stop_streaming without server stops all",
            )
        if key is None or key in live:
            await self._call("stop-live", repeat_ok=True)
            state = await self._confirm(
                "stop_streaming", lambda s: not any(s["streaming"].values())
            )
        data: dict[str, Any] = {"streaming": False}
        if key is not None:
            data["server"] = as_int(key) if key.isdigit() else key
        return Outcome(data=data, updates=(StateUpdate(values=_live_part(state)),))

    async def _confirm(self, name: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Re-read ``get-status`` until it shows what the command asked for: the device's
        ``result: 0`` means accepted, not done (§4)."""
        self._context.wakeup.set()  # the poller diffs and publishes the event
        step = min(0.2, self._config.poll_interval)
        with anyio.move_on_after(self._config.confirm_timeout):
            while True:
                state = norm.parse_state(await self._call("get-status"), self._servers)
                if done(state):
                    return state
                await anyio.sleep(step)
        raise CommandError(
            "action_failed",
            f"{name}: accepted, but get-status did not show it within "
            f"{self._config.confirm_timeout:g}s",
        )

    # -- HTTP --------------------------------------------------------------------------------

    async def _ping(self) -> int:
        """``ping``: no login (§3.4)."""
        body = await self._http.request("GET", PATH, params={"method": "ping"}, login=False)
        reply = norm.unwrap(self._http.decode_json(body, "ping"), "ping")
        return norm.mask_of(reply, "ping")

    async def _call(
        self, method: str, params: dict[str, Any] | None = None, *, repeat_ok: bool = False
    ) -> dict[str, Any]:
        """One ``usapi`` method with the session; its reply, or ``ApiError``."""
        reply = await self._http.get_json(PATH, params={"method": method, **(params or {})})
        return norm.unwrap(reply, method, repeat_ok=repeat_ok)

    async def aclose(self) -> None:
        headers = self._session.headers
        if headers is not None:
            with anyio.move_on_after(self._config.logout_timeout):
                try:
                    await self._http.send(
                        "GET",
                        PATH,
                        params={"method": "logout"},
                        headers=headers,
                        timeout=self._config.logout_timeout,
                    )
                except DeviceError as exc:
                    log.debug("logout_failed", reason=str(exc))
            self._session.headers = None
        self._sequence.close()
        self._marks.close()
        await self._http.aclose()


def _live_part(state: dict[str, Any]) -> dict[str, Any]:
    return {"streaming": state["streaming"], "live_status": state["live_status"]}


def _error_code(result: int) -> str:
    if result == -10:
        return "invalid_args"
    if result in norm.BUSY:
        return "rejected"
    if result in norm.NOT_POSSIBLE:
        return "action_failed"
    if result == norm.NEED_AUTH:
        return "auth_failed"
    return "device_error"
