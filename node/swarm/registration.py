"""Automatic swarm registration: a node that serves a model joins the chain's swarm registry.

Without it a node's rounds run under the interim candidate rule (`node.swarm.service`) and
never settle. With ``swarm_register = true`` (and a ``swarm_backend``) the node walks the
registry's steps itself, one tip at a time, each decided from chain state at the tip and the
node's own pending transactions (so a restart, a reorg or a lost transaction only repeats a
step, and nonces keep every step idempotent):

1. ``staking``: bonded stake below ``swarm_stake`` (at least the chain's ``min_node_stake``)
   -> send `Stake` for the difference, and in the same breath `RegisterSwarmNode` with the
   backend's model id (the next nonce: both fit one block, the registration applies after
   the stake). A registered node whose stake fell (a slash) only tops it up; one that left
   the registry index (evicted below the minimum stake) or serves another model registers
   again.
2. ``registering``: wait until the registration is in a block.
3. ``calibrating``: registered, not capable -> answer
   `contracts.registry.calibration_prompts(tip id, node id, models)` (the suite of the
   registered models: the question set for SmolLM2, arithmetic otherwise) with the node's
   own backend, all 16 in one batched call when the backend has ``answer_many``, and send
   `SubmitCalibration` naming the tip as its seed block. It stays valid while that block is
   one of the chain's last `CALIBRATION_WINDOW` blocks, so the node answers once and waits;
   only if the seed leaves the window (or a reorg drops it) before the transaction lands
   does the node's pool drop it, and the node answers the new tip's prompts, with a 10 %
   higher fee (peers may still hold the old one under the same nonce; the mempool replaces
   only at +10 %). Answers to a seed still in the window are never computed twice.
4. ``calibration_failed``: the calibration landed but failed; the contract refuses a retry
   for `CALIBRATION_RETRY_BLOCKS` blocks (``calibration.too_soon``), so the node waits until
   then (``retry_height``) and logs it once.
5. ``calibrated``: capable. The machine keeps reading state on every tip (cheap) and starts
   again if the capability goes away (a reorg, a new model).

Status (`SwarmRegistration.status`) is served at ``GET /api/v1/swarm/registration`` and shown
by ``pouwchain testnet status``. Nothing here runs while the node syncs: a node behind the
chain would resend what it already did.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from consensus.block import BlockHeader
from consensus.tx import Transaction, sign_transaction
from contracts.base import Payload
from contracts.registry import (
    CALIBRATION_RETRY_BLOCKS,
    CALIBRATION_WINDOW,
    MAX_CALIBRATION_ANSWER,
    RegisterSwarmNode,
    SubmitCalibration,
    SwarmCapability,
    calibration_prompts,
    capability,
    swarm_node_ids,
)
from contracts.staking import Stake
from core.errors import ConsensusError
from core.state import State
from node.logging import get_logger, log_event
from node.swarm.host import SwarmHost, SwarmPeers
from swarm.calibration import ARITHMETIC_SUITE, Suite, suite_for
from swarm.runtime.base import Answer, BackendError, InferenceBackend
from swarm.tasks import extract_integer

log = get_logger("swarm.registration")
ROUTE = "/api/v1/swarm/registration"  # served by node.api.chat
TX_FEE = 10  # fee of the registration transactions (the dev chain's usual fee)
FEE_BUMP_PERCENT = 10  # node.chain.mempool.MempoolConfig.replace_bump_percent
ANSWER_TOKENS = 64
ANSWER_TIMEOUT = 30.0  # seconds per calibration question (a batch of 16 gets 16 times this)

OFF = "off"
STARTING = "starting"
WAITING_SYNC = "waiting_sync"
UNFUNDED = "unfunded"
STAKING = "staking"
REGISTERING = "registering"
CALIBRATING = "calibrating"
CALIBRATION_FAILED = "calibration_failed"
CALIBRATED = "calibrated"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one step decides from, read on the chain thread at one tip."""

    tip_id: bytes
    height: int
    balance: int
    next_nonce: int  # state nonce + the node's own pending transactions
    bonded: int
    models: tuple[bytes, ...] | None  # registered models (None: not registered)
    indexed: bool  # in the registry index (a node whose stake fell too low is evicted)
    min_stake: int  # the chain's min_node_stake
    capability: SwarmCapability | None
    pending_txs: tuple[Transaction, ...]  # the node's own pending transactions
    # the tip's id and its ancestors' (the window a calibration sent now may name a seed in)
    recent_ids: tuple[bytes, ...] = ()

    @property
    def pending(self) -> tuple[Payload, ...]:
        """The payloads of our pending transactions (what a step must not send again)."""
        return tuple(tx.payload for tx in self.pending_txs)


