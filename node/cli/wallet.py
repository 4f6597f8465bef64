"""``pouwchain wallet``: named encrypted keys (``DATADIR/wallets/NAME.json``): create,
import a seed file (the testnet's ``keys/account-N.json``), list, show balance and history,
and sign and send transfers, stake, unstake, withdraw and swarm-escrow transactions through
a node's API.

The password comes from ``POUWCHAIN_PASSWORD`` (scripts, tests) or an interactive prompt;
the key is decrypted only in memory to sign, and never printed. The chain id and the next
nonce come from the node (``/status`` and ``/accounts/{address}``), so a transaction is
built for the network the node is on and queues after the account's pending ones.

A sent transaction's id goes to stdout alone (``TX=$(pouwchain wallet send ...)``); what
happens next and how to follow it goes to stderr; ``--wait`` waits until a block holds it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from consensus.genesis import dev_seed
from consensus.tx import public_key
from contracts import (
    BeginEscrowRelease,
    BeginUnstake,
    ClaimEscrowRelease,
    DepositEscrow,
    Payload,
    Stake,
    Transfer,
    Withdraw,
)
from node.cli.common import (
    CliError,
    Command,
    Progress,
    add_datadir_option,
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
from node.cli.lookup import account_lines
from node.client.config import DEFAULT_WAIT_TIMEOUT, check_wallet_name, list_wallets, wallet_path
from node.client.http import ApiClientError
from node.client.wallet import (
    KDF_PRESETS,
    SEED_BYTES,
    WalletError,
    create_wallet,
    open_wallet,
    wallet_address,
)

DEFAULT_FEE = 1000
DEFAULT_HISTORY = 20
HISTORY_ROUTE = "/api/v1/accounts/{address}/txs"
POLL_SECONDS = 0.5


def _named_target(args: argparse.Namespace, name: str | None) -> Path:
    """The file a new or imported wallet goes to: NAME, else ``--wallet``/defaults."""
    if name is None:
        return resolve_wallet(args)
    return wallet_path(client_config(args).datadir, name)


def _wallet_name(text: str) -> str:
    try:
        return check_wallet_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


_wallet_name.__name__ = "wallet name"


def _cmd_new(args: argparse.Namespace) -> int:
    target = _named_target(args, args.name)
    seed = None if args.dev is None else dev_seed(args.dev)
    wallet = create_wallet(target, read_password(confirm=True),
                           limits=KDF_PRESETS[args.kdf], seed=seed)
    print(f"wallet: {target}")
    print(f"address: {wallet.address.hex()}")
    return 0


def read_seed_file(path: Path) -> bytes:
    """A 32-byte Ed25519 seed from a file: the testnet's ``account-N.json``
    (``{"seed": hex, "address": hex}``, the address checked), a hex line, or 32 raw bytes
    (a node's ``node.key``)."""
    raw = path.read_bytes()
    if len(raw) == SEED_BYTES:
        return raw
    try:
        text = raw.decode().strip()
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is neither a seed file (JSON or hex) nor a 32-byte key") from exc
    address: str | None = None
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise CliError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("seed"), str):
            raise CliError(f"{path} has no \"seed\" (expected the testnet's "
                           '{"index", "address", "seed"} record)')
        text = str(record["seed"])
        address = record.get("address") if isinstance(record.get("address"), str) else None
    body = text.lower().removeprefix("0x")
    try:
        seed = bytes.fromhex(body)
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise CliError(f"{path}: a seed is 64 hex digits (32 bytes)")
    if address is not None and public_key(seed).hex() != address.lower():
        raise CliError(f"{path}: the seed does not match its address {address}")
    return seed


def _cmd_import(args: argparse.Namespace) -> int:
    seed = read_seed_file(args.file)
    name = args.name if args.name is not None else (
        None if args.wallet is not None else _wallet_name_from(args.file))
    target = _named_target(args, name)
    wallet = create_wallet(target, read_password(confirm=True), limits=KDF_PRESETS[args.kdf],
                           seed=seed)
    print(f"wallet: {target}")
    print(f"address: {wallet.address.hex()}")
    print(f"use it with --wallet {name or target} (e.g. `pouwchain wallet balance "
          f"--wallet {name or target}`)", file=sys.stderr)
    return 0


