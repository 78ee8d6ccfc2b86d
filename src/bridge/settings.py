"""The root configuration and its loader (spec §2).

Sources, highest priority first: ``BRIDGE_*`` environment variables (nested with ``__``, e.g.
``BRIDGE_MQTT__URL``), then the YAML file. In the file any string may reference the environment
as ``${NAME}`` or ``${NAME:-default}``; secrets may also come from ``*_file`` keys.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bridge.config import (
    HomeAssistantConfig,
    HttpConfig,
    LogConfig,
    MqttConfig,
    ShardConfig,
)
from bridge.drivers import DRIVERS, AnyDeviceConfig
from bridge.errors import ConfigError
from bridge.validation import say

if TYPE_CHECKING:
    from collections.abc import Mapping

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BARE_REF = re.compile(r"\$([A-Z_][A-Z0-9_]+)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mqtt: MqttConfig = MqttConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    state_dir: Path = Field(Path("/var/lib/bridge"), description="checkpoints for resume")
    shard: ShardConfig = ShardConfig()
    devices: list[AnyDeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"devices: duplicate id {device.id!r}")
            seen.add(device.id)
        return self

    @model_validator(mode="after")
    def _known_commands(self) -> Settings:
        """A typo in ``commands.deny`` (``open-door``) would leave the door allowed: every name
        in a policy must be a command of the device's driver."""
        for index, device in enumerate(self.devices):
            known = DRIVERS[device.driver].commands  # type: ignore[attr-defined]
            policy = device.commands
            for key, names in (("allow", policy.allow or []), ("deny", policy.deny)):
                unknown = [name for name in names if name not in known]
                if unknown:
                    listed = ", ".join(repr(name) for name in unknown)
                    raise ValueError(
                        f"devices[{index}].commands.{key}: unknown command {listed}; "
                        f"the {device.driver} driver has {', '.join(sorted(known))}"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init arguments.
        return (env_settings, init_settings)


def expand_env(value: Any, path: str, environ: Mapping[str, str], problems: list[str]) -> Any:  # noqa: ANN401
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {
            k: expand_env(v, _join(path, _name(k)), environ, problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]", environ, problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    bare = _BARE_REF.fullmatch(value.strip())
    if bare is not None:
        # ``password: $MQTT_PASSWORD`` would be taken literally and fail far from here.
        name = bare.group(1)
        problems.append(
            f"{path}: ${name} looks like an environment variable without braces: write "
            f"${{{name}}} (a value that really is ${name} can come from a *_file)"
        )
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set")
        return ""

    return _ENV_REF.sub(substitute, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(key: object) -> str:
    """A key as a problem line names it: quoted when empty or unprintable (a line break)."""
    text = str(key)
    return text if text and text.isprintable() else repr(text)


def format_location(loc: tuple[int | str, ...]) -> str:
    """``("devices", 2, "generic", "url")`` → ``devices[2].url`` (the union tag is dropped)."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i >= 2 and parts[0] == "devices" and i == 2 and part in DRIVERS:
            continue
        else:
            out = _join(out, _name(part))
    return out


_KEY = re.compile(r"[a-z_][a-z0-9_.]*")


def describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        # A value of a union (``str | int``) fails once per member: say it once, for the key.
        loc = tuple(p for p in loc if p not in {"str", "int", "float", "bool"} or p == loc[0])
        where = format_location(loc)
        message = say(err)
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown driver; expected one of {', '.join(sorted(DRIVERS))}"
        elif err["type"] == "union_tag_not_found":
            where, message = (
                _join(where, "driver"),
                f"required (one of {', '.join(sorted(DRIVERS))})",
            )
        key, _, rest = message.partition(": ")
        if err["type"] == "value_error" and rest and _KEY.fullmatch(key):
            # A model-level check names its key first ("url: ..."): make it part of the path.
            where, message = _join(where, key), rest
        if where in seen and err["type"] not in {"extra_forbidden", "missing"}:
            continue
        seen.add(where)
        problems.append(f"{where}: {message}" if where else message)
    return problems


def _from_environment(problem: str, environ: Mapping[str, str]) -> str:
    """``mqtt.qos: ...`` set by ``BRIDGE_MQTT__QOS`` names the variable: that is what to fix."""
    where, sep, message = problem.partition(": ")
    if not sep or "[" in where:
        return problem
    name = "BRIDGE_" + where.replace(".", "__").upper()
    return f"{name} ({where}): {message}" if name in environ else problem


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, expand and validate the configuration; the only place that raises ConfigError."""
    environ = os.environ if environ is None else environ
    data: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {_yaml_problem(exc)}"]) from None
        if not isinstance(data, dict):
            raise ConfigError([f"{path}: the top level must be a mapping"])
    try:
        return build_settings(data, environ)
    except RecursionError:  # `a: &a [*a]` makes a list that holds itself
        where = f"{path}: " if path is not None else ""
        raise ConfigError([f"{where}nested too deeply (an alias that refers to itself?)"]) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """pyyaml's message on one line: the problem and where, without its quoted source."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
    context = f"{exc.context}: " if exc.context else ""
    return f"{context}{exc.problem}{where}"


def build_settings(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    data = expand_env(data, "", environ, problems)
    if problems:
        raise ConfigError(problems)
    # Only the fields go on as keywords: another key would not be a keyword at all (``1:``) or
    # would be taken as an option of pydantic-settings (``_env_file:``, ``_cli_parse_args:``).
    fields = Settings.model_fields
    unknown = [f"{_name(key)}: unknown key" for key in data if key not in fields]
    try:
        settings = Settings(**{key: value for key, value in data.items() if key in fields})
    except ValidationError as exc:
        found = [_from_environment(p, os.environ) for p in describe_errors(exc)]
        raise ConfigError(found + unknown) from None
    except SettingsError as exc:  # an environment override that is not valid JSON
        field = str(exc).partition('field "')[2].partition('"')[0] or "environment"
        name = f"BRIDGE_{field.upper()}"
        hint = f"{field}: {name} must be a JSON object; set nested keys with {name}__<KEY> instead"
        raise ConfigError([hint, *unknown]) from None
    if unknown:
        raise ConfigError(unknown)
    return settings
