#!/usr/bin/env python3
"""Generate the finality-rule vectors in this directory (JSON, hex-encoded transactions).

Run ``.venv/bin/python tests/vectors/consensus/finality/generate.py`` after a deliberate
change of `contracts.finality` (docs/finality.md); ``tests/consensus/test_finality_vectors.py``
replays every file and checks that this script still produces exactly the committed files.

Each vector is a short chain (`tests.framework.finalitykit`: validators with the given bonded
stakes at genesis, blocks with synthetic ids, ``params`` over 2-block finality epochs):

* ``blocks``: per block, its transactions (canonical bytes, hex) and ``expect``: each
  transaction's outcome, ``"ok"`` or the rule it breaks, plus ``status``: the anchor epoch,
  the justified epochs, the finalized epoch and participation ``[epoch, voted, total]``
  after the block (null while finality is inactive);
* ``final``: balances, bonded stakes and registered validators after the last block.

Each scenario asserts the outcome it is written for while generating, so a vector records
an intended result, not whatever the code did.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from py_ecc.bls.g2_primitives import G1_to_pubkey, subgroup_check  # noqa: E402
from py_ecc.bls.hash_to_curve import map_to_curve_G1  # noqa: E402
from py_ecc.fields import optimized_bls12_381_FQ as FQ  # noqa: E402

from consensus.genesis import dev_seed  # noqa: E402
from consensus.tx import Transaction, public_key  # noqa: E402
from contracts import Payload  # noqa: E402
from contracts.finality import (  # noqa: E402
    FinalityVotes,
    RegisterValidator,
    ReportVoteViolation,
    bitfield_of,
    validator_ids,
)
from contracts.staking import BeginUnstake, Stake  # noqa: E402
from core.bls import BACKEND  # noqa: E402
from core.votes import Checkpoint, VoteData  # noqa: E402
from tests.framework.finalitykit import (  # noqa: E402
    FinalityChain,
    Validator,
    aggregate,
    finality_params,
    new_finality_chain,
    signed_vote,
)

Vector = dict[str, Any]
OK = "ok"


def status_summary(chain: FinalityChain) -> Any:
    status = chain.status()
    if status is None:
        return None
    return {"anchor": status.anchor.epoch,
            "justified": [cp.epoch for cp in status.justified],
            "finalized": status.finalized.epoch,
            "participation": [[p.epoch, p.voted, p.total] for p in status.participation]}


class FinalityScenario:
    """A chain being built for one vector; every transaction comes from its own account
    (fee 0), so one failing transaction never shifts another's nonce."""

    def __init__(self, desc: str, stakes: Sequence[int], **params: int) -> None:
        self.desc = desc
        self.stakes = list(stakes)
        self.params = params
        self.chain, self.validators = new_finality_chain(stakes, params=finality_params(**params))
        self.blocks: list[Vector] = []
        self.next_relayer = 0

    def relayer(self) -> bytes:
        self.next_relayer += 1
        return dev_seed(300 + self.next_relayer)

    def send(self, payload: Payload, seed: bytes | None = None) -> Transaction:
        return self.chain.transaction(self.relayer() if seed is None else seed, payload)

    def block(self, txs: Sequence[Transaction] = (), expect: Sequence[str] = ()) -> None:
        outcomes = self.chain.block(txs)
        assert outcomes == list(expect), (self.desc, self.chain.height, outcomes)
        self.blocks.append({"txs": [tx.encode().hex() for tx in txs],
                            "expect": {"outcomes": outcomes,
                                       "status": status_summary(self.chain)}})

    def advance_to(self, height: int) -> None:
        while self.chain.height < height:
            self.block()

    def register(self, validators: Sequence[Validator] | None = None) -> None:
        chosen = self.validators if validators is None else validators
        self.block([self.send(RegisterValidator(pubkey=v.pubkey, proof=BACKEND.pop_prove(v.secret)),
                              v.seed) for v in chosen], [OK] * len(chosen))

    def link(self, source: int, target: int, *, branch: bytes | None = None) -> VoteData:
        return VoteData(source=self.chain.checkpoint(source), target=self.chain.checkpoint(
            target, branch))

    def votes(self, voters: Sequence[int], data: VoteData, **forge: Any) -> Transaction:
        return self.send(aggregate(self.chain, [self.validators[i] for i in voters], data,
                                   **forge))

    def status(self) -> Any:
        return status_summary(self.chain)

    def vector(self) -> Vector:
        state = self.chain.state
        addresses = [v.address for v in self.validators] + [
            public_key(dev_seed(300 + i)) for i in range(1, self.next_relayer + 1)]
        return {"desc": self.desc, "stakes": self.stakes, "params": self.params,
                "blocks": self.blocks,
                "final": {"balances": {a.hex(): state.account(a).balance for a in addresses},
                          "bonded": {v.address.hex(): state.stake(v.address).bonded
                                     for v in self.validators},
                          "validators": [a.hex() for a in validator_ids(state)]}}


