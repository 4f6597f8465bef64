"""The epoch hook lives in the transaction transition, so a block builder that applies
transactions one by one (skipping failures, as node/miner.py does) reaches the same root as
block validation, also when the first transaction of an epoch fails."""

from __future__ import annotations

import pytest

from consensus.transition import apply_transaction
from consensus.tx import public_key, sign_transaction
from contracts.bank import Transfer, credit
from contracts.staking import Stake
from contracts.swarm import retained_snapshots
from core.errors import ConsensusError
from core.interfaces import MemoryKV
from core.state import State
from tests.framework.chain import MINER, make_block
from tests.framework.swarmchain import CLIENT_SEED, advance_to, pool_chain
from tests.framework.swarmchain import EPOCH_POOL as POOL


def test_template_and_validation_agree_when_the_epochs_first_transaction_fails() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 9)
    height = 10  # the first block of epoch 1
    bad = sign_transaction(POOL[0], chain_id=1337, nonce=99, fee=10, payload=Stake(amount=1))
    good = sign_transaction(CLIENT_SEED, chain_id=1337,
                            nonce=chain.state.account(public_key(CLIENT_SEED)).nonce, fee=10,
                            payload=Transfer(to=public_key(POOL[1]), amount=5))
    # the template builder's way: each transaction alone, failures skipped, then the reward
    template = State(MemoryKV(dict(chain.kv.items())))
    with pytest.raises(ConsensusError):
        apply_transaction(template, bad, height=height, params=chain.params,
                          parent_id=chain.tip.block_id())
    assert retained_snapshots(template)[-1].epoch == 0  # the failed one left no table
    fees = apply_transaction(template, good, height=height, params=chain.params,
                             parent_id=chain.tip.block_id())
    credit(template, MINER, chain.params.block_subsidy + fees, rule="block.reward_overflow")
    assert retained_snapshots(template)[-1].epoch == 1
    # validation of the block with the surviving transaction
    block = make_block(chain, [good])
    chain.connect(block)
    assert block.header.state_root == template.root() == chain.state.root()


def test_empty_blocks_record_nothing() -> None:
    chain, _ = pool_chain()
    root_before = chain.state.root()
    advance_to(chain, 25)
    assert [s.epoch for s in retained_snapshots(chain.state)] == [0]
    assert chain.state.root() != root_before  # rewards only
