"""Reboot detection, one table."""

from __future__ import annotations

import pytest

from bridge.normalize.uptime import Clock, rebooted

BOOT = 1_700_000_000


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, Clock(BOOT + 100, 100), False),  # nothing known yet
        (Clock(BOOT + 100, 100), Clock(BOOT + 130, 130), False),  # time goes on
        (Clock(BOOT + 100, 100), Clock(BOOT + 131, 130), False),  # one second of wobble
        (Clock(BOOT + 100, 100), Clock(BOOT + 130, 20), True),  # uptime went back
        (Clock(BOOT + 100, 100), Clock(BOOT + 5000, 4000), True),  # down longer than it was up
        (Clock(BOOT + 100, 100), Clock(BOOT + 3700, 3600), False),  # an hour later, same boot
        (Clock(BOOT + 100, 100), Clock(BOOT + 3800, 130), True),  # NTP step? uptime says reboot
        (Clock(BOOT + 100, 100), Clock(BOOT + 60, 130), False),  # clock stepped back
        (Clock(BOOT + 100, 100), Clock(BOOT + 140, 130), False),  # clock stepped forward 10 s
    ],
)
def test_rebooted(previous: Clock | None, current: Clock, expected: bool) -> None:
    assert rebooted(previous, current) is expected
