"""Layering, read from the source with `ast` (every module of nkilab.reference, nkilab.kernels, nkilab.harness;
module-level and function-level import statements):

  1. `nkilab.reference` imports nothing from `nkilab.kernels` or `nkilab.harness` (it is the bottom layer).
  2. `nkilab.harness.emulator`, the hardware table (`nkilab.harness.chips`) and the dtype table
     (`nkilab.reference.dtypes`) import nothing from `nkilab.kernels`.
  3. `nkilab.kernels` imports `nkilab.harness` only in `nkilab.kernels.nki._shim`.
  4. No import cycle among the package's modules. Edges: `import a.b` -> a.b; `from pkg import name` -> pkg.name
     when that is a module, else pkg (its `__init__`); relative imports resolved against the importing module.
  5. No function-local import of an nkilab module.
  6. Function-local imports only of optional heavy dependencies (`HEAVY_OPTIONAL`), each with a comment on its
     line or the line above saying why.

Import statements only: `importlib.import_module` with a computed name is outside what a static graph sees.
Each rule also runs on a small synthetic tree with a deliberate violation, so every check can fail.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"nkilab.reference": "reference", "nkilab.kernels": "kernels", "nkilab.harness": "harness"}
HEAVY_OPTIONAL = ("torch", "triton", "matplotlib", "pynvml", "ray", "transformers")
TABLES = ("nkilab.harness.chips", "nkilab.reference.dtypes")
SHIM = "nkilab.kernels.nki._shim"


@dataclass(frozen=True)
class Import:
    """One import edge: `module` (importer) -> `target` (absolute dotted name) at `path`:`line`."""

    module: str
    target: str
    path: str
    line: int
    local: bool  # inside a function body
    commented: bool  # a comment on the statement's lines or the line above

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.module} -> {self.target}"


def find_modules(root: Path, packages: dict[str, str] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (source file, is a package `__init__`) for every .py file under the packages."""
    found = {}
    for package, folder in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            is_init = parts[-1] == "__init__"
            name = ".".join((package,) + (parts[:-1] if is_init else parts))
            found[name] = (path, is_init)
    return found


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def _resolve(node: ast.ImportFrom, module: str, is_init: bool) -> str:
    """Absolute base module of a `from ... import` statement."""
    if not node.level:
        return node.module
    package = module.split(".") if is_init else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_init: bool, path: str, comments: set[int], known: set[str]):
        self.module, self.is_init, self.path, self.comments, self.known = module, is_init, path, comments, known
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
        commented = any(n in self.comments for n in lines)
        self.found.append(Import(self.module, target, self.path, node.lineno, self.depth > 0, commented))

    def visit_FunctionDef(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(node, self.module, self.is_init)
        targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in self.known else base for a in node.names}
        for target in sorted(targets):  # one edge per imported module, however many names come from it
            self._add(node, target)


def collect(modules: dict[str, tuple[Path, bool]], root: Path) -> list[Import]:
    """Every import statement of every module, resolved (see the module docstring for the edge rule)."""
    known = set(modules)
    found: list[Import] = []
    for name, (path, is_init) in modules.items():
        source = path.read_text()
        collector = _Collector(name, is_init, str(path.relative_to(root)), _comment_lines(source), known)
        collector.visit(ast.parse(source, str(path)))
        found += collector.found
    return found


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def reference_violations(imports: list[Import]) -> list[str]:
    """Rule 1."""
    return [str(i) for i in imports if _within(i.module, "nkilab.reference")
            and (_within(i.target, "nkilab.kernels") or _within(i.target, "nkilab.harness"))]


def emulator_violations(imports: list[Import]) -> list[str]:
    """Rule 2."""
    lower = [i for i in imports if _within(i.module, "nkilab.harness.emulator") or i.module in TABLES]
    return [str(i) for i in lower if _within(i.target, "nkilab.kernels")]


def kernels_violations(imports: list[Import]) -> list[str]:
    """Rule 3."""
    return [str(i) for i in imports if _within(i.module, "nkilab.kernels") and i.module != SHIM
            and _within(i.target, "nkilab.harness")]


def cycles(imports: list[Import], modules) -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        if i.target in graph and i.target != i.module:
            graph[i.module].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def local_nkilab_violations(imports: list[Import]) -> list[str]:
    """Rule 5."""
    return [str(i) for i in imports if i.local and _within(i.target, "nkilab")]


def local_import_violations(imports: list[Import]) -> list[str]:
    """Rule 6 (nkilab modules are rule 5's)."""
    bad = []
    for i in imports:
        if not i.local or _within(i.target, "nkilab"):
            continue
        if i.target.split(".")[0] not in HEAVY_OPTIONAL:
            bad.append(f"{i} (not an optional heavy dependency: import it at the top of the module)")
        elif not i.commented:
            bad.append(f"{i} (no comment on its line or the line above saying why it is local)")
    return bad


MODULES = find_modules(ROOT)
IMPORTS = collect(MODULES, ROOT)


