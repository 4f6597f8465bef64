"""docs/api.md and docs/openapi.yaml say what the job routes really answer: the on-chain
statuses and modes the code sets, ``503 queue_full`` and the keys of ``GET /api/v1/miner``
(asked of a real node)."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from contracts.jobs import STATUS_NAMES
from node.mining.jobs import CHAIN_STATUSES, MODES
from tests.framework.apidocs import DOC, SPEC, key_lines
from tests.framework.nodes import LiveNode
from tests.framework.util import ROOT


def block(text: str, *path: str) -> str:
    """The YAML text under the block-mapping key ``path`` (its own line included)."""
    lines = text.splitlines()
    for i, indent, keys in key_lines(text):
        if keys == path:
            out = [lines[i]]
            for more in lines[i + 1:]:
                if more.strip() and len(more) - len(more.lstrip()) <= indent:
                    break
                out.append(more)
            return "\n".join(out)
    raise AssertionError(f"{'/'.join(path)} not in the spec")


def enum(text: str) -> list[str]:
    match = re.search(r"enum: \[([^\]]*)\]", text)
    assert match, text
    return [v.strip() for v in match.group(1).split(",")]


def test_code_sets_only_the_listed_values() -> None:
    jobs = (ROOT / "node" / "mining" / "jobs.py").read_text()
    miner = (ROOT / "node" / "mining" / "miner.py").read_text()
    statuses = set(re.findall(r'chain_status(?:: str)? = "(\w+)"', jobs))
    assert statuses == set(CHAIN_STATUSES)
    assert set(STATUS_NAMES.values()) <= set(CHAIN_STATUSES)  # other nodes' jobs, by record
    modes = set()
    for source in (jobs, miner):
        for first, second in re.findall(r'computed_by="(\w+)"(?: if \w+ else "(\w+)")?', source):
            modes |= {first, second} - {""}
    assert modes == set(MODES)


def test_spec_lists_the_real_job_values() -> None:
    spec = SPEC.read_text()
    schemas = ("components", "schemas")
    assert enum(block(spec, *schemas, "JobChainStatus")) == list(CHAIN_STATUSES)
    job_chain = block(spec, *schemas, "Job", "properties", "on_chain", "properties", "status")
    assert "#/components/schemas/JobChainStatus" in job_chain
    assert enum(block(spec, *schemas, "Job", "properties", "mode")) == [*MODES, "null"]
    listing = block(spec, "paths", "/api/v1/jobs", "get", "responses", "200")
    assert "on_chain: {$ref: \"#/components/schemas/JobChainStatus\"}" in listing
    busy = block(spec, "paths", "/api/v1/jobs/matmul", "post", "responses", "503")
    assert "queue_full" in busy and "no job service" not in busy
    assert "assignee" in block(spec, *schemas, "JobStats", "properties")


def test_markdown_lists_the_real_job_values() -> None:
    doc = DOC.read_text()
    jobs_part = doc.split("## Matmul jobs", 1)[1].split("## Metrics", 1)[0]
    for value in (*CHAIN_STATUSES, *MODES):
        assert f"`{value}`" in jobs_part, value
    assert '"status": "requested"' not in doc
    assert "`503 queue_full`" in jobs_part and "no job service" not in doc
    assert '"assignee"' in jobs_part.split("### GET /api/v1/miner", 1)[1]


async def test_miner_route_keys_are_documented(tmp_path: Path) -> None:
    live = await LiveNode.start(tmp_path / "n")
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{live.url}/api/v1/miner") as resp:
            assert resp.status == 200
            stats = await resp.json()
    finally:
        await live.stop()
    assert stats["jobs"]["assignee"] == live.node.node_id.hex()
    spec = SPEC.read_text()
    route = block(spec, "paths", "/api/v1/miner", "get", "responses", "200")
    job_stats = block(spec, "components", "schemas", "JobStats", "properties")
    for key in stats:
        assert f"\n                  {key}:" in route, f"GET /api/v1/miner: {key} undocumented"
    for key in stats["jobs"]:
        assert f"\n        {key}:" in job_stats, f"JobStats: {key} undocumented"
