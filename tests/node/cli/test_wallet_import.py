"""``pouwchain wallet import`` reads the seed files a user has: the testnet's
``keys/account-N.json``, a hex seed, a node's raw 32-byte ``node.key``; anything else is one
clear error, and a record whose seed does not match its address is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from node.cli.common import CliError
from node.cli.wallet import read_seed_file


def test_the_seed_formats_a_user_has(tmp_path: Path) -> None:
    seed = dev_seed(5)
    record = tmp_path / "account-5.json"
    record.write_text(json.dumps({"index": 5, "address": public_key(seed).hex(),
                                  "seed": seed.hex()}))
    hex_line = tmp_path / "seed.txt"
    hex_line.write_text(f"0x{seed.hex().upper()}\n")
    raw = tmp_path / "node.key"
    raw.write_bytes(seed)
    assert read_seed_file(record) == read_seed_file(hex_line) == read_seed_file(raw) == seed


@pytest.mark.parametrize("content,message", [
    ('{"index": 1}', 'has no "seed"'),
    ('{"seed": "abcd"}', "a seed is 64 hex digits"),
    ("not a seed at all", "a seed is 64 hex digits"),
    ("{broken json", "is not valid JSON"),
    (b"\xff\xfe" * 40, "neither a seed file"),
])
def test_anything_else_is_one_clear_error(tmp_path: Path, content: str | bytes,
                                          message: str) -> None:
    path = tmp_path / "bad"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(CliError, match=message):
        read_seed_file(path)


def test_a_seed_that_does_not_match_its_address_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "account-1.json"
    path.write_text(json.dumps({"address": public_key(dev_seed(1)).hex(),
                                "seed": dev_seed(2).hex()}))
    with pytest.raises(CliError, match="does not match its address"):
        read_seed_file(path)