def justify_and_finalize() -> Vector:
    s = FinalityScenario("3 of 4 equal validators justify epoch 2 from the anchor (finalizing "
                         "the anchor), then epoch 3 from 2 (finalizing 2)", [100] * 4)
    s.register()  # block 1
    s.advance_to(2)  # set of epoch 1 recorded at height 2
    s.block()  # height 3: the anchor, checkpoint 1 (block 2)
    assert s.status() == {"anchor": 1, "justified": [1], "finalized": 0, "participation": []}
    s.advance_to(5)  # checkpoint 2 (block 4) recorded at height 5
    s.block([s.votes([0, 1, 2], s.link(1, 2))], [OK])  # height 6
    assert s.status()["justified"] == [1, 2] and s.status()["finalized"] == 1
    s.advance_to(7)
    s.block([s.votes([1, 2, 3], s.link(2, 3))], [OK])  # height 8 (epoch 4: the window's end)
    assert s.status()["justified"] == [2, 3] and s.status()["finalized"] == 2
    return s.vector()


def quorum_accumulates() -> Vector:
    s = FinalityScenario("half the stake does not justify; a later aggregate adding one more "
                         "validator does, counting the overlap once; a repeat adds nothing",
                         [100] * 4)
    s.register()
    s.advance_to(5)
    s.block([s.votes([0, 1], s.link(1, 2))], [OK])  # 200 of 400
    assert s.status()["justified"] == [1] and s.status()["participation"] == [[2, 200, 400]]
    s.block([s.votes([1, 2], s.link(1, 2)), s.votes([0, 1], s.link(1, 2))],
            [OK, "votes.nothing_new"])  # 300 of 400: validator 1 counted once
    assert s.status()["justified"] == [1, 2] and s.status()["participation"] == [[2, 300, 400]]
    return s.vector()


def stake_weighted() -> Vector:
    s = FinalityScenario("stake, not heads: three small validators (30%) do not justify, "
                         "the big one (70%) then does", [70, 10, 10, 10])
    s.register()
    s.advance_to(5)
    s.block([s.votes([1, 2, 3], s.link(1, 2))], [OK])
    assert s.status()["justified"] == [1]
    s.block([s.votes([0], s.link(1, 2))], [OK])
    assert s.status()["justified"] == [1, 2] and s.status()["finalized"] == 1
    return s.vector()


def exactly_two_thirds() -> Vector:
    s = FinalityScenario("exactly 2/3 of the stake justifies (the quorum is >= 2/3); "
                         "one unit less in a second set does not", [2, 2, 2])
    s.register()
    s.advance_to(5)
    s.block([s.votes([0, 1], s.link(1, 2))], [OK])  # 4 of 6
    assert s.status()["justified"] == [1, 2]
    t = FinalityScenario("", [2, 2, 3])
    t.register()
    t.advance_to(5)
    t.block([t.votes([0, 1], t.link(1, 2))], [OK])  # 4 of 7 < 2/3
    assert t.status()["justified"] == [1]
    return s.vector()


def skipped_epoch() -> Vector:
    s = FinalityScenario("a justified link that skips an epoch (2 -> 4) justifies 4 but "
                         "finalizes nothing; the direct child link 4 -> 5 finalizes 4",
                         [100] * 4)
    s.register()
    s.advance_to(5)
    s.block([s.votes([0, 1, 2], s.link(1, 2))], [OK])
    s.advance_to(9)  # no votes in epoch 3; checkpoint 4 recorded at height 9
    s.block([s.votes([0, 1, 2, 3], s.link(2, 4))], [OK])  # height 10, epoch 5
    assert s.status()["justified"] == [1, 2, 4] and s.status()["finalized"] == 1
    s.advance_to(11)
    s.block([s.votes([0, 1, 2], s.link(4, 5))], [OK])  # height 12
    assert s.status()["justified"] == [4, 5] and s.status()["finalized"] == 4
    return s.vector()


