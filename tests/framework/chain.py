"""Test chains: dev genesis over a dict, a real (tiny) PoUW miner for blocks, forks, and the
transactions and state look-ups tests build on.

One implementation shared by the tests and the vector generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from consensus.block import Block, BlockHeader, header_commitment, transactions_root
from consensus.genesis import GenesisConfig, build_genesis, dev_config, dev_seed
from consensus.transition import apply_block_transactions, apply_transaction
from consensus.tx import Transaction, public_key, sign_transaction
from consensus.validation import connect_block, validate_block
from contracts import Payload, Transfer
from contracts.base import RECENT_BLOCK_COUNT
from core.interfaces import KeyValueStore, MemoryKV
from core.params import ChainParams
from core.state import BlockUndo, State
from pouw import mine_product, operand_roots

SHAPE = (8, 64, 8, 16)  # m, k, n, r: the smallest shape pouw accepts, mines in milliseconds
MINER_SEED = dev_seed(99)
MINER = public_key(MINER_SEED)
CHAIN_ID = 1337  # the dev chain's id
# Far enough in the future that no dev block is "too far ahead of the clock".
NOW = 2_000_000_000


@dataclasses.dataclass
class Chain:
    """A dev chain in memory: state, params and the headers connected so far."""

    config: GenesisConfig
    kv: MemoryKV
    state: State
    headers: list[BlockHeader]

    @property
    def params(self) -> ChainParams:
        return self.config.params

    @property
    def tip(self) -> BlockHeader:
        return self.headers[-1]

    def timestamps(self) -> list[int]:
        return [h.timestamp for h in self.headers[-11:]]

    def recent_ids(self) -> tuple[bytes, ...]:
        """The ids a child of the tip is applied with, newest first (as the chain store
        gives them: calibration seeds, swarm beacon blocks)."""
        return tuple(h.block_id() for h in reversed(self.headers[-RECENT_BLOCK_COUNT:]))

    def validate(self, block: Block, *, now: int | None = None) -> BlockUndo:
        """Full validation against the tip, with dev difficulty (the params' initial target)."""
        return validate_block(
            self.state,
            block,
            parent=self.tip,
            recent_timestamps=self.timestamps(),
            now=block.header.timestamp if now is None else now,
            expected_target=self.params.initial_target,
            params=self.params,
            recent_block_ids=self.recent_ids() if block.header.parent_hash ==
            self.tip.block_id() else (),
        )

    def connect(self, block: Block, *, now: int | None = None) -> BlockUndo:
        """Validate and make ``block`` the new tip."""
        undo = self.validate(block, now=now)
        self.headers.append(block.header)
        return undo


# The dev genesis overrides of a chain without the swarm's two delays (`undelayed_config`):
# the tie beacon's (k = 0) and the inclusion window (W = 0); the vector generator names them
# in a vector's network.
UNDELAYED: dict[str, Any] = {"swarm_beacon_delay": 0, "swarm_inclusion_window": 0}


def undelayed_config(**overrides: Any) -> GenesisConfig:
    """The dev genesis (with ``overrides``) without the swarm's delays, for tests whose subject
    is neither: the tie beacon is the block a request names (``swarm_beacon_delay`` k = 0,
    docs/swarm.md §5.2a "Ties") and a full settlement pays out in its own block
    (``swarm_inclusion_window`` W = 0, §7a). With the defaults no settlement is valid before
    block h + k and none pays before W blocks later, so a test that settles a round at or just
    after its draw and checks its pay (`tests.framework.swarmchain.setup_round`, the in-process
    swarms of `tests.framework.swarm.registered_swarm`) would first have to build k + W blocks
    that are not what it tests, and the rounds' heights, epochs and reputations with them. The
    beacon's and the window's own tests set theirs > 0 (through ``overrides``)."""
    return dev_config(**(UNDELAYED | overrides))


def new_chain(config: GenesisConfig | None = None) -> Chain:
    config = config or dev_config()
    kv = MemoryKV()
    state = State(kv)
    genesis = build_genesis(config, state)
    return Chain(config=config, kv=kv, state=state, headers=[genesis.header])


def tx(
    index: int, nonce: int, payload: Payload, *, fee: int = 10, chain_id: int = CHAIN_ID
) -> Transaction:
    """A transaction signed by dev account ``index``."""
    return sign_transaction(
        dev_seed(index), chain_id=chain_id, nonce=nonce, fee=fee, payload=payload
    )


def post_state_root(
    chain: Chain, txs: Sequence[Transaction], *, height: int, miner: bytes
) -> bytes:
    """The root after applying ``txs``, computed on the chain's state and rolled back."""
    chain.state.begin_block()
    try:
        apply_block_transactions(chain.state, txs, height=height, miner=miner, params=chain.params,
                                 parent_id=chain.tip.block_id(),
                                 recent_block_ids=chain.recent_ids())
        return chain.state.root()
    finally:
        chain.state.abort_block()


def mine_header(
    header: BlockHeader, *, seed: int = 0, cert_target: int | None = None
) -> BlockHeader:
    """Fill in operand roots and shape, then mine a certificate for the header's commitment.

    ``cert_target`` mines at another target than the header's (to test that rule).
    """
    m, k, n, r = SHAPE
    rng = np.random.default_rng(seed)
    a = rng.integers(-64, 64, size=(m, k), dtype=np.int8)
    b = rng.integers(-64, 64, size=(k, n), dtype=np.int8)
    root_a, root_b = operand_roots(a, b)
    header = dataclasses.replace(header, root_a=root_a, root_b=root_b, m=m, k=k, n=n, r=r,
                                 certificate=b"")
    target = header.target if cert_target is None else cert_target
    result = mine_product(a, b, commitment=header_commitment(header), target=target, r=r)
    if not result.certificates:
        raise RuntimeError("no winning ticket: use MAX_TARGET in tests")
    return dataclasses.replace(header, certificate=result.certificates[0].encode())


def make_block(
    chain: Chain,
    txs: Sequence[Transaction] = (),
    *,
    timestamp: int | None = None,
    miner: bytes = MINER,
    seed: int = 0,
    **header_overrides: object,
) -> Block:
    """A valid next block on the chain's tip (unless ``header_overrides`` break it).

    Overrides apply before mining, so the certificate still matches the header; a
    ``state_root`` override also skips applying ``txs`` (they may be invalid).
    """
    parent = chain.tip
    height = parent.height + 1
    header = BlockHeader(
        version=chain.params.block_version,
        chain_id=chain.params.chain_id,
        height=height,
        parent_hash=parent.block_id(),
        timestamp=parent.timestamp + chain.params.target_block_time if timestamp is None
        else timestamp,
        target=chain.params.initial_target,
        tx_root=transactions_root(txs),
        state_root=header_overrides.pop("state_root", None)  # type: ignore[arg-type]
        or post_state_root(chain, txs, height=height, miner=miner),
        miner=miner,
        root_a=bytes(32),
        root_b=bytes(32),
        m=0,
        k=0,
        n=0,
        r=0,
    )
    header = dataclasses.replace(header, **header_overrides)  # type: ignore[arg-type]
    return Block(header=mine_header(header, seed=seed), transactions=tuple(txs))


def fork(chain: Chain) -> Chain:
    """An independent copy of ``chain`` (state and headers) to grow a competing branch."""
    kv = MemoryKV(dict(chain.kv.data))
    return Chain(config=chain.config, kv=kv, state=State(kv), headers=list(chain.headers))


def extend(chain: Chain, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
    """Mine the next block on ``chain`` and connect it to the in-memory state."""
    block = make_block(chain, txs, seed=seed)
    connect_block(chain.state, block, params=chain.params, recent_block_ids=chain.recent_ids())
    chain.headers.append(block.header)
    return block


def addr(index: int) -> bytes:
    """The address of dev account ``index``."""
    return public_key(dev_seed(index))


def transfer(sender: int, nonce: int, to: int | bytes | str = 100, amount: int = 1, *,
             fee: int = 10, chain_id: int = CHAIN_ID) -> Transaction:
    """A transfer from dev account ``sender`` to ``to``: a dev account index, an address, or
    an address in hex."""
    if isinstance(to, int):
        to = addr(to)
    elif isinstance(to, str):
        to = bytes.fromhex(to)
    return sign_transaction(dev_seed(sender), chain_id=chain_id, nonce=nonce, fee=fee,
                            payload=Transfer(to=to, amount=amount))


def apply(target: Chain | State, t: Transaction, height: int = 1) -> int:
    """Apply one transaction to a chain's state (or a bare dev-genesis `State`); its fee."""
    if isinstance(target, Chain):
        return apply_transaction(target.state, t, height=height, params=target.params)
    return apply_transaction(target, t, height=height, params=dev_config().params)


class _StateSource(Protocol):
    def state_view(self) -> KeyValueStore: ...


def balance(source: State | _StateSource, index: int) -> int:
    """Dev account ``index``'s balance in a `State` or at a chain store's tip."""
    state = source if isinstance(source, State) else State(source.state_view())
    return state.account(addr(index)).balance


def state_items(source: Chain | MemoryKV) -> dict[bytes, bytes]:
    """Every state key of an in-memory chain or store (meta keys included)."""
    if isinstance(source, Chain):
        return dict(source.kv.data)
    return dict(source.items())
