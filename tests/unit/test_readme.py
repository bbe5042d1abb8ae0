"""The README stays true: its commands exist and parse, the newcomer sees two of them after the
prerequisites, and the SDK snippet names no port (tests/integration/test_readme_commands.py
runs the walk-through and the snippet for real)."""

import re
import shlex
from pathlib import Path

import pytest

from personify import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def personify_commands() -> list[str]:
    """Every `personify ...` of the README: in shell blocks, and inline ones written in full."""
    found = [line.split("#")[0].split("personify", 1)[1].strip()
             for block in blocks("sh") for line in block.splitlines() if "personify " in line]
    for inline in re.findall(r"`(?:\.venv/bin/)?personify ([^`]+)`", README):
        found += [part.strip().removeprefix("personify ").strip() for part in inline.split("&&")]
    return [command for command in found  # placeholders (FILE, COMMAND, …) are not commands
            if "…" not in command and not re.search(r"\b[A-Z]{4,}\b", command)]


def test_the_readme_names_commands_to_check():
    commands = personify_commands()
    assert {"send events.jsonl", "credits", "stack status", "stack down"} <= set(commands)
    assert len(commands) >= 8


@pytest.mark.parametrize("command", personify_commands())
def test_every_personify_command_of_the_readme_is_one_the_command_line_takes(command):
    words = shlex.split(command)
    parser = cli.build_parser(cli._command_of(words))
    try:
        parser.parse_args(words)
    except SystemExit as exit_:  # --help and --version exit 0; a wrong command exits 2
        assert exit_.code == 0, command


def test_every_make_target_of_the_readme_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"(?:`|^)make ([a-z][a-z-]*)", README, re.MULTILINE))
    assert named and named <= targets


def test_a_newcomer_reads_the_prerequisites_then_exactly_two_commands():
    prerequisites = README.index("## Prerequisites")
    two = README.index("## Two commands")
    assert prerequisites < two < README.index("## Architecture")
    for needed in ("Python 3.11+", "JDK 17+", "Maven", "Debian", "installed\n  on demand"):
        assert needed in README[prerequisites:two].replace("installed on demand",
                                                             "installed\n  on demand")
    first_block = blocks("sh")[0]
    assert README.index(first_block) > two
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == [
        "make demo", "make test"]


def test_the_sdk_snippet_takes_the_broker_from_the_environment():
    [snippet] = [block for block in blocks("python") if "Personify(" in block]
    assert "with Personify() as events:" in snippet
    assert not re.search(r":\d{2,5}\b", snippet)
