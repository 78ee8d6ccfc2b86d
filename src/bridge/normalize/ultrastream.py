"""Normalization for Magewell Ultra Stream HDMI/SDI encoders (the ``usapi`` HTTP API). Pure.

The vendor details come from ``../shared/research/seed-ultrastream.md`` (cited as §n): the
``result`` envelope (§1.3) with ``status`` as a fallback key, the status-code table (§1.4), the
``cur-status`` bit mask (§1.5), the storage enum (§1.6, compared for equality, not bitwise),
``get-status`` (§3.2) and ``get-settings`` (§3.3, whose stream keys and passwords never leave
this module: only server ids, names, types and ``is-use`` are read). The driver does the HTTP
and hands over decoded JSON.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import DeviceProtocolError
from bridge.model import DeviceInfo
from bridge.normalize.coerce import as_int, as_str, clean

VENDOR = "Magewell"

# cur-status bits (§1.5)
RECORDING = 0x02
LIVING = 0x04
DISK_TEST = 0x1000
UPGRADE = 0x4000
NET_TEST = 0x8000
FORMAT = 0x100000
CHECK_UPGRADE = 0x2000000
RESETTING = 0x4000000
REBOOTING = 0x20000000
LONG_OPERATIONS = DISK_TEST | UPGRADE | NET_TEST | FORMAT | CHECK_UPGRADE
RESTARTING = RESETTING | REBOOTING

REPEAT = 1  # retRepeat: already in the requested state (§1.7 "Repeat request")
NEED_AUTH = -17  # errNeedAuth: the session is gone
BAD_CREDENTIALS = frozenset({36, -1, -25})  # the login text's 36, errPasswd, errNoUser (§1.2)

CODES: dict[int, tuple[str, str]] = {
    30: ("retLivingAuthErr", "live stream authentication error"),
    29: ("retLivingNotset", "live stream address is not set"),
    28: ("retLivingDNS", "resolving DNS"),
    27: ("retInit", "initial status"),
    25: ("retLivingAuthing", "live stream authorization in progress"),
    24: ("retLivingWaiting", "waiting for the stream server"),
    23: ("retLivingConnecting", "connecting to the stream server"),
    22: ("retLivingConnected", "connected to the stream server"),
    5: ("retCancel", "request is canceled"),
    4: ("retLowSpace", "not enough free space on the storage device"),
    3: ("retLowSpeed", "the storage device is too slow to record smooth video"),
    2: ("retRunning", "the request is running"),
    1: ("retRepeat", "repeat request"),
    0: ("retSucceed", "request has succeeded"),
    -1: ("errPasswd", "password is wrong"),
    -2: ("errOccupied", "the device is being used by others"),
    -5: ("errDisk", "storage device error"),
    -9: ("errBusy", "system is busy"),
    -10: ("errParam", "bad request parameters"),
    -14: ("errNotFound", "data does not exist"),
    -16: ("errNoSpace", "no free space on the storage device"),
    -17: ("errNeedAuth", "authentication is required"),
    -18: ("errSystem", "system error"),
    -25: ("errNoUser", "this user does not exist"),
    -27: ("errSameName", "the name already exists"),
    -29: ("errChannelsLimited", "at most 2 servers at once"),
    -30: ("err8MLimited", "at 8 Mbps the encoder streams to 1 server only"),
    -31: ("errFacebookLimited", "Facebook cannot be streamed with other services"),
    -32: ("errCodecLimited", "live stream is not allowed with the HEVC encoder"),
    -33: ("err4GLimited", "a recording file must stay under 4G"),
    -34: ("errMWFUnsupported", "the update package does not match this product"),
    36: ("loginRefused", "wrong user name or password"),
}

# What a refused command means to the caller (docs/commands.md error codes).
BUSY = frozenset({-2, -9})
NOT_POSSIBLE = frozenset({3, 4, 29, -5, -16, -29, -30, -31, -32, -33})

DISK_STATUS = {
    0: "NotDisk",
    1: "DiskValid",
    3: "NotSpace",
    4: "NotWrite",
    5: "LowSpace",
    6: "DiskInvalid",
}
LIVE_STATUS = {
    0: "idle",
    27: "idle",
    22: "connected",
    23: "connecting",
    24: "waiting",
    25: "authorizing",
    28: "resolving_dns",
    29: "address_not_set",
    30: "auth_error",
}
# (state key, get-status object) of the long operations (§4.5, §4.6, §4.2)
OPERATIONS = (
    ("upgrade", "upgrade-status"),
    ("upgrade_check", "check-upgrade"),
    ("format", "format-status"),
    ("disk_test", "disk-test"),
    ("network_test", "living-test"),
)
MEDIA = ("usb", "sd")


def code_name(code: int) -> str:
    return CODES.get(code, (f"code{code}", ""))[0]


class ApiError(DeviceProtocolError):
    """HTTP 200 with ``result`` other than 0: the device refused (§1.4)."""

    def __init__(self, method: str, result: int) -> None:
        name, meaning = CODES.get(result, (f"code{result}", "undocumented result code"))
        super().__init__(
            f"{method}: Ultra Stream result {result} {name} ({meaning})",
            code="vendor_error",
            detail=meaning,
        )
        self.method = method
        self.result = result
        self.name = name


def result_of(payload: object, method: str) -> int:
    """The envelope's ``result`` (``status`` in the ``upload-update-file`` reply, §1.3)."""
    if not isinstance(payload, dict):
        raise DeviceProtocolError(f"{method}: expected a JSON object", code="bad_shape")
    result = as_int(payload.get("result", payload.get("status")))
    if result is None:
        raise DeviceProtocolError(f"{method}: reply has no integer 'result'", code="bad_shape")
    return result