def _wallet_name_from(path: Path) -> str:
    """The name an imported file gets by default: its stem (``account-1``)."""
    try:
        return check_wallet_name(path.stem)
    except ValueError as exc:
        raise CliError(f"cannot name the wallet after {path.name!r}: give a NAME") from exc


def _cmd_list(args: argparse.Namespace) -> int:
    datadir = client_config(args).datadir
    default = resolve_wallet(args)
    rows = []
    for name, path in list_wallets(datadir):
        try:
            address: str | None = wallet_address(path).hex()
        except WalletError as exc:
            address = None
            problem = str(exc)
        else:
            problem = ""
        rows.append({"name": name, "address": address, "file": str(path),
                     "default": path.resolve() == default.resolve(),
                     **({"error": problem} if problem else {})})
    if args.json:
        print_json({"datadir": str(datadir), "wallets": rows})
        return 0
    if not rows:
        print(f"no wallets in {datadir}/wallets: create one with `pouwchain wallet new NAME` "
              "or import a seed with `pouwchain wallet import FILE`")
        return 0
    for row in rows:
        mark = "*" if row["default"] else " "
        shown = row["address"] or f"(unreadable: {row.get('error')})"
        print(f"{mark} {row['name']:<16} {shown}  {row['file']}")
    return 0


def _cmd_address(args: argparse.Namespace) -> int:
    print(wallet_address(resolve_wallet(args)).hex())
    return 0


def _cmd_balance(args: argparse.Namespace) -> int:
    address = args.address if args.address is not None else \
        wallet_address(resolve_wallet(args)).hex()
    account = api_client(args).get(f"/api/v1/accounts/{address}")
    if args.json:
        print_json(account)
    else:
        print("\n".join(account_lines(account)))
    return 0


def _history_rows(view: dict[str, Any]) -> list[str]:
    lines = []
    for item in view.get("txs", []):
        tx = item.get("tx") or {}
        where = f"height {item['height']}" if item.get("status") == "confirmed" else "pending"
        raw_payload = tx.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        amount = payload.get("amount", "")
        other = payload.get("to") if item.get("direction") == "out" else tx.get("sender")
        lines.append(f"{where:<14} {item.get('direction', ''):<3} {tx.get('kind', ''):<18} "
                     f"{amount!s:>12}  {str(other or '')[:16]:<16}  fee {tx.get('fee')}  "
                     f"{item.get('id')}")
    return lines


def _cmd_history(args: argparse.Namespace) -> int:
    address = args.address if args.address is not None else \
        wallet_address(resolve_wallet(args)).hex()
    client = api_client(args)
    try:
        view: dict[str, Any] = client.get(
            HISTORY_ROUTE.format(address=address) + f"?limit={args.limit}")
    except ApiClientError as exc:
        if exc.status == 404:
            raise CliError(f"the node at {client.base_url} has no address history route "
                           f"(GET {HISTORY_ROUTE}); look a transaction up with "
                           "`pouwchain tx TXID`") from exc
        raise
    if args.json:
        print_json(view)
        return 0
    rows = _history_rows(view)
    print(f"{address}: {len(rows)} transaction(s), newest first (at height {view.get('height')})")
    print("\n".join(rows) if rows else "  (none)")
    return 0


def _wait_confirmed(args: argparse.Namespace, tx_id: str) -> dict[str, Any]:
    """Poll ``/txs/{id}`` until a block holds it, a progress line on stderr."""
    client = api_client(args)
    progress = Progress(quiet=args.quiet)
    wait_timeout = args.wait_timeout if args.wait_timeout is not None else \
        client_config(args).wait_timeout
    deadline = time.monotonic() + wait_timeout
    try:
        while True:
            view: dict[str, Any] = client.get(f"/api/v1/txs/{tx_id}")
            if view.get("status") == "confirmed":
                return view
            progress.update("waiting for a block to include it", f"status {view.get('status')}")
            if time.monotonic() > deadline:
                raise CliError(f"{tx_id} not in a block after {wait_timeout:g} s; it may "
                               f"still confirm: `pouwchain tx {tx_id}`")
            time.sleep(POLL_SECONDS)
    finally:
        progress.done()