def _report(violations: list[str]) -> str:
    return f"{len(violations)} violation(s):\n  " + "\n  ".join(violations)


def test_the_tree_is_read():
    assert {"nkilab.reference.dtypes", "nkilab.harness.chips", SHIM, "nkilab.harness.emulator"} <= set(MODULES)
    assert len(IMPORTS) > 100


def test_reference_imports_neither_kernels_nor_harness():
    assert reference_violations(IMPORTS) == [], _report(reference_violations(IMPORTS))


def test_emulator_and_tables_import_nothing_from_kernels():
    assert emulator_violations(IMPORTS) == [], _report(emulator_violations(IMPORTS))


def test_kernels_reach_the_harness_only_through_the_shim():
    assert kernels_violations(IMPORTS) == [], _report(kernels_violations(IMPORTS))


def test_no_import_cycles():
    found = cycles(IMPORTS, MODULES)
    assert found == [], "import cycles among: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_function_local_imports_of_nkilab_modules():
    assert local_nkilab_violations(IMPORTS) == [], _report(local_nkilab_violations(IMPORTS))


def test_function_local_imports_only_of_commented_heavy_dependencies():
    assert local_import_violations(IMPORTS) == [], _report(local_import_violations(IMPORTS))


# ---- the checker on a synthetic tree: every rule fires on a deliberate violation -------------------------------

FAKE = {
    "reference/__init__.py": "",
    "reference/dtypes.py": "import numpy as np\n",
    "reference/bad.py": "from nkilab.kernels import api\n",
    "kernels/__init__.py": "",
    "kernels/api.py": "from nkilab.reference import dtypes\n",
    "kernels/reaches.py": "from nkilab.harness import checks\n",
    "kernels/nki/__init__.py": "",
    "kernels/nki/_shim.py": "from nkilab.harness.emulator import run\n",
    "harness/__init__.py": "",
    "harness/chips.py": "import nkilab.kernels.api\n",
    "harness/checks.py": "from . import profile\n",
    "harness/profile.py": "from nkilab.harness import checks\n",
    "harness/emulator/__init__.py": "from .jit import run\n",
    "harness/emulator/jit.py": "from ..chips import get_target\nfrom nkilab.kernels.nki import _shim\n",
    "harness/lazy.py": (
        "def f():\n    from nkilab.reference import dtypes\n\n"
        "def g():\n    import torch\n\n"
        "def h():\n    # optional heavy dependency\n    import triton.language as tl\n\n"
        "def k():\n    import json\n"
    ),
}


@pytest.fixture
def fake(tmp_path):
    for rel, text in FAKE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = find_modules(tmp_path)
    return modules, collect(modules, tmp_path)


def test_checker_resolves_edges_as_specified(fake):
    modules, imports = fake
    edges = {(i.module, i.target) for i in imports}
    assert ("nkilab.harness.profile", "nkilab.harness.checks") in edges  # from pkg import module -> the module
    assert ("nkilab.kernels.nki._shim", "nkilab.harness.emulator") in edges  # from pkg import name -> pkg
    assert ("nkilab.harness.emulator.jit", "nkilab.harness.chips") in edges  # relative, two levels
    assert ("nkilab.harness.checks", "nkilab.harness.profile") in edges  # `from . import` in a plain module


def test_checker_rule_1_fires(fake):
    assert reference_violations(fake[1]) == ["reference/bad.py:1 nkilab.reference.bad -> nkilab.kernels.api"]


def test_checker_rule_2_fires(fake):
    assert emulator_violations(fake[1]) == ["harness/chips.py:1 nkilab.harness.chips -> nkilab.kernels.api",
                                            "harness/emulator/jit.py:2 nkilab.harness.emulator.jit -> "
                                            "nkilab.kernels.nki._shim"]


def test_checker_rule_3_fires_outside_the_shim_only(fake):
    assert kernels_violations(fake[1]) == ["kernels/reaches.py:1 nkilab.kernels.reaches -> nkilab.harness.checks"]


def test_checker_rule_4_reports_the_cycle_modules(fake):
    modules, imports = fake
    assert cycles(imports, modules) == [
        ["nkilab.harness.checks", "nkilab.harness.profile"],
        ["nkilab.harness.emulator", "nkilab.harness.emulator.jit", "nkilab.kernels.nki._shim"],
    ]


def test_checker_rule_5_fires(fake):
    assert local_nkilab_violations(fake[1]) == ["harness/lazy.py:2 nkilab.harness.lazy -> nkilab.reference.dtypes"]


def test_checker_rule_6_fires_on_uncommented_and_light_imports(fake):
    found = local_import_violations(fake[1])
    assert [v.split(" (")[0] for v in found] == ["harness/lazy.py:5 nkilab.harness.lazy -> torch",
                                                 "harness/lazy.py:12 nkilab.harness.lazy -> json"]
    assert "no comment" in found[0] and "not an optional heavy dependency" in found[1]
