"""Epoch candidate tables on chain (real blocks over the project's State): selection and
settlement read the table recorded at the start of the epoch the round names, so a round
stays settleable whatever happens in between; the registry index drops unstaked nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from consensus.block import Block
from consensus.genesis import dev_config, dev_seed
from consensus.tx import public_key, sign_transaction
from contracts.bank import Transfer
from contracts.base import TxContext
from contracts.registry import (
    CAPABILITY_PREFIX,
    RegisterSwarmNode,
    SubmitCalibration,
    SwarmCapability,
    capability,
    swarm_node_ids,
)
from contracts.staking import BeginUnstake, Stake, Withdraw, slash_stake
from contracts.swarm import (
    EPOCHS_KEY,
    MAX_SETTLEMENT_LAG,
    SNAPSHOT_PREFIX,
    SettleSwarmRound,
    apply_register_swarm_node,
    apply_settle_swarm_round,
    build_settlement,
    candidate_table,
    live_candidate_table,
    retained_snapshots,
    selected_nodes,
    settled_round,
)
from core.errors import TransactionError
from core.interfaces import MemoryKV
from core.params import ChainParams
from core.records import StakeRecord, Unbonding
from core.state import State
from swarm.selection import ROLE_ANSWER, ROLE_JUDGE, Candidate, select_nodes
from tests.framework.chain import Chain, make_block, new_chain, state_items, undelayed_config
from tests.framework.roundkit import STAKE, Round, build_round, honest, make_request, seed
from tests.framework.swarmchain import (
    CLIENT_SEED,
    FEE,
    FUNDS,
    MODEL,
    advance_to,
    answers_for,
    join,
    pool_chain,
    round_beacon,
    send,
    settlement_context,
)
from tests.framework.swarmchain import EPOCH_POOL as POOL
from tests.framework.util import ROOT

SETTLER_SEED = dev_seed(2)
SEED_OF = {public_key(s): s for s in POOL}


def draw(chain: Chain, nonce: int, *, height: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    request = make_request(CLIENT_SEED, fee=FEE, answers=5, judges=4, nonce=nonce)
    return selected_nodes(chain.state, request, height=height,
                          min_stake=chain.params.min_node_stake,
                          epoch_blocks=chain.params.swarm_epoch_blocks)


def live_draw(chain: Chain, nonce: int) -> tuple[set[bytes], set[bytes]]:
    """The draw the old rule (the current table) would make."""
    request = make_request(CLIENT_SEED, fee=FEE, answers=5, judges=4, nonce=nonce)
    pool = [Candidate(node=e.node, stake=e.stake, reputation=e.score, capable=True)
            for e in live_candidate_table(chain.state, min_stake=chain.params.min_node_stake)]
    rid = request.round_id()
    return (set(select_nodes(pool, round_id=rid, role=ROLE_ANSWER, count=5)),
            set(select_nodes(pool, round_id=rid, role=ROLE_JUDGE, count=4)))


def round_for(chain: Chain, nonce: int, *, height: int,
              no_show: bool = False) -> tuple[Round, SettleSwarmRound] | None:
    """The honest round of request ``nonce`` drawn at ``height`` and its settlement (a node
    may both answer and judge), or None if fewer nodes than asked for are eligible."""
    answerers, judges = draw(chain, nonce, height=height)
    if len(answerers) < 5 or len(judges) < 4:
        return None
    request = make_request(CLIENT_SEED, fee=FEE, answers=5, judges=4, nonce=nonce)
    answers = [(SEED_OF[node], f"answer q={(i * 3) % 5}".encode())
               for i, node in enumerate(answerers)]
    r = build_round(request=request, answers=answers,
                    judges=[(SEED_OF[node], honest) for node in judges],
                    answer_no_shows=(answers[0][0],) if no_show else ())
    payload = build_settlement(
        chain.state, height=height, beacon_block=round_beacon(chain, r), request=request,
        answerers=r.answerers, judges=r.judges,
        commitments=r.commitments, answer_openings=r.answer_openings,
        judgment_openings=r.judgment_openings, min_stake=chain.params.min_node_stake,
        epoch_blocks=chain.params.swarm_epoch_blocks)
    return r, payload


def rounds_at(chain: Chain, *, height: int, count: int = 20) -> dict[int, tuple[Round,
                                                                             SettleSwarmRound]]:
    found = {}
    for nonce in range(count):
        built = round_for(chain, nonce, height=height)
        if built is not None:
            found[nonce] = built
    return found


def nodes_of(payload: SettleSwarmRound) -> set[bytes]:
    return set(payload.answerers) | set(payload.judges)


def test_epoch_length_is_a_chain_parameter() -> None:
    assert dev_config().params.swarm_epoch_blocks == 10
    assert dev_config(swarm_epoch_blocks=3).params.swarm_epoch_blocks == 3
    with pytest.raises(ValueError):
        ChainParams(chain_id=1, target_block_time=1, initial_target=1, unbonding_delay=1,
                    swarm_epoch_blocks=0)


def test_the_snapshot_is_the_table_at_the_epoch_start() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 9)  # the last block of epoch 0
    before = live_candidate_table(chain.state, min_stake=chain.params.min_node_stake)
    assert [e.node for e in before] == sorted(public_key(s) for s in POOL)
    # the first transaction of epoch 1 records the table, then changes it (more stake)
    send(chain, [(POOL[0], Stake(amount=1))])
    assert retained_snapshots(chain.state)[-1].epoch == 1
    assert candidate_table(chain.state, height=10, min_stake=1) == before
    assert live_candidate_table(chain.state, min_stake=1) != before


def test_a_settlement_does_not_stop_another_round_of_the_epoch() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 12)
    selected_at = chain.tip.height  # epoch 1; both rounds are drawn and built now
    candidates = rounds_at(chain, height=selected_at)
    (_, (_, first)), *rest = candidates.items()
    send(chain, [(SETTLER_SEED, first)])  # moves the reputations of the first round's nodes
    assert {e.node: e.score for e in live_candidate_table(chain.state, min_stake=1)} != \
        {e.node: e.score for e in candidate_table(chain.state, height=selected_at, min_stake=1)}
    # a second round that shares nodes with the first, which the current table redraws
    # differently: under the old rule it could never settle
    second = next(p for n, (_, p) in rest
                  if nodes_of(p) & nodes_of(first)
                  and live_draw(chain, n) != (set(p.answerers), set(p.judges)))
    scores = {node: chain.state.reputation(node) for node in nodes_of(second)}
    send(chain, [(SETTLER_SEED, second)])
    assert settled_round(chain.state, second.request.round_id()) is not None
    assert chain.tip.height // 10 == 1  # both settled in the epoch they were drawn in
    # the second round's deltas (against the epoch table: the scores calibration gave) are
    # added to the scores the first round left
    table = {e.node: e.score for e in candidate_table(chain.state, height=selected_at,
                                                       min_stake=1)}
    for update in second.outcome.reputations:
        delta = update.score - table.get(update.node, 0)
        assert chain.state.reputation(update.node) == max(0, scores[update.node] + delta)
    shared = nodes_of(first) & nodes_of(second)
    assert any(scores[node] > 0 for node in shared)


def test_staking_and_joining_between_selection_and_settlement() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 15)
    selected_at = chain.tip.height  # epoch 1
    rounds = rounds_at(chain, height=selected_at)
    # an unselected node stakes a fortune, a new node joins and calibrates
    _, payload = next(iter(rounds.values()))
    outsider = next(s for s in POOL if public_key(s) not in nodes_of(payload))
    send(chain, [(outsider, Stake(amount=10**8))])
    join(chain, [seed("late-joiner")])
    advance_to(chain, 20)
    assert chain.tip.height // 10 == 2  # the settlement lands in the next epoch
    nonce = next(n for n, (_, p) in rounds.items()
                 if live_draw(chain, n) != (set(p.answerers), set(p.judges)))
    send(chain, [(SETTLER_SEED, rounds[nonce][1])])
    assert settled_round(chain.state, rounds[nonce][1].request.round_id()) is not None


def test_epochs_without_transactions_read_the_next_recorded_table() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 11)
    selected_at = chain.tip.height  # epoch 1: no transaction in it, nothing recorded yet
    assert retained_snapshots(chain.state)[-1].epoch == 0
    rounds = rounds_at(chain, height=selected_at)
    advance_to(chain, 34)  # epochs 1, 2 and 3 pass without a transaction
    (_, payload), *_ = rounds.values()
    send(chain, [(SETTLER_SEED, payload)])  # records epoch 3's table (= epoch 1's)
    assert [s.epoch for s in retained_snapshots(chain.state)] == [0, 3]
    assert settled_round(chain.state, payload.request.round_id()) is not None


def test_old_tables_are_deleted_and_the_window_holds() -> None:
    chain, _ = pool_chain()
    for height in range(10, 160, 10):  # one transaction in every epoch
        advance_to(chain, height - 1)
        send(chain, [(POOL[0], Transfer(to=public_key(POOL[1]), amount=1))])
    epochs = [s.epoch for s in retained_snapshots(chain.state)]
    # epoch 15 starts at 150: settlements may name heights from 50 (epoch 5) on
    assert epochs == list(range(5, 16))
    pages = [k for k, _ in chain.kv.items() if k.startswith(SNAPSHOT_PREFIX)]
    assert len(pages) == len(epochs)  # one page each (12 candidates)
    assert epochs[0] == (150 - MAX_SETTLEMENT_LAG) // 10


def replay(blocks: Sequence[Block]) -> Chain:
    """``blocks`` connected on a new chain of `pool_chain`'s genesis."""
    chain = new_chain(undelayed_config())
    for block in blocks:
        chain.connect(block)
    return chain


