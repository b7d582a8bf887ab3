"""The documented NKI 0.6 API (`nkilab.harness.emulator.documented_api`) exists in the emulator, and every name
has a value test: the `@covers` registry of the api value tests (`tests/api_coverage.py`), plus the ops whose
value tests predate it (found by test function name anywhere under tests/emulator/, and required to mention the
op, so a moved test still counts and a renamed one fails here)."""

import ast
import functools
import importlib.util
import pathlib

import pytest
from api_coverage import REGISTRY

from nkilab.harness.emulator import documented_api, nisa, nki, nl

HERE = pathlib.Path(__file__).parent
VALUE_TEST_FILES = ("test_api_language.py", "test_api_data.py", "test_api_isa.py", "test_api_mx.py")
# nki.isa ops whose value tests were written before the registry: name -> test function
EXISTING_VALUE_TESTS = {
    "dma_copy": "test_dma_copy_casts_round_to_nearest_even", "tensor_copy": "test_tensor_copy_and_memset",
    "memset": "test_tensor_copy_and_memset", "tensor_copy_predicated": "test_tensor_copy_predicated_and_where",
    "nc_matmul": "test_nc_matmul_accumulates_over_k", "nc_transpose": "test_nc_transpose",
    "dma_transpose": "test_dma_transpose", "tensor_tensor": "test_tensor_tensor_arith",
    "tensor_scalar": "test_tensor_scalar", "tensor_reduce": "test_tensor_reduce",
    "tensor_partition_reduce": "test_tensor_partition_reduce", "tensor_scalar_cumulative": "test_scans",
    "activation": "test_activation_functions", "activation_reduce": "test_activation_reduce_cmd_sequence",
    "iota": "test_iota_and_affine_select", "affine_select": "test_iota_and_affine_select",
    "bn_stats": "test_bn_stats_aggr_and_max8", "bn_aggr": "test_bn_stats_aggr_and_max8",
    "tensor_tensor_scan": "test_scans", "exponential": "test_exponential_on_trn3", "reciprocal": "test_reciprocal",
    "max8": "test_bn_stats_aggr_and_max8", "scalar_tensor_tensor": "test_scalar_tensor_tensor",
    "tensor_scalar_reduce": "test_tensor_scalar_reduce_accumulates", "dma_compute": "test_dma_compute_adds",
    "range_select": "test_range_select", "select_reduce": "test_select_reduce",
    "core_barrier": "test_core_barrier_orders_the_cores_writes_before_their_reads",
    "sendrecv": "test_sendrecv_swaps_tiles_between_the_cores",
}
# documented names whose emulation is still to come: each xfails (strictly) until it appears with a value test
PENDING: dict[str, str] = {}
PREFIX = {"nki.language": "nl", "nki.isa": "nisa", "nki.typing": "nt", "nki.isa.constants": "nisa.constants"}
MODULES = {"nl": nl, "nisa": nisa, "nt": nki.typing, "nisa.constants": nisa.constants}


def _load_value_tests() -> None:
    """Import the value-test modules so their @covers decorators fill REGISTRY."""
    for name in VALUE_TEST_FILES:
        spec = importlib.util.spec_from_file_location(f"_registry_{name[:-3]}", HERE / name)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


@functools.cache
def _test_functions() -> dict[str, str]:
    """{test function name: its source} over tests/emulator/*.py."""
    out = {}
    for path in HERE.glob("test_*.py"):
        src = path.read_text()
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out[node.name] = ast.get_source_segment(src, node)
    return out


_load_value_tests()
DOCUMENTED = [f"{PREFIX[m]}.{n}" for m, n, _ in documented_api.documented()]


def _marks(name):
    return [pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else []


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in DOCUMENTED])
def test_documented_name_exists_and_has_a_value_test(name):
    module, attr = name.rsplit(".", 1)
    assert hasattr(MODULES[module], attr), f"{name} is documented ({documented_api.RELEASE}) but not emulated"
    if name in REGISTRY:
        return
    test = EXISTING_VALUE_TESTS.get(attr) if module == "nisa" else None
    assert test is not None, f"{name} has no value test (@covers in {VALUE_TEST_FILES} or EXISTING_VALUE_TESTS)"
    source = _test_functions().get(test)
    assert source is not None, f"{name}: value test {test} not found under tests/emulator/"
    assert attr in source, f"{name}: value test {test} does not exercise {attr}"


def test_documented_list_matches_the_release_counts():
    assert (len(documented_api.LANGUAGE), len(documented_api.ISA)) == (134, 67)
    assert len(set(DOCUMENTED)) == len(DOCUMENTED)


def test_registry_names_only_documented_names():
    assert sorted(set(REGISTRY) - set(DOCUMENTED)) == []
