"""``pouwchain job``: pay a node to multiply two matrices, and fetch the exact product.

``job submit A.npy B.npy --escrow N`` pads and hashes the operands locally (the roots go in
the signed request, so the node cannot swap them), signs a ``JobRequest`` with the wallet
(chain id and nonce from the node), uploads both matrices and prints the job id; with
``--wait`` it polls until the product is back and the receipt is on chain, and ``--out``
saves the product as .npy (int64). ``job get ID`` shows a job and can save its product.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from node.cli.wallet import default_wallet_path, read_password
from node.client.http import DEFAULT_NODE_URL, ApiClient, ApiClientError, node_url
from node.client.wallet import WalletError, open_wallet
from node.mining.jobs import JobInputError, job_request, load_matrix, npy_bytes, prepare_operands

Command = Callable[[argparse.Namespace], int]
DEFAULT_FEE = 1000
DEFAULT_TIMEOUT = 1000  # blocks before the escrow may be cancelled back
MAX_FILE = 1 << 30


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(node_url(node=args.node, datadir=args.datadir), timeout=args.http_timeout)


def _read_npy(path: Path) -> np.ndarray:
    return load_matrix(path.read_bytes(), path.name, max_bytes=MAX_FILE)


def _save_product(view: dict[str, Any], out: Path) -> None:
    product = np.load(io.BytesIO(base64.b64decode(view["product_npy_b64"])), allow_pickle=False)
    np.save(out, product.astype(np.int64), allow_pickle=False)


def _summary(view: dict[str, Any]) -> str:
    shown = {k: v for k, v in view.items() if k != "product_npy_b64"}
    return json.dumps(shown, indent=2)


def _cmd_submit(args: argparse.Namespace) -> int:
    a, b = _read_npy(args.a), _read_npy(args.b)
    ops = prepare_operands(a, b)
    wallet = open_wallet(args.wallet, read_password())
    client = _client(args)
    status: dict[str, Any] = client.get("/api/v1/status")
    miner: dict[str, Any] = client.get("/api/v1/miner")
    account: dict[str, Any] = client.get(f"/api/v1/accounts/{wallet.address.hex()}")
    assignee = bytes.fromhex(str(miner["jobs"]["assignee"]))
    nonce = args.nonce if args.nonce is not None else int(account["next_nonce"])
    payload = job_request(ops, assignee=assignee, escrow=args.escrow, timeout=args.timeout,
                          salt=os.urandom(32))
    tx = wallet.sign(chain_id=int(status["chain_id"]), nonce=nonce, fee=args.fee,
                     payload=payload)
    view: dict[str, Any] = client.post("/api/v1/jobs/matmul", {
        "a": base64.b64encode(npy_bytes(a)).decode(),
        "b": base64.b64encode(npy_bytes(b)).decode(),
        "tx": tx.encode().hex(),
    })
    print(view["id"], flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.wait_timeout
    while True:
        view = client.get(f"/api/v1/jobs/{view['id']}")
        if view["status"] == "failed":
            print(f"error: job failed: {view.get('error')}", file=sys.stderr)
            return 1
        if view["status"] == "done" and view["on_chain"]["status"] == "done":
            break
        if time.monotonic() > deadline:
            print(f"error: job not settled in {args.wait_timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.5)
    if args.out is not None:
        _save_product(view, args.out)
    print(_summary(view))
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    view: dict[str, Any] = _client(args).get(f"/api/v1/jobs/{args.job_id}")
    if args.out is not None:
        if "product_npy_b64" not in view:
            print(f"error: no product here (status {view['status']})", file=sys.stderr)
            return 1
        _save_product(view, args.out)
    print(_summary(view))
    return 0


def _guarded(func: Command) -> Command:
    """Map input, wallet and API failures to one line on stderr and exit code 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except JobInputError as exc:
            print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        except (WalletError, ApiClientError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain job submit|get``."""
    job = subparsers.add_parser("job", help="matmul jobs: pay a node for an exact product")
    sub = job.add_subparsers(dest="job_command", required=True)

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--node", default=None,
                       help=f"node API URL (default: from --datadir, else {DEFAULT_NODE_URL})")
        p.add_argument("--datadir", type=Path, default=None,
                       help="a running node's data directory (its node.json gives the URL)")
        p.add_argument("--http-timeout", type=float, default=60.0)
        p.add_argument("--out", type=Path, default=None, help="save the product (.npy, int64)")
        p.set_defaults(func=_guarded(func))
        return p

    submit = add("submit", _cmd_submit, "upload A and B with a signed, escrowed request")
    submit.add_argument("a", type=Path, help="A as .npy (integers in [-64, 63])")
    submit.add_argument("b", type=Path, help="B as .npy (integers in [-64, 63])")
    submit.add_argument("--escrow", type=int, required=True, help="fee locked for the worker")
    submit.add_argument("--fee", type=int, default=DEFAULT_FEE, help="transaction fee")
    submit.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help="blocks until the escrow can be cancelled back")
    submit.add_argument("--nonce", type=int, default=None)
    submit.add_argument("--wallet", type=Path, default=default_wallet_path())
    submit.add_argument("--wait", action="store_true", help="wait for the product and receipt")
    submit.add_argument("--wait-timeout", type=float, default=300.0)
    get = add("get", _cmd_get, "show a job (and save its product with --out)")
    get.add_argument("job_id")
