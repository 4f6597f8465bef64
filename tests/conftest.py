"""Fixtures shared by every test folder."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings
from xdist.scheduler import LoadScopeScheduling

from tests.framework.chain import Chain, new_chain
from tests.framework.llm import SMOLLM2_FILES, convert_once

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


class TestFileScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    """``make test``'s pytest-xdist schedule: each test file runs whole, in order, on one
    worker (its module fixtures are made once, its tests keep the order they were written
    in), and the files of `SMOLLM2_FILES` run as one unit, one after another, so two
    language-model tests never share the CPU (their waits are sized for one at a time).

    The xdist_group mark cannot say this: pytest-xdist 3.8 tags a grouped test by assigning
    ``item._nodeid``, which pytest 9 no longer reads (its node id lives in ``_id``), so
    ``--dist loadgroup`` silently ungroups every test. A scope is what the controller sees of
    a test, its node id: the file path, or the group's name."""

    __test__ = False  # its name starts with "Test": keep pytest from collecting it

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return "smollm2" if path in SMOLLM2_FILES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling:
    """Every distributed run (``pytest -n N``) schedules by test file (`TestFileScheduling`,
    whatever ``--dist`` says); ``make test`` adds ``--no-loadscope-reorder`` so the files go
    out in collection order, the SmolLM2 unit with the first of them (tests/bench)."""
    return TestFileScheduling(config, log)


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


@pytest.fixture(scope="session")
def llm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped SmolLM2's conversion cache, made once per session (`tests.framework.llm`);
    tests read it, never write it."""
    return convert_once(tmp_path_factory.mktemp("llm-cache"))