@pytest.mark.slow
def test_snapshots_are_bit_identical_across_replays() -> None:
    chain, blocks = pool_chain()
    blocks += advance_to(chain, 9)
    blocks.append(send(chain, [(POOL[3], BeginUnstake(amount=STAKE))]))
    rounds = rounds_at(chain, height=chain.tip.height, count=6)
    blocks.append(send(chain, [(SETTLER_SEED, p) for _, p in list(rounds.values())[:2]]))
    blocks += advance_to(chain, 21)
    blocks.append(send(chain, [(POOL[4], Stake(amount=5))]))
    ours = {k: v for k, v in state_items(chain.kv).items()
            if k.startswith(SNAPSHOT_PREFIX) or k == EPOCHS_KEY}
    # the directory and the tables of epochs 1 and 2 (epoch 0's was empty: no page)
    assert len(ours) == 3
    a, b = replay(blocks), replay(blocks)
    assert state_items(a.kv) == state_items(b.kv) == state_items(chain.kv)
    # and in another process with another hash seed
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blocks"
        path.write_text("\n".join(block.encode().hex() for block in blocks))
        script = (
            "import sys\n"
            "from consensus.block import Block\n"
            "from tests.framework.chain import new_chain, undelayed_config\n"
            "from contracts.swarm import EPOCHS_KEY, SNAPSHOT_PREFIX\n"
            "chain = new_chain(undelayed_config())\n"
            "for line in open(sys.argv[1]).read().split():\n"
            "    chain.connect(Block.decode(bytes.fromhex(line)))\n"
            "for k, v in sorted(chain.kv.items()):\n"
            "    if k.startswith(SNAPSHOT_PREFIX) or k == EPOCHS_KEY:\n"
            "        print(k.hex(), v.hex())\n")
        root = ROOT
        out = subprocess.run([sys.executable, "-c", script, str(path)], cwd=root,
                             env={**os.environ, "PYTHONHASHSEED": "12345"},
                             capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:-1] == [f"{k.hex()} {v.hex()}" for k, v in sorted(ours.items())]


