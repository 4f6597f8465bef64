"""Headers-first sync.

When a peer claims more cumulative work than our best block, we send it a locator (our
canonical chain: the last 10 ids, then exponentially further back, then genesis). The peer
answers with up to 2000 headers following the newest locator entry on its canonical chain:
the common ancestor found in one round trip, never block by block. We check the headers
link up and verify the PoUW certificate of every header we do not have (about a
millisecond each: cheap beside a block's download and state transition), so a peer that
sends a header with a bad proof is banned before any block body is asked for. Then we fetch
the missing blocks in bounded batches from every peer that claims that height (several
requests in flight), feed them to the chain store in order in the chain thread, and ask for
the next headers from the last one received. Headers that leave our last finalized
checkpoint's chain are refused (``forkchoice.conflicts_with_finalized``, logged as
``sync.refused``) before any block is fetched; the sender is not banned (it may be an honest
node from the other side of a partition, which must still fetch OUR chain) and is not asked
again until it announces another tip. Once finality runs on our chain, a peer with LESS work
but a tip we do not know is synced from too: its chain may have justified more (the fork
choice prefers the highest justified checkpoint, docs/finality.md §8), which is how the
minority side of a partition finds the majority's chain. Progress lives in the chain store,
so a restarted node resumes from its stored tip.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

from consensus.block import Block, BlockHeader
from consensus.validation import check_certificate
from core.errors import ConsensusError, ForkChoiceError
from node.config import NodeConfig
from node.logging import get_logger, log_event
from node.p2p.host import ChainHost
from node.p2p.manager import PeerManager
from node.p2p.peer import Peer, PeerClosed
from node.p2p.protocol import MAX_HEADERS, MAX_LOCATOR, MsgType, ProtocolError

log = get_logger("sync")
IDLE_CHECK = 1.0  # seconds between checks when nothing wakes the syncer
# A peer that had nothing for us is skipped for this long (or until our tip moves): it may
# have announced a block early and not connected it yet, so it is asked again soon.
USELESS_FOR = 2.0
RETRY_AFTER_ERROR = 1.0  # seconds the loop rests after an unexpected error
CATCH_UP_BLOCKS = 16  # a sync this long is news (info); shorter ones follow every new tip (debug)


def _decode_headers(raws: list[bytes]) -> list[BlockHeader]:
    """Decode a HEADERS answer (run in a worker thread)."""
    return [BlockHeader.decode(raw) for raw in raws]


def _check_proofs(headers: list[BlockHeader], known: set[bytes]) -> None:
    """Verify the PoUW certificate of each header not in ``known`` (run in a worker thread);
    raises `core.errors.CertificateRuleError` naming the rule the first bad one breaks.
    Context-free: the target it is checked against is the header's own; the difficulty rule
    (which needs the parent's state) is checked when the block connects."""
    for header in headers:
        if header.block_id() not in known:
            check_certificate(header)


def _decode_blocks(raws: list[bytes]) -> list[Block]:
    """Decode a BLOCKS answer (run in a worker thread)."""
    return [Block.decode(raw) for raw in raws]


class Syncer:
    """Keeps our chain at the best tip our peers know."""

    def __init__(self, host: ChainHost, peers: PeerManager, config: NodeConfig) -> None:
        """Wakes on the peer manager's events: a new peer, a better tip, a peer gone."""
        self.host = host
        self.peers = peers
        self.config = config
        self.syncing = False
        self.blocks_synced = 0
        self.started_height = 0
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # peer id -> (our tip id, monotonic time) when that peer last had nothing for us
        self._useless: dict[bytes, tuple[bytes, float]] = {}
        # peer id -> its tip when its chain was refused for leaving our finalized checkpoint
        self._refused: dict[bytes, bytes] = {}
        peers.add_connect_listener(self._on_peer)
        peers.add_better_tip_listener(self._on_peer)
        peers.add_disconnect_listener(self.peer_gone)

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sync loop."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the sync loop and wait for it.

        The loop also checks a flag, so that a cancellation swallowed by an await below it
        cannot leave the loop waiting forever for a wake-up (on Python 3.11
        `asyncio.wait_for` did so; seen as a hang of node.stop under load, and now banned by
        ruff's TID251 in favour of `asyncio.timeout`)."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Look for a better peer now (also called by the node for an orphan block)."""
        self._event.set()

    def _on_peer(self, _peer: Peer) -> None:
        """A peer connected or claims more work: look again."""
        self.wake()

    def peer_gone(self, peer: Peer) -> None:
        """Forget that ``peer`` had nothing for us; another peer may now be the best."""
        self._useless.pop(peer.node_id, None)
        self._refused.pop(peer.node_id, None)
        self.wake()

    @property
    def best_peer_height(self) -> int:
        """The highest height any peer claims (status, progress)."""
        return max((p.best_height for p in self.peers.peers.values()), default=0)

    @property
    def progress(self) -> float:
        """Fraction of the way from where this sync started to the best peer's height."""
        ours = self.host.chain.height
        best = self.best_peer_height
        if best <= ours:
            return 1.0
        span = max(best - self.started_height, 1)
        return max(0.0, min(1.0, (ours - self.started_height) / span))

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Sync when woken (or every `IDLE_CHECK`) until stopped; errors never end the loop."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_CHECK):
                    await self._event.wait()
            self._event.clear()
            if self._stopping:
                break
            try:
                await self._sync_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync.error")
                await asyncio.sleep(RETRY_AFTER_ERROR)

    def _best_peer(self) -> Peer | None:
        """The peer claiming the most work above ours that was not just useless; once
        finality runs, else a peer whose tip we do not know (it may have justified more)."""
        tree = self.host.chain.tree
        ours = tree.tip_entry.cumulative_work
        # without finality on our chain work alone decides: a lighter tip is a stale fork
        finality_runs = tree.tip_entry.justified > 0 or tree.finalized != tree.genesis_id
        tip = tree.tip
        now = time.monotonic()
        candidates = [p for p in self.peers.peers.values()
                      if (p.best_work > ours
                          or (finality_runs and p.best_tip not in tree and p.best_work > 0))
                      and not p.closed and not self._skipped(p, tip=tip, now=now)
                      and self._refused.get(p.node_id) != p.best_tip]
        return max(candidates, key=lambda p: (p.best_work > ours, p.best_work), default=None)

    def _skipped(self, peer: Peer, *, tip: bytes, now: float) -> bool:
        """True if ``peer`` had nothing for us at this tip a moment ago."""
        mark = self._useless.get(peer.node_id)
        return mark is not None and mark[0] == tip and now - mark[1] < USELESS_FOR

    async def _sync_round(self) -> None:
        """Sync from the best peer, then the next, until no peer is ahead (or stopped)."""
        while not self._stopping:
            peer = self._best_peer()
            if peer is None:
                if self.syncing:  # a block or two behind is every new tip: debug noise
                    log_event(log, "sync.done", height=self.host.chain.height,
                              blocks=self.blocks_synced,
                              level=logging.INFO if self.blocks_synced >= CATCH_UP_BLOCKS
                              else logging.DEBUG)
                self.syncing = False
                return
            if not self.syncing:
                self.syncing = True
                self.started_height = self.host.chain.height
                self.blocks_synced = 0
                log_event(log, "sync.start", peer=peer.node_id, height=self.started_height,
                          target=peer.best_height,
                          level=logging.INFO if peer.best_height - self.started_height >=
                          CATCH_UP_BLOCKS else logging.DEBUG)
            progressed = await self._sync_from(peer)
            if not progressed:
                self._useless[peer.node_id] = (self.host.chain.tree.tip, time.monotonic())

    async def _sync_from(self, peer: Peer) -> bool:
        """Sync from ``peer`` until it has nothing new; True if anything was added."""
        host = self.host
        locator = host.locator()
        progressed = False
        while not peer.closed:
            started = time.perf_counter()
            try:
                answer = await peer.request(MsgType.GETHEADERS, {"locator": locator})
            except (PeerClosed, TimeoutError):
                return progressed
            raws: list[bytes] = answer["headers"]
            if not raws:
                return progressed
            try:
                headers = await asyncio.to_thread(_decode_headers, raws)
                self._check_linked(headers)
                ids = [h.block_id() for h in headers]
                known = {bid for bid in ids if bid in host.chain.tree}
                await asyncio.to_thread(_check_proofs, headers, known)
            except (ValueError, ConsensusError) as exc:
                await self.peers.punish(peer, exc)
                return progressed
            if headers[0].parent_hash not in host.chain.tree:
                # the peer reorged under us, or answered from an unknown fork: ask again later
                return progressed
            # a chain that leaves our finalized checkpoint is refused before any block of it
            first_new = next((h for bid, h in zip(ids, headers, strict=True)
                              if bid not in host.chain.tree), None)
            if first_new is not None:
                try:
                    host.chain.check_finality(parent_id=first_new.parent_hash,
                                              height=first_new.height)
                except ForkChoiceError as exc:
                    self._refused[peer.node_id] = peer.best_tip
                    log_event(log, "sync.refused", peer=peer.node_id, reason=exc.rule,
                              height=first_new.height)
                    return progressed
            # blocks gossip is fetching right now are left to it (no double download)
            in_flight = self.peers.requested_blocks
            needed = [(bid, h.height) for bid, h in zip(ids, headers, strict=True)
                      if bid not in host.chain.tree and bid not in in_flight]
            if needed:
                added = await self._fetch_and_connect(peer, needed)
                progressed = progressed or added > 0
                if added < len(needed):
                    return progressed
                log_event(log, "sync.batch", peer=peer.node_id, blocks=added,
                          height=host.chain.height, ms=round((time.perf_counter() - started)
                                                             * 1e3, 1))
            if len(raws) < MAX_HEADERS and ids[-1] == peer.best_tip:
                return progressed
            if len(raws) < MAX_HEADERS and not needed:
                return progressed
            locator = [ids[-1], *host.locator()][:MAX_LOCATOR]
        return progressed

    @staticmethod
    def _check_linked(headers: list[BlockHeader]) -> None:
        """Each header must follow the one before it; raises ProtocolError."""
        for prev, header in itertools.pairwise(headers):
            if header.parent_hash != prev.block_id() or header.height != prev.height + 1:
                raise ProtocolError("headers_unlinked", f"at height {header.height}")

    async def _fetch_and_connect(self, main: Peer, needed: list[tuple[bytes, int]]) -> int:
        """Fetch blocks in batches from several peers, connect them in order; count added."""
        size = max(1, self.config.sync_batch)
        batches = [needed[i:i + size] for i in range(0, len(needed), size)]
        gate = asyncio.Semaphore(max(1, self.config.sync_parallel))
        rotation = itertools.count()

        async def fetch(batch: list[tuple[bytes, int]]) -> tuple[list[Block], Peer]:
            top = batch[-1][1]
            sources = [p for p in self.peers.peers.values()
                       if p.best_height >= top and not p.closed] or [main]
            source = sources[next(rotation) % len(sources)]
            async with gate:
                for attempt in (source, main):
                    blocks = await self._get_blocks(attempt, [bid for bid, _ in batch])
                    if blocks is not None:
                        return blocks, attempt
            return [], main

        tasks = [asyncio.create_task(fetch(batch)) for batch in batches]
        added = 0
        expected = 0
        try:
            for batch, task in zip(batches, tasks, strict=True):
                blocks, source = await task
                added += await self._connect(blocks, source)
                expected += len(batch)
                if added < expected:
                    return added  # a peer failed us or sent a bad block: start over
        finally:
            for task in tasks:
                task.cancel()
        return added

    async def _get_blocks(self, peer: Peer, ids: list[bytes]) -> list[Block] | None:
        """The blocks ``ids`` from ``peer`` in that order, or None (peer failed us)."""
        try:
            answer = await peer.request(MsgType.GETDATA, {"ids": ids})
        except (PeerClosed, TimeoutError):
            return None
        raws: list[bytes] = answer["blocks"]
        try:
            blocks = await asyncio.to_thread(_decode_blocks, raws)
        except (ValueError, ConsensusError) as exc:
            await self.peers.punish(peer, exc)
            return None
        by_id = {b.header.block_id(): b for b in blocks}
        ordered = [by_id[bid] for bid in ids if bid in by_id]
        if len(ordered) != len(ids):
            # a partial answer (frame budget): fetch the rest from the same peer
            rest = [bid for bid in ids if bid not in by_id]
            if len(rest) == len(ids):
                return None
            more = await self._get_blocks(peer, rest)
            if more is None:
                return None
            by_id.update({b.header.block_id(): b for b in more})
            ordered = [by_id[bid] for bid in ids]
        return ordered

    async def _connect(self, blocks: list[Block], source: Peer) -> int:
        """Add fetched blocks in order; a bad one gets its sender judged; count added."""
        if not blocks:
            return 0
        try:
            added = await self.host.process_blocks(blocks, origin=source, relay=False)
        except ValueError as exc:
            await self.peers.punish(source, exc.__cause__ or exc)
            return 0
        self.blocks_synced += added
        if added:
            log_event(log, "sync.connected", level=logging.DEBUG, blocks=added,
                      height=self.host.chain.height)
        return added
