"""Builds a node from its config and wires every service, in one place.

In the style of hathor-core's ``hathor/builder/builder.py``: each service gets what it uses
through its constructor, the node gets its services as typed fields, and the order in which
they start (and, reversed, stop) is written down here, nowhere else.

    node = build_node(config)          # ready: await node.start() ... await node.stop()

What a built node has, in order:

1. the core (`node.node.Node`): identity, chain store and database, mempool, peers and sync
   (p2p on ``GET /p2p``); then what must outlive a crash (`Builder.build_durable`): the
   mempool's journal in the chain's LevelDB (re-admitted against the tip; its group commit
   is the first service) with the relay fee policy, and the peers' bans;
2. the chain API (``/api/v1`` and ``/metrics``, `node.api.chain`; writes a fresh API token);
3. the job service and the miner (`node.mining.service.MiningService`; the miner mines
   continuously when ``config.mine``, and ``generate`` works either way) and their routes
   (`node.api.miner`);
4. the swarm: its inference backend (``config.swarm_backend``: ``smollm2`` loads the shipped
   language model with its conversion cache in ``<datadir>/llm-cache`` and the node's
   ``swarm_temperature``/``swarm_system_prompt``; its int8 products mined by the miner on a
   mining node), the round service (SWARM frames, peer capabilities, tips) and the registration
   machine, with the chat/OpenAI and round routes (`node.api.chat`).

``node.services`` is [mining, swarm service, registration]: `Node.start` starts them in that
order once it listens and its peers and sync run; `Node.stop` stops them in reverse order
before it drops its peers. The miner comes before the swarm: a mining node's backend mines
its matmuls through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypedDict

from aiohttp import web

from consensus.tx import Transaction
from node.api import chat
from node.api import finality as finality_api
from node.api import miner as miner_api
from node.api.chain import API_KEY, Api, register_routes
from node.api.explorer import pages as explorer_pages
from node.api.explorer.work import WorkSources
from node.api.miner import MinerApiNode
from node.chain.mempool import (
    JournalFlusher,
    JournalLoad,
    Mempool,
    MempoolConfig,
    MempoolJournal,
)
from node.config import NodeConfig
from node.finality.keys import load_validator_seed
from node.finality.service import FinalityService
from node.mining.miner import MiningSettings
from node.mining.service import MiningHost, MiningService
from node.node import Node
from node.p2p.peer import Peer
from node.p2p.protocol import MsgType
from node.swarm.backend import make_swarm_backend
from node.swarm.registration import SwarmRegistration
from node.swarm.service import SwarmService
from swarm.runtime.base import InferenceBackend


class SwarmOptions(TypedDict, total=False):
    """Round settings of the swarm service beyond the config's (tests shorten timeouts)."""

    answers: int
    judges: int
    answer_timeout: float
    judge_timeout: float
    reveal_timeout: float
    abandon_slack: float
    max_tokens: int
    settlement_fee: int
    settle_backoff: float


class MiningApiHost(MiningHost, MinerApiNode, Protocol):
    """What the miner, the job service and their routes need of the node."""


def build_mining(host: MiningApiHost, settings: MiningSettings, *, app: web.Application,
                 clock: Callable[[], float] = time.time) -> MiningService:
    """The job service and the miner of ``host``, their routes on ``app`` (not started)."""
    mining = MiningService.create(host, settings, clock=clock)
    miner_api.register(app, host, miner=mining.miner, jobs=mining.jobs)
    return mining


