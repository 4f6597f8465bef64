"""Fixtures shared by every test folder."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings

from tests.framework.chain import Chain, new_chain

# Property tests draw the same examples in every run (derandomize) and keep no example
# database between runs: a suite whose examples change from run to run fails only when one
# draws a bad input, which is a flake (issue 12: a coalition property test failed on one
# drawn trial, 8045284, in a helper's run and passed in the suite's). Open-ended random
# search is bench/fuzz.py's job.
settings.register_profile("suite", derandomize=True, database=None)
settings.load_profile("suite")

#: Signals whose handling every child process inherits (SIG_IGN survives exec) and that the
#: suite sends to its children: a test must leave them as it found them.
INHERITED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def pytest_configure(config: pytest.Config) -> None:
    """Give the suite's children a working Ctrl-C, however the suite was started.

    A shell without job control (a script's ``make test &``, CI wrappers) starts background
    jobs with SIGINT ignored, and an ignored signal stays ignored across fork and exec:
    Python then installs no KeyboardInterrupt handler in any child, so the tests that send
    SIGINT to a CLI saw it ignored and waited out their timeouts (issue 12: the status CLI
    "did not exit within 120 s of SIGINT" in a fresh-clone run that passed alone). Restoring
    Python's default here makes every child start with SIGINT at its default.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def signals_left_as_found() -> Iterator[None]:
    """A test that leaves SIGINT/SIGTERM ignored (or handled) changes every later child's
    behaviour: an order-dependent flake. Restore them and fail the test that did it."""
    before = {sig: signal.getsignal(sig) for sig in INHERITED_SIGNALS}
    yield
    changed = [sig.name for sig, handler in before.items() if signal.getsignal(sig) != handler]
    for sig, handler in before.items():
        signal.signal(sig, handler)
    assert not changed, f"the test left {changed} changed (restore them: children inherit)"


@pytest.fixture
def chain() -> Chain:
    """A fresh dev chain in memory (genesis only)."""
    return new_chain()


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    """The miner sizes torch's thread pool (process-wide in some builds): restore it."""

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matmuls: one thread is much faster than two on a loaded machine (no spinning)."""

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
