"""Explorer page loads in real headless Chromium against a real local testnet (issue 15).

Starts the browser tests' testnet (`tests.framework.explorer`: three node processes, one
mining, built-in arithmetic models plus one answering through a local OpenAI-compatible
endpoint), asks the swarm a question, confirms a transfer, has node 0 mine a paid matmul job
and asks it questions until a block won by its inference products is on the chain (so the
chain holds all three kinds of work: the overview's chart and screenshot show them), then
loads every page
``--repeat`` times in Debian's ``chromium`` (Playwright, ``executable_path``): the first load
of each page in a fresh browser context (cold: stylesheet and script fetched) and the rest
in that context (warm). A load is the navigation's duration as the page measures it
(``performance`` navigation entry: request start to the load event's end); the server's
share is its time to the last response byte. Goal: every page under 1 s.

Usage: ``python bench/explorer.py [--repeat 5] [--min-height 12] [--screenshots docs]
[--registered] [--json]``; a table, then with ``--json`` one JSON object as the last line.
``--registered``: the nodes stake, register and calibrate first (arith-l variants), so the
round is drawn from the registry and settles on chain with payouts and reputation changes.
``--screenshots DIR`` writes DIR/explorer-overview.png and DIR/explorer-round.png (the README's).
Also reported: how long this machine takes to compute the inference-root index (the B roots of
every shipped model's weights, padded for every r: `node.api.explorer.work.InferenceRoots`,
first and second run) and how a node that mines nothing labels the testnet's blocks
(GET /explorer/blocks on node 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* helpers

from consensus.genesis import dev_seed
from consensus.tx import sign_transaction
from contracts import Transfer
from node.api.explorer.pages import MAX_ROWS
from node.api.explorer.work import SOURCES, InferenceRoots
from testnet.genesis import DEV_CHAIN_ID
from tests.framework.explorer import (
    ConsoleLog,
    ask_until_inference_block,
    chromium_path,
    mine_a_job,
    navigation_ms,
    script_model,
    start_explorer_testnet,
    start_registered_testnet,
)
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.util import wait_until

GOAL_MS = 1000.0
SETTLED_FEE = 3000  # what a registered round pays (from the origin node's account)


def _post_json(url: str, body: dict[str, Any], timeout: float = 120) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def ask(node: TestNode, *, settled: bool) -> str:
    """A round's id; with ``settled``, one drawn from the registry, once settled on chain."""
    def asked() -> str | None:
        reply = _post_json(node.url + "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "What is 17+25?"}],
            **({"fee": SETTLED_FEE} if settled else {})})
        status = str(reply["settlement_status"])
        return None if settled and status.startswith("not on chain") else reply["round_id"]

    round_id: str = wait_until(asked, 120, interval=1.0, message="a round")
    if settled:
        wait_until(lambda: str(node.api("GET", f"/api/v1/rounds/{round_id}", auth=False)[
            "settlement_status"]).startswith("settled at height"), 120, interval=0.5,
            message="the round settled on chain")
    return round_id


def prepare(nodes: list[TestNode], min_height: int, *, settled: bool) -> dict[str, str]:
    """A round, a confirmed transfer and ``min_height`` blocks; the pages to load."""
    node = nodes[0]
    round_id = ask(node, settled=settled)
    tx = sign_transaction(dev_seed(5), chain_id=DEV_CHAIN_ID, nonce=0, fee=10,
                          payload=Transfer(to=bytes(range(32)), amount=1234))
    tx_id = node.send_tx(tx)
    wait_until(lambda: node.api("GET", f"/api/v1/txs/{tx_id}", auth=False)["status"]
               == "confirmed", 60, message="the transfer confirmed")
    mine_a_job(node)
    ask_until_inference_block(node, nodes[1])
    wait_until(lambda: node.height() >= min_height, 30 + 3 * min_height,
               message=f"height {min_height}")
    return {"overview": "/", "block": f"/block/{node.height()}", "tx": f"/tx/{tx_id}",
            "account": f"/account/{bytes(range(32)).hex()}", "swarm": "/swarm",
            "round": f"/round/{round_id}", "jobs": "/jobs", "chat": "/chat",
            "not found": f"/block/{'ab' * 32}"}


def measure(page: Page, url: str, status: int) -> tuple[float, float]:
    """(navigation ms, server ms: request start to the response's last byte); the page must
    answer ``status``."""
    response = page.goto(url)
    if response is None or response.status != status:
        raise SystemExit(f"{url}: HTTP {None if response is None else response.status}")
    server = float(page.evaluate("() => { const n = performance.getEntriesByType("
                                 "'navigation')[0]; return n.responseEnd - n.requestStart; }"))
    return navigation_ms(page), server


