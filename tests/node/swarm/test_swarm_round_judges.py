"""The judge count of a round a node starts (`round_judges`)."""

from __future__ import annotations

from node.swarm.service import round_judges
from swarm.messages import DEFAULT_ROUND_JUDGES, MAX_JUDGES_WITHOUT_DATA_ROOT


def test_a_node_caps_its_rounds_judges_only_without_a_window() -> None:
    assert round_judges(DEFAULT_ROUND_JUDGES, eligible=40, inclusion_window=0) \
        == MAX_JUDGES_WITHOUT_DATA_ROOT
    assert round_judges(DEFAULT_ROUND_JUDGES, eligible=40, inclusion_window=20) \
        == DEFAULT_ROUND_JUDGES
    assert round_judges(DEFAULT_ROUND_JUDGES, eligible=4, inclusion_window=0) == 4
    assert round_judges(5, eligible=40, inclusion_window=0) == 5
