"""The explorer and chat pages in real headless Chromium against a real local testnet.

One testnet (three node processes, `tests.framework.explorer`) and one browser for the whole
module. Each test opens its pages in a fresh browser page that fails the test on any console
error or uncaught page error, and saves a screenshot of each page under its tmp dir. Page load
times are bench/explorer.py's figures, not assertions here.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key, sign_transaction
from contracts import Transfer
from node.api.explorer.pages import MAX_ROWS
from node.api.explorer.work import SELF
from pouw.mining import operand_roots
from swarm.runtime.builtin import ArithModel
from swarm.runtime.variants import variant_path
from testnet.genesis import DEV_CHAIN_ID
from tests.framework.explorer import (
    SCRIPT_ANSWER,
    ConsoleLog,
    ask_until_inference_block,
    chromium_path,
    mine_a_job,
    script_model,
    start_explorer_testnet,
)
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes and a real browser

try:
    from playwright.sync_api import Browser, Page, sync_playwright
    HAVE_PLAYWRIGHT = True
except ImportError:  # the dev extras pin it; CI must not skip (below)
    HAVE_PLAYWRIGHT = False

CHROMIUM = chromium_path()
if not HAVE_PLAYWRIGHT or CHROMIUM is None:
    missing = "playwright (pip)" if not HAVE_PLAYWRIGHT else "chromium (apt)"
    if os.environ.get("CI"):
        raise RuntimeError(f"the browser tests need {missing}: .ci/run installs both")
    pytest.skip(f"needs {missing}", allow_module_level=True)

ANSWER_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TestNode]]:
    network = TestNetwork(tmp_path_factory.mktemp("explorer-net"))
    try:
        with script_model() as url:
            yield start_explorer_testnet(network, url)
    finally:
        network.teardown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser: Browser, console: ConsoleLog) -> Iterator[Page]:
    """A fresh page; the test fails on any console error it logged."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    console.watch(tab)
    yield tab
    context.close()
    assert console.unexpected() == []


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def test_overview_height_is_the_status_height_and_advances_live(
        testnet: list[TestNode], page: Page, tmp_path: Path) -> None:
    node = testnet[0]
    before = node.height()
    response = page.goto(node.url + "/")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    shown = int(page.text_content("#height") or "-1")
    assert before <= shown <= node.height()
    shot(page, tmp_path, "overview")
    # the miner goes on: a later tip reaches the page over SSE, without a reload
    page.wait_for_function(f"() => Number(document.getElementById('height').textContent) > "
                           f"{shown}", timeout=60_000)
    # the height card and the newest row read in one evaluation: the miner goes on, and a
    # block arriving between two reads would move both (a race under load)
    live, newest = page.evaluate(
        "() => [Number(document.getElementById('height').textContent),"
        " document.querySelector('#blocks tbody tr td').textContent]")
    assert shown < live <= node.height()
    assert newest == str(live)
    assert page.locator("#rate-chart rect").count() >= 1
    assert page.locator("#work-chart rect").count() >= 1


def test_block_page_shows_the_certificate(testnet: list[TestNode], page: Page,
                                          tmp_path: Path) -> None:
    node = testnet[0]
    block = node.block(1)
    page.goto(f"{node.url}/block/{block['id']}")
    certificate = page.locator("#certificate")
    text = certificate.text_content() or ""
    assert "Tile" in text and "Chunk" in text
    ticket = re.search(r"Ticket(0x[0-9a-f]{64})", text.replace(" ", ""))
    assert ticket is not None
    assert int(ticket.group(1), 16) <= int(block["header"]["target"], 16)
    assert "yes" in (page.text_content("#certificate tr:has-text('≤ target') td") or "")
    shot(page, tmp_path, "block")
    page.goto(f"{node.url}/block/0")
    assert "not mined" in (page.text_content("#certificate") or "")


def test_chat_answers_and_its_round_draws_the_strengths(
        testnet: list[TestNode], page: Page, tmp_path: Path) -> None:
    node = testnet[1]
    page.goto(node.url + "/chat")
    page.fill("#question", "What is 17+25?")
    page.click("#ask")
    page.wait_for_selector("#round-link:not([hidden])", timeout=ANSWER_TIMEOUT_MS)
    answer = page.text_content("#answer") or ""
    assert answer.strip()
    shot(page, tmp_path, "chat")
    href = page.get_attribute("#round-href", "href")
    assert href is not None and href.startswith("/round/")
    round_id = href.removeprefix("/round/")
    view = node.api("GET", f"/api/v1/rounds/{round_id}", auth=False)
    assert answer == view["answer"]
    page.click("#round-href")
    page.wait_for_url(f"**/round/{round_id}")
    ranked = view["result"]["answers"]
    assert len(ranked) >= 2
    assert page.locator("#strengths rect.strength").count() == len(ranked)
    assert page.locator("#answers tbody tr").count() == len(ranked)
    assert page.locator("#judges tbody tr").count() == len(view["result"]["judges"])
    shot(page, tmp_path, "round")


