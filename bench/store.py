"""Cost of the durable outbox per message: one insert when published, one delete when acknowledged.

``bridge.mqtt.store.Store`` as the bridge uses it (WAL, ``synchronous=NORMAL``, a transaction
per statement), then the same statements with ``synchronous=FULL`` (an fsync per commit) for
comparison. Run it on the disk that will hold ``state_dir`` (see docs/performance.md):

    .venv/bin/python bench/store.py --messages 5000 --dir /var/lib/bridge
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bridge.mqtt.store import Store

TOPIC = "bridge/front-door/event/doorbell.pressed"
PAYLOAD = (
    b'{"id":"front-door/1796024871/12345","device":"front-door","type":"doorbell.pressed",'
    b'"time":"2026-11-30T12:00:00.000Z","received":"2026-11-30T12:00:00.004Z",'
    b'"data":{"button":"1","raw":{"kind":"button","button":1}}}'
)


def report(name: str, inserts: list[float], deletes: list[float]) -> None:
    def summary(values: list[float]) -> str:
        ordered = sorted(values)
        mean, p50 = statistics.fmean(values), ordered[len(ordered) // 2]
        p99 = ordered[int(len(ordered) * 0.99)]
        slow = sum(v > 1e-3 for v in values)
        return (
            f"mean {mean * 1e6:6.1f} µs  p50 {p50 * 1e6:6.1f}  p99 {p99 * 1e6:6.1f}"
            f"  max {ordered[-1] * 1e6:7.1f}  over 1 ms: {slow}"
        )

    print(f"{name:>7} insert: {summary(inserts)}")
    print(f"{name:>7} delete: {summary(deletes)}")
    pairs = [a + b for a, b in zip(inserts, deletes, strict=True)]
    print(f"{name:>7} per message (insert + delete): mean {statistics.fmean(pairs) * 1e6:.1f} µs")


def store(directory: Path, messages: int) -> None:
    db = Store(directory / "outbox.sqlite3", limit=messages + 1)
    inserts, deletes = [], []
    for _ in range(messages):
        started = time.perf_counter()
        row, _ = db.add(TOPIC, PAYLOAD, 1)
        added = time.perf_counter()
        assert row is not None  # noqa: S101 - a benchmark of a working store
        db.delete(row)
        inserts.append(added - started)
        deletes.append(time.perf_counter() - added)
    db.close()
    report("NORMAL", inserts, deletes)


def full(directory: Path, messages: int) -> None:
    db = sqlite3.connect(directory / "full.sqlite3", isolation_level=None)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, qos INTEGER NOT NULL, correlation BLOB)"
    )
    inserts, deletes = [], []
    for _ in range(messages):
        started = time.perf_counter()
        cursor = db.execute(
            "INSERT INTO outbox (topic, payload, qos, correlation) VALUES (?, ?, ?, ?)",
            (TOPIC, PAYLOAD, 1, None),
        )
        added = time.perf_counter()
        db.execute("DELETE FROM outbox WHERE id = ?", (cursor.lastrowid,))
        inserts.append(added - started)
        deletes.append(time.perf_counter() - added)
    db.close()
    report("FULL", inserts, deletes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: /tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        store(Path(directory), args.messages)
        full(Path(directory), args.messages)


if __name__ == "__main__":
    main()
