"""Property-based tests of the vendor normalization (2N, generic) and of event construction.

Every parser either returns or raises the typed error of its contract (``DeviceProtocolError``
and its subclasses), never a stray ``KeyError``/``TypeError``/``ValueError``/``OverflowError``;
every event it produces serializes and validates against ``docs/schema/event.schema.json``;
normalization is deterministic, leaves its input alone and never publishes a 2N secret.
The strategies and the ``examples`` settings are reused by ``test_properties_input.py``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import CommandError, DeviceProtocolError
from bridge.model import (
    EVENT_TYPES,
    CommandResult,
    DeviceInfo,
    DeviceInfoPayload,
    Event,
    event_id,
    make_event,
)
from bridge.normalize import generic, two_n

SCHEMAS = Path(__file__).parents[2] / "docs" / "schema"


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    return schema


def validator(name: str, schema: dict[str, Any] | None = None) -> jsonschema.protocols.Validator:
    """A validator built once per schema (``jsonschema.validate`` re-checks the schema per call)."""
    schema = load_schema(name) if schema is None else schema
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def outcome(call: Callable[[], T], error: type[E]) -> T | E:
    """What ``call()`` returns, or the ``error`` it raises; any other exception fails the test.

    This is property (a) of every parser here: it returns or raises only its typed error.
    """
    try:
        return call()
    except error as exc:
        return exc


EVENT_SCHEMA = validator("event")
DEVICE_INFO_SCHEMA = validator("device-info")
COMMAND_RESULT_SCHEMA = validator("command-result")

# Reproducible by default: ``derandomize`` draws the same examples on every run, so a CI failure
# replays exactly on a laptop and no run is red only because it was unlucky. No example database
# is kept (.hypothesis/ holds only a cache, ignored by git). Exploring is a deliberate local step:
# BRIDGE_HYPOTHESIS_EXPLORE=1 draws fresh random examples, twenty times as many, and a failure it
# finds prints its falsifying example, which then becomes a regular regression test.
EXPLORE = os.environ.get("BRIDGE_HYPOTHESIS_EXPLORE") == "1"


def examples(count: int) -> settings:
    """The settings of every property here, with ``count`` examples (the whole suite: ~10 s)."""
    return settings(
        max_examples=count * 20 if EXPLORE else count,
        deadline=None,  # timing on a shared 2-core CI machine is noise, not a property
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# --- arbitrary JSON, as json.loads returns it -----------------------------------------------

# Far past 64 bits, yet within the 4300 digits json.loads accepts.
HUGE = 10**400
EDGE_INTS = [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32 - 1, 2**32, 2**63, -(2**64), HUGE]
json_ints = st.one_of(
    st.integers(), st.integers(min_value=-HUGE, max_value=HUGE), st.sampled_from(EDGE_INTS)
)
# Text without lone surrogates (Unicode category Cs). json.loads makes them from "\ud800"
# escapes, and nothing could publish them again; DeviceHttp.decode_json refuses such replies
# (tests/unit/test_simulator_and_http.py), so normalization never sees them.
# The letters of SECRET_ALPHABET are left out too: only the redaction property draws them.
SECRET_ALPHABET = "ǂǁǃʘ"


def text(exclude: str = "", **kwargs: Any) -> st.SearchStrategy[str]:
    return st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters=SECRET_ALPHABET + exclude),
        **kwargs,
    )


json_text = text(max_size=16)
json_scalars = st.one_of(st.none(), st.booleans(), json_ints, st.floats(), json_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(json_text, json_values, max_size=5)
# Strings that look like integers to str.isdigit() or a regex \d, though not all are to int():
# digits of any script (Unicode Nd, "٣"), other numerals (No, "²"), runs past int()'s limit.
digit_strings = st.one_of(
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),
    # digits to str.isdigit(); int() refuses the first two; the last is a fullwidth "12"
    st.sampled_from(["²", "①", "٣", "\uff11\uff12"]),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(["-1", " 7 ", "1.0", "0x1", "1e3", ""]),
)


def mostly(
    good: st.SearchStrategy[Any], junk: st.SearchStrategy[Any], one_in: int = 4
) -> st.SearchStrategy[Any]:
    """``junk`` in one draw of ``one_in``, else ``good``: valid shapes dominate, junk still comes.

    ``st.one_of`` cannot weight: it flattens nested one_ofs into branches drawn evenly, so a
    ``sampled_from(names) | json_values`` would almost never draw a name.
    """
    return st.integers(1, one_in).flatmap(lambda n: junk if n == one_in else good)


def loose_ints(low: int, high: int) -> st.SearchStrategy[Any]:
    """2N's loose integers: ints, strings of ints (padded), floats; sometimes anything else."""
    ints = st.integers(low, high)
    loose = st.one_of(ints, ints.map(str), ints.map(lambda i: f" {i} "), ints.map(float))
    return mostly(loose, digit_strings | json_values)