def invalid_votes() -> Vector:
    s = FinalityScenario("every invalid aggregate is rejected and named (and changes nothing)",
                         [100] * 4)
    chain = s.chain
    s.register()  # height 1
    early = VoteData(source=Checkpoint(epoch=0, root=bytes(32)), target=chain.checkpoint(1))
    all4 = bitfield_of([0, 1, 2, 3], 4)
    signature = BACKEND.aggregate([signed_vote(v, early).signature for v in s.validators])
    s.block([s.send(FinalityVotes(data=early, bits=all4, signature=signature))],
            ["votes.inactive"])  # height 2: the anchor is recorded at height 3
    s.advance_to(3)
    # height 4: checkpoint 2 is this very block: its id is unknown until height 5
    s.block([s.votes([0, 1, 2], s.link(1, 2), set_epoch=1)], ["votes.target_window"])
    good = s.link(1, 2)
    backwards = VoteData(source=chain.checkpoint(2), target=chain.checkpoint(1))
    same = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(1))
    s.block([  # height 5
        s.votes([0, 1, 2], backwards, set_epoch=1),
        s.votes([0, 1, 2], same, set_epoch=1),
    ], ["votes.source_after_target", "votes.source_after_target"])
    s.block([  # height 6
        s.votes([0, 1, 2], s.link(1, 2, branch=b"fork")),
        s.votes([0, 1, 2], VoteData(source=Checkpoint(epoch=0, root=bytes(32)),
                                    target=chain.checkpoint(2))),
        s.votes([0, 1, 2], VoteData(source=chain.checkpoint(1, b"fork"),
                                    target=chain.checkpoint(2))),
        s.votes([0, 1, 2], good, bits=bitfield_of([0, 1, 2], 4) + b"\x00"),
        s.votes([0, 1, 2], good, bits=b"\x17"),  # bit 4 of a 4-member set
        s.votes([], good, bits=b"\x00", signers=s.validators[:1]),
        s.votes([0, 1, 2], good, signers=[s.validators[i] for i in (0, 1, 3)]),
        s.send(FinalityVotes(data=good, bits=bitfield_of([0, 1, 2], 4), signature=BACKEND.aggregate(
            [signed_vote(s.validators[i], good, chain_id=1).signature for i in (0, 1, 2)]))),
        s.votes([0, 1], good),
        s.votes([0, 1], good),
    ], ["votes.target_root", "votes.source_not_justified", "votes.source_not_justified",
        "votes.bitfield_length", "votes.bitfield_padding", "votes.empty", "votes.signature",
        "votes.signature", OK, "votes.nothing_new"])
    assert s.status()["participation"] == [[2, 200, 400]] and s.status()["justified"] == [1]
    s.advance_to(7)
    # height 8 opens epoch 4: target 2's window (epochs 2 and 3) has closed
    s.block([s.votes([2, 3], good, set_epoch=2)], ["votes.target_window"])
    return s.vector()


def no_validators_left() -> Vector:
    s = FinalityScenario("when every validator unbonds, blocks go on, the next epochs' sets "
                         "are empty and votes for them are refused: finality stalls, "
                         "blocks do not", [100, 100])
    s.register()
    s.advance_to(2)
    s.block([s.send(BeginUnstake(amount=100), v.seed) for v in s.validators], [OK, OK])  # h3
    s.advance_to(5)
    data = s.link(1, 2)
    members = [signed_vote(v, data).signature for v in s.validators]
    s.block([s.send(FinalityVotes(data=data, bits=b"\x03", signature=BACKEND.aggregate(members)))],
            ["votes.no_validator_set"])  # h6: the set of epoch 2 (recorded at h4) is empty
    s.advance_to(12)
    assert s.status() == {"anchor": 1, "justified": [1], "finalized": 0, "participation": []}
    return s.vector()


def slashing() -> Vector:
    s = FinalityScenario("double and surround votes are slashed once each (10% of the bond, "
                         "half of it to the reporter, the rest burned); every other kind of "
                         "evidence is refused and named", [1000] * 4 + [0])
    v = s.validators
    s.register(v[:4])
    s.advance_to(5)
    a = s.link(1, 2)
    fork = s.link(1, 2, branch=b"fork")
    outer = VoteData(source=s.chain.checkpoint(1), target=s.chain.checkpoint(4))
    inner = VoteData(source=s.chain.checkpoint(2), target=s.chain.checkpoint(3))
    later = s.link(2, 3)

    def report(first: Any, second: Any, seed: bytes | None = None) -> Transaction:
        return s.send(ReportVoteViolation(first=first, second=second), seed)

    forged = signed_vote(v[3], fork)
    forged = type(forged)(validator=forged.validator, data=forged.data,
                          signature=signed_vote(v[2], fork).signature)
    s.block([
        report(signed_vote(v[0], a), signed_vote(v[0], fork)),  # double vote: slashed
        report(signed_vote(v[0], later), signed_vote(v[0], fork)),  # neither double nor surround
        report(signed_vote(v[1], outer), signed_vote(v[1], inner)),  # surround vote: slashed
        report(signed_vote(v[2], a), signed_vote(v[2], later)),  # consecutive links
        report(signed_vote(v[2], a), signed_vote(v[2], a)),  # the same vote twice
        report(signed_vote(v[2], a), signed_vote(v[3], fork)),  # two validators
        report(signed_vote(v[4], a), signed_vote(v[4], fork)),  # never registered
        report(signed_vote(v[3], a), signed_vote(v[3], fork), v[3].seed),  # self-report
        report(signed_vote(v[3], a), forged),  # a signature by another key
    ], [OK, "slash.not_slashable", OK, "slash.not_slashable", "slash.not_slashable",
        "slash.same_validator", "slash.unknown_validator", "slash.self_report",
        "slash.signature"])
    s.block([report(signed_vote(v[0], a), signed_vote(v[0], fork)),  # the same evidence again
             report(signed_vote(v[1], a), signed_vote(v[1], fork)),  # new evidence, slashed before
             s.send(RegisterValidator(pubkey=v[0].pubkey, proof=BACKEND.pop_prove(v[0].secret)),
                    v[0].seed)],  # a slashed validator never returns
            ["slash.already_slashed", "slash.already_slashed", "validator.slashed"])
    s.advance_to(8)  # the set of epoch 4 leaves the slashed validators out
    members = s.chain.members(4)
    assert members is not None and [e.address for e in members.entries] == sorted(
        [v[2].address, v[3].address])
    return s.vector()


