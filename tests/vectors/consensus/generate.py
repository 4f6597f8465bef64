#!/usr/bin/env python3
"""Generate the consensus test vectors in this directory (JSON, hex-encoded objects).

Run ``.venv/bin/python tests/vectors/consensus/generate.py`` after a deliberate consensus
change; ``tests/consensus/test_vectors.py`` replays every file and also checks that this
script still produces exactly the committed files (so a silent consensus change fails CI).

Each vector names the network (``dev`` plus overrides), the objects to apply in order and,
for the last one, either ``"valid"`` or the name of the rule it breaks. Other
implementations can replay them: decode the hex canonically, validate, compare the rule.
A transaction vector may give ``"recent_block_ids"``: the latest block ids of the chain the
transaction's block extends, newest first (the first is its parent), as the state transition
is given them (a calibration's seed block must be one of them).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from consensus.block import Block  # noqa: E402
from consensus.genesis import dev_config, dev_seed  # noqa: E402
from consensus.tx import MAX_TX_SIZE, Transaction, public_key  # noqa: E402
from contracts import (  # noqa: E402
    BeginUnstake,
    ChallengeSwarmRound,
    Payload,
    PostRoundLeaves,
    RegisterSwarmNode,
    SettleSwarmRoot,
    Stake,
    Transfer,
    Withdraw,
)
from contracts.registry import CALIBRATION_WINDOW, SubmitCalibration, calibration_seed  # noqa: E402
from pouw import MAX_TARGET, Certificate  # noqa: E402
from swarm.calibration import calibration_questions  # noqa: E402
from swarm.messages import RoundOutcome, sign_request  # noqa: E402
from tests.framework.chain import (  # noqa: E402
    UNDELAYED,
    Chain,
    make_block,
    mine_header,
    new_chain,
    tx,
)

BOB = public_key(b"\x0b" * 32)
MODEL = b"\x4d" * 32
Vector = dict[str, Any]


def _block_entry(
    chain: Chain, block: Block | bytes, expect: str, *, now: int | None = None
) -> Vector:
    data = block if isinstance(block, bytes) else block.encode()
    ts = chain.tip.timestamp + chain.params.target_block_time
    if isinstance(block, Block):
        ts = block.header.timestamp
    entry: Vector = {
        "block": data.hex(),
        "now": ts if now is None else now,
        "expected_target": hex(chain.params.initial_target),
        "expect": expect,
    }
    if expect == "valid" and isinstance(block, Block):
        entry["block_id"] = block.header.block_id().hex()
        entry["state_root"] = block.header.state_root.hex()
    return entry


def _prefix(overrides: dict[str, Any]) -> tuple[Chain, list[Vector]]:
    """Two valid blocks exercising every payload kind."""
    chain = new_chain(dev_config(**overrides))
    entries = []
    plans: list[list[Transaction]] = [
        [tx(1, 0, Transfer(to=BOB, amount=1000)), tx(0, 0, BeginUnstake(amount=500)),
         tx(2, 0, Stake(amount=700))],
        [tx(0, 1, RegisterSwarmNode(models=(MODEL,), endpoint=b"tcp://127.0.0.1:9000")),
         tx(1, 1, Transfer(to=BOB, amount=1))],
    ]
    for i, txs in enumerate(plans):
        block = make_block(chain, txs, seed=i)
        entries.append(_block_entry(chain, block, "valid"))
        chain.connect(block)
    return chain, entries


def _tampered_cert(block: Block) -> Block:
    cert = Certificate.decode(block.header.certificate)
    rows = bytearray(cert.rows_a)
    rows[0] = (rows[0] + 1) % 64
    header = dataclasses.replace(
        block.header, certificate=dataclasses.replace(cert, rows_a=bytes(rows)).encode()
    )
    return dataclasses.replace(block, header=header)


def block_vectors() -> dict[str, Vector]:
    """Valid chain plus one invalid third block per rule."""
    cases: list[tuple[str, str, dict[str, Any], Callable[[Chain], Block | bytes], str]] = []

    def case(name: str, rule: str, build: Callable[[Chain], Block | bytes],
             overrides: dict[str, Any] | None = None, desc: str = "") -> None:
        cases.append((name, rule, overrides or {}, build, desc))

    case("valid_chain", "valid",
         lambda c: make_block(c, [tx(0, 2, BeginUnstake(amount=1)), tx(3, 0, Stake(amount=5))]),
         desc="three valid blocks covering every payload kind")
    case("bad_version", "header.version", lambda c: make_block(c, version=2))
    case("wrong_chain_id", "header.chain_id", lambda c: make_block(c, chain_id=1))
    case("wrong_parent_hash", "header.parent_hash", lambda c: make_block(c, parent_hash=b"\1" * 32))
    case("wrong_height", "header.height", lambda c: make_block(c, height=c.tip.height + 2))
    case("timestamp_not_above_median", "header.timestamp_median",
         lambda c: make_block(c, timestamp=c.headers[-2].timestamp))
    case("timestamp_too_far_ahead", "header.timestamp_future",
         lambda c: make_block(c, timestamp=c.tip.timestamp + 1000),
         desc="timestamp 1000 s after the parent, replayed with the clock at parent + 10 s")
    case("wrong_target", "header.target", lambda c: make_block(c, target=MAX_TARGET // 2))
    case("empty_certificate", "certificate.decode",
         lambda c: _replace_header(make_block(c), certificate=b""))
    case("certificate_shape_mismatch", "certificate.shape_mismatch",
         lambda c: _replace_header(make_block(c), n=16))
    case("certificate_other_operands", "certificate.roots_mismatch",
         lambda c: _replace_header(make_block(c), root_a=b"\x09" * 32))
    case("certificate_for_other_miner", "certificate.commitment",
         lambda c: _replace_header(make_block(c), miner=BOB),
         desc="the miner address was changed after mining: the commitment no longer matches")
    case("certificate_other_target", "certificate.target",
         lambda c: _with_cert_target(make_block(c)))
    case("certificate_tampered_rows", "certificate.invalid",
         lambda c: _tampered_cert(make_block(c)))
    case("wrong_tx_root", "body.tx_root",
         lambda c: make_block(c, [tx(3, 0, Stake(amount=5))], tx_root=b"\x02" * 32))
    case("duplicate_tx", "body.duplicate_tx",
         lambda c: make_block(c, [tx(3, 0, Stake(amount=5))] * 2, state_root=b"\3" * 32))
    case("oversized_block", "body.size",
         lambda c: make_block(c, [tx(3, i, Stake(amount=1)) for i in range(30)]),
         overrides={"max_block_size": 4000})
    case("wrong_state_root", "state.root", lambda c: make_block(c, state_root=b"\x03" * 32))
    case("tx_bad_nonce", "tx.nonce",
         lambda c: make_block(c, [tx(3, 1, Stake(amount=5))], state_root=b"\3" * 32))
    case("tx_bad_signature", "tx.signature",
         lambda c: make_block(c, [dataclasses.replace(tx(3, 0, Stake(amount=5)), fee=11)],
                              state_root=b"\3" * 32))
    case("tx_unfunded_in_block", "transfer.insufficient_balance",
         lambda c: make_block(c, [tx(3, 0, Transfer(to=BOB, amount=10**15))],
                              state_root=b"\3" * 32))
    case("trailing_bytes", "trailing", lambda c: make_block(c).encode() + b"\x00")
    case("non_canonical_int", "non_canonical", lambda c: _pad_version(make_block(c)))
    case("non_canonical_tx", "non_canonical",
         lambda c: _pad_tx_fee(make_block(c, [tx(3, 0, Stake(amount=5))])),
         desc="a transaction inside the block encodes its fee non-minimally")

    out: dict[str, Vector] = {}
    for name, rule, overrides, build, desc in cases:
        chain, entries = _prefix(overrides)
        now = chain.tip.timestamp + 10 if rule == "header.timestamp_future" else None
        entries.append(_block_entry(chain, build(chain), rule, now=now))
        out[f"block_{name}"] = {
            "kind": "block",
            "name": name,
            "description": desc or f"third block breaks {rule}",
            "network": {"base": "dev", "overrides": overrides},
            "blocks": entries,
        }
    return out


def _replace_header(block: Block, **changes: Any) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **changes))


def _with_cert_target(block: Block) -> Block:
    """A certificate bound to this header's commitment but mined at another target."""
    header = dataclasses.replace(block.header, certificate=b"")
    return dataclasses.replace(block, header=mine_header(header, cert_target=MAX_TARGET - 1))


