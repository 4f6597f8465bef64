"""Fuzz every decoder that reads bytes from the network: only the declared errors may escape.

Decoders (`TARGETS`): p2p frames, block headers, blocks, transactions, PoUW certificates and
swarm messages (every `core.encoding.Canonical` class of `swarm.messages`, the input's first
byte choosing which). Each has the one error type its callers catch (`ProtocolError`,
`EncodingError`, `CertificateError`); anything else escaping is an "unexpected exception",
counted and kept (type, message, input) for the table.

Engines:

* ``atheris`` (libFuzzer, coverage-guided; PyPI ``atheris``): one child process per decoder,
  ``-runs=N`` over a seed corpus of valid encodings. Used when ``import atheris`` works.
* ``mutate``: this file's own seeded mutation engine (bit flips, byte edits, truncation,
  splices of two seeds, msgpack-shaped junk), for machines without atheris; deterministic
  for a ``--seed``.

    python bench/fuzz.py --inputs 1000000 [--engine atheris|mutate] [--json]

Prints a table (decoder, inputs, unexpected exceptions, seconds), then with ``--json`` one
JSON object as the last line. The test suite runs the same targets through Hypothesis
(tests/fuzz/test_decoders_fuzz.py) with bounded examples.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import inspect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.block import Block, BlockHeader
from consensus.tx import Transaction
from core.encoding import Canonical
from core.errors import EncodingError
from node.p2p.protocol import MsgType, ProtocolError, decode_frame, encode_frame, work_bytes
from pouw import Certificate
from pouw.errors import CertificateError
from swarm import messages
from swarm.messages import Commitment, Reveal, sign_request
from tests.framework.chain import extend, new_chain, transfer

try:  # the coverage-guided engine is optional (PyPI atheris; see the module docstring)
    import atheris
except ImportError:
    atheris = None

ROOT = Path(__file__).resolve().parents[1]
SWARM_CLASSES: tuple[type[Canonical], ...] = tuple(
    obj for name, obj in sorted(vars(messages).items())
    if isinstance(obj, type) and issubclass(obj, Canonical) and obj is not Canonical
    and obj.__module__ == messages.__name__)
MAX_INPUT = 64 * 1024  # inputs longer than this are cut (a frame's limits are checked first)


def decode_swarm(data: bytes) -> object:
    """The first byte picks one of the swarm message classes, the rest is its encoding."""
    if not data:
        raise EncodingError("empty swarm input")
    return SWARM_CLASSES[data[0] % len(SWARM_CLASSES)].decode(data[1:])


@dataclasses.dataclass(frozen=True)
class Target:
    """One decoder, the errors it declares, and valid encodings to start from."""

    name: str
    decode: Callable[[bytes], object]
    declared: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


def _chain_seeds() -> tuple[list[Block], list[Transaction]]:
    chain = new_chain()
    txs = [transfer(1, 0, 7, 5), transfer(2, 0, 6, 9, fee=3)]
    blocks = [extend(chain, txs[:1], seed=1), extend(chain, txs[1:], seed=2), extend(chain)]
    return blocks, txs


def block_seeds() -> list[bytes]:
    return [b.encode() for b in _chain_seeds()[0]]


def header_seeds() -> list[bytes]:
    return [b.header.encode() for b in _chain_seeds()[0]]


def tx_seeds() -> list[bytes]:
    return [t.encode() for t in _chain_seeds()[1]]


def certificate_seeds() -> list[bytes]:
    return [b.header.certificate for b in _chain_seeds()[0]]


def frame_seeds() -> list[bytes]:
    blocks, txs = _chain_seeds()
    block = blocks[0]
    bid = block.header.block_id()
    return [
        encode_frame(MsgType.PING, {"nonce": 7}),
        encode_frame(MsgType.PONG, {"nonce": 7}),
        encode_frame(MsgType.TX, {"tx": txs[0].encode()}),
        encode_frame(MsgType.INV, {"blocks": [[bid, 1, work_bytes(2)]]}),
        encode_frame(MsgType.GETHEADERS, {"req": 1, "locator": [bid]}),
        encode_frame(MsgType.HEADERS, {"req": 1, "headers": [b.header.encode() for b in blocks]}),
        encode_frame(MsgType.GETDATA, {"req": 2, "ids": [bid]}),
        encode_frame(MsgType.BLOCKS, {"req": 2, "blocks": [block.encode()], "missing": []}),
        encode_frame(MsgType.SWARM, {"kind": "commit", "data": b"\x01" * 40}),
    ]


def swarm_seeds() -> list[bytes]:
    announcement = sign_request(bytes(range(32)), chain_id=1337, prompt=b"What is 2+3?",
                                fee=100, answers=3, judges=3, nonce=bytes(32))
    node = bytes(range(1, 33))
    commitment = Commitment(round_id=announcement.request.id(), node=node, kind=0,
                            digest=bytes(32), signature=bytes(64))
    reveal = Reveal(round_id=announcement.request.id(), node=node, kind=0, salt=bytes(32),
                    payload=b"5")
    out = []
    for obj in (announcement, announcement.request, commitment, reveal):
        index = SWARM_CLASSES.index(type(obj))
        out.append(bytes([index]) + obj.encode())
    return out


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("frame", decode_frame, (ProtocolError,), frame_seeds),
    Target("header", BlockHeader.decode, (EncodingError,), header_seeds),
    Target("block", Block.decode, (EncodingError,), block_seeds),
    Target("transaction", Transaction.decode, (EncodingError,), tx_seeds),
    Target("certificate", Certificate.decode, (CertificateError,), certificate_seeds),
    Target("swarm", decode_swarm, (EncodingError,), swarm_seeds),
)}


# -- the mutation engine ----------------------------------------------------------------------

MSGPACK_TOKENS = [b"\xc0", b"\xc2", b"\xc3", b"\x90", b"\x91", b"\x92", b"\x9f", b"\xdc\xff\xff",
                  b"\xdd\xff\xff\xff\xff", b"\xc4\x20", b"\xc4\xff", b"\xc5\xff\xff",
                  b"\xc6\xff\xff\xff\xff", b"\xcc\xff", b"\xcf" + b"\xff" * 8, b"\xd3\x80" +
                  bytes(7), b"\x80", b"\x81\xa1a\x01", b"\xa3abc", b"\xd9\x05hello",
                  b"\xc1", b"\xd4\x01\x00", b"\xca\x7f\xc0\x00\x00", b"\xff", b"\x00", b"\x7f"]


def mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """One to four random edits of ``data``: flip, set, insert, delete, duplicate, truncate,
    splice with another corpus entry, or insert a msgpack token."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 32)]
        elif op == 5:
            del buf[rng.randrange(len(buf) + 1):]
        elif op == 6:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 7:
            buf[pos:pos] = rng.choice(MSGPACK_TOKENS)
        else:
            buf = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(buf[:MAX_INPUT])


