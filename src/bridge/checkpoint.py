"""Per-device checkpoints in ``state_dir``: where a driver resumes after a bridge restart.

A checkpoint is a small JSON object, rewritten after every batch of events, so writing it must
cost next to nothing: the file stays open and each save is one ``pwrite`` at offset 0, padded
with spaces to the longest content written so far (JSON ignores trailing whitespace). A process
killed at any moment cannot tear a write of a few hundred bytes (the kernel completes the system
call), so the file always holds the previous or the new checkpoint. The rename-based atomic
write used before took half a millisecond and sat on the publish path. Durability across a
power cut is not attempted (no fsync); a lost checkpoint means a larger replay, bounded by the
driver's maximum age.

A missing, unreadable or corrupt checkpoint is logged and treated as absent: the driver then
starts from "now", which loses the gap but never replays stale events.
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = structlog.get_logger("bridge.checkpoint")


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0  # the longest content written: shorter ones are padded to it
        self._write_failed = False
        self._closed = False  # closed by its owner: later saves open, write and close again

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("checkpoint_unreadable", path=str(self.path), error=str(exc))
            return None
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("checkpoint_corrupt", path=str(self.path))
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        """Write ``data``; a failure is logged once (until a write succeeds), never raised."""
        payload = json.dumps(data, separators=(",", ":")).encode()
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                self._size = os.fstat(self._fd).st_size
            os.pwrite(self._fd, payload.ljust(self._size), 0)
        except OSError as exc:
            if not self._write_failed:
                log.warning("checkpoint_write_failed", path=str(self.path), error=str(exc))
            self._write_failed = True
            self._release()
        else:
            self._size = max(self._size, len(payload))
            self._write_failed = False
            if self._closed:
                self._release()

    def close(self) -> None:
        """Release the file. A save after this still works (an acknowledgement that arrives
        while the bridge flushes at shutdown, after the driver closed): it reopens the file and
        closes it again."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Cursor:
    """A position in a device log that is saved only once what precedes it is safe.

    The driver reads records in order and ``stage``\\ s the position after each event it emits;
    the returned callback is the event's ``on_ack``. The checkpoint moves to a staged position
    once that event and every event staged before it were acknowledged by the broker, so after
    any stop (SIGTERM, SIGKILL, power cut) the driver resumes at the first event the broker may
    not have, and the bridge drops what it replays by event id. ``advance`` moves the position
    for records that produced no event, behind whatever is still pending.

    Positions are JSON objects chosen by the driver (a 2N ``{boot, id, up, utc}``, Onetouch log
    record ids).
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint
        self._pending: deque[list[Any]] = deque()  # [position, acknowledged]
        self.saved: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        self.saved = self._checkpoint.load()
        return self.saved

    def stage(self, position: dict[str, Any]) -> Callable[[], None]:
        entry: list[Any] = [position, False]
        self._pending.append(entry)

        def acknowledged() -> None:
            entry[1] = True
            self._settle()

        return acknowledged

    def advance(self, position: dict[str, Any]) -> None:
        self.stage(position)()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _settle(self) -> None:
        last = None
        while self._pending and self._pending[0][1]:
            last = self._pending.popleft()[0]
        if last is not None:
            self.saved = last
            self._checkpoint.save(last)

    def reset(self, position: dict[str, Any] | None) -> None:
        """Forget what is pending (a new channel replays it) and save ``position`` if given."""
        self._pending.clear()
        if position is not None:
            self.saved = position
            self._checkpoint.save(position)

    def close(self) -> None:
        self._checkpoint.close()


def all_of(ack: Callable[[], None], count: int) -> Callable[[], None]:
    """One ``on_ack`` for ``count`` events that share a position (one device record that gives
    several events): ``ack`` runs once every one of them was acknowledged, i.e. on the
    ``count``-th call."""
    if count <= 1:
        return ack
    remaining = count

    def one() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            ack()

    return one


class Sequence:
    """A per-device counter for the ids of events the device does not number itself.

    Each number is saved before it is handed out, so no number is ever given to two
    occurrences, across restarts and crashes alike: a transition that happens twice gets two
    ids, and the bridge, which drops ids it has seen, publishes both.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint
        data = checkpoint.load() or {}
        value = data.get("next")
        self._next = value if isinstance(value, int) and not isinstance(value, bool) else 1

    def next(self) -> int:
        number = self._next
        self._next += 1
        self._checkpoint.save({"next": self._next})
        return number

    def close(self) -> None:
        self._checkpoint.close()
