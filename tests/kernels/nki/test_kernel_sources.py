"""NKI kernel sources stay compilable by the real SDK: they import only the shim and kernel-side helpers.

A kernel module that imported NumPy or torch, or reached into the emulator, would run here and fail under the real
`nki` compiler; host-side code belongs in the `launch_<family>.py` modules (see `kernels/nki/_launch.py`). Entry
points also keep their signatures free of a `*` separator, which the NKI 0.2-0.6 compiler frontend rejects. The
kernel bodies are written for NKI 0.7's Python-tracing frontend (SDK 2.33+: helper classes derived from
`nl.NKIObject`, nested functions, `is None` on optional arguments); the stricter 0.2-0.6 frontend is not a target.

The kernel files are discovered, not listed: every `.py` under `kernels/nki/` except the host side (`_shim.py`,
`_launch.py`, `launch_*.py` and the backend package's own `__init__.py`). A kernel is a top-level module or a
package (`qmatmul/`) whose modules import each other; names starting with `_` are kernel-side helpers shared by
kernels (`_tiling.py`, `_softmax.py`). One kernel never imports another: what two share belongs in a helper.
"""

import ast
from pathlib import Path

import pytest

import nkilab.kernels.nki as nki_backend

KERNEL_DIR = Path(nki_backend.__file__).parent
HOST_SIDE = {"_shim.py", "_launch.py", "__init__.py"}  # top level only; plus launch_*.py
RUNTIME = {"_shim"}  # the one way to the SDK or the emulator
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _is_host_side(path: Path) -> bool:
    return path.parent == KERNEL_DIR and (path.name in HOST_SIDE or path.name.startswith("launch_"))


def _module_name(path: Path) -> str:
    """Dotted name relative to the backend package: 'qmatmul.decode', 'qmatmul' for its __init__, '_tiling'."""
    parts = path.relative_to(KERNEL_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


KERNEL_FILES = sorted(p for p in KERNEL_DIR.rglob("*.py") if not _is_host_side(p))
KERNEL_MODULES = {_module_name(p) for p in KERNEL_FILES}
IDS = [str(p.relative_to(KERNEL_DIR)) for p in KERNEL_FILES]
# the kernels proper (not the shared `_helpers`): each top-level non-underscore module or package
KERNELS = sorted({name.split(".")[0] for name in KERNEL_MODULES if not name.startswith("_")})


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _package_of(path: Path) -> list[str]:
    """The dotted package path (relative to the backend) that relative imports in `path` start from."""
    return list(path.parent.relative_to(KERNEL_DIR).parts)


def _imports(path: Path):
    """(what is written, resolved module names relative to the backend package or None if outside it)."""
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            written = "." * node.level + (node.module or "")
            base = _package_of(path)
            if node.level == 0 or node.level - 1 > len(base):
                yield written, None
                continue
            base = base[:len(base) - (node.level - 1)]
            if node.module:
                yield written, [".".join(base + node.module.split("."))]
            else:  # `from . import a, b`: each name is a module
                yield written, [".".join(base + [alias.name]) for alias in node.names]


def test_kernel_files_are_discovered():
    assert {"qmatmul", "attention", "paged_attention", "kv_cache"} <= set(KERNELS), KERNELS
    assert not any(_is_host_side(p) for p in KERNEL_FILES)


def _allowed_imports(path: Path) -> set[str]:
    """The shim, the kernel-side helpers, and (inside a kernel package) the package's own modules."""
    helpers = {name for name in KERNEL_MODULES if name.startswith("_")}
    package = _package_of(path)
    own = {name for name in KERNEL_MODULES if package and name.split(".")[0] == package[0]}
    return RUNTIME | helpers | own


@pytest.mark.parametrize("path", KERNEL_FILES, ids=IDS)
def test_kernel_file_imports_only_shim_helpers_and_own_package(path):
    allowed = _allowed_imports(path)
    bad = [written for written, targets in _imports(path) if targets is None or not set(targets) <= allowed]
    assert not bad, (f"{path.relative_to(KERNEL_DIR)} imports {bad}; a kernel file may import only the shim, the "
                     f"kernel-side helpers and its own package's modules (relative imports): {sorted(allowed)}")


def _jit_entries(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(ast.unparse(d).startswith("nki.jit") for d in node.decorator_list):
            yield node


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_kernel_has_a_jit_entry_without_keyword_only_arguments(kernel):
    files = [p for p in KERNEL_FILES if _module_name(p).split(".")[0] == kernel]
    entries = [(p, fn) for p in files for fn in _jit_entries(_tree(p))]
    assert entries, f"kernel {kernel!r} ({[str(p.relative_to(KERNEL_DIR)) for p in files]}) defines no @nki.jit entry"
    for p, fn in entries:
        assert not fn.args.kwonlyargs, f"{p.name}:{fn.name} uses a '*' separator, which the NKI frontend rejects"


@pytest.mark.parametrize("path", KERNEL_FILES, ids=IDS)
def test_kernel_modules_and_functions_stay_small(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines > {MAX_MODULE_LINES}; split it into a package"
    long = [f"{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)" for fn in ast.walk(_tree(path))
            if isinstance(fn, ast.FunctionDef) and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"
