"""The dtype table: names <-> NumPy/ml_dtypes <-> torch, itemsize, peak families, bit-exact torch conversion, and
that the table itself never imports torch."""

import re
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nkilab.reference import dtypes
from nkilab.reference.dtypes import (
    FLOAT_DTYPE_NAMES,
    FP8_DTYPE_NAMES,
    NKI_DTYPE_NAMES,
    TABLE,
    dtype_name,
    finite_max,
    itemsize,
    numpy_dtype,
    peak_family,
    to_numpy,
    to_torch,
    torch_dtype,
)

STORAGE_NAMES = tuple(n for n in TABLE if n != "tfloat32")  # tfloat32 names float32 storage
TORCH_NAMES = tuple(n for n, r in TABLE.items() if r.torch is not None)
BIT_CAST = tuple(n for n, r in TABLE.items() if r.bits_via is not None)


@pytest.mark.parametrize("name", STORAGE_NAMES)
def test_names_and_storage_round_trip(name):
    dt = numpy_dtype(name)
    assert dtype_name(dt) == name and dtype_name(np.zeros(2, dt)) == name and dtype_name(dt.type) == name
    assert itemsize(name) == dt.itemsize == np.zeros(1, dt).nbytes


def test_known_storage_and_sizes():
    assert numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16) and itemsize("bfloat16") == 2
    assert numpy_dtype("float8_e4m3") == np.dtype(ml_dtypes.float8_e4m3) and itemsize("float8_e4m3fn") == 1
    assert numpy_dtype("tfloat32") == np.dtype(np.float32) and dtype_name(np.float32) == "float32"
    assert numpy_dtype(np.complex64) == np.dtype(np.complex64)  # NumPy dtypes outside the table pass through
    assert dtype_name(np.zeros(1, np.complex64)) == "complex64"


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_torch_names_match(name):
    tdt = getattr(torch, TABLE[name].torch)
    assert dtype_name(tdt) == name and dtype_name(torch.zeros(1, dtype=tdt)) == name
    assert numpy_dtype(tdt) == numpy_dtype(name) and torch_dtype(name) is tdt and torch_dtype(numpy_dtype(name)) is tdt


def test_peak_families():
    assert {n: peak_family(n) for n in ("float32", "bfloat16", "float16", "tfloat32", "int8", "uint8", "int32")} == {
        "float32": "fp32", "bfloat16": "bf16", "float16": "bf16", "tfloat32": "bf16", "int8": "int8",
        "uint8": "int8", "int32": "bf16"}
    assert {peak_family(n) for n in FP8_DTYPE_NAMES} == {"fp8"}
    with pytest.raises(ValueError, match="float64 has no peak-table family"):
        peak_family("float64")


def test_name_tuples_agree_with_the_rows():
    assert all(TABLE[n].kind == "float" and TABLE[n].family != "fp8" for n in FLOAT_DTYPE_NAMES)
    assert set(FP8_DTYPE_NAMES) == {"float8_e4m3", "float8_e4m3fn", "float8_e5m2"}
    assert "float64" not in NKI_DTYPE_NAMES and "int64" not in NKI_DTYPE_NAMES and "bfloat16" in NKI_DTYPE_NAMES


def test_finite_max_is_the_format_max():
    assert finite_max("float8_e4m3") == 240.0 and finite_max("float8_e4m3fn") == 448.0
    assert finite_max("float8_e5m2") == 57344.0 and finite_max("float16") == 65504.0
    with pytest.raises(TypeError, match="not a float dtype"):
        finite_max("int8")


@pytest.mark.parametrize("bad, match", [("float", "'float' is not a dtype name"), (None, "None is not a dtype"),
                                        (object(), "is not a dtype and has none"),
                                        ("complex64", "'complex64' is not a dtype name")])
def test_bad_dtypes_are_type_errors_naming_dtype(bad, match):
    with pytest.raises(TypeError, match="^dtype: .*" + re.escape(match)):
        numpy_dtype(bad)
    with pytest.raises(TypeError, match="dtype"):
        itemsize(bad)


def test_no_torch_equivalent():
    with pytest.raises(TypeError, match="'float8_e4m3' has no torch equivalent"):
        torch_dtype("float8_e4m3")
    with pytest.raises(TypeError, match="'float8_e4m3' has no torch equivalent"):
        to_torch(np.zeros(2, ml_dtypes.float8_e4m3))


@pytest.mark.parametrize("name", BIT_CAST)
def test_bit_exact_torch_round_trip_of_every_bit_pattern(name):
    row = TABLE[name]
    bits = np.arange(2 ** (8 * row.itemsize), dtype=np.uint64).astype(f"u{row.itemsize}")
    a = bits.view(row.numpy)
    t = to_torch(a)
    assert t.dtype is torch_dtype(name)
    back = to_numpy(t)
    assert back.dtype == row.numpy and np.array_equal(back.view(bits.dtype), bits)  # NaN payloads included


@given(values=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40),
       name=st.sampled_from(("float32", "float16", "bfloat16")))
def test_torch_conversion_shares_memory_and_values(values, name):
    a = np.array(values, np.float32).astype(numpy_dtype(name))
    t = to_torch(a)
    assert np.array_equal(to_numpy(t).astype(np.float64), a.astype(np.float64))
    t[0] = 0  # a writable C-contiguous array is shared, not copied
    assert float(a[0]) == 0.0


def test_read_only_arrays_are_copied():
    a = np.ones(3, np.float32)
    a.flags.writeable = False
    t = to_torch(a)
    t[0] = 5
    assert a[0] == 1.0


def test_the_table_never_imports_torch():
    code = ("import sys, numpy as np\nfrom nkilab.reference import dtypes as d\n"
            "d.numpy_dtype('bfloat16'); d.dtype_name(np.zeros(1)); d.peak_family('float8_e4m3')\n"
            "d.to_numpy(np.zeros(2))\n"
            "try:\n    d.to_torch(np.zeros(2))\nexcept RuntimeError as e:\n    print(e)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "to_torch: torch is not imported (the dtype table never imports it; import torch first)"
    assert out[1] == "False"


def test_lookup_rows_are_frozen():
    with pytest.raises(AttributeError):
        dtypes.lookup("float32").name = "float64"
