"""Settlement duty: who sends a finished round's `SettleSwarmRound`, when, and the sweep of
duplicates once one has landed.

Settlement (rounds drawn from registered nodes) is a shared duty: after ``final`` every node
holds the same round data; the origin sends `SettleSwarmRound` at once, and the other
participants (answerers, then judges, in draw order, without the origin) are backups: the
k-th wakes after ``settle_backoff`` × k seconds and sends its own settlement only if the round
is neither settled in chain state nor pending in its mempool. Nothing is retried; a duplicate
fails with ``swarm.already_settled`` and leaves the mempool when the settling block lands
(`SettlementDuty.drop_duplicates`). Status: ``pending`` (``pending: backup settler k, …``) ->
``submitted: tx … by <settler>`` -> ``settled at height h: tx … by <settler>`` (read from the
block that holds it, on every node).

No settlement is valid before the round's beacon block (``swarm_beacon_delay`` blocks above the
height its request names, `contracts.swarm.beacon_fault`) is mined: its id seeds the round's
ties. Every settler waits for it first (``waiting for the beacon block at height …``), then
the backoff above starts; the settlement names the id of our chain's block at that height,
so after a reorg a new settlement names the new chain's.

On a network with an inclusion window (``swarm_inclusion_window``, docs/swarm.md §7a) a round
too large for `SettleSwarmRound` is settled by its data root (`SettleSwarmRoot`), and every
participant watches the held settlements of its rounds (`SettlementDuty.watch`, after each
tip change): it challenges one that left out an opening or a commitment it holds, or carries
a bad item (`swarm.inclusion.provable_claims`): its own left-out data at once (no penalty),
another node's only in the window's second half (that node then pays the late-reveal
penalty, so it is given the first chance to prove its own); for a data-root settlement whose root or
outcome differs from what its own data gives, it asks for the data (``CLAIM_UNAVAILABLE``),
and it posts the leaves itself when its root is the settlement's (the chain then recomputes
the outcome). Every node holds the round's messages after ``final``, so the leaves need no
gossip of their own. After a proven challenge the round is open again and the challenger
settles it with its full data (if its duty is enabled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from consensus.tx import MAX_TX_SIZE, Transaction, sign_transaction
from contracts.base import Payload
from contracts.swarm import (
    MAX_SETTLEMENT_LAG,
    NO_CHALLENGER,
    ChallengeSwarmRound,
    HeldRound,
    SettleSwarmRoot,
    SettleSwarmRound,
    beacon_height,
    build_root_settlement,
    build_settlement,
    challenge_payload,
    held_round,
    post_payloads,
    posted_leaves,
    recompute_outcome,
    settled_round,
    settlement_leaves,
)
from core.encoding import encode
from core.errors import ConsensusError
from core.state import State
from node.logging import get_logger, log_event
from node.swarm.host import SwarmHost
from node.swarm.round import RoundState, SettledBy
from swarm.commit_reveal import answer_opening, judgment_opening
from swarm.data_root import leaves_root, round_leaves
from swarm.inclusion import (
    CLAIM_NAMES,
    CLAIM_UNAVAILABLE,
    WITHHELD_DATA_CLAIMS,
    Claim,
    provable_claims,
)
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundLeaf,
)
from swarm.settlement import RoundSettlement, beacon_seed, settle

log = get_logger("swarm")
DEFAULT_SETTLE_BACKOFF = 10.0  # seconds between backup settlers (a few blocks' time)
DEFAULT_SETTLEMENT_FEE = 10  # fee of a settlement transaction (the dev chain's usual fee)


def settles(tx: Transaction, round_id: bytes) -> bool:
    """True iff ``tx`` is a settlement (full or by data root) of round ``round_id``."""
    return isinstance(tx.payload, SettleSwarmRound | SettleSwarmRoot) and \
        tx.payload.request.round_id() == round_id


def round_settlement(state: RoundState, seed: bytes | None) -> RoundSettlement:
    """`swarm.settlement.settle` on what the node holds of the round, with the reputations
    and stakes of its candidates (for an on-chain round: decayed to the round height, bonded
    stake), exactly the contract's inputs. ``seed``: the round's beacon seed
    (`SettlementDuty.tie_seed`); None before its beacon block is mined (the round id then
    breaks exact ties, which the chain may order otherwise)."""
    reveals = list(state.reveals.values())
    return settle(
        request=state.announcement.request, answerers=state.answerers,
        judges=state.judges, commitments=state.all_commitments(),
        answer_openings=sorted(answer_opening(r) for r in reveals if r.kind == KIND_ANSWER),
        judgment_openings=sorted(judgment_opening(r) for r in reveals
                                 if r.kind == KIND_JUDGMENT),
        reputations={c.node: c.reputation for c in state.candidates},
        stakes={c.node: c.stake for c in state.candidates}, seed=seed)


def round_data(state: RoundState) -> tuple[list[Commitment], list[AnswerOpening],
                                          list[JudgmentOpening]]:
    """(commitments, answer openings, judgment openings) the node holds for the round."""
    reveals = list(state.reveals.values())
    return (state.all_commitments(),
            [answer_opening(r) for r in reveals if r.kind == KIND_ANSWER],
            [judgment_opening(r) for r in reveals if r.kind == KIND_JUDGMENT])


class SettlementDuty:
    """This node's share of settling the rounds it took part in (module docstring)."""

    def __init__(self, host: SwarmHost, *, fee: int = DEFAULT_SETTLEMENT_FEE,
                 backoff: float = DEFAULT_SETTLE_BACKOFF) -> None:
        self.host = host
        self.fee = fee
        self.backoff = backoff
        self.enabled = True  # tests: False = a node that never sends a settlement
        self.watching = True  # challenge held settlements of our rounds (module docstring)
        # round id -> the challenge transactions we sent against its current settlement
        self.challenged: dict[bytes, list[bytes]] = {}
        self._reserved: set[tuple[bytes, bytes, str]] = set()  # watcher steps taken
        # round id -> (its beacon block's height, set once our chain has that block)
        self._beacons: dict[bytes, tuple[int, asyncio.Event]] = {}
        # held from signing a transaction (its nonce: the next after our pending ones) until
        # the mempool has it: two rounds settled at once took the same nonce, and the second
        # was refused as an underpriced replacement (the round stayed unsettled)
        self._sending = asyncio.Lock()

    def position(self, state: RoundState) -> int | None:
        """Our place in the round's settlement duty: 0 the origin (settles at once), k ≥ 1 the
        k-th other participant (answerers, then judges, in draw order), None not a duty.

        Every node computes the same order from the round, so backups wake one at a time."""
        me = self.host.node_id
        if me == state.origin:
            return 0
        order = [node for node in dict.fromkeys(state.answerers + state.judges)
                 if node != state.origin]
        return order.index(me) + 1 if me in order else None

    async def run(self, state: RoundState) -> None:
        """Settle the round unless someone already has: the origin at once, backup k after
        ``backoff`` × k seconds (so a dead or lazy origin does not leave it unsettled)."""
        position = self.position(state)
        if position is None or not self.enabled or state.compacted:
            return
        await self.beacon(state)
        if position:
            delay = self.backoff * position
            state.settlement_status = (f"pending: backup settler {position}, "
                                       f"sends in {delay:g} s unless settled")
            await asyncio.sleep(delay)
        await self._submit(state)

    async def beacon(self, state: RoundState) -> None:
        """Until our chain has the round's beacon block: a settlement before it is invalid
        (``swarm.beacon_pending``). `beacons_mined` wakes the waiters after each tip change."""
        height = beacon_height(state.announcement.request, self.host.chain.params)
        if self.host.chain.height >= height:
            return
        state.settlement_status = f"waiting for the beacon block at height {height}"
        _height, mined = self._beacons.setdefault(state.round_id, (height, asyncio.Event()))
        await mined.wait()

    def beacons_mined(self, rounds: Iterable[RoundState]) -> None:
        """After a tip change: wake the rounds whose beacon block our chain now has, and
        rank the complete ones again with the beacon's seed (the round view then shows the
        chain's outcome, exact ties included)."""
        tip = self.host.chain.height
        for round_id, (height, mined) in list(self._beacons.items()):
            if tip >= height:
                mined.set()
                del self._beacons[round_id]
        for state in rounds:
            if state.settlement is not None and state.height and not state.beacon_seeded:
                seed = self.tie_seed(state)
                if seed is not None:
                    state.settlement = round_settlement(state, seed)
                    state.beacon_seeded = True

    def tie_seed(self, state: RoundState) -> bytes | None:
        """The round's beacon seed once our chain has its beacon block, else None."""
        request = state.announcement.request
        beacon = self.host.chain.block_id_at(beacon_height(request, self.host.chain.params))
        return None if beacon is None else beacon_seed(request.round_id(), beacon)

    def _transaction(self, state: RoundState) -> Transaction | SettledBy | str:
        """Chain thread: the signed `SettleSwarmRound` of a finished round, or why not to
        send one: the round is settled (`SettledBy`) or a settlement is pending (its status).

        Checking chain state and the mempool first keeps backups from paying for duplicates
        (a duplicate would only fail with ``swarm.already_settled``)."""
        chain, mempool = self.host.chain, self.host.mempool
        chain_state = State(chain.state_view())
        settled = self.settled_by(state, chain_state)
        if settled is not None:
            return settled
        request = state.announcement.request
        beacon = chain.block_id_at(beacon_height(request, chain.params))
        if beacon is None:  # a reorg took the chain below the beacon block again
            return f"waiting for the beacon block at height {beacon_height(request, chain.params)}"
        for tx in mempool.transactions():
            # a pending settlement naming another branch's beacon block can never apply here
            if settles(tx, state.round_id) and \
                    isinstance(tx.payload, SettleSwarmRound | SettleSwarmRoot) and \
                    tx.payload.beacon_block == beacon:
                return f"submitted: tx {tx.id().hex()} by {tx.sender.hex()}"
        commitments, answer_openings, judgment_openings = round_data(state)
        payload: Payload = build_settlement(
            chain_state, height=state.height, beacon_block=beacon, request=request,
            answerers=state.answerers, judges=state.judges, commitments=commitments,
            answer_openings=answer_openings, judgment_openings=judgment_openings,
            min_stake=chain.params.min_node_stake,
            epoch_blocks=chain.params.swarm_epoch_blocks)
        # a round too large for a transaction settles by its data root (held for the window)
        if chain.params.swarm_inclusion_window and len(encode(payload)) > MAX_TX_SIZE - 256:
            payload, _leaves = build_root_settlement(
                chain_state, height=state.height, beacon_block=beacon, request=request,
                answerers=state.answerers, judges=state.judges, commitments=commitments,
                answer_openings=answer_openings, judgment_openings=judgment_openings,
                min_stake=chain.params.min_node_stake,
                epoch_blocks=chain.params.swarm_epoch_blocks)
        return self._sign(chain_state, payload)

    def _sign(self, chain_state: State, payload: Payload, offset: int = 0) -> Transaction:
        """Chain thread: ``payload`` signed with our next free nonce (+ ``offset``)."""
        chain, me = self.host.chain, self.host.node_id
        pending = self.host.mempool.pending_of(me)
        nonce = pending[-1].nonce + 1 if pending else chain_state.account(me).nonce
        return sign_transaction(bytes(self.host.identity), chain_id=chain.params.chain_id,
                                nonce=nonce + offset, fee=self.fee, payload=payload)

    async def _submit(self, state: RoundState) -> None:
        """Send the round's settlement transaction once, unless it is settled or pending.

        A failure (e.g. a duplicate that raced ours: ``swarm.already_settled``) ends in a
        ``failed: …`` status; nothing is retried."""
        try:
            async with self._sending:
                built = await self.host.call_chain(self._transaction, state)
                if isinstance(built, SettledBy):
                    state.settled = built
                    state.settlement_status = built.status()
                    return
                if isinstance(built, str):
                    state.settlement_status = built
                    return
                state.settlement_tx = await self.host.submit_transaction(built)
        except (ValueError, ConsensusError) as exc:
            state.settlement_status = f"failed: {exc}"
            log_event(log, "swarm.settlement_failed", round=state.round_id, error=str(exc))
            return
        state.settlement_status = \
            f"submitted: tx {state.settlement_tx.hex()} by {self.host.node_id.hex()}"
        log_event(log, "swarm.settlement_sent", round=state.round_id, tx=state.settlement_tx)

    def settled_by(self, state: RoundState, chain_state: State) -> SettledBy | None:
        """The transaction that settled the round on our chain (cached per block), if any."""
        settled = settled_round(chain_state, state.round_id)
        if settled is None:
            return None
        chain = self.host.chain
        block_id = chain.block_id_at(settled.height) or b""
        cached = state.settled
        if cached is not None and (cached.height, cached.block_id) == (settled.height,
                                                                      block_id):
            return cached
        block = chain.get_block(block_id) if block_id else None
        for tx in () if block is None else block.transactions:
            if settles(tx, state.round_id):
                return SettledBy(height=settled.height, block_id=block_id, tx_id=tx.id(),
                                 settler=tx.sender)
        return SettledBy(height=settled.height, block_id=block_id, tx_id=b"", settler=b"")

    def settled_for_good(self, state: RoundState) -> bool:
        """True iff the round is settled and no challenge can undo it any more: not held in
        an inclusion window (docs/swarm.md §7a). Until then a node keeps the round's data: it
        may have to challenge, post leaves or settle again."""
        if state.settled is None:
            return False
        return held_round(State(self.host.chain.state_view()), state.round_id) is None

    def status(self, state: RoundState) -> str:
        """The round's settlement status, refreshed from chain state: ``settled at height h:
        tx … by …`` on every node once a block holds the settlement."""
        settled = self.settled_by(state, State(self.host.chain.state_view()))
        if settled is not None:
            state.settled = settled
            state.settlement_status = settled.status()
        return state.settlement_status

    def note_settled(self, rounds: Iterable[RoundState]) -> None:
        """After a tip change: note which rounds are now settled, so every round view says so
        without being asked first."""
        chain = self.host.chain
        chain_state = State(chain.state_view())
        oldest = chain.height - MAX_SETTLEMENT_LAG  # older rounds cannot settle now
        for state in rounds:
            if state.height >= max(1, oldest) and state.settled is None and \
                    state.status == "complete":
                settled = self.settled_by(state, chain_state)
                if settled is not None:
                    state.settled = settled
                    state.settlement_status = settled.status()

    async def drop_duplicates(self, rounds: Iterable[RoundState] = ()) -> None:
        """After a tip change: drop duplicate settlements of settled rounds and settlements
        naming a beacon block our chain no longer has (a reorg), and settle those of
        ``rounds`` again (chain thread for the mempool)."""
        try:
            stale = await self.host.call_chain(self._drop_settled_duplicates)
        except RuntimeError:  # the chain thread is gone (node stopping)
            return
        again = [state for state in rounds if state.round_id in stale]
        await asyncio.gather(*(self.run(state) for state in again))

    def _drop_settled_duplicates(self) -> set[bytes]:
        """Chain thread: a second settlement of a round settled by someone else can never
        apply, nor can one naming another branch's beacon block (after a reorg); the mempool
        only re-checks the senders of the new block, so it would sit there (and block its
        sender's later nonces) until it expires. Re-check its sender now. Returns the rounds
        whose pending settlement named a stale beacon (they must be settled again)."""
        chain, mempool = self.host.chain, self.host.mempool
        chain_state = State(chain.state_view())
        senders: set[bytes] = set()
        stale: set[bytes] = set()
        for tx in mempool.transactions():
            if not isinstance(tx.payload, SettleSwarmRound | SettleSwarmRoot):
                continue
            request = tx.payload.request
            if settled_round(chain_state, request.round_id()) is not None:
                senders.add(tx.sender)
            elif chain.block_id_at(beacon_height(request, chain.params)) != \
                    tx.payload.beacon_block:
                senders.add(tx.sender)
                stale.add(request.round_id())
        if senders:
            mempool.revalidate(senders, tip=chain.tip_view())
            log_event(log, "swarm.settlement_duplicates_dropped", senders=len(senders),
                      stale_beacon=len(stale))
        return stale

    async def watch(self, rounds: Iterable[RoundState]) -> None:
        """After a tip change: challenge the held settlements of our rounds that left out or
        misstated data we hold, post our leaves when asked, and settle a round again once our
        challenge voided its settlement (module docstring)."""
        if not self.watching:
            return
        again: list[RoundState] = []
        backups: list[RoundState] = []
        async with self._sending:  # the plan signs with our next nonces
            try:
                planned = await self.host.call_chain(self._watch_plan, list(rounds))
            except RuntimeError:  # the chain thread is gone (node stopping)
                return
            for state, key, txs in planned:
                if key[2] == "voided":
                    state.settled = None
                    state.settlement_status = "voided: a challenge proved the settlement wrong"
                    log_event(log, "swarm.settlement_voided", round=state.round_id)
                    if self.enabled and state.round_id in self.challenged:
                        again.append(state)  # we hold the data the challenge proved
                    else:
                        backups.append(state)  # the usual duty order, with its backoff
                    continue
                sent: list[bytes] = []
                for tx in txs:
                    try:
                        sent.append(await self.host.submit_transaction(tx))
                    except (ValueError, ConsensusError) as exc:
                        log_event(log, "swarm.challenge_failed", round=state.round_id,
                                  step=key[2], error=str(exc))
                        break
                if not sent:
                    self._reserved.discard(key)  # try again on the next tip
                    continue
                self.challenged.setdefault(state.round_id, []).extend(sent)
                state.settlement_status = f"challenged: {key[2]}, tx {sent[0].hex()}"
                log_event(log, "swarm.challenge_sent", round=state.round_id, step=key[2],
                          txs=len(sent))
        for state in again:
            await self._submit(state)
        await asyncio.gather(*(self.run(state) for state in backups))

    def _watch_plan(self, rounds: list[RoundState]
                    ) -> list[tuple[RoundState, tuple[bytes, bytes, str], list[Transaction]]]:
        """Chain thread: per round, the transactions the watcher sends now (each step once
        per settlement, keyed by round, data root and step)."""
        chain = self.host.chain
        chain_state = State(chain.state_view())
        plan: list[tuple[RoundState, tuple[bytes, bytes, str], list[Transaction]]] = []
        offset = 0
        known = {state.round_id for state in rounds}
        self._reserved = {key for key in self._reserved if key[0] in known}
        for rid in [rid for rid in self.challenged if rid not in known]:
            del self.challenged[rid]
        for state in rounds:
            if state.status != "complete" or not state.height or state.compacted:
                continue
            rid = state.round_id
            held = held_round(chain_state, rid)
            if held is None:
                # a settlement we saw (or challenged) is gone: a challenge voided it (or a
                # reorg dropped it), and the round must settle again
                mark = state.settled.tx_id if state.settled is not None else (
                    self.challenged[rid][-1] if rid in self.challenged else None)
                key = (rid, mark or b"", "voided")
                if mark is not None and key not in self._reserved and \
                        settled_round(chain_state, rid) is None:
                    self._reserved.add(key)
                    plan.append((state, key, []))
                continue
            # a challenge must land at or before the held settlement's deadline
            if chain.height + 1 > held.deadline:
                continue
            step = self._step(chain_state, state, held)
            if step is None:
                continue
            name, payloads = step
            key = (rid, held.data_root, name)
            if key in self._reserved:
                continue
            self._reserved.add(key)
            txs = []
            for payload in payloads:
                txs.append(self._sign(chain_state, payload, offset))
                offset += 1
            plan.append((state, key, txs))
        return plan

    def _step(self, chain_state: State, state: RoundState, held: HeldRound
              ) -> tuple[str, list[Payload]] | None:
        """What to send against ``held`` given the round data we hold, if anything."""
        rid = state.round_id
        commitments, answer_openings, judgment_openings = round_data(state)
        leaves = self._settler_leaves(chain_state, state, held)
        if leaves is not None:
            claims = self._claims_now(held, leaves, provable_claims(
                leaves, round_id=rid, commitments=commitments, answer_openings=answer_openings,
                judgment_openings=judgment_openings))
            if not claims:
                return None
            return CLAIM_NAMES[claims[0].claim], [challenge_payload(rid, leaves, claims[0])]
        # a data-root settlement whose leaves are not on chain: compare with ours
        mine = round_leaves(round_id=rid, answerers=held.answerers, judges=held.judges,
                            commitments=commitments, answer_openings=answer_openings,
                            judgment_openings=judgment_openings)
        same_root = leaves_root(mine) == held.data_root
        asked = held.challenger != NO_CHALLENGER
        if same_root and (asked or recompute_outcome(held, mine) != held.outcome):
            # our leaves are the settlement's: posting them answers an availability
            # challenge, and the chain recomputes the outcome from them
            return "post", list(post_payloads(rid, mine))
        if not same_root and not asked:
            return CLAIM_NAMES[CLAIM_UNAVAILABLE], [
                ChallengeSwarmRound(round_id=rid, claim=CLAIM_UNAVAILABLE)]
        return None

    def _claims_now(self, held: HeldRound, leaves: tuple[RoundLeaf, ...], claims: list[Claim]
                    ) -> list[Claim]:
        """The claims to prove now, ours first. Adding another node's left-out data makes that
        node pay the late-reveal penalty (`swarm.inclusion.challenge_award`), and it proves
        its own for free, so we add it only in the window's second half, if still missing."""
        me = self.host.node_id
        window = self.host.chain.params.swarm_inclusion_window
        second_half = self.host.chain.height + 1 > held.deadline - window // 2
        mine = [c for c in claims if leaves[c.slot].node == me]
        others = [c for c in claims if leaves[c.slot].node != me and (
            c.claim not in WITHHELD_DATA_CLAIMS or second_half)]
        return mine + others

    def _settler_leaves(self, chain_state: State, state: RoundState, held: HeldRound
                        ) -> tuple[RoundLeaf, ...] | None:
        """The settlement's leaves: from the settlement transaction in its block (full), or
        from chain state once all are posted (data root); None if not known."""
        if not held.full:
            return posted_leaves(chain_state, state.round_id, held)
        settled = self.settled_by(state, chain_state)
        if settled is None:
            return None
        block = self.host.chain.get_block(settled.block_id)
        for tx in () if block is None else block.transactions:
            if tx.id() == settled.tx_id and isinstance(tx.payload, SettleSwarmRound):
                return settlement_leaves(tx.payload)
        return None
