"""The layers, read from the source: each imports only those below it, with no cycles.

Walks the AST of every module of the project packages, counting every import: at module
level, inside functions and under ``if TYPE_CHECKING``. So an import moved into a function to
dodge a circle is still a circle here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pouw", "core", "swarm", "contracts", "consensus", "node", "testnet", "bench")

# longest prefix wins: swarm.runtime (inference backends) sits with the node, above the rules
LAYERS: dict[str, int] = {
    "pouw": 0, "core": 0,
    "swarm": 1,
    "contracts": 2,
    "consensus": 3,
    "node": 4, "swarm.runtime": 4,
    "testnet": 5, "bench": 5,
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported project module (resolved to a module that exists)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


MODULES = project_modules()


def resolve(name: str) -> str | None:
    """The longest existing project module that ``name`` names or lies in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)]
    in_function = {id(inner) for f in functions for inner in ast.walk(f) if inner is not f}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not path.name == "__init__.py":
                    base = base[:-1]
                base = base[:len(base) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # "from pkg import submodule" imports the submodule
            names = [f"{prefix}.{alias.name}" if resolve(f"{prefix}.{alias.name}")
                     == f"{prefix}.{alias.name}" else prefix for alias in node.names]
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                yield Import(module, target, node.lineno, id(node) in in_function)


IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def layer_of(module: str) -> int:
    best = max((prefix for prefix in LAYERS
                if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def test_every_project_package_has_a_layer() -> None:
    for module in MODULES:
        assert layer_of(module) >= 0


def test_each_layer_imports_only_the_layers_below_it() -> None:
    upward = [f"{imp.module}:{imp.line} (L{layer_of(imp.module)}) imports {imp.target} "
              f"(L{layer_of(imp.target)})"
              for imp in IMPORTS if layer_of(imp.target) > layer_of(imp.module)]
    assert upward == []


def test_the_swarm_rules_do_not_reach_up_to_the_node() -> None:
    """L1 and L4 share the ``swarm`` name: the rules must not import the runtime."""
    bad = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in IMPORTS
           if layer_of(imp.module) == 1 and imp.target.startswith("swarm.runtime")]
    assert bad == []


def test_no_project_import_inside_a_function() -> None:
    """An import inside a function is how a circle hides; third-party ones (an optional GPU
    library) may stay lazy."""
    inside = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in IMPORTS
              if imp.in_function]
    assert inside == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules() -> None:
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        # a package's __init__ importing its own submodules is not a circle
        if imp.target.startswith(imp.module + "."):
            continue
        edges.setdefault(imp.module, set()).add(imp.target)
    assert _cycles(edges) == []


def room(module: str) -> str:
    """node.<room> for node modules (node.builder, node.config: their own), else the package."""
    parts = module.split(".")
    if parts[0] == "node" and len(parts) > 1:
        return ".".join(parts[:2])
    if module.startswith("swarm.runtime"):
        return "swarm.runtime"
    return parts[0]


def test_no_import_cycle_between_rooms() -> None:
    """The node's rooms (chain, p2p, mining, swarm, api, cli, client) form a DAG too."""
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        a, b = room(imp.module), room(imp.target)
        if a != b and imp.module != "node":
            edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


def _wiring_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in {"setattr", "getattr", "hasattr", "delattr"} or not node.args:
            continue
        target = ast.unparse(node.args[0])
        if target in {"node", "self.node", "host", "self.host"} or target.endswith(".node"):
            yield node.lineno, ast.unparse(node)


@pytest.mark.parametrize("package", ["node", "testnet"])
def test_no_setattr_or_getattr_wiring_on_the_node(package: str) -> None:
    """Services get what they use through their constructors (node/builder.py wires them),
    never by setting or probing attributes on the node."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found += [f"{path.relative_to(ROOT)}:{line}: {call}" for line, call in _wiring_calls(tree)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                if "importlib" in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: importlib")
    assert found == []


def test_every_package_says_what_it_owns() -> None:
    """Each package's __init__.py opens with a docstring saying what the package owns."""
    missing = [module for module, path in MODULES.items()
               if path.name == "__init__.py" and not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []


def test_the_checks_see_a_planted_cycle_and_an_upward_import() -> None:
    """The cycle finder and the layer map are not vacuous."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("swarm.runtime.base") == 4 and layer_of("swarm.settlement") == 1
    assert layer_of("core.state") < layer_of("contracts.swarm") < layer_of("consensus.block")
    assert len(MODULES) > 100 and len(IMPORTS) > 300
