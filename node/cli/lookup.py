"""``pouwchain block|tx|account|round``: look things up on a node (``bitcoin-cli getblock``,
``gettransaction``), a readable summary or, with ``--json``, the API's answer unchanged.

Each reads one ``/api/v1`` route: ``blocks/{height|id}``, ``txs/{id}``,
``accounts/{address}``, ``rounds/{id}``.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from node.cli.ask import summary_lines
from node.cli.common import (
    add_json_option,
    add_node_options,
    add_wallet_option,
    api_client,
    guarded,
    hex32,
    print_json,
    resolve_wallet,
)
from node.client.wallet import wallet_address


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int):
        return str(timestamp)
    stamp = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return f"{stamp.isoformat().replace('+00:00', 'Z')} ({timestamp})"


def block_lines(block: dict[str, Any]) -> list[str]:
    header = block.get("header") or {}
    state = (f"canonical, {block['confirmations']} confirmations" if block.get("canonical")
             else "not canonical (a side branch)")
    lines = [f"block    {block['id']}",
             f"height   {block['height']} ({state})",
             f"time     {_when(header.get('timestamp'))}",
             f"parent   {header.get('parent_hash')}",
             f"miner    {header.get('miner')}",
             f"work     {header.get('m')}x{header.get('k')}x{header.get('n')} "
             f"(r={header.get('r')}), target {header.get('target')}",
             f"state    {header.get('state_root')}",
             f"size     {block.get('size')} bytes",
             f"txs      {block.get('tx_count')}"]
    for tx in block.get("txs", []):
        if isinstance(tx, dict):
            lines.append(f"  {tx['id']}  {tx['kind']:<18} from {str(tx['sender'])[:16]}  "
                         f"fee {tx['fee']}")
        else:
            lines.append(f"  {tx}")
    return lines


def tx_lines(found: dict[str, Any]) -> list[str]:
    tx = found["tx"]
    if found.get("status") == "confirmed":
        where = (f"confirmed in block {found['block']} at height {found['height']} "
                 f"(position {found['index']}, {found['confirmations']} confirmations)")
    else:
        where = "pending: in the node's mempool, waiting for a block"
    lines = [f"tx       {tx['id']}",
             f"status   {where}",
             f"kind     {tx['kind']}",
             f"sender   {tx['sender']}",
             f"nonce    {tx['nonce']}",
             f"fee      {tx['fee']}",
             f"size     {tx['size']} bytes"]
    payload = tx.get("payload")
    if isinstance(payload, dict):
        lines += [f"  {key:<7} {value}" for key, value in payload.items()]
    return lines


def account_lines(account: dict[str, Any]) -> list[str]:
    """The account as ``wallet balance`` and ``account`` print it."""
    stake = account["stake"]
    escrow = account["escrow"]
    lines = [
        f"address:   {account['address']}",
        f"balance:   {account['balance']}",
        f"nonce:     {account['nonce']} (next {account['next_nonce']}, "
        f"{account['pending_txs']} pending)",
        f"bonded:    {stake['bonded']}",
        f"unbonding: {stake['unbonding_total']}",
        *(f"  {u['amount']} released at height {u['release_height']}"
          for u in stake["unbonding"]),
        f"escrow:    {escrow['locked']} locked for swarm fees"
        + (f", {escrow['releasing']} releasing (claimable at height "
           f"{escrow['release_height']})" if escrow["releasing"] else ""),
        f"reputation: {account['reputation']}  (at height {account['height']})",
    ]
    swarm = account.get("swarm_node")
    if isinstance(swarm, dict):
        lines.append(f"swarm:     registered node, endpoint {swarm.get('endpoint')!r}, "
                     f"{len(swarm.get('models') or [])} model(s)")
    return lines


def _show(args: argparse.Namespace, view: dict[str, Any], lines: list[str]) -> int:
    if args.json:
        print_json(view)
    else:
        print("\n".join(lines))
    return 0


def _cmd_block(args: argparse.Namespace) -> int:
    client = api_client(args)
    ref = args.ref
    if ref in ("tip", "latest"):
        ref = str(client.get("/api/v1/status")["height"])
    view: dict[str, Any] = client.get(f"/api/v1/blocks/{ref}?txs={int(args.txs)}")
    return _show(args, view, block_lines(view))


def _cmd_tx(args: argparse.Namespace) -> int:
    view: dict[str, Any] = api_client(args).get(f"/api/v1/txs/{args.tx_id}")
    return _show(args, view, tx_lines(view))


def _cmd_account(args: argparse.Namespace) -> int:
    address = args.address if args.address is not None else \
        wallet_address(resolve_wallet(args)).hex()
    view: dict[str, Any] = api_client(args).get(f"/api/v1/accounts/{address}")
    return _show(args, view, account_lines(view))


def _cmd_round(args: argparse.Namespace) -> int:
    view: dict[str, Any] = api_client(args).get(f"/api/v1/rounds/{args.round_id}")
    lines = [f"question {view.get('prompt')!r}", f"answer   {view.get('answer')!r}"]
    if view.get("error"):
        lines.append(f"error    {view['error']}")
    return _show(args, view, lines + summary_lines(view))


def _block_ref(text: str) -> str:
    if text in ("tip", "latest") or (text.isascii() and text.isdigit() and len(text) <= 20):
        return text
    return hex32("block id")(text)


_block_ref.__name__ = "block reference"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain block``, ``tx``, ``account`` and ``round``."""
    p = subparsers.add_parser("block", help="a block by height, id or 'tip' (getblock)")
    p.add_argument("ref", type=_block_ref, metavar="HEIGHT|ID|tip",
                   help="a height, a block id (64 hex digits) or 'tip'")
    p.add_argument("--txs", action="store_true",
                   help="list each transaction's kind, sender and fee (default: off, ids only)")
    add_json_option(p, "the block")
    add_node_options(p)
    p.set_defaults(func=guarded(_cmd_block))

    p = subparsers.add_parser("tx", help="a transaction, pending or confirmed (gettransaction)")
    p.add_argument("tx_id", type=hex32("tx id"), metavar="TXID", help="64 hex digits")
    add_json_option(p, "the transaction")
    add_node_options(p)
    p.set_defaults(func=guarded(_cmd_tx))

    p = subparsers.add_parser("account", help="an account's balance, nonce, stake and escrow")
    p.add_argument("address", type=hex32("address"), nargs="?", default=None,
                   metavar="ADDRESS", help="64 hex digits (default: the wallet's address)")
    add_wallet_option(p)
    add_json_option(p, "the account")
    add_node_options(p)
    p.set_defaults(func=guarded(_cmd_account))

    p = subparsers.add_parser("round", help="a swarm round: answers, judges, settlement")
    p.add_argument("round_id", type=hex32("round id"), metavar="ROUND_ID",
                   help="64 hex digits, as `ask` prints it")
    add_json_option(p, "the round")
    add_node_options(p)
    p.set_defaults(func=guarded(_cmd_round))
