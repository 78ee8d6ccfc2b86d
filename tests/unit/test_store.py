"""The durable outbox store: ordered, bounded, survives a reopen, never fatal."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from bridge.mqtt.store import Store, store_path

if TYPE_CHECKING:
    from pathlib import Path


def topics(store: Store) -> list[str]:
    stored, _ = store.load()
    return [s.topic for s in stored]


def test_messages_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    store = Store(path, limit=10)
    assert store.load() == ([], 0)
    assert not path.exists()  # nothing is created before something is stored
    rows = [store.add(f"t/{i}", f"p{i}".encode(), 1)[0] for i in range(4)]
    assert None not in rows
    store.add("t/c", b"with correlation", 2, b"\x00\x01")
    store.delete(rows[1] or 0)
    assert len(store) == 4
    store.close()

    again = Store(path, limit=10)
    stored, dropped = again.load()
    assert dropped == 0
    assert [(s.topic, s.payload, s.qos) for s in stored] == [
        ("t/0", b"p0", 1),
        ("t/2", b"p2", 1),
        ("t/3", b"p3", 1),
        ("t/c", b"with correlation", 2),
    ]
    assert stored[-1].correlation == b"\x00\x01"
    assert stored[0].correlation is None
    assert len(again) == 4
    # New rows go after what was loaded, even after the newest row was deleted.
    again.delete(stored[-1].row)
    again.add("t/new", b"", 1)
    assert topics(again) == ["t/0", "t/2", "t/3", "t/new"]
    again.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_it_is_bounded_and_drops_the_oldest(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    store = Store(path, limit=3)
    dropped = [store.add(f"t/{i}", b"x", 1)[1] for i in range(5)]
    assert dropped == [0, 0, 0, 1, 1]
    assert topics(store) == ["t/2", "t/3", "t/4"]
    assert len(store) == 3
    store.close()
    # A smaller bound at the next start (outbox_size lowered) trims what a run left, oldest first.
    smaller = Store(path, limit=2)
    stored, trimmed = smaller.load()
    assert trimmed == 1
    assert [s.topic for s in stored] == ["t/3", "t/4"]
    smaller.close()


def test_a_store_that_cannot_be_written_is_logged_not_raised(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    store = Store(blocked / "outbox.sqlite3", limit=3)
    assert store.add("t", b"x", 1) == (None, 0)
    store.delete(1)
    assert store.load() == ([], 0)
    store.close()


def test_a_second_process_on_the_same_file_does_not_share_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Store(path, limit=3)
    row, _ = first.add("t/first", b"x", 1)
    assert row is not None
    second = Store(path, limit=3)  # locked: it keeps its messages in memory only
    assert second.add("t/second", b"x", 1) == (None, 0)
    second.close()
    first.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT topic FROM outbox").fetchall() == [("t/first",)]
    db.close()


def test_shards_sharing_a_state_dir_get_a_file_each(tmp_path: Path) -> None:
    assert store_path(tmp_path) == tmp_path / "outbox.sqlite3"
    assert store_path(tmp_path, 0) == tmp_path / "outbox.sqlite3"
    assert store_path(tmp_path, 2) == tmp_path / "outbox-2.sqlite3"