@dataclasses.dataclass
class Tally:
    """Inputs run through one decoder and what escaped that should not have."""

    name: str
    inputs: int = 0
    accepted: int = 0  # inputs that decoded (mutations that stayed valid)
    unexpected: int = 0
    examples: list[dict[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def run_one(self, target: Target, data: bytes) -> None:
        self.inputs += 1
        try:
            target.decode(data)
            self.accepted += 1
        except target.declared:
            pass
        except Exception as exc:  # the finding: an undeclared error escaped
            self.unexpected += 1
            if len(self.examples) < 5:
                self.examples.append({"type": type(exc).__name__, "error": str(exc)[:200],
                                      "input": data[:256].hex()})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_mutate(target: Target, inputs: int, seed: int) -> Tally:
    """``inputs`` mutated seeds (the corpus grows with inputs that still decode)."""
    rng = random.Random(f"{seed}/{target.name}")
    corpus = target.seeds()
    tally = Tally(target.name)
    started = time.perf_counter()
    for data in corpus:
        tally.run_one(target, data)
    while tally.inputs < inputs:
        data = mutate(rng.choice(corpus), rng, corpus)
        before = tally.accepted
        tally.run_one(target, data)
        if tally.accepted > before and len(corpus) < 256 and data not in corpus:
            corpus.append(data)
    tally.seconds = round(time.perf_counter() - started, 1)
    return tally


def run_atheris_child(target: Target, inputs: int, out: Path, corpus_dir: Path) -> None:
    """In a child process: libFuzzer drives ``target`` for ``inputs`` runs; the tally is
    written to ``out`` as it goes and at the end."""
    assert atheris is not None, "atheris is not installed"
    tally = Tally(target.name)
    started = time.perf_counter()

    def write() -> None:
        tally.seconds = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(tally.as_dict()))

    atexit.register(write)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(target.seeds()):
        (corpus_dir / f"seed{i}").write_bytes(data)

    def one_input(data: bytes) -> None:
        tally.run_one(target, data[:MAX_INPUT])
        if tally.inputs % 10_000 == 0 or tally.inputs >= inputs:
            write()  # libFuzzer ends the process without running atexit handlers

    instrument_decoders()
    atheris.Setup([sys.argv[0], f"-runs={inputs}", f"-max_len={MAX_INPUT}",
                   "-rss_limit_mb=4096", "-print_final_stats=0", str(corpus_dir)], one_input)
    atheris.Fuzz()


INSTRUMENTED_MODULES = ("core.encoding", "node.p2p.protocol", "pouw.certificate", "pouw.params",
                        "consensus.block", "consensus.tx", "swarm.messages")


def instrument_decoders() -> int:
    """Coverage feedback for libFuzzer from the decoding code only (`instrument_all` would
    instrument torch and numpy too and take minutes); how many functions."""
    count = 0
    for module_name in INSTRUMENTED_MODULES:
        module = sys.modules[module_name]
        for obj in list(vars(module).values()):
            functions: list[Any] = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj) and obj.__module__ == module_name:
                functions = [f for f in vars(obj).values() if inspect.isfunction(f)]
                functions += [f.__func__ for f in vars(obj).values()
                              if isinstance(f, (classmethod, staticmethod))]
            for func in functions:
                if getattr(func, "__module__", None) == module_name:
                    atheris.instrument_func(func)
                    count += 1
    return count


