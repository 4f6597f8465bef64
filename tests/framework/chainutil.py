"""Building chains and forks for node tests, on top of ``tests/framework/chain``."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.block import Block
from consensus.genesis import dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from consensus.validation import connect_block
from contracts import Transfer
from core.interfaces import MemoryKV
from core.state import State
from tests.framework.chain import Chain, make_block

# Far enough in the future that no dev block is "too far ahead of the clock".
NOW = 2_000_000_000


def fork(chain: Chain) -> Chain:
    """An independent copy of ``chain`` (state and headers) to grow a competing branch."""
    kv = MemoryKV(dict(chain.kv.data))
    return Chain(config=chain.config, kv=kv, state=State(kv), headers=list(chain.headers))


def extend(chain: Chain, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
    """Mine the next block on ``chain`` and connect it to the in-memory state."""
    block = make_block(chain, txs, seed=seed)
    connect_block(chain.state, block, params=chain.params)
    chain.headers.append(block.header)
    return block


def transfer(index: int, nonce: int, *, to_index: int = 100, amount: int = 1, fee: int = 10,
             chain_id: int = 1337) -> Transaction:
    """A transfer from dev account ``index`` to dev account ``to_index``."""
    return sign_transaction(dev_seed(index), chain_id=chain_id, nonce=nonce, fee=fee,
                            payload=Transfer(to=public_key(dev_seed(to_index)), amount=amount))


def state_items(chain: Chain) -> dict[bytes, bytes]:
    """Every state key of an in-memory chain (meta keys included)."""
    return dict(chain.kv.data)
