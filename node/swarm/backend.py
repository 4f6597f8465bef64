"""The node's inference backend: built from ``config.swarm_backend``, its built-in model's
matmuls mined by the node's miner when the node mines, warmed up at start."""

from __future__ import annotations

import numpy as np

from node.logging import get_logger, log_event
from node.swarm.host import MinedProduct, ProductMiner
from swarm.runtime.base import InferenceBackend
from swarm.runtime.builtin import mining_hook
from swarm.runtime.factory import make_backend

log = get_logger("swarm")


class MinedProducts:
    """The built-in model's matmuls, mined by the node's miner (`Miner.mine_product`): on a
    mining node the swarm's inference is the useful work, and a winning ticket is a block."""

    r: int | None = None  # pouw's default chunk size for the padded shapes

    def __init__(self, miner: ProductMiner) -> None:
        self.miner = miner

    def mine(self, a: np.ndarray, b: np.ndarray) -> MinedProduct:
        """A·B through the miner (`swarm.runtime.builtin.mining_hook` calls this)."""
        return self.miner.mine_product(a, b)


def make_swarm_backend(spec: str | None, *,
                       miner: ProductMiner | None = None) -> InferenceBackend | None:
    """The backend of ``spec`` (`swarm.runtime.factory`; None: the node answers and judges
    nothing); on a mining node (``miner``) the built-in model's matmuls are mined."""
    if not spec:
        return None
    return make_backend(spec, matmul_hook=None if miner is None
                        else mining_hook(MinedProducts(miner)))


async def warm_up(backend: InferenceBackend) -> None:
    """One answer and one judgment, so the first client does not pay the warm-up (~1 s)."""
    try:
        answer = await backend.answer("What is 1+1?", max_tokens=64)
        await backend.judge("What is 1+1?", answer.text, "3")
    except Exception as exc:  # an unreachable endpoint: rounds will say so, not the warm-up
        log_event(log, "swarm.warm_up_failed", error=str(exc))