def _pad_version(block: Block) -> bytes:
    """Re-encode the header's version (1, a fixint) as uint8: same value, non-minimal."""
    data = block.encode()
    prefix = b"\x92\xdc\x00\x10"  # [header, txs]; header is an array16 of 16 fields
    assert data.startswith(prefix + b"\x01")
    return prefix + b"\xcc\x01" + data[len(prefix) + 1:]


def tx_vectors() -> dict[str, Vector]:
    """Single transactions against dev genesis (after optional prior transactions)."""
    stake_then_unstake = [(1, tx(0, 0, BeginUnstake(amount=100)))]
    cases: list[tuple[str, str, int, Sequence[tuple[int, Transaction]], Transaction | bytes]] = [
        ("transfer", "valid", 1, [], tx(1, 0, Transfer(to=BOB, amount=5))),
        ("stake", "valid", 1, [], tx(1, 0, Stake(amount=5))),
        ("begin_unstake", "valid", 1, [], tx(0, 0, BeginUnstake(amount=5))),
        ("withdraw", "valid", 6, stake_then_unstake, tx(0, 1, Withdraw())),
        ("register_swarm_node", "valid", 1, [], tx(0, 0, RegisterSwarmNode(models=(MODEL,)))),
        ("bad_signature", "tx.signature", 1, [],
         dataclasses.replace(tx(1, 0, Transfer(to=BOB, amount=5)), nonce=1)),
        ("wrong_chain", "tx.chain_id", 1, [], tx(1, 0, Transfer(to=BOB, amount=5), chain_id=1)),
        ("nonce_gap", "tx.nonce", 1, [], tx(1, 1, Transfer(to=BOB, amount=5))),
        ("replay", "tx.nonce", 1, [(1, tx(1, 0, Transfer(to=BOB, amount=5)))],
         tx(1, 0, Transfer(to=BOB, amount=5))),
        ("fee_unaffordable", "tx.insufficient_fee_balance", 1, [],
         tx(50, 0, Transfer(to=BOB, amount=5), fee=1)),
        ("zero_transfer", "transfer.zero_amount", 1, [], tx(1, 0, Transfer(to=BOB, amount=0))),
        ("transfer_unaffordable", "transfer.insufficient_balance", 1, [],
         tx(1, 0, Transfer(to=BOB, amount=10**15))),
        ("zero_stake", "stake.zero_amount", 1, [], tx(1, 0, Stake(amount=0))),
        ("unstake_unbonded", "unstake.insufficient_stake", 1, [],
         tx(1, 0, BeginUnstake(amount=1))),
        ("withdraw_too_early", "withdraw.nothing_matured", 5, stake_then_unstake,
         tx(0, 1, Withdraw())),
        ("register_no_models", "register.no_models", 1, [],
         tx(0, 0, RegisterSwarmNode(models=()))),
        ("register_unstaked", "register.insufficient_stake", 1, [],
         tx(1, 0, RegisterSwarmNode(models=(MODEL,)))),
        ("trailing_bytes", "trailing", 1, [], tx(1, 0, Stake(amount=5)).encode() + b"\x00"),
        ("non_canonical_fee", "non_canonical", 1, [], _pad_fee(tx(1, 0, Stake(amount=5)))),
        ("oversized", "oversized", 1, [],
         tx(1, 0, Stake(amount=5)).encode() + bytes(MAX_TX_SIZE)),
        ("unsorted_models", "encoding", 1, [], _unsorted_models()),
    ]
    out: dict[str, Vector] = {**calibration_vectors(), **inclusion_tx_vectors()}
    for name, rule, height, prior, item in cases:
        data = item if isinstance(item, bytes) else item.encode()
        out[f"tx_{name}"] = {
            "kind": "tx",
            "name": name,
            "description": f"transaction is {rule}" if rule == "valid" else f"breaks {rule}",
            "network": {"base": "dev", "overrides": {}},
            "prior": [{"height": h, "tx": t.encode().hex()} for h, t in prior],
            "height": height,
            "tx": data.hex(),
            "expect": rule,
        }
    return out


