"""How many judges a round may have when it must settle in one transaction (a chain without
an inclusion window): `MAX_JUDGES_WITHOUT_DATA_ROOT` at the node's default answer count."""

from __future__ import annotations

from consensus.genesis import dev_seed
from consensus.tx import MAX_TX_SIZE, sign_transaction
from swarm.messages import DEFAULT_ROUND_JUDGES, MAX_JUDGES_WITHOUT_DATA_ROOT
from tests.framework.chain import new_chain, undelayed_config
from tests.framework.swarmchain import apply_settlement, payload_for, setup_round

DEFAULT_ANSWERS = 4  # node.config.NodeConfig.swarm_answers


def full_settlement_size(*, answers: int, judges: int) -> int:
    """Encoded size of the signed full settlement of a real drawn round; it is also applied,
    so the size measured is that of a settlement the chain accepts."""
    chain = new_chain(undelayed_config())
    r = setup_round(chain, n=answers, judges=judges)
    payload = payload_for(chain, r)
    apply_settlement(chain, payload)
    tx = sign_transaction(dev_seed(2), chain_id=chain.params.chain_id, nonce=0, fee=10,
                          payload=payload)
    return len(tx.encode())


def test_the_judge_cap_without_a_window_settles_in_one_transaction() -> None:
    # the settlement duty switches to a data root above MAX_TX_SIZE - 256 (when it can)
    assert full_settlement_size(answers=DEFAULT_ANSWERS,
                                judges=MAX_JUDGES_WITHOUT_DATA_ROOT) <= MAX_TX_SIZE - 256


def test_the_default_judge_count_needs_the_data_root() -> None:
    # why the cap exists: the default 18 judges cannot settle in one transaction (16 already not)
    assert MAX_JUDGES_WITHOUT_DATA_ROOT < DEFAULT_ROUND_JUDGES
    assert full_settlement_size(answers=DEFAULT_ANSWERS, judges=16) > MAX_TX_SIZE

