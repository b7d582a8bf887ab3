"""The op registry: every op module is found, declares everything, and everything that lists ops derives from it."""

import ast
import importlib
import pkgutil
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import nkilab.kernels as K
import nkilab.kernels.nki as nki_backend
import nkilab.kernels.triton as triton_backend
from nkilab.harness.cli import build_parser
from nkilab.harness.workloads import GRIDS, MODELS, make_inputs, model_problems, smoke_problems
from nkilab.kernels import _backends, _registry, api, ops
from nkilab.kernels.ops._op import Op

PACKAGE = Path(K.__file__).parent.parent  # the repository root: kernels/, harness/, reference/


def test_every_public_op_module_is_registered_in_order():
    modules = sorted(m.name for m in pkgutil.iter_modules(ops.__path__) if not m.name.startswith("_"))
    assert sorted(_registry.OPS) == modules
    orders = [_registry.get(name).order for name in _registry.OPS]
    assert orders == sorted(orders)
    assert _registry.OPS[:4] == ("qmatmul", "attention", "write_kv_cache", "paged_attention")


def test_public_api_and_package_exports_derive_from_the_registry():
    for name in _registry.OPS:
        assert getattr(K, name) is getattr(api, name) is _registry.get(name).api
        assert name in K.__all__ and name in api.__all__
    with pytest.raises(ValueError, match="op: unknown op 'softmax'; must be one of"):
        _registry.get("softmax")


def test_cli_choices_derive_from_the_registry():
    parser = build_parser()
    bench = next(a for a in parser._subparsers._group_actions[0].choices["bench"]._actions if a.dest == "kernel")
    assert tuple(bench.choices) == _registry.OPS
    args = parser.parse_args(["check"])
    assert args.ops == _registry.OPS


def _fake_ops_package(tmp_path, monkeypatch, modules: dict[str, str]):
    pkg = tmp_path / "fake_ops"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in modules.items():
        (pkg / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in [k for k in sys.modules if k.startswith("fake_ops")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(_registry, "ops", importlib.import_module("fake_ops"))


def test_discovery_takes_a_new_module_without_editing_a_list(tmp_path, monkeypatch):
    template = (Path(ops.__file__).parent / "write_kv_cache.py").read_text()
    clone = template.replace('name="write_kv_cache"', 'name="copy_rows"').replace("order=30", "order=5")
    _fake_ops_package(tmp_path, monkeypatch, {"copy_rows": clone, "_private": "X = 1\n"})
    found = _registry._discover()
    assert list(found) == ["copy_rows"] and isinstance(found["copy_rows"], Op)


@pytest.mark.parametrize("text", ["X = 1\n", "from nkilab.kernels.ops.qmatmul import OP\n"])
def test_discovery_rejects_a_module_without_its_own_op(tmp_path, monkeypatch, text):
    _fake_ops_package(tmp_path, monkeypatch, {"orphan": text})
    with pytest.raises(ImportError, match=r"fake_ops.orphan: an op module must define OP = Op\(name='orphan'"):
        _registry._discover()


@pytest.mark.parametrize("name", _registry.OPS)
def test_each_declaration_is_complete(name):
    op = _registry.get(name)
    smoke = op.smoke_problems("float32")
    assert smoke and all(p.family is op and p.phase == "smoke" for p in smoke)
    real = [p for phase in ("decode", "prefill") for model in MODELS.values()
            for p in op.model_problems(model, phase, GRIDS["quick"], None, "bfloat16")]
    assert real, f"{name} declares no real-model problem"
    for p in smoke + real:
        assert op.plot.size in p.params and p.tokens >= 1
        assert p.flops() >= 0 and p.hbm_bytes() > 0
        spec = p.spec()
        for backend in ("nki", "triton"):
            if backend in op.backends:
                reason = _registry.unsupported(name, backend, **spec)
                assert reason is None or isinstance(reason, str)
    args, kwargs = make_inputs(smoke[0], np.random.default_rng(0))
    out = op.api(*args, **kwargs, backend="reference")
    assert out is not None


def test_backend_packages_answer_for_every_op_and_reject_unknown_ones():
    for p in smoke_problems("float32"):
        assert nki_backend.unsupported(p.op, **p.spec()) is None
        assert triton_backend.unsupported(p.op, **p.spec()) is None
    for backend in (nki_backend, triton_backend):
        with pytest.raises(ValueError, match="unknown op"):
            backend.unsupported("softmax")


def test_an_op_without_a_launcher_is_not_available_yet(monkeypatch):
    op = _registry.get("attention")
    monkeypatch.setitem(_registry._OPS, "attention", types.SimpleNamespace(**{**op.__dict__, "backends": {}}))
    with pytest.raises(K.BackendUnavailableError, match="names no nki launcher"):
        _registry.load("attention", "nki")
    assert _registry.available_backends("attention") == ["reference"]


def test_model_problems_filter_by_op_and_reject_unknown_ones():
    only = model_problems(phase="decode", grid="quick", ops=("write_kv_cache",))
    assert only and {p.op for p in only} == {"write_kv_cache"}
    with pytest.raises(ValueError, match="unknown op"):
        smoke_problems(ops=("softmax",))


def _code_strings(tree: ast.AST):
    """String constants of a module that are not docstrings."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


EMULATOR = PACKAGE / "harness" / "emulator"


def _sources_outside_op_modules():
    for folder in ("kernels", "harness"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            if path.parent.name != "ops":
                yield path


def test_no_module_outside_the_op_modules_branches_on_an_op_name():
    """The acceptance grep (`op ==`, `op in (...)`) and no op name as a code string outside kernels/ops/."""
    pattern = re.compile(r"\bop\s*(==|!=|in \()")
    for path in _sources_outside_op_modules():
        text = path.read_text()
        assert not pattern.search(text), f"{path}: {pattern.search(text).group(0)!r}"
        if EMULATOR in path.parents:
            continue  # NKI's own names (nl.rms_norm) may equal an op's; layering keeps the emulator off the registry
        named = [n.value for n in _code_strings(ast.parse(text)) if n.value in _registry.OPS]
        assert not named, f"{path} names ops {named} in code; derive from the registry instead"
