"""JSON Schemas of every MQTT payload, generated from the models into ``docs/schema/``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bridge.commands import CATALOGUE
from bridge.model import BridgeResponse, CommandRequest, CommandResult, DeviceInfoPayload, Event

if TYPE_CHECKING:
    from pathlib import Path


def schemas() -> dict[str, dict[str, Any]]:
    commands = {name: spec.args.model_json_schema() for name, spec in sorted(CATALOGUE.items())}
    return {
        "event": Event.model_json_schema(mode="serialization"),
        "device-info": DeviceInfoPayload.model_json_schema(mode="serialization"),
        "command": CommandRequest.model_json_schema(),
        "command-args": {
            "title": "Command arguments, by command",
            "type": "object",
            "properties": commands,
        },
        "command-result": CommandResult.model_json_schema(mode="serialization"),
        "bridge-response": BridgeResponse.model_json_schema(mode="serialization"),
    }


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = out / f"{name}.schema.json"
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    return written
