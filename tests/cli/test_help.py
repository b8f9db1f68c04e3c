import argparse

import pytest

from sqft.cli import COMMANDS, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_registered():
    assert set(_subparsers(build_parser())) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_explains_every_flag(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert command in capsys.readouterr().out
    sub = _subparsers(build_parser())[command]
    undocumented = [a.dest for a in sub._actions if a.help in (None, "") and a.dest != "help"]
    assert undocumented == []