def _submit(args: argparse.Namespace, payload: Payload, what: str) -> int:
    """Unlock, fetch chain id and nonce, sign, post; the id on stdout, what next on stderr."""
    wallet = open_wallet(resolve_wallet(args), read_password())
    client = api_client(args)
    status: dict[str, Any] = client.get("/api/v1/status")
    account: dict[str, Any] = client.get(f"/api/v1/accounts/{wallet.address.hex()}")
    nonce = args.nonce if args.nonce is not None else int(account["next_nonce"])
    tx = wallet.sign(chain_id=int(status["chain_id"]), nonce=nonce, fee=args.fee,
                     payload=payload)
    result = client.post("/api/v1/txs", {"tx": tx.encode().hex()})
    tx_id = str(result["id"])
    node_flag = f" --node {client.base_url}"
    follow = f"pouwchain tx {tx_id}{node_flag}"
    confirmed = _wait_confirmed(args, tx_id) if args.wait else None
    if args.json:
        print_json({"id": tx_id, "status": "confirmed" if confirmed else "pending",
                    "what": what, "from": wallet.address.hex(), "nonce": nonce,
                    "fee": args.fee, "node": client.base_url, "follow": follow,
                    **({"height": confirmed["height"], "block": confirmed["block"]}
                       if confirmed else {})})
        return 0
    print(tx_id, flush=True)
    err = sys.stderr
    print(f"sent: {what} from {wallet.address.hex()[:16]}, fee {args.fee}, nonce {nonce}",
          file=err)
    if confirmed:
        print(f"confirmed in block {confirmed['block'][:16]} at height {confirmed['height']}",
              file=err)
    else:
        print(f"next: it waits in the mempool of {client.base_url} until a miner includes it "
              "in a block; the balances change then (a node rejects it at once if it cannot "
              "pay, and you see that here)", file=err)
        print(f"follow: `{follow}` (pending, then confirmed with a height); "
              f"`pouwchain wallet balance{node_flag}`", file=err)
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    return _submit(args, Transfer(to=bytes.fromhex(args.to), amount=args.amount),
                   f"transfer of {args.amount} to {args.to}")


def _cmd_stake(args: argparse.Namespace) -> int:
    return _submit(args, Stake(amount=args.amount), f"stake of {args.amount}")


def _cmd_unstake(args: argparse.Namespace) -> int:
    return _submit(args, BeginUnstake(amount=args.amount), f"unstake of {args.amount}")


def _cmd_withdraw(args: argparse.Namespace) -> int:
    return _submit(args, Withdraw(), "withdrawal of matured unbonded stake")


def _cmd_escrow_deposit(args: argparse.Namespace) -> int:
    return _submit(args, DepositEscrow(amount=args.amount),
                   f"swarm escrow deposit of {args.amount}")


def _cmd_escrow_release(args: argparse.Namespace) -> int:
    return _submit(args, BeginEscrowRelease(amount=args.amount),
                   f"swarm escrow release of {args.amount}")


