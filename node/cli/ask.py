"""``pouwchain ask "question"``: ask the swarm through a node, print the chosen answer and
the round summary (stdout), with a progress line on stderr while the swarm works.

Without ``--wallet`` the node asks on its own account (the OpenAI-compatible route; the node
pays any fee). With ``--wallet`` the request is signed here by the wallet's key and its fee
comes from the wallet's swarm escrow (``pouwchain wallet escrow-deposit``).

The node is addressed like every other command (``--node``, ``--datadir``, client.toml);
``--timeout`` bounds the wait for the answer, and a node that is reachable but slower than
that is reported as a timeout, not as unreachable.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from typing import Any

from node.cli.common import (
    Progress,
    add_node_options,
    api_client,
    bounded_int,
    guarded,
    read_password,
    resolve_wallet,
    seconds,
    u64,
)
from node.client.http import ApiClient, ApiClientError
from node.client.wallet import open_wallet
from swarm.messages import DEFAULT_ROUND_JUDGES, MAX_PROMPT

DEFAULT_TIMEOUT = 120.0  # seconds
DEFAULT_ANSWERS = 4
DEFAULT_JUDGES = DEFAULT_ROUND_JUDGES  # issue 11: enough honest judges at 30% adversaries
MODEL = "pouwchain-swarm"
POLL_SECONDS = 0.5


def summary_lines(view: dict[str, Any]) -> list[str]:
    """The round summary: who answered what, strengths, judges, settlement status."""
    lines = [f"round    {view['round_id']}  ({view['status']})",
             f"chosen   {view['chosen']}"]
    result = view.get("result") or {}
    ranked = {a["node"]: a for a in result.get("answers", [])}
    lines.append("answers  (rank  strength  score  screen  node  text)")
    order = sorted(view["answers"], key=lambda a: (
        ranked[a["node"]]["rank"] if a["node"] in ranked else len(ranked), a["node"]))
    for answer in order:
        r = ranked.get(answer["node"])
        if r is None:
            state = "committed, not revealed" if answer["committed"] else "no answer"
            lines.append(f"   -  {'':>8}  {'':>5}  {'':>6}  {answer['node'][:16]}  ({state})")
            continue
        screen = "good" if r.get("accepted") else "-"
        lines.append(f"  {r['rank']:>2}  {r['strength_micro'] / 1e6:>+8.3f}  "
                     f"{r['score_micro'] / 1e6:>5.3f}  {screen:>6}  {answer['node'][:16]}  "
                     f"{answer['text']!r}")
    judged = [j for j in view["judgments"] if j["revealed"]]
    lines.append(f"judges   {len(judged)} of {len(view['judgments'])} judged")
    for judge in result.get("judges", []):
        lines.append(f"         {judge['node'][:16]}  agreement {judge['agree2']}"
                     f"/{2 * judge['counted']}")
    timings = view.get("timings_ms") or {}
    if "complete" in timings:
        lines.append(f"latency  {timings['complete']:.0f} ms (at the node)")
    lines.append(f"settle   {view['settlement_status']}")
    return lines


def _wait_with_progress(call: Callable[[], Any], progress: Progress,
                        phase: Callable[[], str | None]) -> Any:
    """Run the blocking ``call`` in a daemon thread (Ctrl-C returns at once, not after the
    request's timeout); redraw the progress line until it returns, then return its result
    or raise its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="ask", daemon=True)
    worker.start()
    while True:
        worker.join(POLL_SECONDS)
        if not worker.is_alive():
            break
        progress.update("asking the swarm", phase() or "")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _round_phase(client: ApiClient, round_id: str) -> Callable[[], str | None]:
    """The round's status as the node reports it (None until the node knows the round)."""
    def phase() -> str | None:
        try:
            view = client.get(f"/api/v1/rounds/{round_id}")
        except ApiClientError:
            return None
        return f"round {round_id[:12]}: {view.get('status')}"
    return phase


