"""Reading an openHAB ``.things`` file the way openHAB's MQTT binding would use it. Pure.

openHAB itself is not installable here, so the docs' example (docs/examples/openhab/) is checked
by reading it with this parser and applying what the binding applies: the channels' topics,
their ``on``/``off`` values and their JSONPath transformations.

Covered: the subset of the textual syntax the example uses (the form of the MQTT binding's
README): ``Bridge <uid> "label" [params]`` and ``Thing <uid> "label" (<bridge>) [params] {
Channels: Type <type> : <id> "label" [params] ... }``, ``//`` comments, parameter values that
are Java-escaped strings, numbers or booleans. ``ThingsSyntaxError`` names what is unexpected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

Value = str | int | float | bool

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>//[^\n]*)
      | (?P<string>"(?:\\.|[^"\\])*")
      | (?P<punct>[\[\]{}(),=])
      | (?P<colon>:)
      | (?P<word>[-+]?\d+\.\d+|[\w-]+(?::[\w-]+)*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


class ThingsSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Channel:
    type: str  # switch, string, trigger, ...
    id: str
    label: str
    params: dict[str, Value]


@dataclass(frozen=True)
class Thing:
    kind: str  # "Bridge" or "Thing"
    uid: str
    label: str
    bridge: str | None
    params: dict[str, Value]
    channels: list[Channel] = field(default_factory=list)


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _escape, body)


def _escape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def tokens(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs; strings unescaped, comments dropped."""
    found: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            line = text.count("\n", 0, position) + 1
            msg = f"line {line}: unexpected {text[position : position + 20].strip()!r}"
            raise ThingsSyntaxError(msg)
        position = match.end()
        kind = match.lastgroup or ""
        if kind == "comment":
            continue
        value = match.group(kind)
        found.append((kind, _unescape(value) if kind == "string" else value))
    return found


class _Reader:
    def __init__(self, text: str) -> None:
        self.items = tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def take(self, kind: str, text: str | None = None) -> str:
        item = self.peek()
        if item is None or item[0] != kind or (text is not None and item[1] != text):
            wanted = text or kind
            msg = f"expected {wanted!r}, found {item[1] if item else 'the end'!r}"
            raise ThingsSyntaxError(msg)
        self.index += 1
        return item[1]

    def at(self, kind: str, text: str | None = None) -> bool:
        item = self.peek()
        return item is not None and item[0] == kind and (text is None or item[1] == text)

    def params(self) -> dict[str, Value]:
        found: dict[str, Value] = {}
        if not self.at("punct", "["):
            return found
        self.take("punct", "[")
        while not self.at("punct", "]"):
            key = self.take("word")
            self.take("punct", "=")
            found[key] = self.value()
            if not self.at("punct", "]"):
                self.take("punct", ",")
        self.take("punct", "]")
        return found

    def value(self) -> Value:
        if self.at("string"):
            return self.take("string")
        word = self.take("word")
        if word in {"true", "false"}:
            return word == "true"
        try:
            return int(word)
        except ValueError:
            try:
                return float(word)
            except ValueError:
                msg = f"a parameter value must be quoted: {word!r}"
                raise ThingsSyntaxError(msg) from None

    def channel(self) -> Channel:
        self.take("word", "Type")
        type_ = self.take("word")
        self.take("colon")
        id_ = self.take("word")
        label = self.take("string") if self.at("string") else ""
        return Channel(type_, id_, label, self.params())

    def thing(self) -> Thing:
        kind = self.take("word")
        if kind not in {"Bridge", "Thing"}:
            msg = f"expected 'Bridge' or 'Thing', found {kind!r}"
            raise ThingsSyntaxError(msg)
        uid = self.take("word")
        label = self.take("string") if self.at("string") else ""
        bridge = None
        if self.at("punct", "("):
            self.take("punct", "(")
            bridge = self.take("word")
            self.take("punct", ")")
        found = Thing(kind, uid, label, bridge, self.params())
        if self.at("punct", "{"):
            self.take("punct", "{")
            if self.at("word", "Channels"):
                self.take("word", "Channels")
                self.take("colon")
                while self.at("word", "Type"):
                    found.channels.append(self.channel())
            self.take("punct", "}")
        return found


def parse_things(text: str) -> list[Thing]:
    """Every ``Bridge`` and ``Thing`` of a ``.things`` text, in order."""
    reader = _Reader(text)
    found: list[Thing] = []
    while reader.peek() is not None:
        found.append(reader.thing())
    return found


_STEP = re.compile(r"\.(?P<name>[\w-]+)|\['(?P<quoted>[^']*)'\]|\[(?P<index>\d+)\]")


def jsonpath_steps(path: str) -> list[str | int]:
    """The keys of a JSONPath of the form ``$.a['b'][0]``; ``ValueError`` for anything else
    (filters, wildcards, recursive descent)."""
    if not path.startswith("$"):
        msg = f"a JSONPath starts with '$': {path!r}"
        raise ValueError(msg)
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            msg = f"unsupported JSONPath {path!r} at {path[position:]!r}"
            raise ValueError(msg)
        index = match.group("index")
        steps.append(int(index) if index is not None else match.group("name") or match["quoted"])
        position = match.end()
    return steps


def apply_transformation(pattern: str, payload: bytes) -> str | None:
    """What the binding makes of ``payload`` with ``transformationPattern`` (``JSONPATH:...``
    or ``JSONPATH(...)``; empty: the payload itself). ``None`` where openHAB discards the
    value: no such path, or a payload that is not JSON. Scalars render as JSON text does
    (``true``, ``1``), strings without quotes."""
    text = payload.decode()
    if not pattern:
        return text
    match = re.fullmatch(r"JSONPATH(?::(?P<colon>.+)|\((?P<call>.+)\))", pattern)
    if match is None:
        msg = f"only JSONPATH transformations are checked here: {pattern!r}"
        raise ValueError(msg)
    steps = jsonpath_steps(match["colon"] or match["call"])
    try:
        node: Any = json.loads(text)
    except ValueError:
        return None
    for step in steps:
        found = (isinstance(step, int) and isinstance(node, list) and step < len(node)) or (
            isinstance(step, str) and isinstance(node, dict) and step in node
        )
        if not found:
            return None
        node = node[step]
    if node is None:
        return None
    return node if isinstance(node, str) else json.dumps(node)
