"""Swarm node registry: staked accounts announce which models they serve, and prove they can.

Registration requires bonded stake so that spamming the registry costs capital; registering
again replaces the previous entry (the models list is a sorted set: one encoding).

State keeps one canonical index of every registered node (``swindex``: node ids, strictly
increasing, so every validator iterates them in the same order) and, per node, a
calibration record (``swcap/<addr>``). A node becomes *capable* (eligible for selection,
`swarm.selection.Candidate.capable`) only by passing calibration:

* the node's suite follows its registered models (`swarm.calibration.suite_for`): the
  shipped question set's ``calibration`` split for a language model (SmolLM2), the
  arithmetic families for every other model; the questions are drawn from the seed
  ``H_"pouw/swcalseed"(seed block id ‖ node id)``, so each node gets its own questions
  (copying another's answers does not help);
* the seed block is one of the last `CALIBRATION_WINDOW` blocks of the chain the
  calibration lands on (its block's parent or one of the parent's ancestors, given to the
  transition as ``TxContext.recent_block_ids``): its id was unknown until it was mined, and
  the node has the window's blocks to answer and land the transaction (a slow model needs
  many seconds);
* the node answers with `SubmitCalibration` (its transaction signature commits the
  answers to its key), naming the seed block;
* the contract regenerates the questions and grades them with the suite's integer pass
  mark (`Suite.pass_mark` out of `CALIBRATION_QUESTIONS`); the result (pass or fail) is
  stored, a failed node stays not capable and may retry after `CALIBRATION_RETRY_BLOCKS`;
* registering again with a different model list clears the flag (the new models must be
  proven).

The index only holds staked nodes: at each swarm epoch start (the first transaction of the
epoch, `contracts.swarm.record_epoch_snapshot`) every indexed node whose bonded stake is
below ``min_node_stake`` is evicted (`evict_unstaked`): out of the index, registration
deleted, a passed calibration deleted. So the index is bounded by the nodes holding the
minimum stake, and a filled index (``register.registry_full``) costs
``MAX_SWARM_NODES · min_node_stake`` of bonded stake.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, ClassVar

from contracts.base import Payload, PayloadKind, TxContext, require
from core.encoding import U64, Canonical, FixedBytes, Hash32, ListOf, UInt, VarBytes, tagged_hash
from core.records import MAX_ENDPOINT, ModelIds, SwarmNode
from core.state import State
from swarm.calibration import (
    ARITHMETIC_SUITE,
    QUESTION_SUITE,
    AnyQuestion,
    grade,
    suite_for,
    suite_questions,
)

INDEX_KEY = b"swindex"
CAPABILITY_PREFIX = b"swcap/"
MAX_SWARM_NODES = 4096  # index size bound (a settlement iterates it)
CALIBRATION_QUESTIONS = 16  # questions of every suite
#: the arithmetic suite's integer pass mark (the question set's: `QUESTION_SUITE.pass_mark`)
CALIBRATION_PASS = ARITHMETIC_SUITE.pass_mark
#: a calibration's seed block must be one of the last this many blocks of the chain it lands
#: on (the parent of its block and the parent's ancestors): ~3 min of 3 s dev blocks, room
#: for SmolLM2 to answer its 16 questions (one batch: ~20 s on an idle 2-core machine, 107 s
#: measured with three other model processes on the same 2 cores) and for the transaction
#: to land
CALIBRATION_WINDOW = 64
CALIBRATION_RETRY_BLOCKS = 100  # a failed node waits this long before trying again
#: Reputation a node earns by passing calibration with every answer right (scaled by the
#: share right): the decay floor (contracts.swarm.REPUTATION_FLOOR), so a newcomer starts
#: where an idle node ends up, and only rounds lift it higher.
CALIBRATION_REPUTATION = 100
MAX_CALIBRATION_ANSWER = 256  # bytes per answer text (a language model answers in words)
CALIBRATION_SEED_TAG = b"pouw/swcalseed"
if {ARITHMETIC_SUITE.count, QUESTION_SUITE.count} != {CALIBRATION_QUESTIONS}:
    raise RuntimeError("every calibration suite asks CALIBRATION_QUESTIONS questions")


@dataclasses.dataclass(frozen=True)
class SwarmNodeIndex(Canonical):
    """Every registered swarm node id, strictly increasing (one order for all validators)."""

    TAG: ClassVar[bytes] = b"pouw/swindex"
    MEMOISE: ClassVar[bool] = False
    nodes: Annotated[tuple[bytes, ...], ListOf(FixedBytes(32), MAX_SWARM_NODES,
                                               strictly_increasing=True)] = ()


@dataclasses.dataclass(frozen=True)
class SwarmCapability(Canonical):
    """A node's last calibration: passed or not, when, and how many answers were right."""

    TAG: ClassVar[bytes] = b"pouw/swcapability"
    MEMOISE: ClassVar[bool] = False
    capable: Annotated[int, UInt(1)]
    height: U64
    correct: U64