def test_a_script_answer_is_shown_as_text(testnet: list[TestNode], page: Page,
                                          tmp_path: Path) -> None:
    node = testnet[0]
    view = node.api("POST", "/v1/chat/completions", auth=False, timeout=120,
                    messages=[{"role": "user", "content": "<b>What</b> is 6*7?"}])
    round_id = view["round_id"]
    page.goto(f"{node.url}/round/{round_id}")
    texts = page.locator("#answers td.answer").all_text_contents()
    assert SCRIPT_ANSWER in texts  # the markup, as characters
    assert page.text_content("#question") == "<b>What</b> is 6*7?"
    assert page.locator("#answers script, #question b").count() == 0
    assert page.evaluate("() => window.pwned === undefined")
    assert "pwned" not in page.title()
    shot(page, tmp_path, "round-script")


def _send_transfer(node: TestNode, to: bytes, amount: int) -> str:
    tx = sign_transaction(dev_seed(5), chain_id=DEV_CHAIN_ID, nonce=0, fee=10,
                          payload=Transfer(to=to, amount=amount))
    return node.send_tx(tx)


def test_tx_account_swarm_jobs_search_and_not_found(
        testnet: list[TestNode], page: Page, console: ConsoleLog, tmp_path: Path) -> None:
    node = testnet[0]
    to = bytes(range(32))
    tx_id = _send_transfer(node, to, 1234)
    wait_until(lambda: node.api("GET", f"/api/v1/txs/{tx_id}", auth=False)["status"]
               == "confirmed", 60, message="the transfer confirmed")
    pages: dict[str, str] = {}
    page.goto(f"{node.url}/search?q={tx_id}")
    assert page.url.endswith(f"/tx/{tx_id}")
    assert "confirmed" in (page.text_content("main") or "")
    pages["tx"] = shot(page, tmp_path, "tx").name
    page.goto(f"{node.url}/search?q={to.hex()}")
    assert page.url.endswith(f"/account/{to.hex()}")
    assert page.text_content("#balance") == "1234"
    assert tx_id[:8] in (page.text_content("table.txs") or "")
    pages["account"] = shot(page, tmp_path, "account").name
    sender = public_key(dev_seed(5)).hex()
    page.goto(f"{node.url}/account/{sender}")
    assert page.locator("#account").count() == 1
    page.goto(f"{node.url}/search?q=1")
    assert page.url.endswith("/block/1")
    for question in ("What is 2+3?", "What is 9*9?"):  # rounds of this test's own to sort
        node.api("POST", "/v1/chat/completions", auth=False, timeout=120,
                 messages=[{"role": "user", "content": question}])
    page.goto(f"{node.url}/swarm")
    assert page.locator("#rounds tbody tr").count() >= 2

    def questions() -> list[str]:
        return [str(q) for q in page.locator("#rounds td.question").all_text_contents()]

    page.click("#rounds th:has-text('Question')")
    assert questions() == sorted(questions(), reverse=True)
    page.click("#rounds th:has-text('Question')")
    assert questions() == sorted(questions())
    pages["swarm"] = shot(page, tmp_path, "swarm").name
    page.goto(f"{node.url}/jobs")
    assert page.locator("h1").text_content() == "Matmul jobs"
    pages["jobs"] = shot(page, tmp_path, "jobs").name
    for unknown in ("/search?q=nothing-here", f"/block/{'ab' * 32}", f"/tx/{'cd' * 32}",
                    f"/round/{'ef' * 32}", "/block/999999"):
        response = page.goto(node.url + unknown)
        console.expected += 1
        assert response is not None and response.status == 404, unknown
        assert "Not found" in (page.text_content("h1") or "")
    pages["notfound"] = shot(page, tmp_path, "notfound").name
    assert len(pages) == 5


