"""Checkpoints: one cheap write per save, never torn, never fatal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.checkpoint import Checkpoint, Cursor, all_of

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


def test_a_cursor_saves_a_position_once_it_and_everything_before_are_acknowledged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "door.log.json"
    cursor = Cursor(Checkpoint(path))
    assert cursor.load() is None
    one, two = cursor.stage({"id": 1}), cursor.stage({"id": 2})
    cursor.advance({"id": 3})  # a record without an event: behind what is pending
    four = cursor.stage({"id": 4})
    two()
    assert Checkpoint(path).load() is None
    one()
    assert Checkpoint(path).load() == {"id": 3}
    assert cursor.pending == 1
    four()
    assert Checkpoint(path).load() == cursor.saved == {"id": 4}
    cursor.close()
    # An acknowledgement after the driver closed (the shutdown flush) still moves it.
    late = cursor.stage({"id": 5})
    late()
    assert Cursor(Checkpoint(path)).load() == {"id": 5}


def test_all_of_acknowledges_once_every_event_of_a_record_was(tmp_path: Path) -> None:
    calls: list[str] = []
    ack = all_of(lambda: calls.append("record"), 3)
    ack()
    ack()
    assert calls == []
    ack()
    assert calls == ["record"]
    single = all_of(lambda: calls.append("single"), 1)
    single()
    assert calls == ["record", "single"]
