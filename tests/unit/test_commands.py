from __future__ import annotations

import pytest

from bridge.commands import (
    CATALOGUE,
    SetSwitchArgs,
    check_command,
    parse_command,
    request_id,
)
from bridge.config import CommandPolicy
from bridge.errors import CommandError
from bridge.model import CommandRequest, CommandResult

SUPPORTED = frozenset({"open_door", "set_switch", "reboot", "refresh"})


def code_of(payload: bytes, policy: CommandPolicy | None = None) -> str:
    with pytest.raises(CommandError) as caught:
        check_command(parse_command(payload), supported=SUPPORTED, policy=policy or CommandPolicy())
    return caught.value.code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "bad_request"),
        (b"\xff\xfe", "bad_request"),
        (b"[1]", "bad_request"),
        (b'{"args": {}}', "bad_request"),
        (b'{"command": "open_door", "extra": 1}', "bad_request"),
        (b'{"command": "teleport"}', "unknown_command"),
        (b'{"command": "ptz", "args": {"action": "left"}}', "unsupported"),
        (b'{"command": "reboot"}', "denied"),
        (b'{"command": "open_door", "args": {"door": 0}}', "invalid_args"),
        (b'{"command": "open_door", "args": {"doors": 1}}', "invalid_args"),
        (b'{"command": "set_switch", "args": {"switch": 1}}', "invalid_args"),
        (b'{"command": "set_switch", "args": {"on": true, "action": "off"}}', "invalid_args"),
    ],
)
def test_refusals_have_stable_codes(payload: bytes, code: str) -> None:
    assert code_of(payload) == code


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"[" * 100_000, "bad_request"),
        (b'{"command": "refresh", "id": ' + b"9" * 5000 + b"}", "bad_request"),
        (b'{"command": "refresh", "id": "\\ud800"}', "bad_request"),
        (b'{"command": "refresh", "args": {"\\udcff": 1}}', "bad_request"),
        (
            b'{"command": "set_switch", "args": {"on": true, "timeout": 1' + b"0" * 400 + b"}}",
            "invalid_args",
        ),
    ],
    ids=["deep-nesting", "5000-digit-id", "surrogate-id", "surrogate-arg", "huge-timeout"],
)
def test_hostile_payloads_are_refused_not_raised(payload: bytes, code: str) -> None:
    """Found by the property tests: RecursionError, ValueError and OverflowError escaped, and
    a lone surrogate (JSON "\\ud800") was accepted though no result echoing it can be encoded."""
    with pytest.raises(CommandError) as caught:
        check_command(parse_command(payload), supported=SUPPORTED, policy=CommandPolicy())
    assert caught.value.code == code
    result = CommandResult.failed(code, caught.value.message, id_=request_id(payload))
    assert result.to_json()


def test_policy() -> None:
    reboot = b'{"command": "reboot"}'
    door = b'{"command": "open_door"}'
    assert code_of(reboot) == "denied"  # destructive: off by default
    allowed = CommandPolicy(allow=["reboot"])
    assert (
        check_command(parse_command(reboot), supported=SUPPORTED, policy=allowed).name == "reboot"
    )
    assert code_of(door, allowed) == "denied"  # an allow list is exhaustive
    assert code_of(door, CommandPolicy(deny=["open_door"])) == "denied"
    both = CommandPolicy(allow=["reboot"], deny=["reboot"])
    assert code_of(reboot, both) == "denied"  # deny wins


def test_checked_arguments_are_typed() -> None:
    checked = check_command(
        CommandRequest(command="set_switch", args={"switch": 2, "on": True, "timeout": "5s"}, id=9),
        supported=SUPPORTED,
        policy=CommandPolicy(),
    )
    assert isinstance(checked.args, SetSwitchArgs)
    assert checked.args.resolved_action == "on"
    assert checked.args.timeout == 5.0
    assert checked.id == 9


