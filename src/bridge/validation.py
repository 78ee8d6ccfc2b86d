"""pydantic's validation messages said in the project's words, for config and commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

# pydantic's messages said in the project's words, by error type (``ctx`` fills the blanks).
_MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown argument",
    "missing": "required",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping of keys to values",
    "model_type": "expected a mapping of keys to values",
    "list_type": "expected a list",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "literal_error": "expected {expected}",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "string_pattern_mismatch": "must match {pattern}",
    "too_short": "must have at least {min_length} items",
}


def say(err: ErrorDetails) -> str:
    """The message of one validation error: ours for the common types, pydantic's otherwise."""
    if err["type"] == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    template = _MESSAGES.get(err["type"])
    if template is not None:
        try:
            return template.format(**err.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    return str(err["msg"]).removeprefix("Value error, ")