def unwrap(payload: object, method: str, *, repeat_ok: bool = False) -> dict[str, Any]:
    """The reply object; ``ApiError`` unless ``result`` is 0 (or 1 with ``repeat_ok``)."""
    result = result_of(payload, method)
    if result != 0 and not (repeat_ok and result == REPEAT):
        raise ApiError(method, result)
    return payload if isinstance(payload, dict) else {}


def mask_of(payload: dict[str, Any], method: str) -> int:
    mask = as_int(payload.get("cur-status"))
    if mask is None or mask < 0:
        raise DeviceProtocolError(f"{method}: no integer 'cur-status'", code="bad_shape")
    return mask


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def parse_info(info: dict[str, Any], *, commands: list[str]) -> DeviceInfo:
    """``get-info`` (§3.1): identity from ``product``."""
    product = _object(info, "product")
    return DeviceInfo(
        vendor=VENDOR,
        model=as_str(product.get("module-name")) or as_str(product.get("product-name")),
        serial=as_str(product.get("sn")),
        firmware=as_str(product.get("firmware-ver-s")),
        capabilities=clean(
            {
                "hardware": as_str(product.get("hardware-ver")),
                "product_id": as_int(product.get("product-id")),
                "media": list(MEDIA),
            }
        ),
        commands=commands,
    )


