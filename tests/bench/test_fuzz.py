"""Every network decoder under Hypothesis: only its declared error type may escape.

The targets (decoder, declared errors, seed encodings) and the mutation operator are
`bench.fuzz`'s, so the suite's bounded run and the long runs fuzz the same thing. Inputs are
arbitrary bytes and mutations of valid encodings (which reach the deeper checks: field
schemas, canonical re-encoding, nested objects)."""

from __future__ import annotations

import functools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import TARGETS, Tally, Target, mutate, run_mutate
from node.p2p.protocol import ProtocolError, decode_frame

EXAMPLES = 300  # per decoder and strategy: the suite's slice; bench/fuzz.py runs millions


@functools.cache
def seeds(name: str) -> tuple[bytes, ...]:
    return tuple(TARGETS[name].seeds())


def decode_allowing_declared(target: Target, data: bytes) -> None:
    try:
        target.decode(data)
    except target.declared:
        pass


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_encodings_decode(name: str) -> None:
    """The corpus is valid: mutations start from real encodings."""
    target = TARGETS[name]
    for data in seeds(name):
        target.decode(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_arbitrary_bytes_raise_only_the_declared_error(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        decode_allowing_declared(target, data)

    check()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_encodings_raise_only_the_declared_error(name: str) -> None:
    target = TARGETS[name]
    corpus = seeds(name)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(corpus), st.integers(min_value=0, max_value=2**32))
    def check(data: bytes, draw: int) -> None:
        decode_allowing_declared(target, mutate(data, random.Random(draw), corpus))

    check()


def test_the_engine_counts_an_undeclared_error() -> None:
    """bench/fuzz.py's tally is no stub: an error outside the declared ones is counted and
    kept with its input, a declared one is not."""

    def decode(data: bytes) -> object:
        if data.startswith(b"\x01"):
            raise KeyError("undeclared")
        raise ValueError("declared")

    tally = Tally("probe")
    target = Target("probe", decode, (ValueError,), lambda: [b"\x00", b"\x01"])
    for data in (b"\x00", b"\x01\x02", b"\x03"):
        tally.run_one(target, data)
    assert (tally.inputs, tally.unexpected) == (3, 1)
    assert tally.examples[0]["type"] == "KeyError" and tally.examples[0]["input"] == "0102"


def test_a_short_mutation_run_of_every_decoder_is_clean() -> None:
    for name, target in TARGETS.items():
        tally = run_mutate(target, 500, seed=1)
        assert tally.inputs == 500 and tally.unexpected == 0, tally.examples
        assert tally.accepted >= len(seeds(name))  # the valid seeds decoded


def test_a_frame_with_a_bytes_field_name_is_malformed() -> None:
    """Found by bench/fuzz.py (9 in 1,000,000 mutated frames): a body keyed by both bytes
    and str made the error message's sort raise TypeError, which the peer manager logged
    as a handler crash and did not punish."""
    raw = bytes.fromhex("920c82a37265717fc420989e2b825d4f26d390f86d57fc35d09c5c81fd4457f0"
                        "9e577269704eb807153cff")
    with pytest.raises(ProtocolError, match="malformed"):
        decode_frame(raw)
