"""Block validation: a valid chain connects; each rule, broken alone, is named."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consensus.block import Block, BlockHeader, header_commitment, merkle_root, work_of
from consensus.genesis import dev_config
from consensus.tx import public_key
from consensus.validation import check_certificate, check_header, disconnect_block, median_time_past
from contracts import Stake, Transfer
from core.errors import ConsensusError
from core.state import root_from_items
from pouw import MAX_TARGET, Certificate
from tests.framework.chain import Chain, make_block, mine_header, new_chain, tx

C = public_key(b"\x07" * 32)


def expect_rule(chain: Chain, block: Block, rule: str, **kw: int) -> None:
    """Validation fails with ``rule`` and leaves the state untouched."""
    root, data = chain.state.root(), dict(chain.kv.data)
    with pytest.raises(ConsensusError) as info:
        chain.validate(block, **kw)
    assert info.value.rule == rule, str(info.value)
    assert chain.state.root() == root
    assert chain.kv.data == data


def test_valid_chain_connects_and_disconnects(chain: Chain) -> None:
    roots = [chain.state.root()]
    undos = []
    for i in range(3):
        block = make_block(chain, [tx(1, i, Transfer(to=C, amount=10 + i))], seed=i)
        assert check_certificate(block.header) >= 0
        undos.append(chain.connect(block))
        assert chain.state.root() == block.header.state_root
        roots.append(chain.state.root())
    assert chain.state.account(C).balance == 33
    assert chain.state.root() == root_from_items(chain.kv.items())
    for undo, root in zip(reversed(undos), reversed(roots[:-1]), strict=True):
        disconnect_block(chain.state, undo)
        assert chain.state.root() == root


# -- header rules -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "rule"),
    [
        ({"version": 2}, "header.version"),
        ({"chain_id": 1}, "header.chain_id"),
        ({"parent_hash": b"\x01" * 32}, "header.parent_hash"),
        ({"height": 2}, "header.height"),
        ({"target": MAX_TARGET // 2}, "header.target"),
        ({"timestamp": 1_700_000_000}, "header.timestamp_median"),
    ],
)
def test_header_rules(chain: Chain, override: dict[str, Any], rule: str) -> None:
    expect_rule(chain, make_block(chain, **override), rule)


def test_parent_unknown(chain: Chain) -> None:
    block = make_block(chain)
    with pytest.raises(ConsensusError) as info:
        check_header(block.header, parent=None, recent_timestamps=[], now=0,
                     expected_target=MAX_TARGET, params=chain.params)
    assert info.value.rule == "header.parent_unknown"


def test_timestamp_future_bound(chain: Chain) -> None:
    block = make_block(chain, timestamp=chain.tip.timestamp + 1000)
    limit = chain.params.max_future_block_time
    expect_rule(chain, block, "header.timestamp_future", now=block.header.timestamp - limit - 1)
    chain.validate(block, now=block.header.timestamp - limit)  # exactly at the bound is fine


def test_median_time_past() -> None:
    assert median_time_past([5]) == 5
    assert median_time_past([1, 9, 3]) == 3
    assert median_time_past(list(range(100))) == 94  # only the last 11 count
    with pytest.raises(ValueError):
        median_time_past([])


def test_timestamp_must_beat_median_not_parent(chain: Chain) -> None:
    for i in range(3):
        chain.connect(make_block(chain, seed=i))
    times = chain.timestamps()  # genesis, +10, +20, +30 -> median is +20
    ok = make_block(chain, timestamp=median_time_past(times) + 1)  # older than the parent
    chain.validate(ok)
    expect_rule(chain, make_block(chain, timestamp=median_time_past(times)),
                "header.timestamp_median")


# -- certificate rules ------------------------------------------------------------------
def test_certificate_bound_to_header(chain: Chain) -> None:
    block = make_block(chain)
    for change in ({"timestamp": block.header.timestamp + 1}, {"miner": C},
                   {"state_root": bytes(32)}):
        moved = dataclasses.replace(block.header, **change)
        assert header_commitment(moved) != header_commitment(block.header)
        with pytest.raises(ConsensusError) as info:
            check_certificate(moved)
        assert info.value.rule == "certificate.commitment"
    # the certificate is not part of its own commitment
    assert header_commitment(dataclasses.replace(block.header, certificate=b"")) == \
        header_commitment(block.header)


def test_certificate_from_other_block_rejected(chain: Chain) -> None:
    a = make_block(chain, seed=1)
    b = make_block(chain, seed=2, timestamp=a.header.timestamp + 1)
    stolen = dataclasses.replace(b.header, certificate=a.header.certificate)
    with pytest.raises(ConsensusError) as info:
        check_certificate(stolen)
    assert info.value.rule == "certificate.roots_mismatch"  # other operands, other roots


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"certificate": b""}, "certificate.decode"),
        ({"certificate": b"\x93\x01\x02\x03"}, "certificate.decode"),
        ({"n": 16}, "certificate.shape_mismatch"),
        ({"m": 0}, "certificate.shape"),
        ({"r": 3}, "certificate.shape"),
        ({"root_a": bytes(32)}, "certificate.roots_mismatch"),
        ({"root_b": bytes(32)}, "certificate.roots_mismatch"),
        ({"target": MAX_TARGET - 1}, "certificate.commitment"),  # the target is committed
    ],
)
def test_certificate_rules(chain: Chain, change: dict[str, object], rule: str) -> None:
    header = dataclasses.replace(make_block(chain).header, **change)  # type: ignore[arg-type]
    with pytest.raises(ConsensusError) as info:
        check_certificate(header)
    assert info.value.rule == rule


def test_certificate_mined_at_other_target(chain: Chain) -> None:
    header = dataclasses.replace(make_block(chain).header, target=MAX_TARGET - 1)
    header = mine_header(header, cert_target=MAX_TARGET)
    with pytest.raises(ConsensusError) as info:
        check_certificate(header)
    assert info.value.rule == "certificate.target"


def test_tampered_certificate_invalid(chain: Chain) -> None:
    header = make_block(chain).header
    cert = Certificate.decode(header.certificate)
    rows = bytearray(cert.rows_a)
    rows[0] = (rows[0] + 1) % 64
    bad = dataclasses.replace(cert, rows_a=bytes(rows))
    with pytest.raises(ConsensusError) as info:
        check_certificate(dataclasses.replace(header, certificate=bad.encode()))
    assert info.value.rule == "certificate.invalid"


def test_certificate_rule_in_full_validation(chain: Chain) -> None:
    block = make_block(chain)
    forged = Block(
        header=dataclasses.replace(block.header, root_a=b"\x09" * 32),
        transactions=block.transactions,
    )
    expect_rule(chain, forged, "certificate.roots_mismatch")


# -- body and state rules ---------------------------------------------------------------
def test_tx_root_rule(chain: Chain) -> None:
    expect_rule(chain, make_block(chain, [tx(1, 0, Stake(amount=1))], tx_root=bytes(32)),
                "body.tx_root")
    block = make_block(chain, [tx(1, 0, Stake(amount=1))])
    swapped = Block(header=block.header, transactions=(tx(1, 0, Stake(amount=2)),))
    expect_rule(chain, swapped, "body.tx_root")


def test_duplicate_tx_rule(chain: Chain) -> None:
    t = tx(1, 0, Stake(amount=1))
    expect_rule(chain, make_block(chain, [t, t], state_root=b"\x01" * 32), "body.duplicate_tx")


def test_block_size_rule() -> None:
    chain = new_chain(dev_config(max_block_size=3000))
    txs = [tx(1, i, Stake(amount=1)) for i in range(20)]
    expect_rule(chain, make_block(chain, txs), "body.size")
    chain.validate(make_block(chain, txs[:2]))


def test_state_root_rule(chain: Chain) -> None:
    expect_rule(chain, make_block(chain, [tx(1, 0, Stake(amount=1))], state_root=b"\x01" * 32),
                "state.root")


def test_invalid_transaction_in_block(chain: Chain) -> None:
    txs = [tx(1, 0, Stake(amount=1)), tx(1, 5, Stake(amount=1))]
    expect_rule(chain, make_block(chain, txs, state_root=b"\x01" * 32), "tx.nonce")


def test_genesis_header_fields(chain: Chain) -> None:
    genesis = chain.headers[0]
    assert genesis.height == 0 and genesis.certificate == b""
    assert genesis.tx_root == merkle_root([])
    assert BlockHeader.decode(genesis.encode()) == genesis


def test_merkle_root_properties() -> None:
    leaves = [bytes([i]) * 32 for i in range(5)]
    roots = {merkle_root(leaves[:i]) for i in range(6)}
    assert len(roots) == 6  # every prefix differs, empty included
    # duplicating the last leaf (CVE-2012-2459) changes the root
    assert merkle_root(leaves[:3]) != merkle_root([*leaves[:3], leaves[2]])
    assert merkle_root(leaves[:2]) != merkle_root(leaves[1::-1])


def test_work_of() -> None:
    assert work_of(MAX_TARGET) == 1
    assert work_of(2**255 - 1) == 2
    assert work_of(0) == 2**256
