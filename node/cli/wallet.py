"""``pouwchain wallet``: create an encrypted key, show its address and balance, and sign and
send transfers, stake, unstake and withdraw transactions through a node's API.

The password comes from ``POUWCHAIN_PASSWORD`` (scripts, tests) or an interactive prompt;
the key is decrypted only in memory to sign, and never printed. The chain id and the next
nonce come from the node (``/status`` and ``/accounts/{address}``), so a transaction is
built for the network the node is on and queues after the account's pending ones.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensus.genesis import dev_seed
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
from node.client.http import DEFAULT_NODE_URL, ApiClient, ApiClientError, node_url
from node.client.wallet import KDF_PRESETS, WalletError, create_wallet, open_wallet, wallet_address

Command = Callable[[argparse.Namespace], int]
PASSWORD_ENV = "POUWCHAIN_PASSWORD"
WALLET_ENV = "POUWCHAIN_WALLET"
DEFAULT_FEE = 1000


def default_wallet_path() -> Path:
    env = os.environ.get(WALLET_ENV)
    return Path(env) if env else Path.home() / ".pouwchain" / "wallet.json"


def read_password(*, confirm: bool = False) -> str:
    """From the environment, else prompted (twice when creating)."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    try:
        password = getpass.getpass("wallet password: ")
        if confirm and getpass.getpass("repeat password: ") != password:
            raise WalletError("the passwords do not match")
    except EOFError as exc:
        raise WalletError(f"no password: set {PASSWORD_ENV} or run in a terminal") from exc
    return password


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) >= 2**64:
        raise argparse.ArgumentTypeError(f"expected a positive integer amount, got {text!r}")
    return int(text)


def _fee(text: str) -> int:
    """A u64 (fees and nonces)."""
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**64:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _address(text: str) -> bytes:
    body = text.removeprefix("0x")
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise argparse.ArgumentTypeError(f"an address is 64 hex digits, got {text!r}")
    return raw


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(node_url(node=args.node, datadir=args.datadir))


def _cmd_new(args: argparse.Namespace) -> int:
    seed = None if args.dev is None else dev_seed(args.dev)
    wallet = create_wallet(args.wallet, read_password(confirm=True),
                           limits=KDF_PRESETS[args.kdf], seed=seed)
    print(f"wallet: {args.wallet}")
    print(f"address: {wallet.address.hex()}")
    return 0


def _cmd_address(args: argparse.Namespace) -> int:
    print(wallet_address(args.wallet).hex())
    return 0


def _cmd_balance(args: argparse.Namespace) -> int:
    address = args.address if args.address is not None else wallet_address(args.wallet)
    account = _client(args).get(f"/api/v1/accounts/{address.hex()}")
    stake = account["stake"]
    print(f"address:   {account['address']}")
    print(f"balance:   {account['balance']}")
    print(f"nonce:     {account['nonce']} (next {account['next_nonce']}, "
          f"{account['pending_txs']} pending)")
    print(f"bonded:    {stake['bonded']}")
    print(f"unbonding: {stake['unbonding_total']}"
          + "".join(f"\n  {u['amount']} released at height {u['release_height']}"
                    for u in stake["unbonding"]))
    escrow = account["escrow"]
    print(f"escrow:    {escrow['locked']} locked for swarm fees"
          + (f", {escrow['releasing']} releasing (claimable at height "
             f"{escrow['release_height']})" if escrow["releasing"] else ""))
    print(f"reputation: {account['reputation']}  (at height {account['height']})")
    return 0


def _submit(args: argparse.Namespace, payload: Payload) -> int:
    """Unlock, fetch chain id and nonce, sign, post; print the transaction id."""
    wallet = open_wallet(args.wallet, read_password())
    client = _client(args)
    status: dict[str, Any] = client.get("/api/v1/status")
    account: dict[str, Any] = client.get(f"/api/v1/accounts/{wallet.address.hex()}")
    nonce = args.nonce if args.nonce is not None else int(account["next_nonce"])
    tx = wallet.sign(chain_id=int(status["chain_id"]), nonce=nonce, fee=args.fee,
                     payload=payload)
    result = client.post("/api/v1/txs", {"tx": tx.encode().hex()})
    print(result["id"])
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    return _submit(args, Transfer(to=args.to, amount=args.amount))


