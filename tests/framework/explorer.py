"""The explorer's browser tests and bench/explorer.py: a small real testnet and real Chromium.

The testnet: node 0 mines (a paced dev chain) and answers with a built-in arithmetic model,
node 1 answers with another variant, node 2 answers through an OpenAI-compatible endpoint
this module serves (`ScriptModel`) whose every answer is a ``<script>``: the round page must
show it as text. The browser: Debian's ``chromium`` driven by Playwright through
``executable_path`` (Playwright's own browser download cannot be fetched here).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from consensus.genesis import dev_seed
from consensus.tx import sign_transaction
from node.api.explorer.pages import MAX_ROWS
from node.mining.jobs import job_request, npy_bytes, prepare_operands
from testnet.genesis import DEV_CHAIN_ID
from testnet.launcher import ARITH, swarm_backend, swarm_settings
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.util import wait_until

SCRIPT_ANSWER = "<script>document.title='pwned';window.pwned=1</script>41"  # and wrong
SCRIPT_MODEL = "script-model"
CHROMIUM = "chromium"


class _ScriptHandler(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: answers `SCRIPT_ANSWER`; as a judge (the strict format
    `swarm.runtime.openai_http` parses) it prefers an answer without a script, and screens
    answers with one BAD."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        system = next((m["content"] for m in body.get("messages", [])
                       if m.get("role") == "system"), "")
        user = next((m["content"] for m in body.get("messages", [])
                     if m.get("role") == "user"), "")
        if "comparing two candidate answers" in system:
            a, _, b = user.partition("Answer B:")
            verdict = {(True, False): "B", (False, True): "A"}.get(
                ("<script>" in a, "<script>" in b), "TIE")
            text = f"FLAWS A: none\nFLAWS B: none\nVERDICT: {verdict}"
        elif "checking one candidate answer" in system:
            text = "FLAWS: none\nVERDICT: " + ("BAD" if "<script>" in user else "GOOD")
        else:
            text = SCRIPT_ANSWER
        reply = json.dumps({"id": "x", "object": "chat.completion", "model": SCRIPT_MODEL,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}]})
        data = reply.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def script_model() -> Iterator[str]:
    """An OpenAI-compatible endpoint on 127.0.0.1 answering `SCRIPT_ANSWER`; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start_explorer_testnet(network: TestNetwork, script_url: str) -> list[TestNode]:
    """Three connected swarm nodes (module docstring), the chain past height 2."""
    fast = {"swarm_settle_backoff": 1}
    nodes = [
        network.add_node(mine=True, start=False,
                         config={"swarm_backend": swarm_backend(0, ARITH), **fast}),
        network.add_node(start=False, config={"swarm_backend": swarm_backend(1, ARITH),
                                              **fast}),
        network.add_node(start=False, config={
            "swarm_backend": f"openai:{script_url}?model={SCRIPT_MODEL}", **fast}),
    ]
    network.start_all(nodes)
    network.connect_all(nodes)
    wait_until(lambda: all(n.height() >= 2 for n in nodes), 120,
               message="the testnet past height 2")
    return nodes


def start_registered_testnet(network: TestNetwork, timeout: float = 240) -> list[TestNode]:
    """Three connected nodes with the arith-l variants (which pass calibration) that stake,
    register and calibrate by themselves (dev accounts 0..2; node 0 mines), so their rounds
    settle on chain with payouts and reputation changes."""
    nodes = [network.add_node(mine=i == 0, start=False, dev_key=i, config={
        **swarm_settings(variant, ARITH), "mining_block_interval": 1.0,
        "swarm_settle_backoff": 1}) for i, variant in enumerate((0, 2, 3))]
    network.start_all(nodes)
    network.connect_all(nodes)
    wait_until(lambda: all(n.api("GET", "/api/v1/swarm/registration", auth=False)["phase"]
                           == "calibrated" for n in nodes), timeout, interval=0.5,
               message="every node registered and calibrated on chain")
    return nodes


def chromium_path() -> str | None:
    """Debian's chromium (`.ci/run` installs it), or None."""
    return shutil.which(CHROMIUM)


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors of one browser page."""

    errors: list[str] = field(default_factory=list)
    expected: int = 0  # 404 documents the test asked for (Chromium logs each as an error)

    def watch(self, page: Any) -> None:
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def unexpected(self) -> list[str]:
        """The errors, less one "404 (Not Found)" per not-found page the test opened."""
        out, allowed = [], self.expected
        for error in self.errors:
            if allowed and "status of 404 (Not Found)" in error:
                allowed -= 1
                continue
            out.append(error)
        return out


def navigation_ms(page: Any) -> float:
    """The last navigation's duration (ms, start to the load event's end) as the page saw it."""
    return float(page.evaluate(
        "() => performance.getEntriesByType('navigation')[0].duration"))


def mine_a_job(node: TestNode, *, payer: int = 6, escrow: int = 5000) -> dict[str, Any]:
    """A paid 16x256x16 matmul job (dev account ``payer``, nonce 0) assigned to the mining
    ``node``, once mined and its receipt on chain: the job's view."""
    rng = np.random.default_rng(7)
    a = rng.integers(-64, 64, size=(16, 256), dtype=np.int8)
    b = rng.integers(-64, 64, size=(256, 16), dtype=np.int8)
    assignee = bytes.fromhex(node.api("GET", "/api/v1/miner", auth=False)["jobs"]["assignee"])
    request = job_request(prepare_operands(a, b), assignee=assignee, escrow=escrow,
                          timeout=100, salt=os.urandom(32))
    tx = sign_transaction(dev_seed(payer), chain_id=DEV_CHAIN_ID, nonce=0, fee=10,
                          payload=request)
    job = node.api("POST", "/api/v1/jobs/matmul", auth=False,
                   a=base64.b64encode(npy_bytes(a)).decode(),
                   b=base64.b64encode(npy_bytes(b)).decode(), tx=tx.encode().hex())
    view: dict[str, Any] = wait_until(
        lambda: (v := node.api("GET", f"/api/v1/jobs/{job['id']}", auth=False))
        ["on_chain"]["status"] == "done" and v, 120,
        message="the job mined and its receipt on chain")
    return view


def ask_until_inference_block(miner: TestNode, watcher: TestNode, *,
                              timeout: float = 900) -> tuple[list[dict[str, Any]], int]:
    """Ask the mining node's swarm questions until ``watcher`` (GET /explorer/blocks, the
    whole chain) labels a block "inference": those rows, and the questions asked.

    ``timeout`` is a hang bound: on a paced dev chain the first inference product on a
    parent holds its win and takes that block when it falls due (`node.mining.miner`), so one
    answered question is normally enough. The questions stay in the built-in models' range
    (a + b, each 0..99): outside it every node abstains and nothing is computed."""
    asked = itertools.count(1)

    def labelled() -> list[dict[str, Any]]:
        n = next(asked)
        miner.api("POST", "/v1/chat/completions", auth=False, timeout=120,
                  messages=[{"role": "user", "content": f"What is {n % 50}+{2 * n % 50}?"}])
        view = watcher.api("GET", f"/explorer/blocks?count={MAX_ROWS}", auth=False)
        assert len(view["blocks"]) == view["height"] + 1  # the whole chain
        return [b for b in view["blocks"] if b["source"] == "inference"]

    rows: list[dict[str, Any]] = wait_until(
        labelled, timeout, interval=0,
        message="a block won by the miner's inference products, on the watcher")
    return rows, next(asked) - 1
