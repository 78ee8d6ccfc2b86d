from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from bridge.model import CommandResult, event_id, format_time, is_event_type, make_event
from bridge.schema import render_schema, schemas

DOCS = Path(__file__).parents[2] / "docs" / "schema"
WHEN = datetime(2026, 11, 21, 10, 15, 2, tzinfo=UTC)


def test_event_is_a_cloudevent_with_a_deterministic_id() -> None:
    data = {"switch": 1, "active": True, "raw": {"event": "SwitchStateChanged", "id": 1234}}
    event = make_event(
        "front-door", "switch.changed", data, time=WHEN, boot=1437987102, sequence=1234
    )
    body = json.loads(event.to_json())
    assert body == {
        "specversion": "1.0",
        "id": "front-door/1437987102/1234",
        "source": "bridge/front-door",
        "type": "switch.changed",
        "time": "2026-11-21T10:15:02Z",
        "datacontenttype": "application/json",
        "device": "front-door",
        "data": data,
    }
    jsonschema.validate(body, json.loads((DOCS / "event.schema.json").read_text()))


def test_ids_without_a_sequence_hash_the_record() -> None:
    a = event_id("d", 1, None, {"x": 1, "y": 2})
    assert a == event_id("d", 1, None, {"y": 2, "x": 1})
    assert a != event_id("d", 1, None, {"x": 2, "y": 2})
    assert a != event_id("d", 2, None, {"x": 1, "y": 2})


def test_event_types() -> None:
    assert is_event_type("doorbell.pressed")
    assert is_event_type("vendor.KeyReleased")
    assert not is_event_type("vendor.")
    assert not is_event_type("vendor.a/b")
    assert not is_event_type("doorbell.rang")
    with pytest.raises(ValueError, match="not an event type"):
        make_event("d", "bogus", {}, time=WHEN, boot=1, sequence=1)


def test_time_format() -> None:
    assert format_time(WHEN) == "2026-11-21T10:15:02Z"
    assert format_time(WHEN.replace(microsecond=123456)) == "2026-11-21T10:15:02.123Z"


def test_command_result_shape() -> None:
    result = CommandResult.failed("denied", "no", command="reboot", id_="x")
    assert json.loads(result.to_json()) == {
        "id": "x",
        "command": "reboot",
        "status": "error",
        "data": {},
        "error": {"code": "denied", "message": "no"},
    }


@pytest.mark.parametrize("name", sorted(schemas()))
def test_published_schemas_are_current(name: str) -> None:
    """docs/schema is generated: `bridge schema` rewrites it after a model change."""
    path = DOCS / f"{name}.schema.json"
    assert path.read_text() == render_schema(schemas()[name])
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