class Builder:
    """Builds one node from its config; ``build()`` returns it wired and ready to start.

    ``swarm_backend`` replaces the backend ``config.swarm_backend`` names (tests: a scripted
    model); ``swarm_options`` adjust the rounds; ``clock`` is the miner's time (tests pin
    it); ``api_token`` fixes the API token (default: a fresh one in the data directory).
    """

    def __init__(self, config: NodeConfig, *, swarm_backend: InferenceBackend | None = None,
                 swarm_options: SwarmOptions | None = None,
                 clock: Callable[[], float] = time.time, api_token: str | None = None) -> None:
        self.config = config
        self.swarm_backend = swarm_backend
        self.swarm_options: SwarmOptions = swarm_options or {}
        self.clock = clock
        self.api_token = api_token

    def build(self) -> Node:
        node = Node(self.config)
        try:
            self.build_durable(node)
            self.build_api(node)
            mining = self.build_mining(node)
            self.build_finality(node, mining=mining)
            swarm = self.build_swarm(node, mining=mining)
            self.build_explorer(node, swarm, mining=mining)
        except BaseException:
            node.close()
            raise
        return node

    # -- the parts, in build order ---------------------------------------------------------------

    def build_durable(self, node: Node) -> JournalLoad:
        """The journaled mempool (config's relay fee and sync policy), loaded and revalidated
        against the tip with the transactions a crash-interrupted reorg still owed it, and bans
        kept in (and restored from) the chain's LevelDB."""
        config = self.config
        db = node.chain.db
        journal = MempoolJournal(db, sync=not config.mempool_fsync_interval)
        node.mempool = Mempool(
            params=node.chain.params,
            config=MempoolConfig(min_fee_per_kb=config.min_relay_fee_per_kb),
            journal=journal)
        if config.mempool_fsync_interval:
            # the group commit: stopped (a last fsync) before the node closes its database
            node.services.append(JournalFlusher(journal,
                                                interval=config.mempool_fsync_interval))
        # what a reorg disconnected just before a crash goes back in with the journal, and only
        # then are its markers dropped (`ChainStore.returning_blocks`)
        returning_blocks = node.chain.returning_blocks()
        loaded = node.mempool.load_journal(
            tip=node.chain.tip_view(), now=int(time.time()),
            returning=[tx for block in returning_blocks for tx in block.transactions])
        node.chain.forget_returning(block.header.block_id() for block in returning_blocks)
        restored = node.mempool.transactions()
        for tx in restored:
            node.chain.verified_txs.add(tx.id())  # the load ran the signature rule
        node.peers.attach_store(db)
        if restored:
            node.peers.add_connect_listener(_relay_restored(node, restored))
        return loaded

    def build_api(self, node: Node) -> Api:
        """The chain API and metrics routes (and the error middleware) on the node's app."""
        return register_routes(node.app, node, token=self.api_token)

    def build_mining(self, node: Node) -> MiningService:
        mining = build_mining(node, self.config, app=node.app, clock=self.clock)
        node.jobs = mining.jobs
        node.miner = mining.active_miner
        node.services.append(mining)
        return mining

    def build_finality(self, node: Node, *, mining: MiningService) -> FinalityService:
        """Validator duty (when the datadir holds a validator key), VOTE gossip, the vote
        pool, the aggregate at the end of every template, ``GET /api/v1/finality`` and the
        finality families of ``/metrics``."""
        validator = load_validator_seed(self.config.datadir, identity=node.node_id)
        service = FinalityService(node, node.peers, store=node.chain.db, validator=validator)
        node.peers.register_handler(MsgType.VOTE, service.on_frame)
        node.add_tip_listener(service.on_tip)
        node.peers.add_connect_listener(service.on_connect)
        mining.miner.template_extras.append(service.template_transactions)
        finality_api.register_routes(node.app, service, node)
        node.app[API_KEY].metric_sections.append(finality_api.metrics_section(service))
        node.finality = service
        node.services.append(service)
        return service

    def build_swarm(self, node: Node, *, mining: MiningService) -> SwarmService:
        config = self.config
        backend = self.swarm_backend or make_swarm_backend(
            config.swarm_backend, miner=mining.active_miner, datadir=config.datadir,
            temperature=config.swarm_temperature, system_prompt=config.swarm_system_prompt)
        options: SwarmOptions = {"answers": config.swarm_answers,
                                 "judges": config.swarm_judges,
                                 "settle_backoff": float(config.swarm_settle_backoff)}
        options.update(self.swarm_options)
        service = SwarmService(node, node.peers, backend, **options)
        service.attach_store(node.chain.db)  # rounds until settled (node.swarm.round)
        registration = SwarmRegistration(node, node.peers, backend,
                                         enabled=config.swarm_register,
                                         stake=config.swarm_stake)
        node.peers.register_handler(MsgType.SWARM, service.on_frame)
        node.peers.add_connect_listener(service.on_connect)
        node.add_tip_listener(service.on_tip)
        node.add_tip_listener(registration.poke)
        chat.register_routes(node.app, service, registration)
        node.swarm = service
        node.swarm_registration = registration
        node.services += [service, registration]
        return service

    def build_explorer(self, node: Node, service: SwarmService, *,
                       mining: MiningService) -> explorer_pages.Explorer:
        """The explorer and chat pages at ``/`` (`node.api.explorer`), live on every tip."""
        miner = mining.miner
        explorer = explorer_pages.register_routes(
            node.app, node.app[API_KEY], service, jobs=mining.jobs,
            miner=miner if isinstance(miner, WorkSources) else None)
        node.add_tip_listener(explorer.on_tip)
        return explorer


def _relay_restored(node: Node, restored: list[Transaction]) -> Callable[[Peer], None]:
    """A connect listener: offer each new peer the transactions the journal brought back
    (a crash may have come between admission and relay) while they are still pending."""
    pending = list(restored)

    def relay(_peer: Peer) -> None:
        pending[:] = [tx for tx in pending if tx.id() in node.mempool]
        for tx in pending:
            node.peers.broadcast_tx(tx, raw=tx.encode(), tx_id=tx.id())

    return relay


def build_node(config: NodeConfig, *, swarm_backend: InferenceBackend | None = None,
               swarm_options: SwarmOptions | None = None,
               clock: Callable[[], float] = time.time, api_token: str | None = None) -> Node:
    """A node built from ``config`` with every service wired (see `Builder`)."""
    return Builder(config, swarm_backend=swarm_backend, swarm_options=swarm_options,
                   clock=clock, api_token=api_token).build()