@dataclasses.dataclass(frozen=True)
class RegisterSwarmNode(Payload):
    """Register (or update) the sender as a swarm node serving ``models``."""

    KIND_ID: ClassVar[int] = 4
    models: ModelIds
    endpoint: Annotated[bytes, VarBytes(MAX_ENDPOINT)] = b""


CalibrationAnswers = Annotated[
    tuple[bytes, ...], ListOf(VarBytes(MAX_CALIBRATION_ANSWER), CALIBRATION_QUESTIONS)
]


@dataclasses.dataclass(frozen=True)
class SubmitCalibration(Payload):
    """The sender's answers (UTF-8 text, one per question, in order) to the calibration
    questions drawn from ``seed_block`` (one of the last `CALIBRATION_WINDOW` blocks of the
    chain the including block extends)."""

    KIND_ID: ClassVar[int] = 11
    seed_block: Hash32
    answers: CalibrationAnswers


def swarm_node_ids(state: State) -> tuple[bytes, ...]:
    """Every registered swarm node id, in increasing order."""
    index = state.record(INDEX_KEY, SwarmNodeIndex)
    return () if index is None else index.nodes


def capability(state: State, address: bytes) -> SwarmCapability | None:
    """The node's last calibration result (None: never calibrated)."""
    return state.record(CAPABILITY_PREFIX + address, SwarmCapability)


def is_capable(state: State, address: bytes) -> bool:
    """True iff the node's last calibration passed (and its models have not changed since)."""
    record = capability(state, address)
    return record is not None and record.capable == 1


def evict_unstaked(state: State, *, min_stake: int,
                   exempt: frozenset[bytes] = frozenset()) -> tuple[bytes, ...]:
    """Unregister every indexed node whose bonded stake is below ``min_stake`` (run at each
    epoch start by `contracts.swarm.record_epoch_snapshot`), except the ``exempt`` ones;
    returns the evicted node ids.

    An evicted node leaves the index, its registration is deleted and a passed calibration
    with it (to rejoin it stakes, registers and calibrates again); a failed calibration is
    kept, so its retry wait stands."""
    nodes = swarm_node_ids(state)
    evicted = tuple(node for node in nodes
                    if state.stake(node).bonded < min_stake and node not in exempt)
    if not evicted:
        return ()
    state.set_record(INDEX_KEY, SwarmNodeIndex(tuple(n for n in nodes if n not in evicted)))
    for node in evicted:
        state.set_swarm_node(node, None)
        if is_capable(state, node):
            state.set_record(CAPABILITY_PREFIX + node, None)
    return evicted


def calibration_seed(seed_block_id: bytes, node: bytes) -> bytes:
    """The question seed of ``node`` answering for block ``seed_block_id``."""
    return tagged_hash(CALIBRATION_SEED_TAG, seed_block_id + node)


def calibration_questions_for(seed_block_id: bytes, node: bytes,
                              models: tuple[bytes, ...] | list[bytes] = ()
                              ) -> list[AnyQuestion]:
    """The questions (with their checks) ``node``, registered with ``models``, answers in a
    `SubmitCalibration` naming ``seed_block_id``."""
    return suite_questions(suite_for(models), calibration_seed(seed_block_id, node))


