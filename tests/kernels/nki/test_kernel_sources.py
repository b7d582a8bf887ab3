"""NKI kernel files stay compilable by the real SDK: they import only the shim and the tiling constants.

A kernel module that imported NumPy or torch, or reached into the emulator, would run here and fail under the real
`nki` compiler (README "How to add a kernel family": kernel source only); host-side code belongs in the
`launch_<family>.py` modules. Entry points also keep their signatures free of a `*` separator, which the compiler
frontends reject (S-LG, S-MIG kernel-language rules; tags in `nkilab.harness.emulator`). The kernel bodies are written for NKI 0.7's Python-tracing frontend (SDK 2.33+: helper classes, nested
functions, `is None` on optional arguments); the stricter 0.2–0.6 frontend is not a target.
"""

import ast
from pathlib import Path

import pytest

import nkilab.kernels.nki as nki_backend

KERNEL_DIR = Path(nki_backend.__file__).parent
KERNEL_FILES = ("qmatmul.py", "attention.py", "kv_cache.py", "paged_attention.py")
ALLOWED_IMPORTS = {"_shim", "_tiling"}


def _tree(name: str) -> ast.Module:
    return ast.parse((KERNEL_DIR / name).read_text(), filename=name)


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_kernel_file_imports_only_shim_and_tiling(name):
    bad = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            bad += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.level != 1 or node.module not in ALLOWED_IMPORTS):
            bad.append("." * node.level + (node.module or ""))
    assert not bad, f"{name} imports {bad}; kernel files may import only {sorted(ALLOWED_IMPORTS)}"


def _jit_entries(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(ast.unparse(d).startswith("nki.jit") for d in node.decorator_list):
            yield node


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_jit_entry_points_take_no_keyword_only_arguments(name):
    entries = list(_jit_entries(_tree(name)))
    assert entries, f"{name} defines no @nki.jit kernel"
    for fn in entries:
        assert not fn.args.kwonlyargs, f"{name}:{fn.name} uses a '*' separator, which the NKI frontend rejects"
