"""Which Home Assistant discovery configs this bridge instance published, kept in ``state_dir``.

A device removed from the configuration (or disabled) must disappear from Home Assistant: at the
next start the bridge publishes an empty retained config on each topic it published before and
no longer has a device for. It knows those topics from this file, not from the broker:

- reading them back from the broker would mean subscribing to ``<prefix>/device/+/config`` and
  waiting an arbitrary time (MQTT marks no end of the retained messages), receiving every other
  integration's configs, and guessing which are ours;
- the file lists exactly what this instance published, under any prefix it had, at no cost.

A lost ``state_dir`` forgets them: such configs stay until cleared by hand (an empty retained
message on the topic, docs/home-assistant.md). The file is ``homeassistant.json`` (shard *n* > 0:
``homeassistant-<n>.json``), ``{"topics": [...]}``, written when a topic is added or dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.checkpoint import Checkpoint

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


def ledger_path(state_dir: Path, shard_index: int = 0) -> Path:
    """The ledger of one bridge instance: shards sharing a ``state_dir`` get one file each."""
    return state_dir / (
        "homeassistant.json" if shard_index == 0 else f"homeassistant-{shard_index}.json"
    )


class Ledger:
    """The set of discovery topics published, persisted on every change (rare: once per device)."""

    def __init__(self, path: Path) -> None:
        self._file = Checkpoint(path)
        self._file.close()  # no descriptor kept open: each save opens, writes and closes
        data = self._file.load() or {}
        topics = data.get("topics")
        self.topics: set[str] = (
            {t for t in topics if isinstance(t, str)} if isinstance(topics, list) else set()
        )

    def add(self, topic: str) -> None:
        if topic not in self.topics:
            self.topics.add(topic)
            self._save()

    def drop(self, topics: Iterable[str]) -> None:
        before = len(self.topics)
        self.topics.difference_update(topics)
        if len(self.topics) != before:
            self._save()

    def _save(self) -> None:
        self._file.save({"topics": sorted(self.topics)})
