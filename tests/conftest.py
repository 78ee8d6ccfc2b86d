from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Mosquitto


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
