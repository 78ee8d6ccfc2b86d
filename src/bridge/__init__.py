"""bridge: an event-driven gateway from IP building devices to MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bridge")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
