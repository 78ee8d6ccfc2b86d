"""The transition step of polled drivers: previous state + new state -> events (spec §4.1).

Pure. A vendor module only parses its status replies into the normalized state of spec §4.2
(``{"switches": {"1": {"active": true}}, "inputs": ..., "sip": {"1": "registered"}, ...}``);
this one rule table says which change of that state is which event, for every vendor alike.

- A section holds either one value (``"motion": false``) or items keyed by their number or name
  (``"motion": {"1": true}``: per zone); the rule compares the value, or each item's ``field``.
- Nothing is emitted for a key that was not there before: the first poll after a (re)connect
  sets the baseline (``previous`` is None), and a switch that appears later is a baseline too.
- ``channels`` (multi-channel encoders and cameras) holds one such state per channel; its
  events carry ``channel`` with the channel's own number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.normalize.coerce import as_int


@dataclass(frozen=True, slots=True)
class Rule:
    """How one section of the state turns into events.

    ``types`` is one type for any change, or ``(when true, when false)``. ``item`` names the
    item in the event data (``switch``, ``port``, ...), ``field`` the compared field of an item
    object (None: the item is the value), ``value`` the data key of the new value (None: the
    type says it all). ``whole`` puts every field of the new item object into the data.
    """

    section: str
    types: str | tuple[str, str]
    item: str | None = None
    field: str | None = None
    value: str | None = None
    whole: bool = False


RULES: tuple[Rule, ...] = (
    Rule("switches", "switch.changed", item="switch", field="active", value="active"),
    Rule("inputs", "input.changed", item="port", field="active", value="active"),
    Rule("outputs", "output.changed", item="port", field="active", value="active"),
    Rule("motion", ("motion.started", "motion.stopped"), item="zone"),
    Rule("tamper", "tamper.changed", value="active"),
    Rule("recording", ("recording.started", "recording.stopped"), item="medium"),
    Rule("streaming", ("streaming.started", "streaming.stopped"), item="server"),
    Rule("video_signal", ("video_signal.restored", "video_signal.lost")),
    Rule("storage", "storage.changed", item="medium", value="status"),
    Rule("sip", "sip.registration_changed", item="account", value="state"),
    Rule("call", "call.state_changed", field="state", whole=True),
)
CHANNELS = "channels"


@dataclass(frozen=True, slots=True)
class Change:
    """One event to publish: its type and data (the driver adds ids, times and ``raw``)."""

    type: str
    data: dict[str, Any]


def transitions(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[Change]:
    """The events that lead from ``previous`` to ``current``; none when ``previous`` is None."""
    if previous is None:
        return []
    changes: list[Change] = []
    for rule in RULES:
        if rule.section in previous and rule.section in current:
            changes += _section(rule, previous[rule.section], current[rule.section])
    before, after = previous.get(CHANNELS), current.get(CHANNELS)
    if isinstance(before, dict) and isinstance(after, dict):
        for channel in _ordered(after):
            if isinstance(before.get(channel), dict) and isinstance(after[channel], dict):
                for change in transitions(before[channel], after[channel]):
                    data = {"channel": _number(channel), **change.data}
                    changes.append(Change(change.type, data))
    return changes


def _section(rule: Rule, before: object, after: object) -> list[Change]:
    if rule.item is not None and isinstance(after, dict) and rule.field is None:
        if not isinstance(before, dict):
            return []
        return [
            change
            for key in _ordered(after)
            if key in before
            for change in _compare(rule, before[key], after[key], {rule.item: _number(key)})
        ]
    if rule.item is not None and isinstance(after, dict):  # items are objects with ``field``
        if not isinstance(before, dict):
            return []
        changes: list[Change] = []
        for key in _ordered(after):
            old, new = before.get(key), after[key]
            if isinstance(old, dict) and isinstance(new, dict) and rule.field in old:
                where = {rule.item: _number(key)}
                changes += _compare(rule, old.get(rule.field), new.get(rule.field), where, new)
        return changes
    if rule.field is not None:
        if not (isinstance(before, dict) and isinstance(after, dict)) or rule.field not in before:
            return []
        return _compare(rule, before.get(rule.field), after.get(rule.field), {}, after)
    return _compare(rule, before, after, {})


def _compare(
    rule: Rule,
    old: object,
    new: object,
    where: dict[str, Any],
    item: dict[str, Any] | None = None,
) -> list[Change]:
    if old == new or new is None:
        return []
    if isinstance(rule.types, tuple):
        type_ = rule.types[0] if new else rule.types[1]
    else:
        type_ = rule.types
    data = dict(where)
    if rule.whole and item is not None:
        data.update(item)
    elif rule.value is not None:
        data[rule.value] = new
    return [Change(type_, data)]


def _number(key: str) -> int | str:
    """Item keys are text in the state (JSON object keys); numbers go out as numbers."""
    number = as_int(key)
    return number if number is not None and str(number) == key else key


def _ordered(items: dict[str, Any]) -> list[str]:
    """Numbers in numeric order first, then names: ``1, 2, 10, sd, usb``."""
    return sorted(items, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))