def _cmd_escrow_claim(args: argparse.Namespace) -> int:
    return _submit(args, ClaimEscrowRelease(), "claim of released swarm escrow")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain wallet ...``."""
    wallet = subparsers.add_parser(
        "wallet", help="named encrypted keys: new, import, list, balance, history, send, ...")
    sub = wallet.add_subparsers(dest="wallet_command", required=True, metavar="SUBCOMMAND")

    def add(name: str, func: Command, help_text: str, *, node: bool = True,
            signs: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_wallet_option(p)
        if node:
            add_node_options(p)
        else:
            add_datadir_option(p)
        if signs:
            p.add_argument("--fee", type=u64, default=DEFAULT_FEE, metavar="COINS",
                           help=f"transaction fee in coins (default: {DEFAULT_FEE}; the "
                                "node's relay minimum is per 1000 bytes)")
            p.add_argument("--nonce", type=u64, default=None,
                           help="the transaction's nonce (default: the node's next_nonce for "
                                "the wallet, after its pending transactions)")
            p.add_argument("--wait", action="store_true",
                           help="wait until a block holds the transaction (default: off, "
                                "return once the node accepted it)")
            p.add_argument("--wait-timeout", type=seconds, default=None, metavar="SECONDS",
                           help=f"seconds --wait waits (default: `wait_timeout` in "
                                f"client.toml, else {DEFAULT_WAIT_TIMEOUT:g} s)")
            p.add_argument("-q", "--quiet", action="store_true",
                           help="no progress line while waiting (default: off)")
            add_json_option(p, "the id, status and how to follow it")
        p.set_defaults(func=guarded(func))
        return p

    kdf_help = ("argon2id cost of the password (default: moderate; 'fast' is insecure: "
                "tests and dev only)")
    new = add("new", _cmd_new, "create a new encrypted wallet", node=False)
    new.add_argument("name", nargs="?", type=_wallet_name, default=None, metavar="NAME",
                     help="store it as DATADIR/wallets/NAME.json (default: --wallet, else "
                          "'default')")
    new.add_argument("--kdf", choices=sorted(KDF_PRESETS), default="moderate", help=kdf_help)
    new.add_argument("--dev", type=bounded_int(0, 2**32 - 1), default=None, metavar="N",
                     help="store the well-known key of dev account N of the built-in dev "
                          "genesis (default: a random key; public keys: dev networks only, "
                          "a `testnet up` network funds its own keys: use `wallet import`)")
    imp = add("import", _cmd_import, "store a seed file (e.g. a testnet's keys/account-N.json) "
              "as an encrypted wallet", node=False)
    imp.add_argument("file", type=Path, metavar="FILE",
                     help="{\"seed\": hex} JSON (the testnet's keys/account-N.json), a hex "
                          "seed, or a 32-byte raw key")
    imp.add_argument("name", nargs="?", type=_wallet_name, default=None, metavar="NAME",
                     help="wallet name (default: --wallet if given, else the file's stem, "
                          "e.g. account-1)")
    imp.add_argument("--kdf", choices=sorted(KDF_PRESETS), default="moderate", help=kdf_help)
    lst = add("list", _cmd_list, "the wallets in DATADIR/wallets (* marks the default)",
              node=False)
    add_json_option(lst, "the wallets")
    add("address", _cmd_address, "print the wallet's address", node=False)
    balance = add("balance", _cmd_balance, "balance, nonce, stake and escrow from the node")
    balance.add_argument("--address", type=hex32("address"), default=None,
                         help="another account instead of the wallet's (default: the wallet's)")
    add_json_option(balance, "the account")
    history = add("history", _cmd_history, "the wallet's transactions, newest first")
    history.add_argument("--address", type=hex32("address"), default=None,
                         help="another account instead of the wallet's (default: the wallet's)")
    history.add_argument("--limit", type=bounded_int(1, 1000), default=DEFAULT_HISTORY,
                         help=f"at most this many transactions (default: {DEFAULT_HISTORY}, "
                              "1 to 1000)")
    add_json_option(history, "the node's answer")
    amount_help = "amount in coins (a positive integer)"
    send = add("send", _cmd_send, "transfer coins", signs=True)
    send.add_argument("to", type=hex32("address"), metavar="ADDRESS",
                      help="the recipient's address (64 hex digits)")
    send.add_argument("amount", type=positive_u64, help=amount_help)
    stake = add("stake", _cmd_stake, "bond balance as stake", signs=True)
    stake.add_argument("amount", type=positive_u64, help=amount_help)
    unstake = add("unstake", _cmd_unstake, "begin unbonding stake", signs=True)
    unstake.add_argument("amount", type=positive_u64, help=amount_help)
    add("withdraw", _cmd_withdraw, "withdraw matured unbonded stake", signs=True)
    deposit = add("escrow-deposit", _cmd_escrow_deposit,
                  "lock balance as swarm escrow (pays the fees of your swarm requests)",
                  signs=True)
    deposit.add_argument("amount", type=positive_u64, help=amount_help)
    release = add("escrow-release", _cmd_escrow_release,
                  "begin releasing swarm escrow (claimable after the release delay)", signs=True)
    release.add_argument("amount", type=positive_u64, help=amount_help)
    add("escrow-claim", _cmd_escrow_claim, "return released swarm escrow to the balance",
        signs=True)
