"""``pouwchain validator``: register a BLS validator key for a wallet's bonded stake, and
see where finality stands.

``register`` makes a fresh BLS key (a random 32-byte seed, `core.bls.derive_secret`),
seals it under the wallet's password exactly like the wallet's own key
(`node.finality.keys.keystore_document`: Argon2id + XSalsa20-Poly1305) in
``DATADIR/wallets/NAME.validator.json`` (and, with ``--node-datadir``, as that node's
``validator.json``, which the node unlocks with ``POUWCHAIN_PASSWORD`` and then votes with),
*then* signs a `RegisterValidator` transaction (public key + proof of possession) with the
wallet and sends it: the key is on disk before the chain knows it. The account needs bonded
stake (``pouwchain wallet stake``) of at least the chain's ``min_validator_stake``.

``status`` prints ``GET /api/v1/finality``: last justified and finalized checkpoints,
participation per epoch, stalled or not, and the node's own validator duty.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from consensus.finality import registration_payload
from core.bls import derive_secret
from node.cli.common import (
    CliError,
    Command,
    add_json_option,
    add_node_options,
    add_wallet_option,
    api_client,
    guarded,
    print_json,
    read_password,
    resolve_wallet,
    u64,
)
from node.client.wallet import KDF_PRESETS, open_wallet
from node.finality.keys import KEYSTORE_FILE, keystore_document, write_keystore

DEFAULT_FEE = 1000
FINALITY_ROUTE = "/api/v1/finality"


def keystore_path(wallet: Path) -> Path:
    """Where a wallet's validator key is kept: ``NAME.validator.json`` beside it."""
    return wallet.with_name(f"{wallet.stem}.validator.json")


def _cmd_register(args: argparse.Namespace) -> int:
    wallet_file = resolve_wallet(args)
    password = read_password()
    wallet = open_wallet(wallet_file, password)
    targets = [keystore_path(wallet_file)]
    if args.node_datadir is not None:
        targets.append(args.node_datadir / KEYSTORE_FILE)
    for target in targets:
        if target.exists():
            raise CliError(f"{target} exists: this account has a validator key already "
                           "(one BLS key per account, for good)")
    client = api_client(args)
    status: dict[str, Any] = client.get("/api/v1/status")
    account: dict[str, Any] = client.get(f"/api/v1/accounts/{wallet.address.hex()}")
    seed = secrets.token_bytes(32)
    payload = registration_payload(derive_secret(seed))  # proof of possession: ~1 s on py-ecc
    document = keystore_document(address=wallet.address, seed=seed, password=password,
                                 limits=KDF_PRESETS[args.kdf])
    for target in targets:  # the key is kept before the chain learns of it
        target.parent.mkdir(parents=True, exist_ok=True)
        write_keystore(target, document)
    nonce = args.nonce if args.nonce is not None else int(account["next_nonce"])
    tx = wallet.sign(chain_id=int(status["chain_id"]), nonce=nonce, fee=args.fee,
                     payload=payload)
    result = client.post("/api/v1/txs", {"tx": tx.encode().hex()})
    tx_id = str(result["id"])
    if args.json:
        print_json({"id": tx_id, "validator": wallet.address.hex(),
                    "pubkey": payload.pubkey.hex(), "nonce": nonce, "fee": args.fee,
                    "keystores": [str(t) for t in targets]})
        return 0
    print(tx_id, flush=True)
    err = sys.stderr
    print(f"sent: validator registration of {wallet.address.hex()[:16]} (BLS key "
          f"{payload.pubkey.hex()[:16]}...), fee {args.fee}, nonce {nonce}", file=err)
    print(f"key sealed in {', '.join(str(t) for t in targets)} (same password as the wallet)",
          file=err)
    if args.node_datadir is None:
        print(f"next: copy it to the voting node as DATADIR/{KEYSTORE_FILE} and start that "
              "node with POUWCHAIN_PASSWORD set", file=err)
    print(f"follow: `pouwchain tx {tx_id}`, then `pouwchain validator status`", file=err)
    return 0


def format_finality(report: dict[str, Any]) -> str:
    """The finality report as readable lines."""
    if not report.get("active"):
        return (f"finality: inactive (no validator set yet), epoch {report.get('epoch')}, "
                f"finalized height {report.get('finalized_height', 0)}")

    def cp(c: dict[str, Any] | None) -> str:
        return "-" if not c else f"epoch {c['epoch']} (height {c['height']}, {c['root'][:16]})"

    lines = [f"epoch      {report['epoch']} of {report.get('epoch_blocks')} blocks, "
             f"height {report.get('height')}",
             f"justified  {cp(report.get('justified'))}",
             f"finalized  {cp(report.get('finalized'))}",
             f"stalled    {'YES' if report.get('stalled') else 'no'}"]
    for p in report.get("participation", [])[-4:]:
        total = int(p["total"])
        share = f"{100 * int(p['voted']) / total:.0f}%" if total else "-"
        lines.append(f"epoch {p['epoch']:<4} {p['voted']}/{total} stake voted ({share})")
    validator = report.get("validator")
    if isinstance(validator, dict):
        last = validator.get("last_vote")
        voted = "never" if not last else \
            f"{last['source_epoch']} -> {last['target_epoch']}"
        lines.append(f"validator  {validator['address'][:16]} registered "
                     f"{'yes' if validator.get('registered') else 'no'}, in set "
                     f"{'yes' if validator.get('in_set') else 'no'}, last vote {voted}")
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    report: dict[str, Any] = api_client(args).get(FINALITY_ROUTE)
    if args.json:
        print_json(report)
    else:
        print(format_finality(report))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain validator register|status``."""
    validator = subparsers.add_parser(
        "validator", help="finality validators: register a BLS key, finality status")
    sub = validator.add_subparsers(dest="validator_command", required=True,
                                   metavar="SUBCOMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_node_options(p)
        p.set_defaults(func=guarded(func))
        return p

    reg = add("register", _cmd_register,
              "make a BLS key for the wallet's bonded stake, seal it, register it on chain")
    add_wallet_option(reg)
    reg.add_argument("--node-datadir", type=Path, default=None, metavar="DIR",
                     help=f"also seal the key as DIR/{KEYSTORE_FILE}, the voting node's key "
                          "(default: only beside the wallet)")
    reg.add_argument("--fee", type=u64, default=DEFAULT_FEE, metavar="COINS",
                     help=f"transaction fee in coins (default: {DEFAULT_FEE})")
    reg.add_argument("--nonce", type=u64, default=None,
                     help="the transaction's nonce (default: the node's next_nonce)")
    reg.add_argument("--kdf", choices=sorted(KDF_PRESETS), default="moderate",
                     help="argon2id cost of the sealed key (default: moderate; 'fast' is "
                          "insecure: tests and dev only)")
    add_json_option(reg, "the id, validator, public key and keystore paths")
    status = add("status", _cmd_status,
                 "justified and finalized checkpoints, participation, stalled or not")
    add_json_option(status, "the node's finality report")
