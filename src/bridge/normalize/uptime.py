"""Reboot detection from a device's clock and uptime, for drivers that poll. Pure.

A device that reports its wall clock and uptime has a boot epoch ``system_time - uptime``. It
rebooted when its uptime went back, or when the boot epoch moved later than the last reading
(the device was down longer than it had been up). A wall clock set by NTP moves the epoch too:
a move of a few seconds, or one to before the last reading, is not a reboot.
"""

from __future__ import annotations

from dataclasses import dataclass

BOOT_SLACK = 2  # seconds: system_time - uptime of one boot wobbles by a second or two


@dataclass(frozen=True, slots=True)
class Clock:
    """One reading: the device's Unix time and its uptime, in seconds."""

    system_time: int
    uptime: int

    @property
    def boot(self) -> int:
        """The boot epoch: the Unix time the device started."""
        return self.system_time - self.uptime


def rebooted(previous: Clock | None, current: Clock) -> bool:
    """True when ``current`` belongs to a later boot than ``previous`` (None: nothing known)."""
    if previous is None:
        return False
    if current.uptime < previous.uptime:
        return True
    return current.boot - previous.boot > BOOT_SLACK and current.boot > previous.system_time


def same_boot(boot: int, other: int) -> bool:
    return abs(boot - other) <= BOOT_SLACK