loose_bools = st.sampled_from(
    [True, False, "true", "false", "TRUE", " False ", "1", "0", 1, 0, 1.0, "yes", "off", "maybe"]
)

# --- 2N vendor payloads, built like the manual's examples -----------------------------------

TWO_N_EVENTS = sorted({*two_n._MAPPERS, *two_n.HIDDEN_BY_DEFAULT, "KeyReleased", "AudioLoopTest"})
# What the manual's records carry in ``params``, each key with values of its usual kind.
words = st.sampled_from(["user", "Jan Novák", "10.0.23.32", "sip:100@10.0.0.1", "busy"]) | json_text
PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "state": st.sampled_from(
        [
            *("in", "out", " IN ", "opened", "closed", "startup", "connecting", "ringing"),
            *("connected", "terminated", "registered", "unregistered"),
        ]
    )
    | loose_bools,
    "key": st.sampled_from(["%1", "%2", "5", "*", "#"]),
    "valid": loose_bools,
    "apbBroken": loose_bools,
    "direction": st.sampled_from(["in", "out", "any", "incoming", "outgoing"]),
    "type": st.sampled_from(["user", "service", "input", "output"]),
    "port": st.sampled_from(["input1", "relay1", "1"]) | st.integers(0, 4),
    **dict.fromkeys(("reader", "uid", "name", "uuid", "reason", "originator"), words),
    **dict.fromkeys(("address", "peer", "result"), words),
    **{key: loose_ints(0, 9) for key in ("ap", "switch", "ID", "id", "sipAccount")},
    **{key: loose_ints(0, 2**40) for key in ("session", "call")},
}
PARAM_KEYS = sorted(PARAMS)
param_values = mostly(st.one_of(*PARAMS.values()), json_values)
# The params each mapped event needs to be more than ``vendor.<Name>``; the rest are optional.
NEEDS: dict[str, tuple[str, ...]] = {
    "DeviceState": ("state",),
    "KeyPressed": ("key",),
    "CodeEntered": ("valid",),
    "CardEntered": ("valid",),
    "SwitchStateChanged": ("switch", "state"),
    "InputChanged": ("port", "state"),
    "OutputChanged": ("port", "state"),
    "LoginBlocked": ("address",),
    "RegistrationStateChanged": ("sipAccount", "state"),
    **dict.fromkeys(("DoorStateChanged", "DoorOpenTooLong", "MotionDetected"), ("state",)),
    **dict.fromkeys(("UnauthorizedDoorOpen", "NoiseDetected", "CallStateChanged"), ("state",)),
    "TamperSwitchActivated": ("state",),
}


def two_n_params(name: str) -> st.SearchStrategy[Any]:
    """Params for event ``name``: what its mapper reads, other known keys, a little junk."""
    needed = NEEDS.get(name, ())
    known = st.fixed_dictionaries(
        {key: mostly(PARAMS[key], json_values, one_in=8) for key in needed},
        optional={key: mostly(PARAMS[key], json_values) for key in PARAMS if key not in needed},
    )
    extra = st.dictionaries(json_text, json_values, max_size=2)
    params = st.tuples(known, extra).map(lambda pair: pair[1] | pair[0])
    return mostly(params, st.none() | json_values, one_in=10)


u32 = st.integers(0, 2**32 - 1)
fields = mostly(u32, loose_ints(0, 2**32 - 1), one_in=8)
two_n_names = mostly(st.sampled_from(TWO_N_EVENTS), json_text | json_values, one_in=10)


@st.composite
def two_n_records(draw: st.DrawFn) -> dict[str, Any]:
    """A ``log/pull`` record as the manual prints it, each part sometimes replaced by junk."""
    name = draw(two_n_names)
    record = {
        "id": draw(fields),
        "utcTime": draw(fields),
        "upTime": draw(fields),
        "event": name,
        "params": draw(two_n_params(name if isinstance(name, str) else "")),
    }
    if draw(st.booleans()):
        record["tzShift"] = draw(loose_ints(-720, 720))
    return record


doorbells = st.builds(
    two_n.Doorbell,
    keys=st.frozensets(st.sampled_from(["%1", "%2", "5"]) | json_text, max_size=3),
    on_outgoing_call=st.booleans(),
)
devices = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,15}", fullmatch=True)
received = st.none() | st.datetimes(timezones=st.just(UTC))


