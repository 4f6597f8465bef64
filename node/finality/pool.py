"""The vote pool: the signed votes this node saw, by link, until their window closes.

A vote enters once it passed gossip admission (`consensus.finality.check_vote` against our
head): at most one vote per validator and ``VoteData``, at most `MAX_LINKS` links, each
bounded by the validator set's size. The miner reads the pool when it builds a template
(`consensus.finality.aggregate_votes` picks the link with the most new stake), and votes
for target epochs the chain has left behind are pruned on every new head. A validator
that signed two different votes for one target epoch is kept in ``conflicts`` (the
evidence `consensus.finality.slashing_evidence` needs).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from core.votes import SignedVote, VoteData

MAX_LINKS = 64  # distinct (source, target) links kept; the oldest target goes first
MAX_CONFLICTS = 256  # double-vote pairs kept as slashing evidence


@dataclass(frozen=True, slots=True)
class LinkCount:
    """How many votes the pool holds for one link (the API's view)."""

    source_epoch: int
    target_epoch: int
    target_root: bytes
    votes: int


class VotePool:
    """Votes by link, one per validator; see the module docstring."""

    def __init__(self, *, max_links: int = MAX_LINKS) -> None:
        self.max_links = max_links
        self._links: OrderedDict[VoteData, dict[bytes, SignedVote]] = OrderedDict()
        # (validator, target epoch) -> the first vote seen: a second, different one conflicts
        self._by_target: dict[tuple[bytes, int], SignedVote] = {}
        self.conflicts: list[tuple[SignedVote, SignedVote]] = []

    def __len__(self) -> int:
        return sum(len(votes) for votes in self._links.values())

    def add(self, vote: SignedVote) -> bool:
        """Keep an admitted vote; False if the pool holds it already."""
        votes = self._links.get(vote.data)
        if votes is not None and vote.validator in votes:
            return False
        key = (vote.validator, vote.data.target.epoch)
        first = self._by_target.setdefault(key, vote)
        if first.data != vote.data:
            self.conflicts.append((first, vote))
            del self.conflicts[:-MAX_CONFLICTS]
        if votes is None:
            votes = self._links[vote.data] = {}
            while len(self._links) > self.max_links:
                oldest = min(self._links, key=lambda d: d.target.epoch)
                self._drop(oldest)
        votes[vote.validator] = vote
        return True

    def votes(self, *, min_target_epoch: int = 0) -> list[SignedVote]:
        """Every vote for a target epoch at or above ``min_target_epoch``."""
        return [vote for data, votes in self._links.items()
                if data.target.epoch >= min_target_epoch for vote in votes.values()]

    def prune(self, *, below_epoch: int) -> int:
        """Forget votes whose target epoch is below ``below_epoch``; how many went."""
        stale = [data for data in self._links if data.target.epoch < below_epoch]
        dropped = sum(len(self._links[data]) for data in stale)
        for data in stale:
            self._drop(data)
        for key in [k for k in self._by_target if k[1] < below_epoch]:
            del self._by_target[key]
        return dropped

    def _drop(self, data: VoteData) -> None:
        self._links.pop(data, None)

    def counts(self) -> list[LinkCount]:
        """Votes held per link, newest target first."""
        out = [LinkCount(source_epoch=d.source.epoch, target_epoch=d.target.epoch,
                         target_root=d.target.root, votes=len(v))
               for d, v in self._links.items()]
        out.sort(key=lambda c: (-c.target_epoch, -c.source_epoch))
        return out
