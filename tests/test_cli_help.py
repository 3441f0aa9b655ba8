"""Every command's --help shows its texts as written: nothing is read as Rich markup."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from instract_eval.cli import app


def _commands(command, path: tuple[str, ...] = ()):
    """(argv path, command) for the root, every group and every command under it (typer's
    commands are its own click's, so groups are told by their ``commands``)."""
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, path + (name,))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _without_space(text: str) -> str:
    """Help is wrapped to the terminal: compare texts with all whitespace removed."""
    return re.sub(r"\s+", "", text)


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"score tal", "score classification", "run", "regress", "list models", "leaderboard build"} <= names


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS])
def test_help_shows_every_text_literally(path, command):
    shown = _help(path)
    texts = [command.help or ""] + [param.help or "" for param in command.params if not getattr(param, "hidden", False)]
    for text in texts:
        assert _without_space(text.partition("\f")[0]) in _without_space(shown), text
    # A flag takes no value, so its line shows no value type.
    assert "<bool>" not in shown


@pytest.mark.parametrize("path, literal", [
    (("score", "classification"), "[samples, classes] or [runs, samples, classes] scores (.npy)."),
    (("score", "tal"), '{"results": {video: [{"segment": [s, e], "label", "score"}]}}'),
    (("score", "tal"), '"annotations": [{"segment": [s, e], "label"}]'),
    (("score", "retrieval"), "[texts, videos] similarity matrix (.npy)"),
    (("score",), "rates in [0, 1], ranks 1-based"),
])
def test_square_brackets_survive(path, literal):
    assert _without_space(literal) in _without_space(_help(path))


def test_flags_are_listed_without_a_value_type():
    shown = _help(("run",))
    assert re.search(r"^\s*--no-cache\s+Neither read", shown, re.MULTILINE), shown


def test_score_tal_has_no_tie_policy_option():
    assert "--ties" not in _help(("score", "tal"))
    assert "--ties" in _help(("score", "mcq"))
    result = CliRunner().invoke(app, ["score", "tal", "--ties", "expected", "-p", "p.json"])
    assert result.exit_code == 2 and "No such option" in result.output


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS])
def test_repeatable_options_name_their_value_not_a_python_type(path, command):
    """`--include FILE`, `--model NAME`: an option's line says what to give, never `<list[str]>`."""
    options = _help(path).partition("Options:")[2]
    assert "<list[" not in options, options