def run_atheris(target: Target, inputs: int, seed: int) -> Tally:
    """One decoder under atheris in a child process; its tally."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tally.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", target.name,
               "--inputs", str(inputs), "--out", str(out), "--corpus", str(Path(tmp) / "corpus"),
               "--seed", str(seed)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if not out.exists():
            raise RuntimeError(f"atheris child for {target.name} failed ({proc.returncode}):\n"
                               f"{proc.stderr[-2000:]}")
        data = json.loads(out.read_text())
    return Tally(**data)


def atheris_available() -> bool:
    return atheris is not None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per decoder")
    parser.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="a JSON object as the last line")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_atheris_child(TARGETS[args.child], args.inputs, Path(args.out), Path(args.corpus))
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if atheris_available() else "mutate"
    names = [n for n in args.targets.split(",") if n]
    started = time.perf_counter()
    tallies = []
    for name in names:
        runner = run_atheris if engine == "atheris" else run_mutate
        tallies.append(runner(TARGETS[name], args.inputs, args.seed))
        t = tallies[-1]
        print(f"  {t.name}: {t.inputs} inputs, {t.unexpected} unexpected, {t.seconds} s",
              file=sys.stderr, flush=True)
    print(f"decoder fuzz ({engine}, seed {args.seed}, pid {os.getpid()})")
    print(f"{'decoder':<12} {'inputs':>10} {'decoded':>9} {'unexpected':>10} {'seconds':>8}")
    for t in tallies:
        print(f"{t.name:<12} {t.inputs:>10} {t.accepted:>9} {t.unexpected:>10} {t.seconds:>8}")
        for example in t.examples:
            print(f"    {example['type']}: {example['error']}  input {example['input'][:80]}")
    total_unexpected = sum(t.unexpected for t in tallies)
    if args.json:
        print(json.dumps({"engine": engine, "seed": args.seed,
                          "seconds": round(time.perf_counter() - started, 1),
                          "inputs": {t.name: t.inputs for t in tallies},
                          "unexpected": {t.name: t.unexpected for t in tallies},
                          "examples": {t.name: t.examples for t in tallies if t.examples},
                          "unexpected_total": total_unexpected}))
    return 1 if total_unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