def check_event(event: Event, device: str, boot: object) -> dict[str, Any]:
    """The invariants of every published event; returns the parsed JSON."""
    body: dict[str, Any] = json.loads(event.to_json())
    EVENT_SCHEMA.validate(body)
    name = event.type.removeprefix("vendor.")
    assert event.type in EVENT_TYPES or (
        event.type.startswith("vendor.") and name and not set(name) & set("/+#\0 ")
    ), event.type
    assert event.id.startswith(f"{device}/{boot}/")
    assert event.source == f"bridge/{device}"
    return body


def check_info(info: DeviceInfo) -> None:
    payload = DeviceInfoPayload(**info.model_dump(), id="d", driver="x", online=True)
    DEVICE_INFO_SCHEMA.validate(json.loads(payload.model_dump_json(exclude_none=True)))


def two_n_pipeline(
    raw: object, device: str, doorbell: two_n.Doorbell, when: datetime | None
) -> two_n.Normalized | None:
    try:
        record = two_n.parse_record(raw)
    except DeviceProtocolError:
        return None
    return two_n.normalize(device, record.boot, record, doorbell=doorbell, received=when)


@examples(300)
@given(
    raw=mostly(two_n_records(), json_values, one_in=10),
    device=devices,
    doorbell=doorbells,
    when=received,
)
def test_two_n_records_normalize_to_valid_events(
    raw: object, device: str, doorbell: two_n.Doorbell, when: datetime | None
) -> None:
    before = copy.deepcopy(raw)
    out = two_n_pipeline(raw, device, doorbell, when)
    assert raw == before, "normalization mutated its input"
    if out is None:
        return
    record = two_n.parse_record(raw)
    assert 1 <= len(out.events) <= 2
    for event in out.events:
        body = check_event(event, device, record.boot)
        assert body["data"]["raw"]["event"] == record.name
        assert event.received == when
    if out.state is not None:
        json.dumps(out.state.values, allow_nan=False)
    assert two_n_pipeline(raw, device, doorbell, when) == out, "not deterministic"


SECRET_KEYS = ["code", "pin", "password", "passwd", "Code", "PIN", "Password"]
# No other strategy draws these letters: finding the secret in the output means it leaked.
secrets = st.text(alphabet=SECRET_ALPHABET, min_size=6, max_size=12)


@st.composite
def params_with_secret(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    secret = draw(secrets)
    params = draw(st.dictionaries(st.sampled_from(PARAM_KEYS), param_values, max_size=5))
    key = draw(st.sampled_from(SECRET_KEYS))
    value = draw(st.sampled_from([secret, [secret], {"value": secret}]))
    where = draw(st.sampled_from(["top", "nested", "in_list"]))
    if where == "top":
        params[key] = value
    elif where == "nested":
        params[draw(json_text)] = {key: value, "other": draw(json_scalars)}
    else:
        params[draw(json_text)] = [draw(json_scalars), {key: value}]
    return params, secret


@examples(150)
@given(
    event=st.sampled_from(TWO_N_EVENTS),
    params_secret=params_with_secret(),
    doorbell=doorbells,
)
def test_two_n_secrets_never_reach_events(
    event: str, params_secret: tuple[dict[str, Any], str], doorbell: two_n.Doorbell
) -> None:
    params, secret = params_secret
    raw = {"id": 7, "utcTime": 1_700_000_000, "upTime": 60, "event": event, "params": params}
    out = two_n_pipeline(raw, "door", doorbell, None)
    assert out is not None
    for event_ in out.events:
        assert secret not in event_.to_json().decode()
    assert secret not in repr(out.state)


@examples(100)
@given(
    result=st.fixed_dictionaries({"events": st.lists(two_n_records() | json_values)}) | json_objects
)
def test_two_n_parse_events_sorts_good_from_bad(result: dict[str, Any]) -> None:
    try:
        records, bad = two_n.parse_events(result)
    except DeviceProtocolError:
        assert not isinstance(result.get("events"), list)
        return
    assert len(records) + len(bad) == len(result["events"])
    assert all(isinstance(reason, str) and reason for _, reason in bad)


api_errors = st.fixed_dictionaries(
    {"code": loose_ints(-5, 20)}, optional={"description": json_values, "param": json_values}
)
envelopes = st.one_of(
    st.fixed_dictionaries({"success": st.just(True)}, optional={"result": json_values}),
    st.fixed_dictionaries(
        {"success": st.just(False)}, optional={"error": api_errors | json_values}
    ),
    st.fixed_dictionaries({"success": json_values}),
    json_values,
)
COMMAND_CODES = {
    *("unsupported", "device_error", "auth_failed", "forbidden", "invalid_args"),
    *("action_failed", "no_data", "rejected"),
}


@examples(150)
@given(payload=envelopes, what=json_text, command=st.sampled_from(["open_door", "dial"]))
def test_two_n_unwrap_and_command_errors(payload: object, what: str, command: str) -> None:
    result = outcome(lambda: two_n.unwrap(payload, what), DeviceProtocolError)
    if isinstance(result, two_n.ApiError):
        error = two_n.command_error(result, command)
        assert isinstance(error, CommandError)
        assert error.code in COMMAND_CODES
        failed = CommandResult.failed(error.code, error.message, command=command, id_=1)
        COMMAND_RESULT_SCHEMA.validate(json.loads(failed.to_json()))
    elif isinstance(result, DeviceProtocolError):
        assert result.code == "bad_shape"
    else:
        assert isinstance(result, dict)


status_items = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        (
            *("switch", "active", "locked", "held", "enabled", "mode", "port", "type", "state"),
            *("session", "direction", "account", "registered"),
        ),
        param_values,
    ),
)
status_results = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            key: st.lists(status_items | json_values, max_size=4) | json_values
            for key in ("switches", "ports", "sessions", "accounts", "events")
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "systemTime": loose_ints(0, 2**40),
            "upTime": loose_ints(0, 2**40),
            "variant": json_values,
            "serialNumber": json_values,
            "swVersion": st.sampled_from(["2.42.0.58.3", "2.15", " 3 ", "x"]) | json_values,
        },
    ),
    json_objects,
)