def inference_roots() -> dict[str, Any]:
    """The explorer's inference-root index, computed twice here (ms): its size and cost."""
    times, roots = [], {}
    for _ in range(2):
        started = time.perf_counter()
        roots = InferenceRoots(None).compute()
        times.append(round((time.perf_counter() - started) * 1000, 1))
    return {"roots": len(roots), "models": len(set(roots.values())), "first_ms": times[0],
            "second_ms": times[1]}


def run(repeat: int, min_height: int, screenshots: Path | None,
        registered: bool) -> dict[str, Any]:
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="bench-explorer-") as tmp, \
            script_model() as model_url:
        network = TestNetwork(Path(tmp))
        try:
            nodes = start_registered_testnet(network) if registered else \
                start_explorer_testnet(network, model_url)
            pages = prepare(nodes, min_height, settled=registered)
            view = nodes[1].api("GET", f"/explorer/blocks?count={MAX_ROWS}", auth=False)
            labelled = {source: sum(b["source"] == source for b in view["blocks"])
                        for source in SOURCES}
            base = nodes[0].url
            rows: dict[str, dict[str, float]] = {}
            errors: list[str] = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                     args=["--no-sandbox"])
                for name, path in pages.items():
                    context = browser.new_context(viewport={"width": 1200, "height": 900})
                    page = context.new_page()
                    log = ConsoleLog(expected=repeat if name == "not found" else 0)
                    log.watch(page)
                    status = 404 if name == "not found" else 200
                    loads = [measure(page, base + path, status) for _ in range(repeat)]
                    if screenshots is not None and name in ("overview", "round"):
                        screenshots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(screenshots / f"explorer-{name}.png"),
                                        full_page=True)
                    context.close()
                    errors += [f"{name}: {e}" for e in log.unexpected()]
                    warm = [ms for ms, _ in loads[1:]] or [loads[0][0]]
                    rows[name] = {"cold_ms": round(loads[0][0], 1),
                                  "warm_median_ms": round(statistics.median(warm), 1),
                                  "warm_max_ms": round(max(warm), 1),
                                  "server_median_ms": round(statistics.median(
                                      s for _, s in loads), 1)}
                browser.close()
        finally:
            network.teardown()
    slowest = max(max(r["cold_ms"], r["warm_max_ms"]) for r in rows.values())
    return {"bench": "explorer", "repeat": repeat, "pages": rows, "slowest_ms": slowest,
            "goal_ms": GOAL_MS, "under_goal": slowest < GOAL_MS, "console_errors": errors,
            "min_height": min_height, "registered": registered,
            "labelled_on_node1": labelled, "inference_roots": inference_roots()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="loads per page (first cold)")
    parser.add_argument("--min-height", type=int, default=12,
                        help="blocks to wait for before loading (the charts' width)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="write explorer-overview.png and explorer-round.png here")
    parser.add_argument("--registered", action="store_true",
                        help="nodes that register and calibrate: the round settles on chain "
                             "(payouts, reputation changes); no <script> answerer")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    started = time.monotonic()
    result = run(max(1, args.repeat), args.min_height, args.screenshots, args.registered)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(f"{'page':<10} {'cold ms':>8} {'warm median':>12} {'warm max':>9} {'server':>8}")
    for name, row in result["pages"].items():
        print(f"{name:<10} {row['cold_ms']:>8.1f} {row['warm_median_ms']:>12.1f} "
              f"{row['warm_max_ms']:>9.1f} {row['server_median_ms']:>8.1f}")
    print(f"slowest {result['slowest_ms']:.1f} ms (goal < {GOAL_MS:.0f} ms: "
          f"{'met' if result['under_goal'] else 'MISSED'}); console errors: "
          f"{len(result['console_errors'])}")
    roots = result["inference_roots"]
    print(f"inference roots: {roots['roots']} of {roots['models']} models in "
          f"{roots['first_ms']:.1f} ms (again {roots['second_ms']:.1f} ms); node 1 labels "
          + ", ".join(f"{n} {s}" for s, n in result["labelled_on_node1"].items()))
    if args.json:
        print(json.dumps(result))
    sys.exit(0 if not result["console_errors"] else 1)


if __name__ == "__main__":
    main()