def _ask_signed(args: argparse.Namespace, client: ApiClient,
                progress: Progress) -> tuple[str, dict[str, Any]]:
    """Sign the request with the wallet and post it; (answer, round view)."""
    wallet = open_wallet(resolve_wallet(args), read_password())
    status = client.get("/api/v1/status")
    announcement = wallet.sign_swarm_request(
        chain_id=int(status["chain_id"]), prompt=args.question.encode(), fee=args.fee,
        answers=args.answers, judges=args.judges, nonce=os.urandom(32),
        beacon_height=int(status["height"]))
    round_id = announcement.request.round_id().hex()
    poller = ApiClient(client.base_url, timeout=min(5.0, client.timeout))
    view: dict[str, Any] = _wait_with_progress(
        lambda: client.post("/api/v1/swarm/requests",
                            {"request": announcement.encode().hex()}),
        progress, _round_phase(poller, round_id))
    return str(view.get("answer") or ""), view


def _ask_open(args: argparse.Namespace, client: ApiClient,
              progress: Progress) -> tuple[str, dict[str, Any]]:
    """Ask through the OpenAI-compatible route (the node pays); (answer, round view)."""
    body: dict[str, Any] = {"model": MODEL,
                            "messages": [{"role": "user", "content": args.question}]}
    if args.fee:
        body["fee"] = args.fee
    completion: dict[str, Any] = _wait_with_progress(
        lambda: client.post("/v1/chat/completions", body), progress, lambda: None)
    answer = str(completion["choices"][0]["message"]["content"])
    view: dict[str, Any] = client.get(f"/api/v1/rounds/{completion['round_id']}")
    return answer, view


def _main(args: argparse.Namespace) -> int:
    client = api_client(args, timeout=args.timeout)
    progress = Progress(quiet=args.quiet)
    try:
        if args.wallet is not None:
            answer, view = _ask_signed(args, client, progress)
        else:
            answer, view = _ask_open(args, client, progress)
    finally:
        progress.done()
    print(answer)
    print()
    for line in summary_lines(view):
        print(line)
    return 0


def _question(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the question is empty")
    if len(text.encode()) > MAX_PROMPT:
        raise argparse.ArgumentTypeError(f"the question is longer than {MAX_PROMPT} bytes")
    return text


_question.__name__ = "question"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ask", help="ask the swarm a question through a node",
        description="Ask the swarm. The shipped model (smollm2, SmolLM2-135M-Instruct int8) "
                    "answers short general questions in English; the built-in arithmetic "
                    "models (builtin:arith-*) answer only integer arithmetic such as "
                    "'What is 17+25?' and abstain on anything else.")
    p.add_argument("question", type=_question, help="the question (UTF-8, at most "
                                                    f"{MAX_PROMPT} bytes)")
    add_node_options(p, http_timeout=None)
    p.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"seconds to wait for the answer (default: {DEFAULT_TIMEOUT:g} s); a "
                        "node slower than this is reported as a timeout")
    p.add_argument("--fee", type=u64, default=0, metavar="COINS",
                   help="fee offered for the round in coins (default: 0; with --wallet it "
                        "comes from the wallet's swarm escrow)")
    p.add_argument("--wallet", default=None, metavar="NAME|PATH",
                   help="sign the request with this wallet (a name in DATADIR/wallets or a "
                        "path): the fee comes from its swarm escrow (default: none, the node "
                        "asks and pays on its own account)")
    p.add_argument("--answers", type=bounded_int(1, 64), default=DEFAULT_ANSWERS,
                   help=f"answerers asked, with --wallet (default: {DEFAULT_ANSWERS})")
    p.add_argument("--judges", type=bounded_int(1, 64), default=DEFAULT_JUDGES,
                   help=f"judges asked, with --wallet; the draw takes at most the eligible "
                        f"nodes (default: {DEFAULT_JUDGES})")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress line on stderr (default: off)")
    p.set_defaults(func=guarded(_main))
