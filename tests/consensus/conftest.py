"""Fixtures for consensus tests."""

from __future__ import annotations

import pytest

from tests.consensus.helpers import Chain, new_chain


@pytest.fixture
def chain() -> Chain:
    return new_chain()