def _has(pending: tuple[Payload, ...], kind: type[Payload]) -> bool:
    """True iff a pending payload is a ``kind``."""
    return any(isinstance(p, kind) for p in pending)


@runtime_checkable
class BatchAnswerer(Protocol):
    """A backend that answers many prompts in one call (SmolLM2: one batched generation;
    the built-in model: one batched forward). Its ``max_tokens`` is optional."""

    def answer_many(self, prompts: Sequence[str], *args: Any, **kwargs: Any) -> list[Answer]:
        ...


def calibration_text(text: str, suite: Suite = ARITHMETIC_SUITE) -> bytes:
    """An answer as sent on chain: the text if it fits `MAX_CALIBRATION_ANSWER` bytes, else
    what the suite's grader reads of it: the arithmetic suite's last integer
    (`swarm.calibration.CalibrationQuestion.check`), the question set's first
    MAX_CALIBRATION_ANSWER bytes (cut on a character boundary; a model states its answer
    first, and `docs/swarm.md`'s measured accuracy is of answers cut so)."""
    raw = text.strip().encode()
    if len(raw) <= MAX_CALIBRATION_ANSWER:
        return raw
    if suite != ARITHMETIC_SUITE:
        return raw[:MAX_CALIBRATION_ANSWER].decode("utf-8", "ignore").encode()
    value = extract_integer(text)
    return b"" if value is None else str(value).encode()[:MAX_CALIBRATION_ANSWER]


async def answer_prompts(backend: InferenceBackend, prompts: Sequence[str], *,
                         max_tokens: int = ANSWER_TOKENS) -> list[str]:
    """The backend's answers to ``prompts``, in order: one batched ``answer_many`` call (in
    a worker thread; greedy if it takes a ``temperature``) when the backend has one, else
    one ``answer`` after another."""
    if isinstance(backend, BatchAnswerer):
        many = backend.answer_many
        accepts = inspect.signature(many).parameters
        # greedy when the backend can say so (SmolLM2): a node's sampling temperature is for
        # rounds; calibration measures the model at its best, as docs/swarm.md did
        kwargs: dict[str, Any] = {k: v for k, v in (("max_tokens", max_tokens),
                                                    ("temperature", 0.0)) if k in accepts}
        answers = await asyncio.to_thread(many, list(prompts), **kwargs)
        if len(answers) != len(prompts):
            raise BackendError(f"{len(answers)} answers to {len(prompts)} prompts")
        return [a.text for a in answers]
    return [(await backend.answer(p, max_tokens=max_tokens)).text for p in prompts]


