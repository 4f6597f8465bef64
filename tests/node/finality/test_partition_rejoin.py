"""A node on the minority side of a partition adopts the majority's chain (real LevelDB,
blocks mined with real PoUW certificates, full validation in the chain store).

Four validators of equal stake; the minority holds one and mines the longer (heavier) chain,
the majority holds three, so only its aggregates justify and finalize. The minority's store,
shown the majority's lighter chain afterwards, evaluates it, prefers it for its higher
justified checkpoint (docs/finality.md §8) and ends on the majority's finalized checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from consensus.block import Block
from consensus.finality import (
    aggregate_votes,
    finality_status,
    finalized_block,
    registration_payload,
    sign_vote,
    vote_duty,
)
from consensus.genesis import dev_config
from consensus.tx import Transaction, sign_transaction
from contracts import Payload
from core.errors import ForkChoiceError, HeaderError
from node.chain.chainstore import CONFLICTS_WITH_FINALIZED, ChainStore
from node.p2p.policy import Verdict, classify
from tests.framework.chain import NOW, Chain, extend, fork, new_chain
from tests.framework.finalitykit import Validator

VALIDATORS = [Validator(i) for i in range(4)]
EPOCH_BLOCKS = 2


def validator_tx(chain: Chain, v: Validator, payload: Payload) -> Transaction:
    nonce = chain.state.account(v.address).nonce
    return sign_transaction(v.seed, chain_id=chain.params.chain_id, nonce=nonce, fee=10,
                            payload=payload)


def grow(chain: Chain, voters: Sequence[Validator], blocks: int, *, seed: int) -> list[Block]:
    """Mine ``blocks`` blocks on ``chain``; each carries the aggregate of ``voters``' votes
    when a vote is due (sent by the first voter)."""
    mined = []
    for n in range(blocks):
        height = chain.tip.height
        data = vote_duty(chain.state, height=height, params=chain.params)
        txs = []
        if data is not None:
            votes = [sign_vote(v.secret, data, validator=v.address,
                               chain_id=chain.params.chain_id) for v in voters]
            payload = aggregate_votes(chain.state, votes, height=height + 1, params=chain.params)
            if payload is not None:
                txs.append(validator_tx(chain, voters[0], payload))
        mined.append(extend(chain, txs, seed=seed + n))
    return mined


def justified_epoch(chain: Chain) -> int:
    status = finality_status(chain.state)
    return 0 if status is None else status.last_justified.epoch


def test_the_minority_adopts_the_lighter_chain_that_justified_more(tmp_path: Path) -> None:
    config = dev_config(finality_epoch_blocks=EPOCH_BLOCKS,
                        balances={v.address.hex(): 10**9 for v in VALIDATORS},
                        stakes={v.address.hex(): 1000 for v in VALIDATORS})
    shared = new_chain(config)
    blocks = [extend(shared, [validator_tx(shared, v, registration_payload(v.secret))
                              for v in VALIDATORS], seed=1)]
    blocks += grow(shared, VALIDATORS, 5, seed=10)  # all four vote: something is justified
    before = justified_epoch(shared)
    assert before >= 1
    majority, minority = fork(shared), fork(shared)
    majority_blocks = grow(majority, VALIDATORS[:3], 6, seed=100)
    minority_blocks = grow(minority, VALIDATORS[3:], 10, seed=200)  # longer: more work
    # the scenario: the majority justified and finalized past the fork, the minority did not
    assert justified_epoch(majority) > before == justified_epoch(minority)
    majority_status = finality_status(majority.state)
    assert majority_status is not None
    final_height = majority_status.finalized.epoch * EPOCH_BLOCKS
    assert final_height > shared.tip.height
    assert finalized_block(majority_status) == majority.headers[final_height].block_id()

    store = ChainStore.open(tmp_path / "minority", genesis=config)
    for block in blocks + minority_blocks:
        store.add_block(block, now=NOW)
    assert store.tip_id == minority.tip.block_id()
    heavy_work = store.tree.tip_entry.cumulative_work
    for block in majority_blocks:  # healed: the majority's chain arrives
        store.add_block(block, now=NOW)
    assert store.tip_id == majority.tip.block_id()
    assert store.tree.tip_entry.cumulative_work < heavy_work  # lighter, yet it won
    assert store.state_root() == majority.state.root()
    assert store.finalized.block_id == majority.headers[final_height].block_id()
    # more minority mining now changes nothing: it is off the finalized checkpoint's chain
    store.close()
    # a restart keeps the choice (justified epochs are stored with the tree)
    reopened = ChainStore.open(tmp_path / "minority", genesis=config)
    assert reopened.tip_id == majority.tip.block_id()
    reopened.close()


def test_with_equal_justification_the_heavier_side_branch_still_wins(tmp_path: Path) -> None:
    """Evaluating a side branch does not move the tip unless the branch justified more."""
    config = dev_config(finality_epoch_blocks=EPOCH_BLOCKS,
                        balances={v.address.hex(): 10**9 for v in VALIDATORS},
                        stakes={v.address.hex(): 1000 for v in VALIDATORS})
    shared = new_chain(config)
    blocks = [extend(shared, [validator_tx(shared, v, registration_payload(v.secret))
                              for v in VALIDATORS], seed=1)]
    blocks += grow(shared, VALIDATORS, 5, seed=10)
    a, b = fork(shared), fork(shared)
    a_blocks = grow(a, VALIDATORS[3:], 6, seed=300)  # one voter: carries votes, justifies none
    b_blocks = grow(b, VALIDATORS[2:], 3, seed=400)  # two voters: none either
    assert justified_epoch(a) == justified_epoch(b)
    store = ChainStore.open(tmp_path / "db", genesis=config)
    for block in blocks + a_blocks + b_blocks:
        store.add_block(block, now=NOW)
    assert store.tip_id == a.tip.block_id()
    assert store.state_root() == a.state.root()
    store.close()


def test_a_chain_off_our_finalized_checkpoint_is_refused_without_a_ban() -> None:
    """Its sender may be an honest node from the other side of a partition that still has to
    fetch our chain: the p2p policy ignores the block (no ban, no disconnect)."""
    refusal = ForkChoiceError(CONFLICTS_WITH_FINALIZED, "off the finalized chain")
    assert classify(refusal) == (Verdict.IGNORE, CONFLICTS_WITH_FINALIZED)
    assert classify(HeaderError("header.target", "x"))[0] is Verdict.REJECT  # others still ban
