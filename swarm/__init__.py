"""L1, the swarm's rules: Bradley-Terry, round schedule, selection, commit-reveal,
settlement, calibration and its task families; signed swarm messages.

Deterministic and shared by every validator; the inference backends live in `swarm.runtime` (L4)."""
