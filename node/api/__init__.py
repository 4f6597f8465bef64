"""The node's HTTP surface: the chain API, the miner and job API, the OpenAI-compatible chat
API, bearer-token auth and Prometheus metrics. Routes only; the work is in the other rooms."""
