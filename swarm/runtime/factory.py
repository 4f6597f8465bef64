"""Backends from one configuration string, so node config and CLI flags stay one line.

    builtin:arith-m                 a shipped variant (or builtin:/path/to/file.safetensors)
    builtin:arith-m?form=2          ...answering through equivalent phrasing 2
    openai:http://127.0.0.1:8080?model=qwen2.5-7b   an OpenAI-compatible endpoint
    hf:/models/gpt2-small           a local Hugging Face checkpoint directory
    smollm2:/data/llm-cache?temperature=0.7&seed=3   the shipped SmolLM2 (int8; converted
                                    once into the cache dir; float=1 for the float path)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from swarm.runtime.base import BackendError, InferenceBackend
from swarm.runtime.builtin import DEFAULT_JUDGE_FORMS, BuiltinBackend
from swarm.runtime.hf import HFCheckpointBackend
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.mined import MatmulHook
from swarm.runtime.openai_http import OpenAIBackend


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
    if kind == "builtin":
        return BuiltinBackend.load(
            target, matmul_hook=matmul_hook, answer_form=int(options.get("form", "0")),
            judge_forms=int(options.get("judge_forms", str(DEFAULT_JUDGE_FORMS))))
    if kind == "openai":
        if "model" not in options:
            raise BackendError("openai backend needs ?model=NAME (or use discover())")
        return OpenAIBackend(target, model=options["model"], api_key=api_key,
                             timeout=float(options.get("timeout", "60")),
                             stream=options.get("stream", "0") in ("1", "true"))
    if kind == "hf":
        return HFCheckpointBackend(target)
    if kind == "smollm2":
        return SmolLM2Backend.load(
            Path(target), int8=options.get("float", "0") not in ("1", "true"),
            product=matmul_hook, system_prompt=options.get("system"),
            temperature=float(options.get("temperature", "0")),
            top_p=float(options.get("top_p", "1")), seed=int(options.get("seed", "0")))
    raise BackendError(f"unknown backend kind {kind!r} (builtin, openai, hf, smollm2)")
