"""The test suite's own rules, read from the AST of every file under tests/:

* no module-level function, fixture or class is defined in two places (helpers live once, in
  ``tests/framework`` or a ``conftest.py``), and no test module imports from another one;
* every test that starts a process (``subprocess``, ``asyncio.create_subprocess_exec``, the
  framework's process nodes and CLI runners, a fixture that does) is marked ``slow``, so
  ``make test-fast`` (``pytest -m "not slow"``) never waits on a child process.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Names that may be defined in several files, and why.
ALLOWED_TWICE = {
    # the entry point of each script run as a child process or by hand (crash and sync
    # children, the vector generators): one per script, never imported
    "main",
}

# Referencing any of these starts (or drives) a child process.
PROCESS_STARTERS = {
    "subprocess",  # the module: subprocess.run, subprocess.Popen, ...
    "Popen",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "ProcessPoolExecutor",
    "multiprocessing",
    "spawn",  # testnet.process.spawn
    "TestNetwork",  # tests.framework.nodes: real node processes
    "TestNode",
    "cli_process",  # tests.framework.util: `pouwchain` in a child process
    "pouwchain",
}
# Fixtures (from conftest.py files) that start processes.
PROCESS_FIXTURES = {"network"}


def python_files() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def top_level_definitions(tree: ast.Module) -> Iterator[ast.stmt]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node


def test_no_helper_or_fixture_is_defined_twice() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path, tree in python_files():
        for node in top_level_definitions(tree):
            assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if node.name.startswith("test_") or node.name in ALLOWED_TWICE:
                continue
            where[node.name].append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert not twice, ("defined in more than one place (keep one, in tests/framework or a "
                       f"conftest.py): {twice}")


def test_no_test_module_imports_another() -> None:
    """Shared helpers belong to tests/framework, not to a test module others import."""
    found = []
    for path, tree in python_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "tests.") and node.module.rsplit(".", 1)[-1].startswith("test_"):
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} "
                             f"imports {node.module}")
    assert not found, f"move what they share to tests/framework: {found}"


# ------------------------------------------------------------------------------ slow marks

def is_slow_mark(node: ast.expr) -> bool:
    """``pytest.mark.slow`` (or ``mark.slow``), alone or in a list of marks."""
    if isinstance(node, ast.List | ast.Tuple):
        return any(is_slow_mark(e) for e in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "slow"


def module_is_slow(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return is_slow_mark(node.value)
    return False


def referenced(node: ast.AST) -> set[str]:
    """Every name, attribute and argument name a definition mentions."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, ast.arg):
            names.add(sub.arg)
    return names


def spawning_tests(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef,
                                                       bool]]:
    """Each test function of a module, and whether it starts a process itself or through a
    module-level helper or fixture (followed transitively)."""
    functions = {n.name: n for n in tree.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    direct = {name: referenced(fn) for name, fn in functions.items()}
    # module-level constants that hold a starter (e.g. a script run by `subprocess`) count
    # through the function that uses them; helpers count through their callers
    spawns: dict[str, bool] = {}

    def starts(name: str, seen: frozenset[str]) -> bool:
        if name in spawns:
            return spawns[name]
        names = direct[name]
        result = bool(names & (PROCESS_STARTERS | PROCESS_FIXTURES)) or any(
            starts(other, seen | {name}) for other in names & functions.keys() - seen - {name})
        spawns[name] = result
        return result

    for name, fn in functions.items():
        if name.startswith("test_"):
            yield fn, starts(name, frozenset())


def test_every_process_starting_test_is_marked_slow() -> None:
    unmarked = []
    for path, tree in python_files():
        if not path.name.startswith("test_") or module_is_slow(tree):
            continue
        for fn, spawns in spawning_tests(tree):
            if spawns and not any(is_slow_mark(d) for d in fn.decorator_list):
                unmarked.append(f"{path.relative_to(TESTS.parent)}::{fn.name}")
    assert not unmarked, f"start processes but are not marked slow: {unmarked}"


def test_the_checks_see_a_duplicate_and_an_unmarked_spawn() -> None:
    """The rules above are not vacuous: a planted process test without a mark is found."""
    tree = ast.parse(
        "import subprocess\n"
        "def helper():\n    subprocess.run(['true'])\n"
        "def test_a():\n    helper()\n"
        "def test_b(network):\n    pass\n"
        "def test_c():\n    pass\n")
    found = {fn.name: spawns for fn, spawns in spawning_tests(tree)}
    assert found == {"test_a": True, "test_b": True, "test_c": False}
    assert not module_is_slow(tree)
    assert module_is_slow(ast.parse("import pytest\npytestmark = pytest.mark.slow\n"))
    assert module_is_slow(ast.parse("pytestmark = [pytest.mark.usefixtures('x'), "
                                    "pytest.mark.slow]\n"))