def _block_ids(height: int) -> list[bytes]:
    """Stand-in ids of the blocks below ``height``, newest first (``recent_block_ids``)."""
    return [bytes([0xBE, h]) + bytes(30) for h in range(height - 1, -1, -1)]


def inclusion_tx_vectors() -> dict[str, Vector]:
    """The inclusion-window transaction kinds (docs/swarm.md §7a) against dev genesis: a
    data-root settlement needs a window; its outcome must rank drawn answerers; a challenge
    and a data posting need a held round. The leaf rules have their own vectors
    (``inclusion/``). Then the beacon rules every settlement keeps (§5.2a "Ties",
    `contracts.swarm.beacon_fault`), on a settlement by data root applied at height 5 of a
    chain whose blocks are `_block_ids`: the request names height h, the beacon block is
    h + k (``swarm_beacon_delay``). The undrawn-answerer settlement is applied in the block
    after its draw, so it sets k = 0 (`UNDELAYED` under its window; dev's default k would make
    it ``swarm.beacon_pending`` before its subject's rule is reached). The no-window settlement
    names W = 0 (dev's default W is 20)."""
    def root(beacon_height: int, reputation_height: int, beacon_block: bytes
             ) -> SettleSwarmRoot:
        request = sign_request(dev_seed(1), chain_id=1337, prompt=b"1+1?", fee=1000,
                               answers=3, judges=3, nonce=bytes(32),
                               beacon_height=beacon_height).request
        outcome = RoundOutcome(round_id=request.round_id(), ranking=(BOB,), scores=(1,),
                               payouts=(), refund=1000, reputations=(), slashes=())
        return SettleSwarmRoot(request=request, reputation_height=reputation_height,
                               beacon_block=beacon_block, data_root=bytes(32), outcome=outcome)

    at_one = root(0, 1, _block_ids(1)[0])
    request_id = at_one.request.round_id()
    ids = _block_ids(5)  # heights 4, 3, 2, 1, 0
    window = {"swarm_inclusion_window": 5}
    beacon = window | {"swarm_beacon_delay": 2}
    cases: list[tuple[str, str, str, dict[str, Any], int, list[bytes], Payload]] = [
        ("settle_root_no_window", "swarm.no_inclusion_window", "",
         {"swarm_inclusion_window": 0}, 1, _block_ids(1), at_one),
        ("settle_root_undrawn_answerer", "swarm.outcome_ranking", "", UNDELAYED | window,
         1, _block_ids(1), at_one),
        ("challenge_not_held", "swarm.not_held", "", window, 1, [],
         ChallengeSwarmRound(round_id=request_id, claim=1)),
        ("post_leaves_not_held", "swarm.not_held", "", window, 1, [],
         PostRoundLeaves(round_id=request_id, leaves=())),
        ("settle_beacon_right_block", "swarm.outcome_ranking",
         "a settlement naming the chain's block h + k as its beacon passes the beacon rules "
         "(the next rule then fails)", beacon, 5, ids, root(1, 2, ids[5 - 1 - 3])),
        ("settle_beacon_wrong_block", "swarm.beacon_block",
         "a settlement naming another block than the chain's at h + k (another branch's, or "
         "another height's) seeds its ties with a value the chain does not give", beacon, 5,
         ids, root(1, 2, ids[5 - 1 - 2])),
        ("settle_beacon_pending", "swarm.beacon_pending",
         "a settlement before its beacon block h + k is mined waits", beacon, 5, ids,
         root(3, 3, bytes(32))),
        ("settle_beacon_stale", "swarm.beacon_stale",
         "a round drawn at or after h + k had a known beacon (a stale request)", beacon, 5,
         ids, root(1, 3, ids[5 - 1 - 3])),
        ("settle_beacon_before_request", "swarm.beacon_height",
         "a round drawn below the height its request names", beacon, 5, ids,
         root(2, 1, ids[5 - 1 - 4])),
    ]
    return {f"tx_{name}": {
        "kind": "tx", "name": name, "description": description or f"breaks {rule}",
        "network": {"base": "dev", "overrides": overrides}, "prior": [], "height": height,
        **({"recent_block_ids": [r.hex() for r in recent]} if recent else {}),
        "tx": tx(2, 0, payload).encode().hex(), "expect": rule}
        for name, rule, description, overrides, height, recent, payload in cases}


