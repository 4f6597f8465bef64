"""A node process that mines on the default backend and serves its API never loads torch
(issue 12): torch is imported only for a torch backend or a model, and a node has neither
unless its config names one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.framework.nodes import TestNetwork
from tests.framework.util import wait_until


def mapped_libraries(pid: int) -> set[str]:
    """The file names of the shared objects mapped into process ``pid``."""
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in lines if ".so" in line.split()[-1]}


@pytest.mark.slow
def test_a_mining_node_process_never_loads_torch(network: TestNetwork) -> None:
    node = network.add_node(mine=True)
    wait_until(lambda: node.height() >= 2, message="node mined two blocks")
    assert node.proc is not None
    libraries = mapped_libraries(node.proc.pid)
    assert not [name for name in libraries if "torch" in name or name.startswith("libc10")]
    backend = str(node.status()["mining"]["backend"])
    assert backend.startswith(("native", "numpy")), backend
