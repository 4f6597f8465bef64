"""Convert a GGUF once; later loads read the converted weights from a cache directory.

Layout: `<cache_dir>/<model id hex>/` holds `weights.safetensors` (float32, HF layout),
`tokenizer.json` and `manifest.json` (format, model id, config, chat template, special
tokens, and the size and SHA-256 of both other files). A cache whose manifest is missing or
does not match its files (truncated, corrupt, another model) is rebuilt from the GGUF. The
directory is written beside itself under a temporary name and renamed into place, so a
crash mid-write never leaves a cache that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from swarm.runtime.llm.gguf_file import (
    GGUFError,
    LlamaConfig,
    LoadedModel,
    SpecialTokens,
    expected_shapes,
    read_gguf,
)
from swarm.runtime.llm.shipped import file_sha256

log = logging.getLogger(__name__)

CACHE_FORMAT = "pouwchain-llm-cache-v1"
WEIGHTS = "weights.safetensors"
TOKENIZER = "tokenizer.json"
MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """Where tools without a node data directory cache the conversion:
    $POUWCHAIN_LLM_CACHE, else $XDG_CACHE_HOME/pouwchain/llm, else ~/.cache/pouwchain/llm."""
    if env := os.environ.get("POUWCHAIN_LLM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pouwchain" / "llm"


class CacheInvalid(Exception):
    """A cache directory that cannot be trusted (the caller rebuilds it)."""


@dataclass
class ModelLoad:
    """A loaded model, its id (SHA-256 of the GGUF) and whether it came from the cache."""

    model: LoadedModel
    model_id: bytes
    from_cache: bool


def load_model(gguf_path: Path, cache_dir: Path | None = None, *,
               expected_sha256: str | None = None) -> ModelLoad:
    """The model in `gguf_path`, through the conversion cache in `cache_dir` if given.

    Raises GGUFError if the file is unreadable or its hash is not `expected_sha256`.
    """
    try:
        model_id = file_sha256(gguf_path)
    except OSError as exc:
        raise GGUFError(f"{gguf_path}: {exc}") from exc
    if expected_sha256 is not None and model_id.hex() != expected_sha256:
        raise GGUFError(f"{gguf_path}: SHA-256 {model_id.hex()}, expected {expected_sha256}")
    if cache_dir is None:
        return ModelLoad(read_gguf(gguf_path), model_id, False)
    entry = Path(cache_dir) / model_id.hex()
    if entry.exists():
        try:
            return ModelLoad(read_cache(entry, model_id), model_id, True)
        except CacheInvalid as exc:
            log.warning("rebuilding model cache %s: %s", entry, exc)
    model = read_gguf(gguf_path)
    write_cache(entry, model, model_id)
    return ModelLoad(model, model_id, False)


def write_cache(entry: Path, model: LoadedModel, model_id: bytes) -> None:
    """Write the converted model to `entry` atomically (temporary directory, then rename)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file({k: v.contiguous() for k, v in model.tensors.items()}, str(tmp / WEIGHTS))
        model.tokenizer.save(str(tmp / TOKENIZER))
        manifest = {
            "format": CACHE_FORMAT,
            "model_id": model_id.hex(),
            "name": model.name,
            "config": json.loads(model.config.to_json()),
            "special": asdict(model.special),
            "chat_template": model.chat_template,
            "files": {f: {"size": (tmp / f).stat().st_size,
                          "sha256": file_sha256(tmp / f).hex()} for f in (WEIGHTS, TOKENIZER)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_cache(entry: Path, model_id: bytes) -> LoadedModel:
    """The model cached in `entry`; raises CacheInvalid on any mismatch or damage."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest.get("format") != CACHE_FORMAT:
            raise CacheInvalid(f"format {manifest.get('format')!r}")
        if manifest.get("model_id") != model_id.hex():
            raise CacheInvalid("manifest is for another model")
        for name in (WEIGHTS, TOKENIZER):
            want = manifest["files"][name]
            path = entry / name
            if path.stat().st_size != want["size"]:
                raise CacheInvalid(f"{name} has {path.stat().st_size} bytes, not {want['size']}")
            if file_sha256(path).hex() != want["sha256"]:
                raise CacheInvalid(f"{name} does not match its hash")
        config = LlamaConfig(**manifest["config"])
        tensors = load_file(str(entry / WEIGHTS))
        shapes = expected_shapes(config)
        if set(tensors) != set(shapes) or any(
                tuple(tensors[k].shape) != s or tensors[k].dtype != torch.float32
                for k, s in shapes.items()):
            raise CacheInvalid("tensors do not match the config")
        tokenizer = Tokenizer.from_file(str(entry / TOKENIZER))
        special = SpecialTokens(**manifest["special"])
        return LoadedModel(config, tensors, tokenizer, str(manifest["chat_template"]), special,
                           str(manifest["name"]))
    except CacheInvalid:
        raise
    except Exception as exc:  # safetensors and tokenizers raise their own exception types
        raise CacheInvalid(f"unreadable: {exc}") from exc
