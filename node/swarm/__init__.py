"""The node's side of the swarm: rounds it starts or joins, answering and judging through an
inference backend, settlement duty, and its own registration and calibration."""
