"""The durable part of the outbox: messages nobody can replay, kept in ``state_dir`` until the
broker acknowledged them.

An event a driver emits without ``on_ack`` (a state transition seen by polling, a push, a
``device.started`` the driver makes itself) exists nowhere else once the bridge has it, so the
broker link writes it here before ``MqttLink.publish`` returns and deletes it when the broker
acknowledged it; a restarted bridge publishes what is left first. Events a device can replay
(2N, Onetouch logs) never come here: their drivers' checkpoints wait for the acknowledgement.

One SQLite file (standard library ``sqlite3``) per bridge instance, ``outbox.sqlite3`` for shard 0
and ``outbox-<index>.sqlite3`` for the others, so shards sharing a ``state_dir`` never share it and
a bridge that starts sharding keeps its file as shard 0. Schema (``PRAGMA user_version = 1``)::

    CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
                         qos INTEGER NOT NULL, correlation BLOB)

``id`` grows with every insert, so ``ORDER BY id`` is the order the messages were published in.
The store holds at most ``limit`` rows: past that the oldest are deleted, and the caller counts
them as dropped.

Durability: WAL journal, ``synchronous=NORMAL``, one transaction per insert and per delete. A
committed transaction survives the process being killed (SIGKILL, OOM killer, a crash): it is in
the WAL file, which the next open replays. A power cut or kernel crash can roll back the
transactions the kernel had not yet written back (WAL pages are synced only at a checkpoint), so
the last seconds of stored messages can be lost then; the file is never corrupted.
``synchronous=FULL`` would close that window at the cost of an fsync per insert and per delete
(measured in docs/performance.md: about 15 times the cost, and a stall of the event loop on slow
storage). ``locking_mode=EXCLUSIVE``: a second process opening the same file (two instances
configured as the same shard) fails to use it, loudly, instead of publishing the other's
messages; it also means no ``-shm`` file.

The calls are synchronous and run on the event loop: an insert or a delete takes ~5 µs here,
far less than a hop to a worker thread, and ``MqttLink.publish`` is synchronous and must have
stored the message when it returns. The 2N hot path (events with ``on_ack``) never gets here.

A store that cannot be opened or written (read-only disk, full disk, the file locked by another
process) is logged once (``outbox_store_failed``) and the messages are kept in memory only, as
before this store existed; the next write tries again.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from pathlib import Path

log = structlog.get_logger("bridge.mqtt")

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, correlation BLOB)"
)


def store_path(state_dir: Path, shard_index: int = 0) -> Path:
    """The store of one bridge instance: shards sharing a ``state_dir`` get one file each."""
    return state_dir / ("outbox.sqlite3" if shard_index == 0 else f"outbox-{shard_index}.sqlite3")


@dataclass(frozen=True, slots=True)
class Stored:
    """One message read back from the store."""

    row: int
    topic: str
    payload: bytes
    qos: int
    correlation: bytes | None


class Store:
    """A bounded FIFO of messages in one SQLite file; nothing is touched until it is used."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = max(1, limit)
        self._db: sqlite3.Connection | None = None
        self._count = 0
        self._failed = False

    def __len__(self) -> int:
        return self._count

    # -- the three operations ------------------------------------------------------------------

    def load(self) -> tuple[list[Stored], int]:
        """What a previous run left, oldest first, and how many of the oldest were deleted to
        fit ``limit``. A missing file is an empty store (and is not created)."""
        if self._db is None and not self.path.exists():
            return [], 0
        db = self._open()
        if db is None:
            return [], 0
        try:
            dropped = self._trim(db, 0)
            rows = db.execute(
                "SELECT id, topic, payload, qos, correlation FROM outbox ORDER BY id"
            ).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            return [], 0
        return [Stored(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), r[4]) for r in rows], dropped

    def add(
        self, topic: str, payload: bytes, qos: int, correlation: bytes | None = None
    ) -> tuple[int | None, int]:
        """Store one message: its row (None when the store failed) and how many of the oldest
        rows were deleted to keep within ``limit``."""
        db = self._open()
        if db is None:
            return None, 0
        try:
            dropped = 0
            if self._count >= self.limit:
                db.execute("BEGIN IMMEDIATE")
                try:
                    dropped = self._trim(db, 1)
                    row = self._insert(db, topic, payload, qos, correlation)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            else:
                row = self._insert(db, topic, payload, qos, correlation)
        except sqlite3.Error as exc:
            self._fail(exc)
            return None, 0
        self._count += 1
        self._recovered()
        return row, dropped

    def delete(self, row: int) -> None:
        """Forget one message (acknowledged by the broker, or dropped)."""
        db = self._open()
        if db is None:
            return
        try:
            deleted = db.execute("DELETE FROM outbox WHERE id = ?", (row,)).rowcount
        except sqlite3.Error as exc:
            self._fail(exc)
            return
        self._count -= max(0, deleted)
        self._recovered()

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.close()
            except sqlite3.Error as exc:
                log.debug("outbox_store_close_failed", error=str(exc))

    # -- internals -------------------------------------------------------------------------------

    def _insert(
        self,
        db: sqlite3.Connection,
        topic: str,
        payload: bytes,
        qos: int,
        correlation: bytes | None,
    ) -> int:
        cursor = db.execute(
            "INSERT INTO outbox (topic, payload, qos, correlation) VALUES (?, ?, ?, ?)",
            (topic, payload, qos, correlation),
        )
        row = cursor.lastrowid
        if row is None:  # pragma: no cover - an INSERT always sets it
            raise sqlite3.OperationalError("no row id")
        return row

    def _trim(self, db: sqlite3.Connection, room: int) -> int:
        """Delete the oldest rows until ``room`` more fit; how many were deleted."""
        excess = self._count + room - self.limit
        if excess <= 0:
            return 0
        deleted = db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,)
        ).rowcount
        self._count -= deleted
        return int(deleted)

    def _open(self) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created private: SQLite gives its WAL file the mode of the database file.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            # Autocommit (isolation_level None): each statement is its own transaction unless
            # wrapped in BEGIN/COMMIT; check_same_thread: only the event loop thread uses it.
            db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: no shared memory
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode and mode[0]}, not wal")
            db.execute("PRAGMA synchronous = NORMAL")
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise sqlite3.OperationalError(
                    f"schema version {version} is newer than this bridge"
                )
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            self._fail(exc)
            return None
        self._db = db
        return db

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            log.warning("outbox_store_failed", path=str(self.path), error=str(exc))
        self._failed = True
        self.close()

    def _recovered(self) -> None:
        if self._failed:
            log.info("outbox_store_recovered", path=str(self.path))
            self._failed = False
