"""Fixtures: a `TestNetwork` per test, always torn down, node logs printed on failure."""

from __future__ import annotations

import argparse
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from node.cli.main import build_parser
from tests.framework.nodes import TestNetwork


def node_command_available() -> bool:
    """Whether `pouwchain node` is registered (the functional tests drive that command)."""


    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return "node" in action.choices
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that run node processes wait (skip) until the `node` command is registered."""
    if node_command_available():
        return
    skip = pytest.mark.skip(reason="waiting for `pouwchain node` in node/cli.py")
    for item in items:
        if "network" in getattr(item, "fixturenames", ()) or "testnet_cli" in item.nodeid:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can see whether the test failed."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def network(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestNetwork]:
    """A fresh network directory; every node it started is stopped afterwards."""
    net = TestNetwork(tmp_path)
    try:
        yield net
    finally:
        failed = any(getattr(request.node, f"rep_{when}", None) is not None
                     and getattr(request.node, f"rep_{when}").failed
                     for when in ("setup", "call"))
        if failed:
            for node in net.nodes:
                print(f"\n----- {node} logs -----\n{node.log_tail()}")
        net.teardown()