@examples(150)
@given(first=status_results, second=status_results, capabilities=json_objects)
def test_two_n_status_parsers(
    first: dict[str, Any], second: dict[str, Any], capabilities: dict[str, Any]
) -> None:
    before = copy.deepcopy((first, second))
    info = two_n.parse_info(first, commands=["open_door"], capabilities=capabilities)
    check_info(info)
    outputs: list[object] = []
    for parse in (
        lambda: two_n.parse_calls(first).values,
        lambda: two_n.parse_phone(first).values,
        lambda: two_n.parse_switches(first, second).values,
        lambda: two_n.parse_io(first, second).values,
        lambda: two_n.parse_caps(first),
        lambda: two_n.parse_uptime(first),
    ):
        try:
            outputs.append(parse())
        except DeviceProtocolError:
            continue
    json.dumps(outputs, allow_nan=False)  # state is published as strict JSON
    assert (first, second) == before


@examples(150)
@given(sw=st.none() | json_text | digit_strings | st.from_regex(r"\d{1,30}(\.\d{1,30}){0,3}.*"))
def test_two_n_firmware_version(sw: str | None) -> None:
    version = two_n.firmware_version(sw)
    assert isinstance(version, tuple)
    assert all(isinstance(part, int) and part >= 0 for part in version)


@examples(150)
@given(
    caps=st.lists(json_text, max_size=6),
    extra=st.lists(json_text, max_size=4),
    exclude=st.lists(json_text, max_size=4),
)
def test_two_n_event_filter(caps: list[str], extra: list[str], exclude: list[str]) -> None:
    names = two_n.event_filter(caps, extra, exclude)
    assert len(names) == len(set(names))
    assert set(names) == ({*caps, *extra} - set(exclude))


# --- the generic JSON device ----------------------------------------------------------------

offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
iso_times = mostly(
    st.one_of(
        st.tuples(
            # the ends of datetime's range, naive: the time zone is drawn next
            st.datetimes() | st.sampled_from([datetime.min, datetime.max]),  # noqa: DTZ901
            st.none() | st.just(UTC) | offsets.map(timezone),
        ).map(lambda pair: pair[0].replace(tzinfo=pair[1]).isoformat()),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
        st.just("2026-11-21T10:15:02Z"),
    ),
    json_values,
)
indexes = mostly(
    st.one_of(st.integers(-1, 70), st.integers(0, 70).map(str), digit_strings), json_values
)
# The record fields of each kind (docs/drivers.md); a kind's own field is usually present.
GENERIC_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "button": mostly(st.integers(1, 4) | st.just("call"), json_values),
    "switch": indexes,
    "input": indexes,
    "active": mostly(st.booleans(), json_values),
    "zone": mostly(st.integers(1, 8), json_values),
    "uptime": mostly(st.integers(0, 2**32), json_values),
}
GENERIC_NEEDS = {"button": "button", "switch": "switch", "input": "input", "startup": "uptime"}


