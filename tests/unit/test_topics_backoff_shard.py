from __future__ import annotations

import random

import pytest

from bridge.backoff import Backoff
from bridge.mqtt.topics import Inbound, Topics, publishable
from bridge.shard import shard_of


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("bridge/front-door/command", Inbound("command", "front-door")),
        ("bridge/bridge/request/health_check", Inbound("request", "health_check")),
        ("bridge/bridge/command", None),
        ("bridge/front-door/command/result", None),
        ("bridge/front-door/state", None),
        ("other/front-door/command", None),
        ("bridge//command", None),
        ("bridge/bridge/request/", None),
    ],
)
def test_inbound_topics(topic: str, expected: Inbound | None) -> None:
    assert Topics("bridge").parse(topic) == expected


def test_topic_names() -> None:
    t = Topics("site/a")
    assert t.event("d", "doorbell.pressed") == "site/a/d/event/doorbell.pressed"
    assert t.command_result("d") == "site/a/d/command/result"
    assert t.subscriptions == ("site/a/+/command", "site/a/bridge/request/+")
    assert t.parse("site/a/d/command") == Inbound("command", "d")


def test_a_sharded_instance_has_its_own_bridge_topics() -> None:
    t = Topics("bridge", shard=2)
    assert (t.bridge_state, t.bridge_info) == (
        "bridge/bridge/shard/2/state",
        "bridge/bridge/shard/2/info",
    )
    assert t.bridge_response("devices") == "bridge/bridge/shard/2/response/devices"
    assert t.subscriptions == ("bridge/+/command", "bridge/bridge/shard/2/request/+")
    assert t.parse("bridge/bridge/shard/2/request/devices") == Inbound("request", "devices")
    assert t.parse("bridge/bridge/shard/1/request/devices") is None
    assert t.parse("bridge/bridge/request/devices") is None
    assert t.parse("bridge/front-door/command") == Inbound("command", "front-door")


def test_backoff_is_capped_jittered_and_resets() -> None:
    backoff = Backoff(base=1, cap=8, floor=0.1, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(50)]
    assert all(0.1 <= d <= 8 for d in delays)
    assert len(set(delays)) == 50  # jittered
    assert max(delays[10:]) > 4  # grows to the cap
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_sharding_covers_every_device_once_and_moves_few() -> None:
    devices = [f"door-{i}" for i in range(2000)]
    for count in (1, 2, 3, 5, 8):
        owners = [shard_of(d, count) for d in devices]
        assert set(owners) == set(range(count))
        share = [owners.count(s) for s in range(count)]
        assert min(share) > 0.8 * len(devices) / count
    before = {d: shard_of(d, 3) for d in devices}
    after = {d: shard_of(d, 4) for d in devices}
    moved = [d for d in devices if before[d] != after[d]]
    assert all(after[d] == 3 for d in moved)  # only to the new shard
    assert len(moved) < 0.3 * len(devices)  # ~1/4 is the minimum


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("replies/me", True),
        ("a", True),
        ("/leading/and/trailing/", True),
        ("", False),
        ("replies/#", False),
        ("replies/+/x", False),
        ("nul\0byte", False),
        ("lone\ud800surrogate", False),
        ("x" * 65535, True),
        ("x" * 65536, False),
        ("\u00e9" * 32768, False),  # 65,536 bytes of UTF-8
    ],
)
def test_publishable(topic: str, ok: bool) -> None:
    assert publishable(topic) is ok
