"""Checkpoints: one cheap write per save, never torn, never fatal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.checkpoint import Checkpoint

if TYPE_CHECKING:
    from pathlib import Path


def test_a_shorter_checkpoint_replaces_a_longer_one(tmp_path: Path) -> None:
    path = tmp_path / "state" / "door.2n.json"
    checkpoint = Checkpoint(path)
    assert checkpoint.load() is None
    checkpoint.save({"id": 123456789, "note": "a longer first version"})
    checkpoint.save({"id": 7})
    checkpoint.close()
    assert Checkpoint(path).load() == {"id": 7}
    # A new instance (a restarted bridge) pads to what the file already holds.
    again = Checkpoint(path)
    again.save({"id": 8})
    assert again.load() == {"id": 8}
    again.close()


def test_corrupt_or_unwritable_checkpoints_are_not_fatal(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(b'{"id": 1')
    assert Checkpoint(corrupt).load() is None
    corrupt.write_bytes(b"\xff\xfe")
    assert Checkpoint(corrupt).load() is None
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    checkpoint = Checkpoint(blocked / "door.2n.json")
    checkpoint.save({"id": 1})  # logged, not raised
    assert checkpoint.load() is None
