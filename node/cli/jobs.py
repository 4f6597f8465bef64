"""``pouwchain job``: pay a node to multiply two matrices, and fetch the exact product.

``job submit A.npy B.npy --escrow N`` pads and hashes the operands locally (the roots go in
the signed request, so the node cannot swap them), signs a ``JobRequest`` with the wallet
(chain id and nonce from the node), uploads both matrices and prints the job id; with
``--wait`` it polls until the product is back and the receipt is on chain (a progress line
on stderr), and ``--out`` saves the product as .npy (int64). ``job get ID`` shows a job and
can save its product; ``job list`` lists the jobs a node holds.

Operand entries must lie in [-64, 63] (`pouw.params.VALUE_MIN`/`VALUE_MAX`): not the whole
int8 range, so that the mining noise added to them cannot overflow.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from node.cli.common import (
    CliError,
    Command,
    Progress,
    add_json_option,
    add_node_options,
    add_wallet_option,
    api_client,
    bounded_int,
    client_config,
    guarded,
    hex32,
    positive_u64,
    print_json,
    read_password,
    resolve_wallet,
    seconds,
    u64,
)
from node.client.wallet import open_wallet
from node.mining.jobs import JobInputError, job_request, load_matrix, npy_bytes, prepare_operands
from pouw.params import VALUE_MAX, VALUE_MIN

DEFAULT_FEE = 1000
DEFAULT_TIMEOUT = 1000  # blocks before the escrow may be cancelled back
DEFAULT_HTTP_TIMEOUT = 60.0  # seconds: an upload of two large matrices
MAX_FILE = 1 << 30
NPY_MAGIC = b"\x93NUMPY"
POLL_SECONDS = 0.5
VALUE_RANGE = f"[{VALUE_MIN}, {VALUE_MAX}]"


def read_npy(path: Path) -> np.ndarray:
    """A 2-D integer operand from a .npy file, every entry in [-64, 63]; `CliError` (one
    line saying what the file is instead) otherwise."""
    data = path.read_bytes()
    if not data.startswith(NPY_MAGIC):
        kind = "a text file" if _looks_like_text(data) else "not a .npy file"
        raise CliError(f"{path}: {kind}, not a NumPy .npy array (save one with "
                       f"numpy.save(path, array); entries in {VALUE_RANGE}) (bad_npy)")
    try:
        matrix = load_matrix(data, path.name, max_bytes=MAX_FILE)
    except JobInputError as exc:
        raise CliError(f"{path}: {exc.message} ({exc.reason})") from exc
    if matrix.size and (int(matrix.min()) < VALUE_MIN or int(matrix.max()) > VALUE_MAX):
        raise CliError(f"{path}: entries must lie in {VALUE_RANGE} (found "
                       f"{int(matrix.min())} to {int(matrix.max())}); the range is narrower "
                       "than int8 so that mining noise cannot overflow (bad_values)")
    return matrix


def _looks_like_text(data: bytes) -> bool:
    try:
        data[:4096].decode()
    except UnicodeDecodeError:
        return False
    return True


def _save_product(view: dict[str, Any], out: Path) -> None:
    product = np.load(io.BytesIO(base64.b64decode(view["product_npy_b64"])), allow_pickle=False)
    np.save(out, product.astype(np.int64), allow_pickle=False)


def _summary(view: dict[str, Any]) -> str:
    shown = {k: v for k, v in view.items() if k != "product_npy_b64"}
    return json.dumps(shown, indent=2)


def _phase(view: dict[str, Any]) -> str:
    on_chain = (view.get("on_chain") or {}).get("status")
    return f"job {view.get('status')}, on chain {on_chain}"


def _cmd_submit(args: argparse.Namespace) -> int:
    a, b = read_npy(args.a), read_npy(args.b)
    try:
        ops = prepare_operands(a, b)
    except JobInputError as exc:
        raise CliError(f"{exc.message} ({exc.reason})") from exc
    wallet = open_wallet(resolve_wallet(args), read_password())
    client = api_client(args)
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
        print(f"next: the node computes the product and a block records the receipt; follow "
              f"it with `pouwchain job get {view['id']} --node {client.base_url}`",
              file=sys.stderr)
        return 0
    wait_timeout = args.wait_timeout if args.wait_timeout is not None else \
        client_config(args).wait_timeout
    deadline = time.monotonic() + wait_timeout
    progress = Progress(quiet=args.quiet)
    try:
        while True:
            view = client.get(f"/api/v1/jobs/{view['id']}")
            if view["status"] == "failed":
                raise CliError(f"job failed: {view.get('error')}")
            if view["status"] == "done" and view["on_chain"]["status"] == "done":
                break
            progress.update(_phase(view), f"(--wait-timeout {wait_timeout:g} s)")
            if time.monotonic() > deadline:
                raise CliError(f"job not settled in {wait_timeout:g} s; it may still "
                               f"settle: `pouwchain job get {view['id']}`")
            time.sleep(POLL_SECONDS)
    finally:
        progress.done()
    if args.out is not None:
        _save_product(view, args.out)
    print(_summary(view))
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    view: dict[str, Any] = api_client(args).get(f"/api/v1/jobs/{args.job_id}")
    if args.out is not None:
        if "product_npy_b64" not in view:
            raise CliError(f"no product here yet (status {view['status']})")
        _save_product(view, args.out)
    print(_summary(view))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    view: dict[str, Any] = api_client(args).get("/api/v1/jobs")
    if args.json:
        print_json(view)
        return 0
    jobs = view.get("jobs", [])
    print(f"{len(jobs)} job(s) on this node, newest first")
    for job in jobs:
        shape = "x".join(str(d) for d in job.get("shape", []))
        when = job.get("submitted_at")
        stamp = datetime.datetime.fromtimestamp(float(when), tz=datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ") if isinstance(when, int | float) else "-"
        print(f"  {job['id']}  {job.get('status', ''):<10} on chain "
              f"{job.get('on_chain', ''):<10} {shape:<14} {stamp}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain job submit|get|list``."""
    job = subparsers.add_parser(
        "job", help=f"matmul jobs: pay a node for an exact product (entries in {VALUE_RANGE})",
        description=f"Matmul jobs. Operands are 2-D integer .npy arrays with every entry in "
                    f"{VALUE_RANGE} (narrower than int8, so mining noise cannot overflow).")
    sub = job.add_subparsers(dest="job_command", required=True, metavar="SUBCOMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        add_node_options(p, http_timeout=DEFAULT_HTTP_TIMEOUT)
        p.set_defaults(func=guarded(func))
        return p

    submit = add("submit", _cmd_submit,
                 f"upload A and B with a signed, escrowed request (entries in {VALUE_RANGE})")
    submit.add_argument("a", type=Path, metavar="A.npy",
                        help=f"A as a 2-D integer .npy array, entries in {VALUE_RANGE}")
    submit.add_argument("b", type=Path, metavar="B.npy",
                        help=f"B as a 2-D integer .npy array, entries in {VALUE_RANGE}")
    submit.add_argument("--escrow", type=positive_u64, required=True, metavar="COINS",
                        help="coins locked for the worker, paid on the receipt (required, "
                             "no default)")
    submit.add_argument("--fee", type=u64, default=DEFAULT_FEE, metavar="COINS",
                        help=f"transaction fee in coins (default: {DEFAULT_FEE})")
    submit.add_argument("--timeout", type=bounded_int(1, 2**32 - 1), default=DEFAULT_TIMEOUT,
                        metavar="BLOCKS",
                        help=f"blocks until the escrow can be cancelled back "
                             f"(default: {DEFAULT_TIMEOUT} blocks)")
    submit.add_argument("--nonce", type=u64, default=None,
                        help="the transaction's nonce (default: the node's next_nonce)")
    add_wallet_option(submit)
    submit.add_argument("--wait", action="store_true",
                        help="wait for the product and the on-chain receipt, with a progress "
                             "line (default: off, print the job id and return)")
    submit.add_argument("--wait-timeout", type=seconds, default=None, metavar="SECONDS",
                        help="seconds --wait waits (default: `wait_timeout` in client.toml, "
                             "else 300 s)")
    submit.add_argument("-q", "--quiet", action="store_true",
                        help="no progress line with --wait (default: off)")
    submit.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="with --wait, save the product (.npy, int64) (default: not saved)")
    get = add("get", _cmd_get, "show a job (and save its product with --out)")
    get.add_argument("job_id", type=hex32("job id"), metavar="JOB_ID", help="64 hex digits")
    get.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="save the product (.npy, int64) (default: not saved)")
    lst = add("list", _cmd_list, "the jobs the node holds, newest first")
    add_json_option(lst, "the node's answer")