@st.composite
def generic_records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(mostly(st.sampled_from([*GENERIC_NEEDS, "motion"]), json_text))
    needed = GENERIC_NEEDS.get(kind, "active")
    record: dict[str, Any] = {"seq": draw(st.integers(0, 2**63)), "time": draw(iso_times)}
    record |= draw(
        st.fixed_dictionaries(
            {needed: GENERIC_FIELDS[needed]},
            optional={key: value for key, value in GENERIC_FIELDS.items() if key != needed},
        )
    )
    if draw(mostly(st.just(True), st.just(False), one_in=10)):  # sometimes no kind at all
        record["kind"] = kind
    return record


generic_batches = mostly(
    st.fixed_dictionaries(
        {
            "boot": st.integers(0, 2**40),
            "events": st.lists(mostly(generic_records(), json_values), max_size=4),
        }
    ),
    st.fixed_dictionaries({"boot": json_values, "events": json_values}) | json_values,
)


@examples(400)
@given(payload=generic_batches, device=devices, when=received)
def test_generic_batches_normalize_to_valid_events(
    payload: object, device: str, when: datetime | None
) -> None:
    before = copy.deepcopy(payload)
    try:
        batch = generic.parse_batch(payload)
    except DeviceProtocolError:
        return
    assert len(batch.records) + len(batch.malformed) == len(payload["events"])  # type: ignore[index]
    for record in batch.records:
        try:
            event, state = generic.normalize(device, batch.boot, record, received=when)
        except DeviceProtocolError:
            continue
        check_event(event, device, batch.boot)
        assert event.id == f"{device}/{batch.boot}/{record['seq']}"
        if state is not None:
            json.dumps(state.values, allow_nan=False)
        assert generic.normalize(device, batch.boot, record, received=when) == (event, state)
    assert payload == before, "normalization mutated its input"


generic_info = (
    st.fixed_dictionaries(
        {"boot": st.integers() | json_values},
        optional=dict.fromkeys(
            ("vendor", "model", "serial", "firmware", "switches", "inputs"), json_values
        ),
    )
    | json_values
)
generic_state = (
    st.fixed_dictionaries(
        {}, optional={"switches": json_objects | json_values, "inputs": json_objects | json_values}
    )
    | json_values
)


@examples(150)
@given(info=generic_info, state=generic_state)
def test_generic_info_and_state(info: object, state: object) -> None:
    try:
        boot, parsed = generic.parse_info(info, commands=["refresh"])
    except DeviceProtocolError:
        pass
    else:
        assert isinstance(boot, int)
        check_info(parsed)
    try:
        update = generic.parse_state(state)
    except DeviceProtocolError:
        pass
    else:
        assert set(update.values) == {"switches", "inputs"}
        json.dumps(update.values, allow_nan=False)


# --- make_event / event_id --------------------------------------------------------------------

vendor_names = text("/+#\0 ", min_size=1, max_size=12)
event_types = st.sampled_from(sorted(EVENT_TYPES)) | vendor_names.map(lambda n: f"vendor.{n}")
sequences = st.none() | st.integers(0, 2**64) | text("/", max_size=8)


# make_event's keyword arguments: a UTC time (as both drivers give), a boot, a sequence or none.
event_keywords = st.fixed_dictionaries(
    {
        "time": st.datetimes(timezones=st.just(UTC)),
        "boot": st.integers(-(2**32), 2**32),
        "sequence": sequences,
        "received": received,
    }
)


@examples(150)
@given(device=devices, type_=event_types, data=json_objects, raw=json_values, kw=event_keywords)
def test_make_event_is_valid_and_deterministic(
    device: str, type_: str, data: dict[str, Any], raw: object, kw: dict[str, Any]
) -> None:
    data = {**data, "raw": raw}
    event = make_event(device, type_, data, **kw)
    check_event(event, device, kw["boot"])
    assert event.id == event_id(device, kw["boot"], kw["sequence"], raw)
    assert make_event(device, type_, copy.deepcopy(data), **kw) == event
    if kw["sequence"] is None:  # a hash of the raw record stands in
        suffix = event.id.removeprefix(f"{device}/{kw['boot']}/")
        assert len(suffix) == 16
        assert set(suffix) <= set("0123456789abcdef")


@examples(150)
@given(type_=json_text)
def test_make_event_refuses_types_outside_the_vocabulary(type_: str) -> None:
    name = type_.removeprefix("vendor.")
    valid = type_ in EVENT_TYPES or (
        type_.startswith("vendor.") and bool(name) and not set(name) & set("/+#\0 ")
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        event = make_event("d", type_, {}, time=when, boot=1, sequence=1)
    except ValueError:
        assert not valid
    else:
        assert valid
        check_event(event, "d", 1)
