"""The conventions every ``pouwchain`` command keeps (issue 13): each option's help names its
default, no bad argument ends in a traceback, ``--version``.

The parser is walked, so a command or option added later is checked without editing this
file. These run the real entry point (`testnet.cli.main`, the installed ``pouwchain``) in this
process with a throwaway datadir and a node address nobody listens on.
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli.main import build_parser
from testnet.cli import main as pouwchain_main
from testnet.cli import register as register_testnet

BAD_VALUES = ("nope", "-1", "nan", "inf", "0x", "1e999", "")


def leaf_commands(parser: argparse.ArgumentParser,
                  path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                argparse.ArgumentParser]]:
    """(command path, parser) of every command that has no subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaf_commands(sub, (*path, name))
            return
    yield path, parser


LEAVES = list(leaf_commands(build_parser((register_testnet,))))
COMMANDS = [" ".join(path) for path, _ in LEAVES]


def option_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings
            and not isinstance(a, argparse._HelpAction | argparse._VersionAction)]


def help_blocks(text: str) -> dict[str, str]:
    """Option string -> its help text, from argparse's --help output."""
    blocks: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = re.findall(r"(?:^|[ ,])(--?[\w-]+)", line.split("  ", 2)[1]
                                 if line.count("  ") > 1 else line)
            for option in current:
                blocks[option] = line
        elif line.startswith("      ") and current:
            for option in current:
                blocks[option] += " " + line.strip()
        else:
            current = []
    return {k: re.sub(r"\s+", " ", v) for k, v in blocks.items()}


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A datadir of its own, a password, and a node address where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    for name in ("POUWCHAIN_WALLET", "POUWCHAIN_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POUWCHAIN_DATADIR", str(tmp_path / "data"))
    monkeypatch.setenv("POUWCHAIN_NODE", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("POUWCHAIN_PASSWORD", "pw")
    monkeypatch.chdir(tmp_path)  # `testnet --dir` defaults to a relative directory
    return tmp_path


def run_pouwchain(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = pouwchain_main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_the_walk_finds_every_command() -> None:
    for command in ("node", "status", "wallet new", "wallet import", "wallet list",
                    "wallet history", "wallet send", "block", "tx", "account", "round",
                    "job submit", "job get", "job list", "ask", "demo", "testnet up",
                    "testnet status", "testnet down"):
        assert command in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_help_names_its_default(command: str, offline: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    parser = dict(zip(COMMANDS, (p for _, p in LEAVES), strict=True))[command]
    code, out, err = run_pouwchain([*command.split(), "--help"], capsys)
    assert code == 0, err
    blocks = help_blocks(out)
    for action in option_actions(parser):
        flag = max(action.option_strings, key=len)
        assert flag in blocks, f"{command} --help does not show {flag}:\n{out}"
        assert "default" in blocks[flag].lower(), \
            f"`pouwchain {command}` {flag}: its help does not name its default: {blocks[flag]}"
    for action in parser._actions:  # positionals: a help line at least
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            assert action.help, f"`pouwchain {command}` {action.dest} has no help"


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_arguments_print_one_line_never_a_traceback(command: str, offline: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Every typed option with each bad value, an unknown option, and junk positionals."""
    parser = dict(zip(COMMANDS, (p for _, p in LEAVES), strict=True))[command]
    path = command.split()
    # an unknown option: argparse may report a missing positional first, still one line
    cases: list[tuple[list[str], str]] = [([*path, "--no-such-option"], "error:")]
    for action in option_actions(parser):
        if action.nargs == 0 or action.type in (None, Path, str):
            continue  # flags, and free text that only the command can judge
        flag = max(action.option_strings, key=len)
        cases += [([*path, f"{flag}={value}"], flag) for value in BAD_VALUES]
    positionals = [a for a in parser._actions if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction)]
    cases.append(([*path, *["no pe!"] * max(1, len(positionals))], "error:"))
    for argv, named in cases:
        code, out, err = run_pouwchain(argv, capsys)
        assert "Traceback" not in out + err, (argv, err)
        assert "internal error" not in err, (argv, err)
        assert code in (1, 2), (argv, code, out, err)
        assert err.strip(), (argv, "no message")
        if code == 2:
            assert named in err, (argv, err)


def test_the_issues_bad_arguments(offline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (offline / "notes.npy").write_text("1 2\n3 4\n")
    code, _, err = run_pouwchain(["ask", "hi", "--timeout", "-1"], capsys)
    assert code == 2 and "--timeout: expected a positive number of seconds, got '-1'" in err
    code, _, err = run_pouwchain(["job", "submit", "notes.npy", "notes.npy", "--escrow", "5"],
                                 capsys)
    assert code == 1
    assert "notes.npy: a text file, not a NumPy .npy array" in err and "pickle" not in err
    code, _, err = run_pouwchain(["wallet", "send", "ab" * 32, "0"], capsys)
    assert code == 2 and "expected a positive integer, got '0'" in err
    code, _, err = run_pouwchain(["wallet", "balance"], capsys)  # no wallet yet, no node
    assert code == 1 and "no wallet at" in err and "wallet new" in err
    code, _, err = run_pouwchain(["status", "--once"], capsys)
    assert code == 1 and err.count("cannot reach the node") == 1


def test_a_malformed_client_toml_is_one_line(offline: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (offline / "data").mkdir()
    (offline / "data" / "client.toml").write_text('nodes = "typo"\n')
    code, _, err = run_pouwchain(["status", "--once"], capsys)
    assert code == 1 and "unknown settings ['nodes']" in err and "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pouwchain(["--version"], capsys)
    assert code == 0 and re.match(r"pouwchain \d+\.\d+\.\d+ \(Python 3\.", out)
