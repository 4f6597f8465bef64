"""Finality test chains: validators with BLS keys, a state advanced block by block, votes.

The finality rules read only a block's height and its parent's id (`TxContext`), so these
chains skip PoUW and give block ``h`` the synthetic id ``H("pouw/testblock", branch ‖ h)``;
each block runs the real begin-block hooks, applies its transactions one by one like the
miner's template (a failing one is recorded with its rule and skipped), then pays the
reward. One implementation shared by the rule tests and the vector generator
(tests/vectors/consensus/finality/generate.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from consensus.genesis import dev_seed
from consensus.transition import apply_transaction, begin_block, pay_block_reward
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Payload
from contracts.finality import (
    FinalityStatus,
    FinalityVotes,
    ValidatorSet,
    bitfield_of,
    finality_status,
    validator_set,
)
from core.bls import BACKEND, derive_secret
from core.encoding import tagged_hash
from core.errors import ConsensusError
from core.interfaces import MemoryKV
from core.params import MAX_TARGET, ChainParams
from core.records import Account, StakeRecord
from core.state import State
from core.votes import Checkpoint, SignedVote, VoteData, vote_signing_root

CHAIN_ID = 1337
MINER = public_key(dev_seed(99))
RELAYER_SEED = dev_seed(300)  # sends aggregates and evidence
BALANCE = 10**12


def finality_params(**overrides: int) -> ChainParams:
    """Dev-like parameters with 2-block finality epochs (a checkpoint every other block)."""
    values: dict[str, int] = {"chain_id": CHAIN_ID, "target_block_time": 10,
                              "initial_target": MAX_TARGET, "unbonding_delay": 5,
                              "finality_epoch_blocks": 2}
    values.update(overrides)
    return ChainParams(**values)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Validator:
    """A test validator: its Ed25519 account seed and its BLS secret."""

    index: int

    @property
    def seed(self) -> bytes:
        return dev_seed(200 + self.index)

    @property
    def address(self) -> bytes:
        return public_key(self.seed)

    @property
    def secret(self) -> int:
        return derive_secret(tagged_hash(b"pouw/testbls", self.index.to_bytes(4, "big")))

    @property
    def pubkey(self) -> bytes:
        return BACKEND.secret_to_pubkey(self.secret)


def block_id(height: int, branch: bytes = b"") -> bytes:
    return tagged_hash(b"pouw/testblock", branch + height.to_bytes(8, "big"))


@dataclasses.dataclass
class FinalityChain:
    """A state at ``height`` whose blocks have synthetic ids (block 0 is genesis)."""

    params: ChainParams
    state: State
    height: int = 0
    branch: bytes = b""

    @property
    def tip_id(self) -> bytes:
        return block_id(self.height, self.branch)

    def status(self) -> FinalityStatus | None:
        return finality_status(self.state)

    def members(self, epoch: int) -> ValidatorSet | None:
        return validator_set(self.state, epoch)

    def checkpoint(self, epoch: int, branch: bytes | None = None) -> Checkpoint:
        """The checkpoint of ``epoch`` on this chain's branch (whether recorded or not)."""
        height = epoch * self.params.finality_epoch_blocks
        return Checkpoint(epoch=epoch, root=block_id(height, self.branch if branch is None
                                                      else branch))

    def transaction(self, seed: bytes, payload: Payload, *, nonce_offset: int = 0) -> Transaction:
        nonce = self.state.account(public_key(seed)).nonce + nonce_offset
        return sign_transaction(seed, chain_id=self.params.chain_id, nonce=nonce, fee=0,
                                payload=payload)

    def block(self, txs: Sequence[Transaction] = ()) -> list[str]:
        """Connect the next block; each transaction's outcome: ``"ok"`` or the broken rule."""
        height = self.height + 1
        parent = self.tip_id
        outcomes = []
        self.state.begin_block()
        begin_block(self.state, height=height, miner=MINER, params=self.params, parent_id=parent)
        for tx in txs:
            try:
                apply_transaction(self.state, tx, height=height, params=self.params,
                                  parent_id=parent)
                outcomes.append("ok")
            except ConsensusError as exc:
                outcomes.append(exc.rule)
        pay_block_reward(self.state, miner=MINER, fees=0, params=self.params)
        self.state.end_block()
        self.height = height
        return outcomes


def new_finality_chain(stakes: Sequence[int], *, params: ChainParams | None = None
                       ) -> tuple[FinalityChain, list[Validator]]:
    """A chain whose validator accounts ``0..len(stakes)-1`` hold a balance and the bonded
    ``stakes`` at genesis (not yet registered), plus a funded relayer."""
    validators = [Validator(i) for i in range(len(stakes))]
    state = State(MemoryKV())
    for v, stake in zip(validators, stakes, strict=True):
        state.set_account(v.address, Account(balance=BALANCE))
        if stake:
            state.set_stake(v.address, StakeRecord(bonded=stake))
    state.set_account(public_key(RELAYER_SEED), Account(balance=BALANCE))
    state.commit()
    return FinalityChain(params=params or finality_params(), state=state), validators


def signed_vote(v: Validator, data: VoteData, *, chain_id: int = CHAIN_ID) -> SignedVote:
    return SignedVote(validator=v.address, data=data,
                      signature=BACKEND.sign(v.secret, vote_signing_root(data, chain_id=chain_id)))


def aggregate(chain: FinalityChain, voters: Sequence[Validator], data: VoteData, *,
              set_epoch: int | None = None, signers: Sequence[Validator] | None = None,
              bits: bytes | None = None) -> FinalityVotes:
    """An aggregate of ``voters``' votes for ``data`` over the target epoch's set (or
    ``set_epoch``'s); ``signers``/``bits`` forge a mismatch for the invalid classes."""
    members = chain.members(data.target.epoch if set_epoch is None else set_epoch)
    assert members is not None, "no validator set recorded for that epoch"
    addresses = [e.address for e in members.entries]
    indices = sorted(addresses.index(v.address) for v in voters)
    signing = voters if signers is None else signers
    root = vote_signing_root(data, chain_id=chain.params.chain_id)
    signature = BACKEND.aggregate([BACKEND.sign(v.secret, root) for v in signing])
    return FinalityVotes(data=data, bits=bitfield_of(indices, len(addresses)) if bits is None
                         else bits, signature=signature)