def test_unbonded_node_is_evicted_at_the_next_epoch_and_never_selected() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 12)
    leaver = public_key(POOL[5])
    send(chain, [(POOL[5], BeginUnstake(amount=STAKE))])  # at 13, epoch 1
    assert leaver in swarm_node_ids(chain.state)  # still indexed this epoch
    assert leaver in {e.node for e in candidate_table(chain.state, height=13, min_stake=1)}
    advance_to(chain, 19)
    send(chain, [(CLIENT_SEED, Transfer(to=public_key(POOL[0]), amount=1))])  # epoch 2
    assert leaver not in swarm_node_ids(chain.state)
    assert len(swarm_node_ids(chain.state)) == len(POOL) - 1
    for height in (20, 29, 35):
        for nonce in range(40):
            answerers, judges = draw(chain, nonce, height=height)
            assert leaver not in answerers and leaver not in judges
    # unregistered: registration and the passed calibration are gone
    assert chain.state.swarm_node(leaver) is None and capability(chain.state, leaver) is None
    # with stake again, registering and calibrating rejoin (eligible at the next epoch)
    send(chain, [(POOL[5], Stake(amount=STAKE)), (POOL[5], RegisterSwarmNode(models=(MODEL,)))])
    assert leaver in swarm_node_ids(chain.state)
    tip = chain.tip.block_id()
    send(chain, [(POOL[5], SubmitCalibration(seed_block=tip,
                                             answers=answers_for(tip, leaver, right=16)))])
    assert leaver not in {e.node for e in candidate_table(chain.state, height=chain.tip.height,
                                                          min_stake=1)}
    advance_to(chain, 29)
    send(chain, [(CLIENT_SEED, Transfer(to=public_key(POOL[0]), amount=1))])  # epoch 3
    assert leaver in {e.node for e in candidate_table(chain.state, height=30, min_stake=1)}


