"""The vote pool, the validator's signing guard and its key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.votes import Checkpoint, SignedVote, VoteData
from node.client.wallet import FAST, WrongPasswordError
from node.finality.keys import (
    KEYSTORE_FILE,
    PASSWORD_ENV,
    RAW_KEY_FILE,
    ValidatorKeyError,
    keystore_document,
    load_validator_seed,
    write_keystore,
    write_raw_key,
)
from node.finality.pool import VotePool
from node.finality.service import may_sign


def cp(epoch: int, tag: int = 0) -> Checkpoint:
    return Checkpoint(epoch=epoch, root=bytes([epoch, tag]) * 16)


def vote(validator: int, source: int, target: int, tag: int = 0) -> SignedVote:
    return SignedVote(validator=bytes([validator]) * 32,
                      data=VoteData(source=cp(source), target=cp(target, tag)),
                      signature=bytes(96))


def test_pool_keeps_one_vote_per_validator_and_link_and_prunes_old_targets() -> None:
    pool = VotePool(max_links=3)
    assert pool.add(vote(1, 0, 1)) and pool.add(vote(2, 0, 1))
    assert not pool.add(vote(1, 0, 1))  # the same vote again
    assert pool.add(vote(1, 1, 2))
    assert len(pool) == 3
    assert [(c.target_epoch, c.votes) for c in pool.counts()] == [(2, 1), (1, 2)]
    assert {v.validator[0] for v in pool.votes(min_target_epoch=2)} == {1}
    assert pool.prune(below_epoch=2) == 2
    assert len(pool) == 1 and pool.votes(min_target_epoch=0) == [vote(1, 1, 2)]
    # bounded: the oldest target's link goes first
    for target in (3, 4, 5):
        pool.add(vote(1, 2, target))
    assert sorted(c.target_epoch for c in pool.counts()) == [3, 4, 5]


def test_pool_records_a_double_vote_as_evidence() -> None:
    pool = VotePool()
    first, second = vote(7, 0, 3, tag=1), vote(7, 0, 3, tag=2)
    assert pool.add(first) and pool.add(second)
    assert pool.conflicts == [(first, second)]


def test_a_validator_never_signs_a_slashable_pair() -> None:
    last = vote(1, 2, 4)
    assert may_sign(None, last.data)
    assert may_sign(last, vote(1, 4, 5).data)
    assert not may_sign(last, vote(1, 2, 4, tag=9).data)  # double vote: same target epoch
    assert not may_sign(last, vote(1, 3, 3).data)  # an older target
    assert not may_sign(last, vote(1, 1, 6).data)  # surrounds the last vote


def test_validator_keys_raw_and_sealed(tmp_path: Path) -> None:
    identity = bytes(range(32))
    assert load_validator_seed(tmp_path, identity=identity, environ={}) is None
    seed = os.urandom(32)
    write_raw_key(tmp_path, seed)
    assert stat.S_IMODE((tmp_path / RAW_KEY_FILE).stat().st_mode) == 0o600
    raw = load_validator_seed(tmp_path, identity=identity, environ={})
    assert raw is not None and raw.address == identity and raw.seed == seed
    assert seed.hex() not in repr(raw)
    # a sealed keystore wins, unlocked by the CLI's password variable
    account = bytes([9]) * 32
    other = os.urandom(32)
    write_keystore(tmp_path / KEYSTORE_FILE,
                   keystore_document(address=account, seed=other, password="pw", limits=FAST))
    assert stat.S_IMODE((tmp_path / KEYSTORE_FILE).stat().st_mode) == 0o600
    assert other.hex() not in (tmp_path / KEYSTORE_FILE).read_text()
    sealed = load_validator_seed(tmp_path, identity=identity, environ={PASSWORD_ENV: "pw"})
    assert sealed is not None and sealed.address == account and sealed.seed == other
    with pytest.raises(ValidatorKeyError, match=PASSWORD_ENV):
        load_validator_seed(tmp_path, identity=identity, environ={})
    with pytest.raises(WrongPasswordError):
        load_validator_seed(tmp_path, identity=identity, environ={PASSWORD_ENV: "nope"})
