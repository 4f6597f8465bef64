"""``pouwchain job submit|get`` against a real in-process mining node."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from consensus.genesis import dev_seed
from node.cli import jobs as cli_jobs
from node.client.wallet import KDF_PRESETS, create_wallet
from tests.framework.nodes import node_config, wired

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pouwchain")
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


async def test_submit_waits_for_the_exact_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    node = wired(node_config(tmp_path, "n", mine=True))
    await node.start()
    try:
        monkeypatch.setenv("POUWCHAIN_PASSWORD", "pw")
        wallet = tmp_path / "wallet.json"
        create_wallet(wallet, "pw", limits=KDF_PRESETS["fast"], seed=dev_seed(2))
        rng = np.random.default_rng(9)
        a = rng.integers(-64, 64, size=(5, 33), dtype=np.int64)
        b = rng.integers(-64, 64, size=(33, 6), dtype=np.int8)
        np.save(tmp_path / "a.npy", a)
        np.save(tmp_path / "b.npy", b)
        url = f"http://127.0.0.1:{node.port}"
        code = await asyncio.to_thread(run_cli, [
            "job", "submit", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--escrow", "900",
            "--node", url, "--wallet", str(wallet), "--wait", "--wait-timeout", "60",
            "--out", str(tmp_path / "c.npy")])
        out, err = capsys.readouterr()
        assert code == 0, out
        assert "job " in err and "on chain" in err  # the progress line (stderr)
        job_id, _, body = out.partition("\n")
        view = json.loads(body)
        assert view["id"] == job_id and view["on_chain"]["status"] == "done"
        product = np.load(tmp_path / "c.npy")
        assert product.dtype == np.int64
        assert np.array_equal(product, a @ b.astype(np.int64))
        # get works for the same job, and a bad matrix is one clear error line
        assert await asyncio.to_thread(run_cli, ["job", "get", job_id, "--node", url]) == 0
        np.save(tmp_path / "bad.npy", np.full((2, 2), 100))
        code = await asyncio.to_thread(run_cli, [
            "job", "submit", str(tmp_path / "bad.npy"), str(tmp_path / "bad.npy"),
            "--escrow", "1", "--node", url, "--wallet", str(wallet)])
        assert code == 1
        assert "bad_values" in capsys.readouterr().err
    finally:
        await node.stop()