def test_eviction_keeps_a_failed_calibration() -> None:
    chain = new_chain(dev_config(min_node_stake=1000))
    node_seed = seed("failing")
    node = public_key(node_seed)
    send(chain, [(CLIENT_SEED, Transfer(to=node, amount=FUNDS))])
    send(chain, [(node_seed, Stake(amount=1000)), (node_seed, RegisterSwarmNode(models=(MODEL,)))])
    tip = chain.tip.block_id()
    send(chain, [(node_seed, SubmitCalibration(seed_block=tip,
                                               answers=answers_for(tip, node, right=3)))])
    failed = capability(chain.state, node)
    assert failed is not None and not failed.capable
    send(chain, [(node_seed, BeginUnstake(amount=1))])
    advance_to(chain, 9)
    send(chain, [(CLIENT_SEED, Transfer(to=node, amount=1))])  # epoch 1 starts: evicted
    assert swarm_node_ids(chain.state) == () and chain.state.swarm_node(node) is None
    assert capability(chain.state, node) == failed  # the retry wait stands


def test_index_is_bounded_by_staked_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("contracts.registry.MAX_SWARM_NODES", 8)
    chain = new_chain(dev_config(min_node_stake=1000))
    cheap = [seed(f"cheap{i}") for i in range(8)]
    send(chain, [(CLIENT_SEED, Transfer(to=public_key(s), amount=FUNDS)) for s in cheap])
    send(chain, [item for s in cheap for item in (
        (s, Stake(amount=1000)), (s, RegisterSwarmNode(models=(MODEL,))))])
    assert len(swarm_node_ids(chain.state)) == 8
    newcomer = seed("newcomer")
    send(chain, [(CLIENT_SEED, Transfer(to=public_key(newcomer), amount=FUNDS)),
                 (newcomer, Stake(amount=1000))])
    with pytest.raises(TransactionError) as err:
        make_block(chain, [sign_transaction(newcomer, chain_id=1337, nonce=1, fee=10,
                                            payload=RegisterSwarmNode(models=(MODEL,)))])
    assert err.value.rule == "register.registry_full"
    # six entries take their stake back: at the next epoch they leave the index
    send(chain, [(s, BeginUnstake(amount=1)) for s in cheap[:6]])
    advance_to(chain, 9)
    send(chain, [(newcomer, RegisterSwarmNode(models=(MODEL,)))])  # first tx of epoch 1
    assert len(swarm_node_ids(chain.state)) == 3
    assert public_key(newcomer) in swarm_node_ids(chain.state)
    # every entry holds the minimum stake after an epoch start
    assert all(chain.state.stake(n).bonded >= 1000 for n in swarm_node_ids(chain.state))


