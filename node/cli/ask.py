"""``pouwchain ask "question" [--node URL] [--fee F] [--wallet PATH]``: ask the swarm through
a node, print the chosen answer and the round summary.

Without ``--wallet`` the node asks on its own account (the OpenAI-compatible route; the node
pays any fee). With ``--wallet`` the request is signed here by the wallet's key and its fee
comes from the wallet's swarm escrow (``pouwchain wallet escrow-deposit``)."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.cli.wallet import read_password
from node.client.wallet import WalletError, open_wallet
from node.config import DEFAULT_PORT

DEFAULT_NODE = os.environ.get("POUWCHAIN_NODE") or f"http://127.0.0.1:{DEFAULT_PORT}"


def _request(url: str, *, body: dict[str, Any] | None = None,
             timeout: float = 120.0) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read()).get("error")
    except ValueError:
        return f"HTTP {exc.code}"
    if isinstance(error, dict):
        return f"HTTP {exc.code} {error.get('code')}: {error.get('message')}"
    return f"HTTP {exc.code}: {error}"


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


def _ask_signed(args: argparse.Namespace, base: str) -> tuple[str, dict[str, Any]]:
    """Sign the request with the wallet and post it; (answer, round view)."""
    wallet = open_wallet(args.wallet, read_password())
    status = _request(f"{base}/api/v1/status")
    announcement = wallet.sign_swarm_request(
        chain_id=int(status["chain_id"]), prompt=args.question.encode(), fee=args.fee,
        answers=args.answers, judges=args.judges, nonce=os.urandom(32))
    view = _request(f"{base}/api/v1/swarm/requests",
                    body={"request": announcement.encode().hex()}, timeout=args.timeout)
    return str(view.get("answer") or ""), view


def _main(args: argparse.Namespace) -> int:
    base = args.node.rstrip("/")
    if "://" not in base:  # an address as `testnet status` prints it
        base = f"http://{base}"
    try:
        if args.wallet is not None:
            answer, view = _ask_signed(args, base)
        else:
            body: dict[str, Any] = {"model": "pouwchain-swarm",
                                    "messages": [{"role": "user", "content": args.question}]}
            if args.fee:
                body["fee"] = args.fee
            completion = _request(f"{base}/v1/chat/completions", body=body,
                                  timeout=args.timeout)
            answer = completion["choices"][0]["message"]["content"]
            view = _request(f"{base}/api/v1/rounds/{completion['round_id']}")
    except urllib.error.HTTPError as exc:
        print(f"pouwchain ask: {_error_text(exc)}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"pouwchain ask: cannot reach {base}: {exc}")
        return 1
    except WalletError as exc:
        print(f"pouwchain ask: {exc}")
        return 1
    print(answer)
    print()
    for line in summary_lines(view):
        print(line)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("ask", help="ask the swarm a question through a node")
    p.add_argument("question")
    p.add_argument("--node", default=DEFAULT_NODE, metavar="URL",
                   help="the node's API base URL (default $POUWCHAIN_NODE, else "
                        f"http://127.0.0.1:{DEFAULT_PORT})")
    p.add_argument("--fee", type=int, default=0, help="fee offered for the round")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    p.add_argument("--wallet", type=Path, default=None,
                   help="sign the request with this wallet: the fee comes from its swarm "
                        "escrow (default: the node asks and pays on its own account)")
    p.add_argument("--answers", type=int, default=4, help="answerers asked (with --wallet)")
    p.add_argument("--judges", type=int, default=4, help="judges asked (with --wallet)")
    p.set_defaults(func=_main)