def bumped_fee(fee: int) -> int:
    """The smallest fee that replaces a pending transaction paying ``fee``."""
    return -(-fee * (100 + FEE_BUMP_PERCENT) // 100)


class SwarmRegistration:
    """The node's registration state machine; `poke` it on every new tip (the builder
    makes it a tip listener), `start` it once the node listens."""

    def __init__(self, host: SwarmHost, peers: SwarmPeers, backend: InferenceBackend | None,
                 *, enabled: bool, stake: int, fee: int = TX_FEE,
                 retry_blocks: int = CALIBRATION_RETRY_BLOCKS) -> None:
        self.host = host
        self.peers = peers
        self.backend = backend
        self.enabled = enabled and backend is not None
        self.stake = stake
        self.fee = fee
        self.retry_blocks = retry_blocks
        self.phase = OFF if not self.enabled else STARTING
        self.attempts = 0  # calibration transactions sent
        self.missed = 0  # calibrations that did not land in the block after their tip
        self.last_tx: bytes | None = None
        self.last_error: str | None = None
        self.retry_height: int | None = None
        self.calibration: SwarmCapability | None = None
        self.started_at = time.time()
        self.registered_at: float | None = None
        self.calibrated_at: float | None = None
        self._calibration_sent: tuple[int, int, bytes] | None = None  # (nonce, fee, seed id)
        # the answers computed last: (seed block id, models, on-chain texts, tip height then)
        self._answers: tuple[bytes, tuple[bytes, ...], tuple[bytes, ...], int] | None = None
        self._logged: set[str] = set()  # one-off log lines already written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._steps = 0

    @property
    def node_id(self) -> bytes:
        """Our node id: the account that stakes, registers and calibrates."""
        return self.host.node_id

    # -- driving -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the machine in a task: one step at start, then one per `poke` (new tip)."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run())
            self.poke()

    async def stop(self) -> None:
        """End the machine's task (a step in flight is cancelled; nonces make it safe)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def poke(self, header: BlockHeader | None = None) -> None:
        """A new tip (or start): take a step soon. Steps never overlap; pokes during a step
        collapse into one more step after it."""
        self._wake.set()

    async def _run(self) -> None:
        """One step per wake-up, forever: a failing step is logged, never the end."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken step must not end registration
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("swarm.registration.step_failed")
            self._steps += 1

    # -- one step ------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        """Chain thread: drop the node's own stale transactions (a calibration for an older
        tip), then read what the step needs."""
        chain, mempool, me = self.host.chain, self.host.mempool, self.node_id
        tip = chain.tip_view()
        mempool.revalidate([me], tip=tip)
        state = State(chain.state_view())
        account = state.account(me)
        pending = mempool.pending_of(me)
        record = state.swarm_node(me)
        # the seeds a calibration may still name (the tip view holds more recent ids)
        return Snapshot(tip_id=chain.tip_id,
                        recent_ids=tip.recent_block_ids[:CALIBRATION_WINDOW],
                        height=chain.height, balance=account.balance,
                        next_nonce=account.nonce + len(pending),
                        bonded=state.stake(me).bonded,
                        models=None if record is None else tuple(record.models),
                        indexed=me in swarm_node_ids(state),
                        min_stake=chain.params.min_node_stake,
                        capability=capability(state, me),
                        pending_txs=tuple(pending))

    async def step(self) -> str:
        """Decide from chain state at the tip and send what is missing; the new phase."""
        if not self.enabled:
            return self.phase
        if self.host.syncing:
            if self.phase == STARTING:
                self.phase = WAITING_SYNC  # nothing decided yet: say why
            return self.phase
        snap = await self.host.call_chain(self._snapshot)
        for tx in snap.pending_txs:  # peers that missed it (we sent before they connected)
            self.peers.broadcast_tx(tx, raw=tx.encode(), tx_id=tx.id())
        assert self.backend is not None
        model = self.backend.model_id
        registered = snap.indexed and snap.models is not None and model in snap.models
        self.calibration = snap.capability
        if await self._register(snap, model, registered=registered):
            return self.phase  # sent stake and/or registration: the next tip goes on
        if not registered:
            self.phase = REGISTERING  # ours is pending
            return self.phase
        if self.registered_at is None:
            self.registered_at = time.time()
        if snap.capability is not None and snap.capability.capable:
            self._calibration_sent = None  # it landed
            self.calibrated_at = self.calibrated_at or time.time()
            self.retry_height = None
            self._log_once(f"calibrated/{snap.capability.height}",
                           "swarm.registration.calibrated", height=snap.capability.height,
                           correct=snap.capability.correct, model=model,
                           seconds=round(self.calibrated_at - self.started_at, 1))
            self.phase = CALIBRATED
            return self.phase
        await self._calibrate(snap)
        return self.phase

    async def _register(self, snap: Snapshot, model: bytes, *, registered: bool) -> bool:
        """Send what is missing of stake (below the target: never staked, or slashed) and
        registration (absent, another model, or evicted from the index); True if anything
        was sent or could not be paid for (the step ends there)."""
        payloads: list[Payload] = []
        need = max(self.stake, snap.min_stake) - snap.bonded
        if need > 0 and not _has(snap.pending, Stake):
            payloads.append(Stake(amount=need))
        else:
            need = 0
        if not registered and not _has(snap.pending, RegisterSwarmNode):
            payloads.append(RegisterSwarmNode(models=(model,)))
        if not payloads:
            return False
        cost = self.fee * len(payloads) + need
        if snap.balance < cost:
            self.phase = UNFUNDED
            self.last_error = f"balance {snap.balance} < {cost} (stake {need} + fees)"
            self._log_once(f"unfunded/{snap.balance}", "swarm.registration.unfunded",
                           balance=snap.balance, needed=cost)
            return True
        if not registered:
            self.phase = STAKING if need else REGISTERING
        for offset, payload in enumerate(payloads):
            if not await self._send(payload, nonce=snap.next_nonce + offset, fee=self.fee):
                return True
        log_event(log, "swarm.registration.sent", stake=need, model=model, height=snap.height,
                  register=not registered)
        if not registered:
            self.phase = REGISTERING
        return True

    async def _calibrate(self, snap: Snapshot) -> None:
        """Registered, not capable: answer this tip's calibration prompts and send them,
        unless a failed calibration must wait for ``calibration.too_soon`` to pass."""
        record = snap.capability
        if record is not None and not record.capable and self._answers is not None and \
                record.height > self._answers[3]:
            self._answers = None  # those answers landed and failed: a retry answers anew
        if record is not None and not record.capable:
            # the contract takes a retry in a block at height >= failed height + retry blocks
            retry = record.height + self.retry_blocks
            if snap.height + 1 < retry:
                self._calibration_sent = None  # it landed (and failed): not a miss
                self.phase = CALIBRATION_FAILED
                self.retry_height = retry - 1  # the tip whose prompts the retry answers
                self._log_once(f"failed/{record.height}", "swarm.registration.calibration_failed",
                               correct=record.correct, height=record.height,
                               waits_for="calibration.too_soon", retry_at_tip=retry - 1)
                return
        self.phase = CALIBRATING
        if _has(snap.pending, SubmitCalibration):
            return  # valid while its seed block is in the window: wait for a block
        sent = self._calibration_sent
        if sent is not None and sent[2]:  # it left the pool without landing: its seed left
            self.missed += 1              # the window (or a reorg dropped it)
            log_event(log, "swarm.registration.calibration_missed", seed=sent[2],
                      tip=snap.tip_id, height=snap.height)
            self._calibration_sent = (sent[0], sent[1], b"")  # counted once
        models = snap.models or ()
        cached = self._answers
        if cached is not None and cached[0] in snap.recent_ids and cached[1] == models:
            seed, answers = cached[0], cached[2]  # answered already: send those again
        else:
            seed = snap.tip_id
            fresh = await self._answer(seed, models)
            if fresh is None:
                return
            answers = fresh
            self._answers = (seed, models, answers, snap.height)
        nonce = snap.next_nonce
        fee = self.fee
        if sent is not None and sent[0] == nonce:  # peers may hold the old one: replace it
            fee = max(fee, bumped_fee(sent[1]))
        payload = SubmitCalibration(seed_block=seed, answers=answers)
        # answering may have taken blocks: the pool takes it while the seed is in the window
        # (else it is rejected as calibration.stale_seed and the next step answers anew)
        if await self._send(payload, nonce=nonce, fee=fee):
            self._calibration_sent = (nonce, fee, seed)
            self.attempts += 1
            log_event(log, "swarm.registration.calibration_sent", seed=seed,
                      height=snap.height, tip=self.host.chain.height, attempt=self.attempts,
                      fee=fee)

    async def _answer(self, seed: bytes, models: tuple[bytes, ...]) -> tuple[bytes, ...] | None:
        """Our backend's answers to the calibration prompts of ``seed`` (None: it failed)."""
        assert self.backend is not None
        prompts = calibration_prompts(seed, self.node_id, models)
        started = time.monotonic()
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT * len(prompts)):
                texts = await answer_prompts(self.backend, prompts, max_tokens=ANSWER_TOKENS)
        except (BackendError, TimeoutError) as exc:
            self.last_error = f"backend: {exc}"
            log_event(log, "swarm.registration.backend_failed", error=str(exc))
            return None
        suite = suite_for(models)
        log_event(log, "swarm.registration.calibration_answered", seed=seed, suite=suite.name,
                  seconds=round(time.monotonic() - started, 1))
        return tuple(calibration_text(text, suite) for text in texts)

    async def _send(self, payload: Payload, *, nonce: int, fee: int) -> bool:
        """Sign and submit one step's transaction; False (and why, in ``last_error``) if the
        node refused it."""
        tx = sign_transaction(bytes(self.host.identity), chain_id=self.host.chain.params.chain_id,
                              nonce=nonce, fee=fee, payload=payload)
        try:
            self.last_tx = await self.host.submit_transaction(tx)
        except (ValueError, ConsensusError) as exc:
            reason = str(getattr(exc, "reason", "") or exc)
            self.last_error = f"{type(payload).__name__} rejected: {reason}"
            if "calibration.too_soon" in reason:
                self.phase = CALIBRATION_FAILED
            log_event(log, "swarm.registration.rejected", payload=type(payload).__name__,
                      reason=reason, nonce=nonce)
            return False
        self.last_error = None
        return True

    def _log_once(self, key: str, event: str, **fields: Any) -> None:
        """Log ``event`` once per ``key``: steps repeat on every tip, the log should not."""
        if key not in self._logged:
            self._logged.add(key)
            log_event(log, event, **fields)

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """JSON view for the API and ``testnet status``."""
        record = self.calibration
        model = None if self.backend is None else self.backend.model_id.hex()
        return {
            "enabled": self.enabled, "phase": self.phase, "model": model,
            "stake": self.stake, "attempts": self.attempts, "missed": self.missed,
            "calibration": None if record is None else {
                "passed": bool(record.capable), "height": record.height,
                "correct": record.correct},
            "retry_height": self.retry_height,
            "last_tx": None if self.last_tx is None else self.last_tx.hex(),
            "last_error": self.last_error,
            "seconds_to_register": None if self.registered_at is None
            else round(self.registered_at - self.started_at, 1),
            "seconds_to_calibrate": None if self.calibrated_at is None
            else round(self.calibrated_at - self.started_at, 1),
        }