def test_a_mined_job_shows_as_jobs_work_and_on_the_jobs_page(
        testnet: list[TestNode], page: Page, tmp_path: Path) -> None:
    """A paid matmul job mined by node 0: its block is "jobs" work on the overview (its
    operand roots match the job on chain) and the job page shows status, escrow, block."""
    node = testnet[0]
    view = mine_a_job(node, escrow=5000)
    assert view["mode"] == "mined"
    block_id = view["mined_in_block"]
    page.goto(node.url + "/")
    row = page.locator(f"#blocks tbody tr:has(a[href='/block/{block_id}'])")
    assert row.locator("span.tag").text_content() == "jobs"
    page.goto(node.url + "/jobs")
    text = page.text_content("#jobs") or ""
    assert view["id"][:8] in text and "5000" in text and "done" in text
    shot(page, tmp_path, "jobs")


def test_an_inference_mined_block_is_inference_work_on_another_node(
        testnet: list[TestNode], page: Page, tmp_path: Path) -> None:
    """Node 0 mines its model's (arith-l) int8 products while it answers. Once one of their
    tickets has won a block on the chain, node 1, which mines nothing, labels it "inference"
    of arith-l from its B root alone, in the rows the overview's charts draw
    (GET /explorer/blocks), as the miner does; the rest are self-generated; node 1's block
    page says so in the browser."""
    miner, other = testnet[0], testnet[1]
    inference, asked = ask_until_inference_block(miner, other)
    # the miner's count of blocks its inference won includes any that lost to a sibling; it
    # counts a block once its own submission returns, which may follow node 1's (early relay)
    wait_until(lambda: miner.status()["mining"]["inference_blocks"] >= len(inference),
               timeout=30, message="the miner counted its inference blocks")
    won = miner.status()["mining"]["inference_blocks"]
    print(f"questions asked: {asked}; inference blocks won (miner): {won}, "
          f"on the chain (node 1): {len(inference)}")
    assert len(inference) <= won
    assert {b["model"] for b in inference} == {"arith-l"}
    assert {b["miner"] for b in inference} == {miner.status()["mining"]["address"]}
    # independently of the explorer: each one's B is an arith-l weight matrix, zero-padded
    weights = ArithModel(variant_path("arith-l")).weights.values()
    for row in inference:
        header = other.block(row["id"])["header"]
        k, n = header["k"], header["n"]
        padded = [np.pad(w, ((0, k - w.shape[0]), (0, n - w.shape[1]))) for w in weights
                  if w.shape[0] <= k and w.shape[1] <= n]
        assert header["root_b"] in {operand_roots(np.zeros((8, k), np.int8), b)[1].hex()
                                    for b in padded}

    def same_on_the_miner() -> bool:
        seen = other.api("GET", f"/explorer/blocks?count={MAX_ROWS}", auth=False)
        own = miner.api("GET", f"/explorer/blocks?count={MAX_ROWS}", auth=False)
        top = min(seen["height"], own["height"])
        labels = [{b["id"]: b["source"] for b in v["blocks"] if b["height"] <= top}
                  for v in (seen, own)]
        return labels[0] == labels[1] and SELF in labels[0].values()

    wait_until(same_on_the_miner, 60, interval=0.5,
               message="node 1 labels every block as the miner does, self-generated work too")
    block = inference[0]
    page.goto(f"{other.url}/block/{block['id']}")
    assert page.text_content("#work-source span.tag") == "inference"
    assert page.text_content("#work-model") == "arith-l"
    shot(page, tmp_path, "inference-block")
    self_block = next(b for b in other.api("GET", "/explorer/blocks", auth=False)["blocks"]
                      if b["source"] == SELF)
    page.goto(f"{other.url}/block/{self_block['id']}")
    assert page.text_content("#work-source span.tag") == SELF
    assert page.locator("#work-model").count() == 0


def test_pages_never_reach_token_routes(testnet: list[TestNode]) -> None:
    """The pages' markup and script name no route that acts as the node; the one request
    that changes anything is the chat box's POST to the public chat route."""
    node = testnet[0]
    text = "\n".join(_get_text(node.url + path) for path in (
        "/", "/chat", "/swarm", "/jobs", "/explorer/static/explorer.js"))
    for route in ("/api/v1/peers", "/miner/generate", "Authorization", "api.token"):
        assert route not in text
    assert re.findall(r'fetch\("([^"]+)", \{\s*method: "POST"', text) == \
        ["/v1/chat/completions"]
    assert 'method="post"' not in text.lower()


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())
