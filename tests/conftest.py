"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from tests.framework.chain import Chain, new_chain


@pytest.fixture
def chain() -> Chain:
    return new_chain()
