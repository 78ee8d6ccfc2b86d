"""Plain-text replies of ``key=value`` lines (Grandstream GXV ``/goform/...?cmd=get``). Pure.

Lines are ``key=value`` (split at the first ``=``; the value keeps any further ``=``), with
``\\r\\n`` or ``\\n`` ends and blank lines ignored. A line without ``=`` is a result word
(``Successful``, ``No Privilege``, ``<param> Invalid``). Devices with several channels repeat
their keys once per channel: a *marker* key (``channel``) or a key repeated within the current
group starts a new group, so each channel's keys stay together and in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TextReply:
    """``groups``: the ``key=value`` lines, one dict per group, in order; ``words``: the lines
    without ``=``, stripped."""

    groups: list[dict[str, str]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)

    def merged(self) -> dict[str, str]:
        """All groups in one dict (a later group's key wins): for single-channel replies."""
        merged: dict[str, str] = {}
        for group in self.groups:
            merged.update(group)
        return merged


def parse_lines(text: str, markers: frozenset[str] = frozenset()) -> TextReply:
    groups: list[dict[str, str]] = []
    words: list[str] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            words.append(line)
            continue
        key = key.strip()
        if current and (key in markers or key in current):
            groups.append(current)
            current = {}
        current[key] = value.strip()
    if current:
        groups.append(current)
    return TextReply(groups, words)