def calibration_vectors() -> dict[str, Vector]:
    """A calibration seeded on the oldest block of the window (valid) and on the block just
    before it (``calibration.stale_seed``), by a node registered at height 1."""
    recent = [bytes([0xB1, i]) + bytes(30) for i in range(CALIBRATION_WINDOW + 1)]
    register = tx(0, 0, RegisterSwarmNode(models=(MODEL,)))
    node = register.sender
    out: dict[str, Vector] = {}
    for name, rule, seed_block in (
            ("calibration_in_window", "valid", recent[CALIBRATION_WINDOW - 1]),
            ("calibration_stale_seed", "calibration.stale_seed", recent[CALIBRATION_WINDOW])):
        questions = calibration_questions(calibration_seed(seed_block, node), count=16)
        cal = tx(0, 1, SubmitCalibration(seed_block=seed_block, answers=tuple(
            str(q.expected).encode() for q in questions)))
        out[f"tx_{name}"] = {
            "kind": "tx",
            "name": name,
            "description": f"a calibration naming the window's oldest block is {rule}"
            if rule == "valid" else f"a calibration naming a block before the window breaks "
            f"{rule}",
            "network": {"base": "dev", "overrides": {}},
            "prior": [{"height": 1, "tx": register.encode().hex()}],
            "height": 2,
            "recent_block_ids": [r.hex() for r in recent[:CALIBRATION_WINDOW]],
            "tx": cal.encode().hex(),
            "expect": rule,
        }
    return out


