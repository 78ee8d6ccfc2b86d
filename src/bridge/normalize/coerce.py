"""Lenient reading of vendor values, and redaction of secrets. Pure; shared by every vendor.

Vendors send numbers as strings or ints (Onetouch ``"0"`` beside ``0``), booleans as ``"true"``,
``"1"`` or ``1``. These helpers read what a *device* sent, where leniency is right; they are
never used on what a *user* sent (commands and config are strict).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
SECRET_WORDS = frozenset({"code", "pin", "password", "passwd", "pwd", "token", "secret"})

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INT = re.compile(r"\s*[-+]?\d{1,20}\s*")


def as_int(value: object) -> int | None:
    """``3``, ``"3"``, ``" 3 "`` and ``3.0`` are 3; booleans, other floats and text are None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    return None


def as_bool(value: object) -> bool | None:
    """``true``/``false``, ``1``/``0`` (number or text), ``yes``/``no``, ``on``/``off``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in {0, 1}:
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    return True if text in _TRUE else False if text in _FALSE else None


def as_str(value: object) -> str | None:
    """Text as is, numbers as their text; anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def clean(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys whose value is None."""
    return {key: value for key, value in data.items() if value is not None}


def is_secret_key(key: object, words: frozenset[str] = SECRET_WORDS) -> bool:
    """True for a key naming a secret: ``code``, ``Pwd``, ``Config.Account1.GENERAL.Pwd``,
    ``Config.DoorSetting.RELAY.Password`` (the last dotted part is what counts)."""
    last = str(key).rsplit(".", 1)[-1].lower()
    return last in words


def redact(value: object, words: frozenset[str] = SECRET_WORDS) -> Any:  # noqa: ANN401 - JSON
    """``value`` with every secret-named key's value replaced by ``***``, at any depth."""
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(k, words) else redact(v, words) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, words) for v in value]
    return value
