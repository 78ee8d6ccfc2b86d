"""Logs never show what a traceback's frames held: a local may be a password."""

from __future__ import annotations

import io
import logging
from typing import Literal

import pytest
import structlog

from bridge.logs import configure


@pytest.mark.parametrize("format_", ["console", "json"])
def test_a_traceback_shows_no_local_variables(format_: Literal["console", "json"]) -> None:
    stream = io.StringIO()
    configure(format_=format_, level="info", stream=stream)
    try:

        def login() -> None:
            password = "hunter2-very-secret"  # a local of the failing frame
            raise RuntimeError(f"refused ({len(password)} characters)")

        try:
            login()
        except RuntimeError:
            structlog.get_logger("bridge.test").exception("driver_crashed")
        text = stream.getvalue()
        assert "driver_crashed" in text
        assert "RuntimeError: refused (19 characters)" in text  # the traceback is there
        assert "hunter2" not in text
    finally:
        logging.getLogger().handlers.clear()


@pytest.mark.parametrize("name", ["hpack", "h2"])
def test_libraries_that_log_requests_stay_quiet_at_debug(name: str) -> None:
    """At ``log.level: debug`` these would log every request's path (a push token) or headers."""
    configure(level="debug", format_="console")
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    assert not logging.getLogger(name).isEnabledFor(logging.INFO)