def parse_servers(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The streaming servers of ``get-settings`` (§3.3) in the device's order: id, name, type and
    whether it is used for live. Keys, passwords and tokens are not read."""
    found = settings.get("stream-server")
    servers: list[dict[str, Any]] = []
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        server_id = as_int(item.get("id"))
        if server_id is None:
            continue
        servers.append(
            clean(
                {
                    "id": str(server_id),
                    "name": as_str(item.get("name")),
                    "type": as_int(item.get("type")),
                    "enabled": as_int(item.get("is-use")) == 1,
                }
            )
        )
    return servers


def live_word(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        return "error"
    return LIVE_STATUS.get(code, f"code{code}")


def operation_word(code: int | None) -> str:
    """27 initial, 2 running, 0 done, 5 canceled, negative failed (§4.5, §4.6)."""
    if code is None or code == 27:
        return "idle"
    if code == 2:
        return "running"
    if code == 0:
        return "done"
    if code == 5:
        return "canceled"
    return "failed" if code < 0 else f"code{code}"


def live_codes(status: dict[str, Any], servers: list[dict[str, Any]]) -> dict[str, int | None]:
    """Per enabled server, its live status code: ``live-status.result`` belongs to the first
    enabled server, ``result2`` to the second (INFERENCE: the manual gives two slots and "at
    most 2 servers" without saying which is which)."""
    live = _object(status, "live-status")
    enabled = [s["id"] for s in servers if s.get("enabled")][:2]
    return {
        server: as_int(live.get(key))
        for server, key in zip(enabled, ("result", "result2"), strict=False)
    }


def parse_state(status: dict[str, Any], servers: list[dict[str, Any]]) -> dict[str, Any]:
    """``get-status`` (§3.2) and the servers -> the normalized state.

    ``recording`` is the statusRecord bit; ``streaming`` per server is the statusLiving bit for
    each enabled server (the device streams to all of them at once); ``live_status`` the
    connection state of each; ``video_signal`` a picture of non-zero size (``input-signal.status``
    values are undocumented); ``storage`` the enum names of ``usb``/``sd`` ``disk-status``;
    ``operations`` the long operations' state and percent.
    """
    mask = mask_of(status, "get-status")
    codes = live_codes(status, servers) if mask & LIVING else {}
    signal = _object(status, "input-signal")
    width, height = as_int(signal.get("cx")) or 0, as_int(signal.get("cy")) or 0
    storage: dict[str, str] = {}
    for medium in MEDIA:
        disk = status.get(medium)
        if isinstance(disk, dict):
            code = as_int(disk.get("disk-status"))
            storage[medium] = (
                DISK_STATUS.get(code, f"code{code}") if code is not None else "unknown"
            )
    operations: dict[str, dict[str, Any]] = {}
    for name, key in OPERATIONS:
        item = status.get(key)
        if isinstance(item, dict):
            code = as_int(item.get("result"))
            operations[name] = clean(
                {
                    "state": operation_word(code),
                    "result": code,
                    "percent": as_int(item.get("percent")),
                }
            )
    return {
        "recording": bool(mask & RECORDING),
        "streaming": {s["id"]: s["id"] in codes for s in servers},
        "live_status": {
            s["id"]: live_word(codes[s["id"]]) if s["id"] in codes else "idle" for s in servers
        },
        "video_signal": width > 0 and height > 0,
        "storage": storage,
        "operations": operations,
    }


def operation_events(
    previous: dict[str, Any] | None, current: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """``vendor.<operation>`` for each long operation whose state or percent changed, except
    a return to idle (a ``clear-*`` call); none on the baseline."""
    if previous is None:
        return []
    events: list[tuple[str, dict[str, Any]]] = []
    before = previous.get("operations") or {}
    for name, now in (current.get("operations") or {}).items():
        then = before.get(name)
        if then is None or then == now or now.get("state") == "idle":
            continue
        data = {"operation": name, **now}
        if isinstance(now.get("result"), int):
            data["result_name"] = code_name(now["result"])
        events.append((f"vendor.{name}", data))
    return events


def details(type_: str, data: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """What the device adds to a transition event: live status codes for a stream, the
    recording's result codes, the medium's numbers, the signal's format."""
    if type_.startswith("streaming.") and "status_code" in data:
        return data
    if type_.startswith("recording."):
        rec = _object(status, "rec-status")
        return clean(
            {
                **data,
                "rec_status": as_int(rec.get("result")),
                "last_rec_status": as_int(status.get("last-rec-status")),
            }
        )
    if type_ == "storage.changed":
        disk = _object(status, str(data.get("medium")))
        code = as_int(disk.get("disk-status"))
        return clean(
            {
                **data,
                "status_code": code,
                "free_size": as_int(disk.get("free-size")),
                "usage": as_int(disk.get("usage")),
            }
        )
    if type_.startswith("video_signal."):
        signal = _object(status, "input-signal")
        return clean(
            {
                **data,
                "width": as_int(signal.get("cx")),
                "height": as_int(signal.get("cy")),
                "frame_rate": signal.get("frame-rate")
                if isinstance(signal.get("frame-rate"), int | float)
                else None,
            }
        )
    return data


def stream_details(
    data: dict[str, Any], status: dict[str, Any], servers: list[dict[str, Any]]
) -> dict[str, Any]:
    """A streaming event's live status: word and code of its server (the code seen while it
    was live; none once it stopped)."""
    codes = live_codes(status, servers)
    code = codes.get(str(data.get("server")))
    return clean(
        {**data, "status": live_word(code) if code is not None else "idle", "status_code": code}
    )
