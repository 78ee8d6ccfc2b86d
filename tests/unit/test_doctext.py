"""Reading commands out of Markdown the way a user reads them (tests/doctext.py)."""

from __future__ import annotations

import pytest

from tests.doctext import Block, blocks, commands, logical_lines, strip_comment


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("make demo    # simulated devices", ("make demo", "simulated devices")),
        ("mosquitto_sub -t 'bridge/#' -v", ("mosquitto_sub -t 'bridge/#' -v", "")),
        ('echo "a # b" # c', ('echo "a # b"', "c")),
        (
            """export BRIDGE_MQTT='{"qos": 0}'   # a section""",
            ("""export BRIDGE_MQTT='{"qos": 0}'""", "a section"),
        ),
        ("curl x | grep -E 'a|b'", ("curl x | grep -E 'a|b'", "")),
        ("echo a#b", ("echo a#b", "")),
        (r"echo \# not a comment", (r"echo \# not a comment", "")),
        ("# a comment line", ("", "a comment line")),
        ("", ("", "")),
    ],
)
def test_strip_comment(line: str, expected: tuple[str, str]) -> None:
    assert strip_comment(line) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("a", "b"), [(0, "a"), (1, "b")]),
        (("a \\", "    b \\", "  c", "d"), [(0, "a b c"), (3, "d")]),
        (("a \\",), [(0, "a")]),  # a block that ends inside a continuation
    ],
)
def test_logical_lines(lines: tuple[str, ...], expected: list[tuple[int, str]]) -> None:
    assert logical_lines(lines) == expected


def test_blocks_know_their_language_section_and_line() -> None:
    text = "# Title\n\n## Part\n\n```sh\nmake demo\n```\n\ntext\n\n````\n```\nx\n````\n"
    assert blocks(text) == [
        Block("sh", "## Part", 6, ("make demo",)),
        Block("", "## Part", 12, ("```", "x")),
    ]


def test_a_heading_inside_a_block_is_not_a_section() -> None:
    text = "## A\n```sh\n# not a heading\nls\n```\n```sh\npwd\n```\n"
    assert [block.section for block in blocks(text)] == ["## A", "## A"]


def test_script_commands_take_the_arrow_comment_as_output() -> None:
    block = Block(
        "sh",
        "## S",
        10,
        (
            "# open a door",
            "mosquitto_pub -t a \\",
            "  -m '{}'          # never -r",
            '# -> {"status":"ok"}',
            "",
            "# -> output of nothing before it? no: attached to the last command",
            "ls",
        ),
    )
    found = commands(block, "docs/x.md")
    assert [(c.where, c.text, c.comment, c.output) for c in found] == [
        (
            "docs/x.md:11",
            "mosquitto_pub -t a -m '{}'",
            "never -r",
            ('{"status":"ok"}', "output of nothing before it? no: attached to the last command"),
        ),
        ("docs/x.md:16", "ls", "", ()),
    ]


def test_console_commands_are_the_prompt_lines_and_their_output() -> None:
    block = Block(
        "console",
        "## C",
        3,
        ("$ bridge check-config --config bad.yaml; echo $?", "mqtt.qos: bad", "2", "", "$ ls"),
    )
    found = commands(block, "docs/c.md")
    assert [(c.where, c.text, c.output) for c in found] == [
        ("docs/c.md:3", "bridge check-config --config bad.yaml; echo $?", ("mqtt.qos: bad", "2")),
        ("docs/c.md:7", "ls", ()),
    ]


@pytest.mark.parametrize("lang", ["json", "yaml", "python", "conf"])
def test_other_blocks_hold_no_commands(lang: str) -> None:
    assert commands(Block(lang, "", 1, ("$ not a command", "ls")), "x.md") == []


def test_a_block_without_language_has_commands_only_on_prompt_lines() -> None:
    block = Block(
        "", "", 1, ("bridge/front-door/state  {...}", "$ bridge --version", "bridge 0.1.0")
    )
    found = commands(block, "x.md")
    assert [(c.text, c.output) for c in found] == [("bridge --version", ("bridge 0.1.0",))]
