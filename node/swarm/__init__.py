"""The node's side of the swarm: rounds it starts or joins, answering and judging through an
inference backend, settlement duty, and its own registration and calibration.

Modules: `round` (a round's state and data), `service` (`SwarmService`), `settlement_duty`
(who settles, backoff, duplicate sweep), `registration`, `errors`, `backend` (the node's
inference backend), `host` (Protocols: what the swarm uses of the node). The builder wires
it; the chat API (`node.api.chat`) imports it, never the reverse.
"""
