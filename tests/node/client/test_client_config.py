"""The client's datadir, client.toml and node addressing (`node.client.config`,
`node.client.http.node_url`): one precedence for every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.client.config import (
    DEFAULT_HTTP_TIMEOUT,
    ClientConfigError,
    default_datadir,
    list_wallets,
    load_client_config,
    normalize_node_url,
    resolve_datadir,
    wallet_path,
)
from node.client.http import DEFAULT_NODE_URL, ApiClientError, node_url


def test_datadir_flag_then_env_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POUWCHAIN_DATADIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_datadir() == tmp_path / "home" / ".pouwchain"
    monkeypatch.setenv("POUWCHAIN_DATADIR", str(tmp_path / "env"))
    assert resolve_datadir(None) == tmp_path / "env"
    assert resolve_datadir(tmp_path / "flag") == tmp_path / "flag"


def test_client_toml_is_read_and_checked(tmp_path: Path) -> None:
    assert load_client_config(tmp_path).http_timeout == DEFAULT_HTTP_TIMEOUT  # absent: defaults
    (tmp_path / "client.toml").write_text(
        'node = "127.0.0.1:9000"\nwallet = "alice"\nhttp_timeout = 5\nwait_timeout = 60.5\n')
    config = load_client_config(tmp_path)
    assert (config.node, config.wallet) == ("http://127.0.0.1:9000", "alice")
    assert (config.http_timeout, config.wait_timeout) == (5.0, 60.5)
    for text, word in (('nodes = "x"\n', "unknown settings ['nodes']"),
                       ("http_timeout = -1\n", "positive number of seconds"),
                       ('http_timeout = "5"\n', "positive number of seconds"),
                       ("node = 5\n", "non-empty string"),
                       ('node = "ftp://x:1"\n', "expected http"),
                       ("node = [\n", "not valid TOML")):
        (tmp_path / "client.toml").write_text(text)
        with pytest.raises(ClientConfigError, match=word.replace("[", r"\[")):
            load_client_config(tmp_path)


@pytest.mark.parametrize("text,url", [
    ("127.0.0.1:7645", "http://127.0.0.1:7645"),
    ("http://localhost:80/", "http://localhost:80"),
    ("https://node.example", "https://node.example"),
])
def test_node_urls_are_normalized(text: str, url: str) -> None:
    assert normalize_node_url(text) == url


@pytest.mark.parametrize("text", ["ftp://h:1", "h:port", "h:0", "h:70000", "http://", "a b:1",
                                  ":80"])
def test_bad_node_urls_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_node_url(text)


def test_node_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POUWCHAIN_NODE", raising=False)
    running = tmp_path / "running"
    running.mkdir()
    (running / "node.json").write_text(json.dumps({"api": "http://127.0.0.1:1111"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    # nothing set: the default datadir's running node, else the default address
    assert node_url(node=None, datadir=None, default_datadir=running) == "http://127.0.0.1:1111"
    assert node_url(node=None, datadir=None, default_datadir=empty) == DEFAULT_NODE_URL
    # client.toml's node beats a running node found by default; the environment beats both
    assert node_url(node=None, datadir=None, configured="http://c:2",
                    default_datadir=running) == "http://c:2"
    monkeypatch.setenv("POUWCHAIN_NODE", "http://env:3")
    assert node_url(node=None, datadir=None, configured="http://c:2",
                    default_datadir=running) == "http://env:3"
    # an explicit --datadir: its client.toml node, else its node.json (required)
    assert node_url(node=None, datadir=running) == "http://127.0.0.1:1111"
    assert node_url(node=None, datadir=empty, configured="http://c:2") == "http://c:2"
    with pytest.raises(ApiClientError, match="is a node running"):
        node_url(node=None, datadir=empty)
    # the flag beats everything
    assert node_url(node="http://flag:4", datadir=running, configured="http://c:2") == \
        "http://flag:4"


def test_wallet_names_paths_and_the_legacy_default(tmp_path: Path) -> None:
    assert wallet_path(tmp_path, "alice") == tmp_path / "wallets" / "alice.json"
    assert wallet_path(tmp_path, "x/w.json") == Path("x/w.json")
    assert wallet_path(tmp_path, "default") == tmp_path / "wallets" / "default.json"
    (tmp_path / "wallet.json").write_text("{}")
    assert wallet_path(tmp_path, "default") == tmp_path / "wallet.json"  # earlier versions'
    (tmp_path / "wallets").mkdir()
    (tmp_path / "wallets" / "bob.json").write_text("{}")
    assert [name for name, _ in list_wallets(tmp_path)] == ["bob", "default"]