def calibration_prompts(seed_block_id: bytes, node: bytes,
                        models: tuple[bytes, ...] | list[bytes] = ()) -> list[str]:
    """The prompts ``node`` (registered with ``models``; none given: the arithmetic suite)
    must answer, in order, in a `SubmitCalibration` naming ``seed_block_id``."""
    return [q.prompt for q in calibration_questions_for(seed_block_id, node, models)]


#: What must happen before a registration changes the epoch's candidate table at once (the
#: swarm contract records the table; `contracts.swarm.apply_register_swarm_node` passes it).
TableChangeHook = Callable[[State, TxContext], None]


def register_swarm_node(state: State, payload: RegisterSwarmNode, ctx: TxContext, *,
                        before_table_change: TableChangeHook) -> None:
    """Registration rules, in order."""
    # at least one model must be announced
    require(len(payload.models) > 0, "register.no_models")
    # the sender must have at least the minimum bonded stake
    bonded = state.stake(ctx.sender).bonded
    require(bonded >= ctx.params.min_node_stake, "register.insufficient_stake")
    previous = state.swarm_node(ctx.sender)
    nodes = swarm_node_ids(state)
    if ctx.sender not in nodes:  # new (or evicted, or registered before the index existed)
        # the registry must have room for a new node
        require(len(nodes) < MAX_SWARM_NODES, "register.registry_full")
        if not nodes and is_capable(state, ctx.sender):
            # a calibrated node entering an empty index (registered before the index
            # existed) changes the candidate table at once: the epoch's table is recorded first
            before_table_change(state, ctx)
        state.set_record(INDEX_KEY, SwarmNodeIndex(tuple(sorted((*nodes, ctx.sender)))))
    if previous is not None and previous.models != payload.models:
        # new models must be proven again: the capability flag is cleared
        record = capability(state, ctx.sender)
        if record is not None and record.capable:
            state.set_record(CAPABILITY_PREFIX + ctx.sender,
                             dataclasses.replace(record, capable=0))
    state.set_swarm_node(ctx.sender, SwarmNode(models=payload.models, endpoint=payload.endpoint))


def apply_submit_calibration(state: State, payload: SubmitCalibration, ctx: TxContext) -> None:
    """Calibration rules, in order."""
    registered = state.swarm_node(ctx.sender)
    # the sender must be a registered swarm node
    require(registered is not None, "calibration.unregistered")
    assert registered is not None
    # the block must name its parent (blocks applied without one cannot calibrate)
    require(len(ctx.parent_id) == 32, "calibration.no_parent")
    # the seed block must be one of the last CALIBRATION_WINDOW blocks of this chain (the
    # parent or one of its ancestors): older answers are stale, other chains' blocks unknown
    require(payload.seed_block in ctx.recent_ids()[:CALIBRATION_WINDOW],
            "calibration.stale_seed")
    suite = suite_for(registered.models)
    # one answer per question
    require(len(payload.answers) == suite.count, "calibration.answer_count")
    previous = capability(state, ctx.sender)
    # a node that passed need not (and may not) calibrate again
    require(previous is None or not previous.capable, "calibration.already_capable")
    # a failed node waits before retrying
    require(previous is None or ctx.height >= previous.height + CALIBRATION_RETRY_BLOCKS,
            "calibration.too_soon")
    questions = suite_questions(suite, calibration_seed(payload.seed_block, ctx.sender))
    texts = [raw.decode("utf-8", "replace") for raw in payload.answers]
    result = grade(questions, texts, min_correct=suite.pass_mark)
    state.set_record(CAPABILITY_PREFIX + ctx.sender,
                     SwarmCapability(capable=int(result.passed), height=ctx.height,
                                     correct=result.correct))
    # a node that passes starts with reputation for the share it got right (never lowered)
    if result.passed:
        earned = CALIBRATION_REPUTATION * result.correct // suite.count
        state.set_reputation(ctx.sender, max(state.reputation(ctx.sender), earned))


SUBMIT_CALIBRATION = PayloadKind(SubmitCalibration, apply_submit_calibration)
