"""Backend specs: one string per backend, as node configuration uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.runtime.base import BackendError, name_model_id
from swarm.runtime.builtin import BuiltinBackend, variant_path
from swarm.runtime.factory import make_backend, parse_spec
from swarm.runtime.hf import HFCheckpointBackend
from swarm.runtime.openai_http import OpenAIBackend
from tests.framework.checkpoints import gpt2_tensors, write_checkpoint


def test_parse_spec() -> None:
    assert parse_spec("builtin:arith-m?form=2") == ("builtin", "arith-m", {"form": "2"})
    assert parse_spec("openai:http://127.0.0.1:8080?model=m&stream=1") == (
        "openai", "http://127.0.0.1:8080", {"model": "m", "stream": "1"})
    for bad in ("arith-m", "builtin:", ""):
        with pytest.raises(BackendError):
            parse_spec(bad)


def test_make_each_kind(tmp_path: Path) -> None:
    b = make_backend("builtin:arith-s?form=3&judge_forms=2")
    assert isinstance(b, BuiltinBackend)
    assert (b.name, b.answer_form, b.judge_forms) == ("arith-s", 3, 2)
    assert make_backend(f"builtin:{variant_path('arith-xs')}").model_id == \
        BuiltinBackend.load("arith-xs").model_id
    o = make_backend("openai:http://127.0.0.1:8080/v1?model=qwen&stream=true", api_key="k")
    assert isinstance(o, OpenAIBackend)
    assert (o.base_url, o.stream, o.api_key) == ("http://127.0.0.1:8080", True, "k")
    assert o.model_id == name_model_id("qwen")
    h = make_backend(f"hf:{write_checkpoint(tmp_path / 'ckpt', gpt2_tensors(0))}")
    assert isinstance(h, HFCheckpointBackend)
    with pytest.raises(BackendError, match="model="):
        make_backend("openai:http://127.0.0.1:8080")
    with pytest.raises(BackendError, match="unknown backend kind"):
        make_backend("petals:whatever")