def test_a_no_show_that_unbonds_is_slashed_from_unbonding_stake() -> None:
    chain, _ = pool_chain()
    advance_to(chain, 12)
    selected_at = chain.tip.height
    built = next(b for b in (round_for(chain, n, height=selected_at, no_show=True)
                             for n in range(20)) if b is not None)
    _, payload = built
    (slash,) = payload.outcome.slashes
    send(chain, [(SEED_OF[slash.node], BeginUnstake(amount=STAKE))])
    send(chain, [(SETTLER_SEED, payload)])
    record = chain.state.stake(slash.node)
    assert record.bonded == 0 and sum(u.amount for u in record.unbonding) == STAKE - slash.amount
    # withdrawn stake cannot be slashed: such a settlement fails
    chain2, _ = pool_chain()
    advance_to(chain2, 12)
    _, payload2 = next(b for b in (round_for(chain2, n, height=12, no_show=True)
                                   for n in range(20)) if b is not None)
    node_seed = SEED_OF[payload2.outcome.slashes[0].node]
    send(chain2, [(node_seed, BeginUnstake(amount=STAKE))])
    advance_to(chain2, chain2.tip.height + chain2.params.unbonding_delay)
    send(chain2, [(node_seed, Withdraw())])
    with pytest.raises(TransactionError) as err:
        make_block(chain2, [sign_transaction(SETTLER_SEED, chain_id=1337, nonce=0, fee=10,
                                             payload=payload2)])
    assert err.value.rule == "swarm.slash_uncollectable"


def test_slash_takes_bonded_then_the_latest_unbonding() -> None:
    state = State(MemoryKV())
    node = public_key(seed("slashed"))
    state.set_stake(node, StakeRecord(bonded=10, unbonding=(Unbonding(5, 7), Unbonding(9, 4))))
    assert slash_stake(state, node, 16) == 16
    assert state.stake(node) == StakeRecord(bonded=0, unbonding=(Unbonding(5, 5),))
    assert slash_stake(state, node, 9) == 5
    assert state.stake(node) == StakeRecord()


def test_a_calibrated_node_entering_an_empty_index_records_the_empty_table() -> None:
    chain = new_chain()
    node = public_key(POOL[0])
    chain.state.set_stake(node, StakeRecord(bonded=STAKE))
    chain.state.set_record(CAPABILITY_PREFIX + node,
                           SwarmCapability(capable=1, height=1, correct=16))
    ctx = TxContext(sender=node, height=3, params=chain.params)
    apply_register_swarm_node(chain.state, RegisterSwarmNode(models=(MODEL,)), ctx)
    assert [s.epoch for s in retained_snapshots(chain.state)] == [0]
    assert candidate_table(chain.state, height=3, min_stake=1) == ()
    assert [e.node for e in candidate_table(chain.state, height=10, min_stake=1)] == [node]


def test_direct_application_without_transactions_reads_the_current_table() -> None:
    # contract-level callers (tests, tools) that write state directly see the current table
    chain, _ = pool_chain()
    (_, payload), *_ = rounds_at(chain, height=35).values()
    apply_settle_swarm_round(chain.state, payload, settlement_context(
        public_key(SETTLER_SEED), 40, chain))
    assert settled_round(chain.state, payload.request.round_id()) is not None
