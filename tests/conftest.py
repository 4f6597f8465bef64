"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.framework.chain import Chain, new_chain


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
