"""HTTP fuzz of every route in docs/openapi.yaml: no request may get a 5xx, and every error is
JSON with a stable code.

Requests are drawn by Hypothesis from the spec itself: each operation's path and query
parameters and request bodies from their schemas (valid values), mixed with garbage: JSON
nested past the parser's limit, values of the wrong type, huge and special numbers, invalid
UTF-8, bodies that lie about their ``Content-Type`` or ``Content-Encoding``, multipart
without a boundary, unknown methods, missing/wrong/valid bearer tokens, odd path segments.
A request that would make the node act on the outside world is made harmless first
(`make_harmless`: ``generate`` mines at most one block; a dialable peer address becomes the
node's own, which it refuses), so every 5xx counted is the node's fault.

The suite runs a bounded slice (tests/node/api/test_api_fuzz.py); this script is the long
run, against a real ``pouwchain node`` process on 127.0.0.1:

    python bench/http_fuzz.py [--seconds 600] [--examples 200] [--seed 0] [--json]

It prints a table (requests, 2xx/4xx/5xx and errors without a JSON code, per route), then
with ``--json`` one JSON object as the last line. Exit status 1 if any 5xx or non-JSON error.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import http.client
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo packages

from node.api.chain import parse_peer_address
from node.api.errors import ApiError
from testnet.process import HOST, free_port, node_command, spawn, stop_process, wait_ready

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
METHODS = ("get", "post", "put", "delete", "patch")
OTHER_METHODS = ("PUT", "PATCH", "OPTIONS", "HEAD", "DELETE", "POST", "GET", "TRACE", "FOO")
HTTP_TIMEOUT = 120.0  # seconds per request (a chat round included)
Route = tuple[str, str]  # (path template, METHOD)


# -- the spec --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    location: str  # "path" or "query"
    schema: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Operation:
    """One route of the spec: its parameters, body schemas by content type, token."""

    path: str
    method: str
    params: tuple[Param, ...]
    bodies: tuple[tuple[str, dict[str, Any]], ...]
    token: bool

    @property
    def route(self) -> Route:
        return self.path, self.method


class Spec:
    """The parsed spec (a short repr: Hypothesis prints the strategies' arguments)."""

    def __init__(self, doc: dict[str, Any], path: Path) -> None:
        self.doc = doc
        self.path = path

    def __repr__(self) -> str:
        return f"Spec({self.path.name})"


def load_spec(path: Path = SPEC_PATH) -> Spec:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return Spec(doc, path)


def resolve(spec: Spec, node: Any) -> Any:
    """``node`` with a top-level ``$ref`` followed (repeatedly)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec.doc
        for key in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def operations(spec: Spec) -> list[Operation]:
    """Every operation of the spec, in its order."""
    out = []
    for path, item in spec.doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = []
            for raw in op.get("parameters", []):
                param = resolve(spec, raw)
                params.append(Param(param["name"], param["in"], param.get("schema", {})))
            content = resolve(spec, op.get("requestBody", {})).get("content", {})
            bodies = tuple((ctype, media.get("schema", {})) for ctype, media in content.items())
            out.append(Operation(path, method.upper(), tuple(params), bodies,
                                 token=bool(op.get("security"))))
    return out


def spec_routes(spec: Spec) -> set[Route]:
    return {op.route for op in operations(spec)}


# -- values ----------------------------------------------------------------------------------

HUGE_NUMBERS = [10**400, -(10**400), 2**64, 2**64 - 1, 2**256, -1, 0, 1e308, -0.0, 0.5,
                1e-320]
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE_NUMBERS),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
ANY_JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


def schema_values(spec: Spec, schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid for a JSON schema of the spec (the subset it uses), mostly."""
    schema = resolve(spec, schema)
    if not isinstance(schema, dict) or depth > 6:
        return ANY_JSON
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([schema_values(spec, s, depth + 1) for s in schema[key]])
    if "examples" in schema:  # the spec's typical values, and anything else of the schema
        rest = {k: v for k, v in schema.items() if k != "examples"}
        return st.one_of(st.sampled_from(list(schema["examples"])),
                         schema_values(spec, rest, depth + 1))
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return st.one_of([schema_values(spec, {**schema, "type": k}, depth + 1) for k in kinds])
    if kinds in ("array", "object") or "properties" in schema:
        return _container_values(spec, schema, depth)
    return _scalar_values(schema)


def _scalar_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kinds = schema.get("type")
    if kinds == "null":
        return st.none()
    if kinds == "boolean":
        return st.booleans()
    if kinds == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.integers(min_value=low, max_value=high)
    if kinds == "number":
        return st.floats(min_value=schema.get("minimum"), max_value=schema.get("maximum"),
                         allow_nan=False, allow_infinity=False)
    if kinds == "string":
        pattern = schema.get("pattern")
        if pattern:
            return st.from_regex(pattern, fullmatch=True)
        return st.one_of(st.text(max_size=60), HEX64)
    return ANY_JSON


def _container_values(spec: Spec, schema: dict[str, Any],
                      depth: int) -> st.SearchStrategy[Any]:
    if schema.get("type") == "array":
        items = schema_values(spec, schema.get("items", {}), depth + 1)
        return st.lists(items, min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    props = schema.get("properties", {})
    if props or schema.get("type") == "object":
        required = [k for k in schema.get("required", []) if k in props]
        optional = {k: schema_values(spec, v, depth + 1) for k, v in props.items()
                    if k not in required}
        return st.fixed_dictionaries({k: schema_values(spec, props[k], depth + 1)
                                      for k in required}, optional=optional)
    return ANY_JSON


def param_values(spec: Spec, param: Param) -> st.SearchStrategy[str]:
    """A path or query value: valid for its schema, or garbage."""
    valid = schema_values(spec, param.schema).map(
        lambda v: v if isinstance(v, str) else json.dumps(v))
    garbage = st.one_of(
        st.text(max_size=80),
        st.sampled_from(["0", "-1", "1", "18446744073709551616", "9" * 30, "0x" + "g" * 64,
                         "0x" + "0" * 64, "a" * 300, "%00", "..", ".", "\u0000", "\ud7ff",
                         "pouwchain-swarm", "true", "1e3", " 1", "[]", "{}"]),
        HEX64.map(lambda h: h[:63]),
        HEX64.map(str.upper))
    return st.one_of(valid, garbage)


# -- requests --------------------------------------------------------------------------------

@dataclasses.dataclass
class FuzzRequest:
    """One HTTP request of the fuzz (``route``: the operation it aims at)."""

    route: Route
    method: str
    target: str  # path and query, percent-encoded
    headers: dict[str, str]
    body: bytes | None

    def describe(self) -> str:
        body = b"" if self.body is None else self.body[:200]
        return f"{self.method} {self.target[:200]} {self.headers} {body!r}"


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


GARBAGE_BODIES = st.one_of(
    st.sampled_from([_nested(1500, b"[", b"]"), _nested(100_000, b"[", b"]"),
                     b'{"a":' * 1500 + b"1" + b"}" * 1500, b"[" * 3000, b"", b"null", b"{}",
                     b"[]", b'"x"', b"NaN", b"Infinity", b'{"x": NaN}', b"\xff\xfe\x00",
                     b'{"tx": "\xff"}', b'{"count": 1e999}', b"9" * 5000, b"\x1f\x8b\x08",
                     b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--zz--",
                     b"a" * 70_000]),
    st.binary(max_size=300),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
CONTENT_TYPES = ["application/json", "application/octet-stream", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data",
                 "multipart/form-data; boundary=zz", "multipart/mixed; boundary=",
                 "application/json; charset=latin-1", "application/json; charset=nope",
                 "image/png", "", "a/b/c", ";;;", "application/JSON"]
ENCODINGS = ["gzip", "deflate", "br", "zstd", "identity", "x-unknown", "gzip, deflate"]
HEADER_VALUE = st.from_regex(r"[ -~]{0,60}", fullmatch=True).map(str.strip)


def multipart(fields: dict[str, bytes], boundary: str) -> bytes:
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode()
             + value + b"\r\n" for name, value in fields.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@st.composite
def _schema_body(draw: st.DrawFn, spec: Spec,
                 op: Operation) -> tuple[str, bytes]:
    ctype, schema = draw(st.sampled_from(op.bodies))
    if ctype.startswith("multipart/"):
        names = [*resolve(spec, schema).get("properties", {}), "zz"]
        chosen = draw(st.lists(st.sampled_from(names), max_size=4))
        fields = {name: draw(st.binary(max_size=64) | HEX64.map(str.encode)) for name in chosen}
        boundary = draw(st.from_regex(r"[A-Za-z0-9]{1,20}", fullmatch=True))
        return f"{ctype}; boundary={boundary}", multipart(fields, boundary)
    if ctype == "application/octet-stream":
        return ctype, draw(st.binary(max_size=400))
    return ctype, json.dumps(draw(schema_values(spec, schema))).encode()


def _encoded(draw: st.DrawFn, body: bytes, headers: dict[str, str]) -> bytes:
    """Maybe a Content-Encoding: honest (gzip/deflate) or a lie."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body)
    if choice == 1:
        headers["Content-Encoding"] = "deflate"
        return zlib.compress(body)
    if choice == 2:
        headers["Content-Encoding"] = draw(st.sampled_from(ENCODINGS))
    return body


def _quote(text: str) -> str:
    """Percent-encoded UTF-8 (lone surrogates too: the server sees invalid UTF-8)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def fuzz_requests(draw: st.DrawFn, spec: Spec, op: Operation,
                  token: str) -> FuzzRequest:
    """A request aimed at ``op``: valid parts from the schema mixed with garbage."""
    target = draw(_targets(spec, op))
    method = op.method if draw(st.integers(0, 9)) else draw(st.sampled_from(OTHER_METHODS))
    headers = draw(_auth_headers(token))
    body: bytes | None = None
    kind = draw(st.integers(0, 9))
    if op.bodies and kind < 5:
        ctype, body = draw(_schema_body(spec, op))
        if kind == 4:  # the right body under a wrong type
            ctype = draw(st.sampled_from(CONTENT_TYPES))
        headers["Content-Type"] = ctype
    elif op.bodies or kind == 9:
        body = draw(GARBAGE_BODIES)
        headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
    if body is not None:
        body = _encoded(draw, body, headers)
    if draw(st.integers(0, 7)) == 0:
        headers[draw(st.sampled_from(["Accept", "X-Forwarded-For", "Expect", "Range",
                                      "Accept-Encoding", "Connection"]))] = draw(HEADER_VALUE)
    return FuzzRequest(op.route, method, target, headers, body)


@st.composite
def _targets(draw: st.DrawFn, spec: Spec, op: Operation) -> str:
    """Path (parameters filled in) and query."""
    path = op.path
    for param in op.params:
        if param.location == "path":
            value = draw(param_values(spec, param))
            path = path.replace("{" + param.name + "}", _quote(value))
    query: list[str] = []
    for param in op.params:
        if param.location == "query" and draw(st.booleans()):
            query.append(f"{param.name}={_quote(draw(param_values(spec, param)))}")
    if draw(st.integers(0, 5)) == 0:
        query.append(f"{_quote(draw(st.text(max_size=10)))}={_quote(draw(st.text(max_size=20)))}")
    return path + ("?" + "&".join(query) if query else "")


@st.composite
def _auth_headers(draw: st.DrawFn, token: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["valid", "valid", "none", "wrong", "odd"]))
    if auth == "valid":
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "wrong":
        headers["Authorization"] = "Bearer " + "0" * 64
    elif auth == "odd":
        headers["Authorization"] = draw(HEADER_VALUE)
    return headers


def _readings(body: bytes) -> list[bytes]:
    """Every way the node might read a body: as sent, gunzipped, inflated (an encoding it
    does not know may be passed through as it is)."""
    out = [body]
    for decode in (gzip.decompress, zlib.decompress):
        try:
            out.append(decode(body))
        except (OSError, EOFError, zlib.error):
            pass
    return out


def _harmless_value(path: str, value: Any, own_address: str) -> Any | None:
    """``value`` made harmless, or None if it already is."""
    if not isinstance(value, dict):
        return None
    if path == "/api/v1/miner/generate" and type(value.get("count")) is int \
            and value["count"] > 1:
        return {**value, "count": 1}
    if path == "/api/v1/peers" and isinstance(value.get("address"), str):
        try:
            parse_peer_address(value["address"])
        except ApiError:
            return None
        return {**value, "address": own_address}
    return None


def make_harmless(request: FuzzRequest, *, own_address: str) -> FuzzRequest:
    """Keep a valid request from acting on the world: ``generate`` mines at most one block,
    and a peer address that could be dialled becomes the node's own (refused: ``self``).
    A body that would act, read in any of its encodings, is replaced by its harmless JSON,
    sent plain."""
    path, _ = request.route
    if request.body is None or path not in ("/api/v1/miner/generate", "/api/v1/peers"):
        return request
    for reading in _readings(request.body):
        try:
            value = json.loads(reading)
        except (ValueError, RecursionError):
            continue
        harmless = _harmless_value(path, value, own_address)
        if harmless is not None:
            headers = {k: v for k, v in request.headers.items() if k != "Content-Encoding"}
            return dataclasses.replace(request, headers=headers,
                                       body=json.dumps(harmless).encode())
    return request


# -- sending and judging ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def send(port: int, request: FuzzRequest, *, timeout: float = HTTP_TIMEOUT) -> Answer:
    """One request on a fresh connection to 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        if request.body is not None:
            conn.putheader("Content-Length", str(len(request.body)))
        conn.endheaders(request.body)
        response = conn.getresponse()
        body = response.read()
        return Answer(response.status, response.getheader("Content-Type", ""), body)
    finally:
        conn.close()


def error_code(route: Route, answer: Answer) -> str | None:
    """The stable code of a JSON error body, or None if the body is not one."""
    if not answer.content_type.startswith("application/json"):
        return None
    try:
        body = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):  # OpenAI's shape
        return str(error["code"])
    if isinstance(error, str) and isinstance(body.get("reason"), str):
        return str(body["reason"])
    return None


def judge(request: FuzzRequest, answer: Answer) -> str | None:
    """What is wrong with ``answer`` (None: nothing): a 5xx, or an error without a JSON code."""
    if answer.status >= 500:
        return f"{answer.status} {answer.body[:300]!r}"
    if answer.status >= 400 and request.method != "HEAD" and \
            error_code(request.route, answer) is None:
        return f"{answer.status} without a JSON error code: {answer.body[:300]!r}"
    return None


@dataclasses.dataclass
class Tally:
    """Requests and outcomes per route."""

    requests: Counter[Route] = dataclasses.field(default_factory=Counter)
    statuses: dict[Route, Counter[int]] = dataclasses.field(default_factory=dict)
    codes: Counter[str] = dataclasses.field(default_factory=Counter)
    server_errors: Counter[Route] = dataclasses.field(default_factory=Counter)
    server_codes: Counter[str] = dataclasses.field(default_factory=Counter)  # "503 no_answer"
    not_json: Counter[Route] = dataclasses.field(default_factory=Counter)
    failures: list[str] = dataclasses.field(default_factory=list)

    def add(self, request: FuzzRequest, answer: Answer) -> str | None:
        route = request.route
        self.requests[route] += 1
        self.statuses.setdefault(route, Counter())[answer.status] += 1
        code = error_code(route, answer)
        if code is not None:
            self.codes[code] += 1
        problem = judge(request, answer)
        if problem is not None:
            if answer.status >= 500:
                self.server_errors[route] += 1
                self.server_codes[f"{answer.status} {code}"] += 1
            else:
                self.not_json[route] += 1
            if len(self.failures) < 20:
                self.failures.append(f"{request.describe()} -> {problem}")
        return problem


def seed_run(value: int) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Hypothesis's ``@seed``: the long run's rounds draw different requests."""
    return seed(value)


def fuzz_route(spec: Spec, op: Operation, *, port: int, token: str,
               own_address: str, tally: Tally, examples: int, seed: int | None,
               strict: bool = False,
               check: Callable[[FuzzRequest, Answer], None] | None = None) -> None:
    """Send ``examples`` Hypothesis-drawn requests aimed at ``op``; count them in ``tally``.
    ``strict``: the first problem fails (and Hypothesis shrinks it to a minimal request)."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              phases=[Phase.generate, Phase.shrink] if strict else [Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(request=fuzz_requests(spec, op, token))
    def one(request: FuzzRequest) -> None:
        request = make_harmless(request, own_address=own_address)
        answer = send(port, request)
        problem = tally.add(request, answer)
        if check is not None:
            check(request, answer)
        if strict and problem is not None:
            raise AssertionError(f"{request.describe()} -> {problem}")

    (one if seed is None else seed_run(seed)(one))()


# -- the long run ----------------------------------------------------------------------------

def table(tally: Tally) -> str:
    lines = [f"{'route':<42} {'requests':>8} {'2xx':>6} {'4xx':>6} {'5xx':>5} {'no-json':>7}"]
    for route in sorted(tally.requests):
        statuses = tally.statuses.get(route, Counter())
        by_class = Counter(status // 100 for status in statuses.elements())
        lines.append(f"{route[1] + ' ' + route[0]:<42} {tally.requests[route]:>8} "
                     f"{by_class[2]:>6} {by_class[4]:>6} {tally.server_errors[route]:>5} "
                     f"{tally.not_json[route]:>7}")
    total = sum(tally.requests.values())
    lines.append(f"{'total':<42} {total:>8} {'':>6} {'':>6} "
                 f"{sum(tally.server_errors.values()):>5} {sum(tally.not_json.values()):>7}")
    return "\n".join(lines)


def rss_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+)", text)
    return int(match.group(1)) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="run at least this long")
    parser.add_argument("--examples", type=int, default=200,
                        help="requests per route per round (rounds repeat until --seconds)")
    parser.add_argument("--seed", type=int, default=0, help="first round's seed")
    parser.add_argument("--swarm-backend", default="builtin:arith-m",
                        help="the node's swarm backend (chat requests run real rounds)")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = parser.parse_args(argv)
    spec = load_spec()
    ops = operations(spec)
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="http-fuzz-") as tmp:
        datadir = Path(tmp) / "node"
        datadir.mkdir()
        # generate mines at once (a dev chain paces blocks otherwise: 3 s each)
        # no peers of its own: a fuzzed request never reaches another node
        (datadir / "node.toml").write_text(
            "mining_block_interval = 0.0\ndiscover = false\ntarget_outbound = 0\n")
        port = free_port()
        proc = spawn(node_command(datadir, port, extra=["--swarm-backend", args.swarm_backend]),
                     Path(tmp) / "node.log")
        try:
            wait_ready(datadir, proc)
            token = (datadir / "api.token").read_text().strip()
            rss_start = rss_kib(proc.pid)
            seed = args.seed
            rounds = 0
            while rounds == 0 or time.monotonic() - started < args.seconds:
                for op in ops:
                    fuzz_route(spec, op, port=port, token=token,
                               own_address=f"{HOST}:{port}", tally=tally,
                               examples=args.examples, seed=seed)
                    if proc.poll() is not None:
                        raise SystemExit(f"the node exited with {proc.returncode}")
                seed += 1
                rounds += 1
            rss_end = rss_kib(proc.pid)
            alive = proc.poll() is None
        finally:
            stop_process(proc)
    elapsed = time.monotonic() - started
    print(table(tally))
    for failure in tally.failures:
        print("FAIL", failure)
    total = sum(tally.requests.values())
    server_errors = sum(tally.server_errors.values())
    not_json = sum(tally.not_json.values())
    print(f"{total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s), {rounds} rounds, "
          f"{server_errors} 5xx {dict(tally.server_codes)}, {not_json} errors without a JSON "
          f"code; node alive: {alive}; "
          f"RSS {rss_start} -> {rss_end} KiB; load {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps({
            "requests": total, "seconds": round(elapsed, 1), "rounds": rounds,
            "server_errors": server_errors, "errors_without_json_code": not_json,
            "server_errors_by_code": dict(tally.server_codes),
            "routes": len(tally.requests), "spec_routes": len(spec_routes(spec)),
            "node_alive": alive, "rss_kib_start": rss_start, "rss_kib_end": rss_end,
            "per_route": {f"{m} {p}": {"requests": tally.requests[(p, m)],
                                       "server_errors": tally.server_errors[(p, m)]}
                          for p, m in sorted(tally.requests)},
            "codes": dict(tally.codes.most_common()),
            "load_1m": round(os.getloadavg()[0], 2)}))
    return 1 if server_errors or not_json or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