def _cmd_stake(args: argparse.Namespace) -> int:
    return _submit(args, Stake(amount=args.amount))


def _cmd_unstake(args: argparse.Namespace) -> int:
    return _submit(args, BeginUnstake(amount=args.amount))


def _cmd_withdraw(args: argparse.Namespace) -> int:
    return _submit(args, Withdraw())


def _cmd_escrow_deposit(args: argparse.Namespace) -> int:
    return _submit(args, DepositEscrow(amount=args.amount))


def _cmd_escrow_release(args: argparse.Namespace) -> int:
    return _submit(args, BeginEscrowRelease(amount=args.amount))


def _cmd_escrow_claim(args: argparse.Namespace) -> int:
    return _submit(args, ClaimEscrowRelease())


def _guarded(func: Command) -> Command:
    """Map wallet and API failures to one clear line on stderr and exit code 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (WalletError, ApiClientError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain wallet ...``."""
    wallet = subparsers.add_parser("wallet",
                                   help="encrypted keys; send, stake, unstake, swarm escrow")
    sub = wallet.add_subparsers(dest="wallet_command", required=True)

    def add(name: str, func: Command, help_text: str, *, node: bool = True,
            signs: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--wallet", type=Path, default=default_wallet_path(),
                       help=f"wallet file (default ${WALLET_ENV} or ~/.pouwchain/wallet.json)")
        if node:
            p.add_argument("--node", default=None,
                           help="node API URL (default: from --datadir, else "
                                f"$POUWCHAIN_NODE or {DEFAULT_NODE_URL})")
            p.add_argument("--datadir", type=Path, default=None,
                           help="a running node's data directory (its node.json gives the URL)")
        if signs:
            p.add_argument("--fee", type=_fee, default=DEFAULT_FEE)
            p.add_argument("--nonce", type=_fee, default=None,
                           help="override the nonce (default: the node's next_nonce)")
        p.set_defaults(func=_guarded(func))
        return p

    new = add("new", _cmd_new, "create a new encrypted wallet", node=False)
    new.add_argument("--kdf", choices=sorted(KDF_PRESETS), default="moderate",
                     help="argon2id cost ('fast' is insecure: tests and dev only)")
    new.add_argument("--dev", type=int, default=None, metavar="N",
                     help="store the well-known key of dev account N (public: dev networks "
                          "only; funded in the dev genesis)")
    add("address", _cmd_address, "print the wallet's address", node=False)
    balance = add("balance", _cmd_balance, "balance, nonce and stake from the node")
    balance.add_argument("--address", type=_address, default=None,
                         help="another account instead of the wallet's")
    send = add("send", _cmd_send, "transfer coins", signs=True)
    send.add_argument("to", type=_address)
    send.add_argument("amount", type=_positive)
    stake = add("stake", _cmd_stake, "bond balance as stake", signs=True)
    stake.add_argument("amount", type=_positive)
    unstake = add("unstake", _cmd_unstake, "begin unbonding stake", signs=True)
    unstake.add_argument("amount", type=_positive)
    add("withdraw", _cmd_withdraw, "withdraw matured unbonded stake", signs=True)
    deposit = add("escrow-deposit", _cmd_escrow_deposit,
                  "lock balance as swarm escrow (pays the fees of your swarm requests)",
                  signs=True)
    deposit.add_argument("amount", type=_positive)
    release = add("escrow-release", _cmd_escrow_release,
                  "begin releasing swarm escrow (claimable after the release delay)", signs=True)
    release.add_argument("amount", type=_positive)
    add("escrow-claim", _cmd_escrow_claim, "return released swarm escrow to the balance",
        signs=True)
