"""The driver registry, keyed by the ``driver`` value of a device's config.

Adding a driver: a config model and a driver class in ``drivers/<name>.py``, its pure
normalization in ``normalize/<name>.py``, a simulator in ``simulators/<name>.py``, and one
entry below (see ``docs/drivers.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from bridge.drivers import generic, grandstream, onetouch, two_n, ultrastream

if TYPE_CHECKING:
    from bridge.config import DeviceConfig
    from bridge.drivers.base import Driver, DriverContext, DriverFactory

DRIVERS: dict[str, DriverFactory] = {
    "generic": generic.GenericDriver,  # type: ignore[dict-item] # narrower config type
    "2n": two_n.TwoNDriver,  # type: ignore[dict-item]
    "onetouch": onetouch.OnetouchDriver,  # type: ignore[dict-item]
    "grandstream": grandstream.GrandstreamDriver,  # type: ignore[dict-item]
    "ultrastream": ultrastream.UltraStreamDriver,  # type: ignore[dict-item]
}

AnyDeviceConfig = Annotated[
    generic.GenericConfig
    | two_n.TwoNConfig
    | onetouch.OnetouchConfig
    | grandstream.GrandstreamConfig
    | ultrastream.UltraStreamConfig,
    Field(discriminator="driver"),
]


def build_driver(config: DeviceConfig, context: DriverContext) -> Driver:
    return DRIVERS[config.driver](config, context)
