"""Per-device checkpoints in ``state_dir``: where a driver resumes after a bridge restart.

A checkpoint is a small JSON object written atomically (a temporary file renamed over the old
one), so a bridge killed at any moment leaves either the previous or the new checkpoint, never
a torn one. A missing, unreadable or corrupt checkpoint is logged and treated as absent: the
driver then starts from "now", which loses the gap but never replays stale events.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from pathlib import Path

log = structlog.get_logger("bridge.checkpoint")


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_failed = False

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
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
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            if not self._write_failed:
                log.warning("checkpoint_write_failed", path=str(self.path), error=str(exc))
            self._write_failed = True
        else:
            self._write_failed = False
