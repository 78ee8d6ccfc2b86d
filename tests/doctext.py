"""The shell commands written in the docs, read the way a user reads them (pure text functions).

A command is a line of a ``sh``/``bash``/``shell`` block, or a ``$ `` line of a ``console`` block
(or of a block without a language), with ``\\`` continuations joined into one line and a trailing
``# comment`` removed. A comment line ``# -> ...`` right after a command, and the lines after a
``$ `` command up to the next one, are the command's documented output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELL = frozenset({"sh", "bash", "shell"})
CONSOLE = frozenset({"console", ""})
PROMPT = "$ "
OUTPUT = "# -> "
_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^#{1,6} ")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language (``""`` when none), heading, first line and lines."""

    lang: str
    section: str
    line: int  # 1-based line of the first line inside the fence
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, its text on one line, its comment and output."""

    where: str  # "docs/operations.md:12"
    text: str
    comment: str
    output: tuple[str, ...]
    section: str


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the heading it is under."""
    found: list[Block] = []
    section = ""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is None:
            if _HEADING.match(line):
                section = line.strip()
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        found.append(Block(fence.group(2), section, index + 2, tuple(lines[index + 1 : end])))
        index = end + 1
    return found


def strip_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: a ``#`` that starts a word outside quotes starts the comment."""
    quote: str | None = None
    escaped = False
    previous = " "
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return line[:index].rstrip(), line[index + 1 :].strip()
        previous = char
    return line.rstrip(), ""


def logical_lines(lines: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(offset, line)`` with ``\\`` continuations joined by one space."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, raw in enumerate(lines):
        line = raw.rstrip()
        if pending is not None:
            line = f"{pending[1]} {line.strip()}"
        start = offset if pending is None else pending[0]
        if line.endswith("\\"):
            pending = (start, line[:-1].rstrip())
            continue
        pending = None
        joined.append((start, line))
    if pending is not None:
        joined.append(pending)
    return joined


def commands(block: Block, path: str) -> list[Command]:
    """The commands of one block; none for a block that is not a shell one."""
    if block.lang in SHELL:
        return _script_commands(block, path)
    if block.lang in CONSOLE:
        return _console_commands(block, path)
    return []


def _script_commands(block: Block, path: str) -> list[Command]:
    found: list[Command] = []
    for offset, line in logical_lines(block.lines):
        stripped = line.strip()
        if stripped.startswith(OUTPUT.strip()) and found:
            last = found[-1]
            output = (*last.output, stripped.removeprefix(OUTPUT.strip()).strip())
            found[-1] = Command(last.where, last.text, last.comment, output, last.section)
            continue
        text, comment = strip_comment(stripped)
        if text:
            where = f"{path}:{block.line + offset}"
            found.append(Command(where, text, comment, (), block.section))
    return found


def _console_commands(block: Block, path: str) -> list[Command]:
    found: list[Command] = []
    for offset, line in logical_lines(block.lines):
        if line.startswith(PROMPT):
            text, comment = strip_comment(line.removeprefix(PROMPT).strip())
            where = f"{path}:{block.line + offset}"
            found.append(Command(where, text, comment, (), block.section))
        elif found and line.strip():
            last = found[-1]
            output = (*last.output, line)
            found[-1] = Command(last.where, last.text, last.comment, output, last.section)
    return found


def file_commands(root: Path, relative: str) -> list[Command]:
    """Every documented command of one Markdown file, ``relative`` to ``root``."""
    text = (root / relative).read_text(encoding="utf-8")
    return [command for block in blocks(text) for command in commands(block, relative)]
