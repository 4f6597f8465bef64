"""The built-in task family: integer arithmetic with checkable answers.

Questions read like "What is 37*8+5?"; the model sees the canonical expression
("37*8+5=") and writes the answer's digits least significant first, which small models
learn far more easily than most-significant-first. Everything here is deterministic so that
training data, calibration questions and evaluation sets are reproducible from a seed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: Families and the operand ranges they draw from (inclusive).
FAMILIES: dict[str, tuple[tuple[int, int], ...]] = {
    "add": ((0, 99), (0, 99)),
    "sub": ((0, 99), (0, 99)),
    "mul": ((0, 99), (0, 9)),
    "muladd": ((0, 99), (0, 9), (0, 99)),
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)

_EXPR = re.compile(r"(-?\d+)\s*([+\-*x×])\s*(\d+)(?:\s*([+\-])\s*(\d+))?")
_INT = re.compile(r"-?\d[\d,]*")


@dataclass(frozen=True)
class Question:
    """One arithmetic question and its exact answer."""

    family: str
    operands: tuple[int, ...]

    @property
    def expression(self) -> str:
        """Canonical form the model reads (without the trailing '=')."""
        o = self.operands
        if self.family == "add":
            return f"{o[0]}+{o[1]}"
        if self.family == "sub":
            return f"{o[0]}-{o[1]}"
        if self.family == "mul":
            return f"{o[0]}*{o[1]}"
        return f"{o[0]}*{o[1]}+{o[2]}"

    @property
    def prompt(self) -> str:
        """The natural-language question a client would send."""
        return f"What is {self.expression}?"

    @property
    def answer(self) -> int:
        o = self.operands
        if self.family == "add":
            return o[0] + o[1]
        if self.family == "sub":
            return o[0] - o[1]
        if self.family == "mul":
            return o[0] * o[1]
        return o[0] * o[1] + o[2]


def parse_expression(text: str) -> str | None:
    """The canonical expression in a prompt, or None when the prompt is not arithmetic.

    Only forms the model was trained on are accepted: "a+b", "a-b", "a*b", "a*b±c" with
    non-negative operands ("x" and "×" read as "*").
    """
    m = _EXPR.search(text)
    if m is None:
        return None
    a, op, b, op2, c = m.groups()
    if a.startswith("-"):
        return None
    op = "*" if op in "x×" else op
    expr = f"{int(a)}{op}{int(b)}"
    if op2 is not None:
        if op != "*" or op2 != "+":
            return None
        expr += f"+{int(c)}"
    return expr


def evaluate_expression(expr: str) -> int:
    """Exact value of a canonical expression (no eval())."""
    m = _EXPR.fullmatch(expr)
    if m is None:
        raise ValueError(f"not a canonical expression: {expr!r}")
    a, op, b, _op2, c = m.groups()
    x, y = int(a), int(b)
    value = x + y if op == "+" else x - y if op == "-" else x * y
    return value + int(c) if c is not None else value


def extract_integer(text: str) -> int | None:
    """The answer an answer text commits to: its last integer ("= 422", "The answer is 422.").

    Thousands separators are accepted; text with no integer yields None.
    """
    found = _INT.findall(text)
    if not found:
        return None
    digits = found[-1].replace(",", "")
    try:
        return int(digits)
    except ValueError:
        return None


class SeededStream:
    """A deterministic integer stream from a seed (SHAKE-256), identical on every node."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._buf = b""

    def _refill(self) -> None:
        self._buf += hashlib.shake_256(
            self._seed + self._counter.to_bytes(8, "big")).digest(256)
        self._counter += 1

    def below(self, bound: int) -> int:
        """Uniform integer in [0, bound) by rejection sampling on 32-bit words."""
        if bound <= 0:
            raise ValueError("bound must be positive")
        limit = (1 << 32) - (1 << 32) % bound
        while True:
            if len(self._buf) < 4:
                self._refill()
            word, self._buf = int.from_bytes(self._buf[:4], "big"), self._buf[4:]
            if word < limit:
                return word % bound


def draw_question(stream: SeededStream, *, families: tuple[str, ...] = FAMILY_NAMES) -> Question:
    """One question: family uniformly, then each operand uniformly in its range."""
    family = families[stream.below(len(families))]
    operands = tuple(lo + stream.below(hi - lo + 1) for lo, hi in FAMILIES[family])
    return Question(family=family, operands=operands)


def question_set(seed: bytes, count: int, *,
                 families: tuple[str, ...] = FAMILY_NAMES) -> list[Question]:
    """`count` questions drawn from `seed`: the same list on every machine."""
    stream = SeededStream(b"pouwchain.arith.v1" + seed)
    return [draw_question(stream, families=families) for _ in range(count)]


#: The fixed evaluation set (seed fixed before any measurement; see evaluate.py).
EVAL_SEED = b"swarm-eval-v1"


def equivalent_forms(expr: str, count: int) -> list[tuple[str, int]]:
    """Up to `count` in-range expressions equivalent to `expr`, with value offsets.

    Each item is (expression', delta) with value(expression') = value(expr) + delta; the
    first item is `expr` itself. Sums are re-split (a+b = a'+b'), differences shifted
    ((a+k)-(b+k)), and products re-addended (a*b+c -> a*b+c' and a*b). Every form stays in
    the trained operand ranges, so a model can score an answer under many phrasings of one
    question: checking an answer this way is easier than producing it, which is what makes
    judging stronger than answering.
    """
    m = re.fullmatch(r"(\d+)([+\-*])(\d+)(?:\+(\d+))?", expr)
    if m is None or count < 1:
        return [(expr, 0)][:max(count, 0)]
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    out = [(expr, 0)]
    if count == 1:
        return out
    (lo_a, hi_a), (lo_b, hi_b) = FAMILIES["add"]
    if op == "+":
        s = a + b
        lo, hi = max(lo_a, s - hi_b), min(hi_a, s - lo_b)
        firsts = sorted({lo + (hi - lo) * i // (count - 1) for i in range(count)} - {a})
        out += [(f"{x}+{s - x}", 0) for x in firsts]
    elif op == "-":
        (lo_a, hi_a), (lo_b, hi_b) = FAMILIES["sub"]
        shifts = list(range(max(lo_a - a, lo_b - b), min(hi_a - a, hi_b - b) + 1))
        picked = sorted({shifts[len(shifts) * i // count] for i in range(count)} - {0})
        out += [(f"{a + k}-{b + k}", 0) for k in picked]
    else:
        c = int(m.group(4)) if m.group(4) is not None else 0
        lo_c, hi_c = FAMILIES["muladd"][2]
        addends = sorted({lo_c + (hi_c - lo_c) * i // (count - 1) for i in range(count)} - {c})
        if m.group(4) is not None:
            out.append((f"{a}*{b}", -c))
        out += [(f"{a}*{b}+{x}", x - c) for x in addends]
    return out[:count]