def test_error_messages_do_not_echo_input() -> None:
    with pytest.raises(CommandError) as caught:
        check_command(
            CommandRequest(command="dial", args={"number": "", "pin": "4711"}),
            supported={"dial"},
            policy=CommandPolicy(),
        )
    assert "4711" not in caught.value.message


def test_request_id_is_best_effort() -> None:
    assert request_id(b'{"id": "a", "command": 5}') == "a"
    assert request_id(b'{"id": true}') is None
    assert request_id(b"nope") is None
    assert request_id(b"[" * 100_000) is None
    assert request_id(b'{"id": ' + b"9" * 5000 + b"}") is None
    assert request_id(b'{"id": "\\ud800"}') is None  # an id no result could echo


def test_only_reboot_is_destructive() -> None:
    assert {n for n, spec in CATALOGUE.items() if spec.destructive} == {"reboot"}


def test_a_boolean_id_is_refused_not_turned_into_1() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(b'{"command": "refresh", "id": true}')
    assert caught.value.code == "bad_request"


# Values of the wrong type, per argument type: each must be refused, never converted.
WRONG: dict[str, list[object]] = {
    "integer": [True, False, "2", 2.0, 2.5, None],
    "boolean": ["yes", "true", 1, 0, 1.0, None],
    "string": [1, 2.5, True, None, ["x"]],
}
STRICT_CASES = [
    ("open_door", "door", "integer", {}),
    ("set_switch", "switch", "integer", {"on": True}),
    ("set_switch", "on", "boolean", {}),
    ("set_output", "on", "boolean", {"port": "relay1"}),
    ("dial", "number", "string", {}),
    ("snapshot", "width", "integer", {}),
    ("snapshot", "time", "integer", {}),
    ("snapshot", "channel", "integer", {}),
    ("ptz", "speed", "integer", {"action": "left"}),
    ("motion_detection", "enabled", "boolean", {}),
]


@pytest.mark.parametrize(("command", "arg", "kind", "others"), STRICT_CASES)
def test_args_are_strictly_typed(
    command: str, arg: str, kind: str, others: dict[str, object]
) -> None:
    supported = frozenset(CATALOGUE)
    for value in WRONG[kind]:
        if value is None and CATALOGUE[command].args.model_fields[arg].default is None:
            continue  # optional: null means "not given"
        request = CommandRequest(command=command, args={**others, arg: value})
        with pytest.raises(CommandError) as caught:
            check_command(request, supported=supported, policy=CommandPolicy(allow=list(supported)))
        assert caught.value.code == "invalid_args", (command, arg, value)
        assert caught.value.message.startswith(f"{arg}:"), caught.value.message


def test_every_typed_argument_has_a_strictness_case() -> None:
    covered = {(c, a) for c, a, _, _ in STRICT_CASES}
    for name, spec in CATALOGUE.items():
        for field_name, info in spec.args.model_fields.items():
            annotation = str(info.annotation)
            if any(t in annotation for t in ("int", "bool")) and "str | int" not in annotation:
                if field_name == "height":
                    continue  # the same type as width
                assert (name, field_name) in covered, (name, field_name)


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (
            b'{"command":"open_door","args":{"door":0},"id":"48"}',
            "invalid_args",
            "door: must be at least 1",
        ),
        (b'{"command":"open_door","args":{"door":1,"x":2}}', "invalid_args", "x: unknown argument"),
        (b'{"cmd":"open_door","id":"50"}', "bad_request", "command: required; cmd: unknown key"),
        (b'{"command":"refresh","id":1.5}', "bad_request", "id: expected text or a whole number"),
        (b'{"command":"","id":"x"}', "bad_request", "command: must not be empty"),
    ],
)
def test_a_refused_command_says_why_in_our_words(payload: bytes, code: str, message: str) -> None:
    def check() -> None:
        request = parse_command(payload)
        check_command(request, supported={"open_door", "refresh"}, policy=CommandPolicy())

    with pytest.raises(CommandError) as caught:
        check()
    assert (caught.value.code, str(caught.value)) == (code, message)