def off_subgroup_pubkey() -> bytes:
    for u in range(1, 100):
        point = map_to_curve_G1(FQ(u))
        if not subgroup_check(point):
            return bytes(G1_to_pubkey(point))
    raise AssertionError("no off-subgroup point")


def registration() -> Vector:
    s = FinalityScenario("validator registration: every rule named", [100, 100, 100, 100, 0, 100])
    v = s.validators

    def register(who: Validator, pubkey: bytes, proof: bytes) -> Transaction:
        return s.send(RegisterValidator(pubkey=pubkey, proof=proof), who.seed)

    s.block([register(v[0], v[0].pubkey, BACKEND.pop_prove(v[0].secret)),
             register(v[4], v[4].pubkey, BACKEND.pop_prove(v[4].secret))],
            [OK, "validator.insufficient_stake"])
    s.block([
        register(v[1], v[0].pubkey, BACKEND.pop_prove(v[0].secret)),  # a copied key
        register(v[2], b"\xc0" + bytes(47), b"\xc0" + bytes(95)),  # the point at infinity
        register(v[3], off_subgroup_pubkey(), BACKEND.pop_prove(v[3].secret)),
        register(v[5], v[5].pubkey, BACKEND.pop_prove(v[1].secret)),  # another key's proof
        register(v[0], v[1].pubkey, BACKEND.pop_prove(v[1].secret)),  # registered already
    ], ["validator.pubkey_taken", "validator.pubkey_invalid", "validator.pubkey_invalid",
        "validator.proof_of_possession", "validator.already_registered"])
    s.block([register(v[5], v[5].pubkey, BACKEND.pop_prove(v[5].secret))], [OK])
    assert s.vector()["final"]["validators"] == sorted(
        [v[0].address.hex(), v[5].address.hex()])
    # v0 unbonds everything in block 4, after the set of epoch 2 was recorded (with v0)
    s.block([s.send(BeginUnstake(amount=100), v[0].seed)], [OK])  # height 4
    s.block()  # height 5
    s.block()  # height 6: the set of epoch 3 evicts v0 (bond below the minimum)
    assert s.vector()["final"]["validators"] == [v[5].address.hex()]
    s.block([
        s.send(Stake(amount=100), v[0].seed),
        s.chain.transaction(v[0].seed, RegisterValidator(
            pubkey=v[1].pubkey, proof=BACKEND.pop_prove(v[1].secret)), nonce_offset=1),
        s.chain.transaction(v[0].seed, RegisterValidator(
            pubkey=v[0].pubkey, proof=BACKEND.pop_prove(v[0].secret)), nonce_offset=1),
    ], [OK, "validator.key_changed", OK])  # an evicted validator returns, with its own key
    assert s.vector()["final"]["validators"] == sorted(
        [v[0].address.hex(), v[5].address.hex()])
    return s.vector()


def finality_vectors() -> dict[str, Vector]:
    return {
        "justify_and_finalize": justify_and_finalize(),
        "quorum_accumulates_over_blocks": quorum_accumulates(),
        "stake_weighted_quorum": stake_weighted(),
        "exactly_two_thirds_justifies": exactly_two_thirds(),
        "skipped_epoch_does_not_finalize": skipped_epoch(),
        "invalid_votes_rejected_and_named": invalid_votes(),
        "no_validators_left_finality_stalls": no_validators_left(),
        "slashing_evidence_accepted_once": slashing(),
        "validator_registration_rules": registration(),
    }


def render_finality_vector(vector: Vector) -> str:
    return json.dumps(vector, indent=1, sort_keys=True) + "\n"


def main() -> None:
    for old in HERE.glob("*.json"):
        old.unlink()
    for name, vector in finality_vectors().items():
        (HERE / f"{name}.json").write_text(render_finality_vector(vector))


if __name__ == "__main__":
    main()
