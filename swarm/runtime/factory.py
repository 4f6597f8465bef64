"""Backends from one configuration string, so node config and CLI flags stay one line.

    builtin:arith-m                 a shipped variant (or builtin:/path/to/file.safetensors)
    builtin:arith-m?form=2          ...answering through equivalent phrasing 2
    openai:http://127.0.0.1:8080?model=qwen2.5-7b   an OpenAI-compatible endpoint
    hf:/models/gpt2-small           a local Hugging Face checkpoint directory
    smollm2:/data/llm-cache?temperature=0.7&seed=3   the shipped SmolLM2 (int8; converted
                                    once into the cache dir; float=1 for the float path)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs

from swarm.runtime.base import BackendError, InferenceBackend
from swarm.runtime.mined import MatmulHook

#: The module that runs each kind. The models need torch (1 s to import on a quiet machine,
#: 5-7 s under load), an optional heavy dependency chosen by config, so only the selected
#: kind's module is imported: a node without a model starts without torch (issue 12).
KIND_MODULES = {
    "builtin": "swarm.runtime.builtin",
    "openai": "swarm.runtime.openai_http",
    "hf": "swarm.runtime.hf",
    "smollm2": "swarm.runtime.llm.backend",
}
#: The language model for the swarm round (`make_round_llm`).
ROUND_LLM_MODULE = "swarm.runtime.llm.batched"


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """(kind, target, options) of a backend spec; raises BackendError if malformed."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise BackendError(f"backend spec must be kind:target, got {spec!r}")
    target, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, strict_parsing=False).items()}
    return kind, target, options


def make_backend(spec: str, *, matmul_hook: MatmulHook | None = None,
                 api_key: str | None = None) -> InferenceBackend:
    """A backend for `spec` (see the module docstring). `matmul_hook` reaches the built-in
    model and SmolLM2's int8 products (a mining node passes `builtin.mining_hook(session)`)."""
    kind, target, options = parse_spec(spec)
    if kind not in KIND_MODULES:
        raise BackendError(f"unknown backend kind {kind!r} (builtin, openai, hf, smollm2)")
    module = _module(KIND_MODULES[kind])
    backend: InferenceBackend
    if kind == "builtin":
        backend = module.BuiltinBackend.load(
            target, matmul_hook=matmul_hook, answer_form=int(options.get("form", "0")),
            judge_forms=int(options.get("judge_forms", str(module.DEFAULT_JUDGE_FORMS))))
    elif kind == "openai":
        if "model" not in options:
            raise BackendError("openai backend needs ?model=NAME (or use discover())")
        backend = module.OpenAIBackend(target, model=options["model"], api_key=api_key,
                                       timeout=float(options.get("timeout", "60")),
                                       stream=options.get("stream", "0") in ("1", "true"))
    elif kind == "hf":
        backend = module.HFCheckpointBackend(target)
    else:
        backend = module.SmolLM2Backend.load(
            Path(target), int8=options.get("float", "0") not in ("1", "true"),
            product=matmul_hook, system_prompt=options.get("system"),
            temperature=float(options.get("temperature", "0")),
            top_p=float(options.get("top_p", "1")), seed=int(options.get("seed", "0")))
    return backend


def make_round_llm(*, cache_dir: Path, int8: bool = True, product: MatmulHook | None = None,
                   system_prompt: str | None = None, temperature: float = 0.0,
                   top_p: float = 1.0, seed: int = 0) -> InferenceBackend:
    """The shipped language model for the swarm round (`swarm.runtime.llm.batched.
    LLMSwarmBackend`), converted once into ``cache_dir``; ``product`` computes (a mining
    node: mines) its int8 products."""
    module = _module(ROUND_LLM_MODULE)
    engine = _module("swarm.runtime.llm.engine").load_engine(cache_dir=cache_dir, int8=int8,
                                                              product=product)
    backend: InferenceBackend = module.LLMSwarmBackend(
        engine, system_prompt=system_prompt, temperature=temperature, top_p=top_p, seed=seed)
    return backend
