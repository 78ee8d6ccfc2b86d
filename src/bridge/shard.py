"""Which replica owns which device: rendezvous (highest random weight) hashing. Pure.

Every device goes to exactly one shard, and changing the shard count from n to n+1 moves only
the devices the new shard wins (about 1/(n+1) of them), the minimum any scheme can move.
"""

from __future__ import annotations

import hashlib


def _weight(device_id: str, shard: int) -> int:
    digest = hashlib.sha256(f"{shard}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_of(device_id: str, count: int) -> int:
    return max(range(count), key=lambda shard: _weight(device_id, shard))