def _pad_fee(t: Transaction) -> bytes:
    data = t.encode()
    # [chain_id(cd 05 39), sender(c4 20 ..32), nonce(00), fee(0a), ...]: fee 10 as uint8
    i = 1 + 3 + 34 + 1
    assert data[i] == 10
    return data[:i] + b"\xcc\x0a" + data[i + 1:]


def _pad_tx_fee(block: Block) -> bytes:
    """The block's bytes with its first transaction's fee padded (same meaning, not canonical)."""
    data = block.encode()
    first = block.transactions[0].encode()
    assert data.count(first) == 1
    return data.replace(first, _pad_fee(block.transactions[0]))


def _unsorted_models() -> bytes:
    good = tx(0, 0, RegisterSwarmNode(models=(b"\x01" * 32, b"\x02" * 32))).encode()
    return good.replace(b"\x01" * 32, b"\xff" * 32)


def all_vectors() -> dict[str, Vector]:
    return {**block_vectors(), **tx_vectors()}


def render(vector: Vector) -> str:
    return json.dumps(vector, indent=1, sort_keys=True) + "\n"


def main() -> None:
    vectors = all_vectors()
    for old in HERE.glob("*.json"):
        if old.stem not in vectors:
            old.unlink()
    for name, vector in vectors.items():
        (HERE / f"{name}.json").write_text(render(vector))
    print(f"wrote {len(vectors)} vectors to {HERE}")


if __name__ == "__main__":
    main()
