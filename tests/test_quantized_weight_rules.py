"""Hand-built QuantizedWeights are validated before any work, on every backend (issue 10, item 3).

Before the fix: group_size=0 raised ZeroDivisionError (the division came before the check), "32" a raw TypeError
naming nothing, 32.0 was accepted by reference and NKI while Triton raised a raw TypeError, and an int4 weight of
odd K passed validation (reference: NumPy reshape error, NKI: NkiValidationError, Triton: a silent result).
"""

import dataclasses

import numpy as np
import pytest

from nkilab.kernels import prepare_weight, qmatmul
from nkilab.kernels import triton as triton_backend
from nkilab.reference.quant import quantize_weight

BACKENDS = ("reference", "nki", "triton")
RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 128)).astype(np.float32)
INT8_G32 = quantize_weight(RNG.standard_normal((128, 16)), "int8", 32)
INT4 = quantize_weight(RNG.standard_normal((128, 16)), "int4")
ODD_K = dataclasses.replace(INT4, shape=(127, 16), data=INT4.data[:63])

_GROUP = "qw.group_size: must be a positive int"
BAD = {  # id -> (weight, x, error type, the message's start)
    "group_size 0": (dataclasses.replace(INT8_G32, group_size=0), X, ValueError, _GROUP),
    "group_size -32": (dataclasses.replace(INT8_G32, group_size=-32), X, ValueError, _GROUP),
    "group_size '32'": (dataclasses.replace(INT8_G32, group_size="32"), X, TypeError, _GROUP),
    "group_size 32.0": (dataclasses.replace(INT8_G32, group_size=32.0), X, TypeError, _GROUP),
    "group_size True": (dataclasses.replace(INT8_G32, group_size=True), X, TypeError, _GROUP),
    "group_size 48": (dataclasses.replace(INT8_G32, group_size=48), X, ValueError,
                      "qw.group_size: K=128 must be a multiple"),
    "int4 odd K": (ODD_K, X[:, :127], ValueError, "qw.shape: int4 packs two values per byte along K, so K must be"),
    "shape (128,)": (dataclasses.replace(INT8_G32, shape=(128,)), X, TypeError, "qw.shape: must be a tuple (K, N)"),
    "shape of floats": (dataclasses.replace(INT8_G32, shape=(128.0, 16)), X, TypeError, "qw.shape: must be a tuple"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_hand_built_weight_is_refused_naming_the_field(case, backend):
    qw, x, error, start = case
    with pytest.raises(error) as caught:
        qmatmul(x, qw, backend=backend)
    assert str(caught.value).startswith(start)


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_prepare_weight_refuses_the_same(case):
    qw, _, error, start = case
    with pytest.raises(error, match=f"^{start.split(':')[0]}"):
        prepare_weight(qw, backend="reference")


def test_a_triton_prepared_weight_of_a_bad_source_is_validated_per_call():
    """nkilab.kernels.triton.prepare_weight converts without validating; qmatmul checks its source (it skipped it)."""
    prepared = triton_backend.prepare_weight(ODD_K)
    with pytest.raises(ValueError, match="^qw.shape: int4"):
        qmatmul(X[:, :127], prepared, backend="triton")


def test_quantize_weight_group_size_rules():
    w = RNG.standard_normal((64, 4))
    with pytest.raises(TypeError, match="^group_size: must be a positive int or None, got float 32.0"):
        quantize_weight(w, "int8", 32.0)
    with pytest.raises(ValueError, match="^group_size: must be a positive int or None, got 0"):
        quantize_weight(w, "int8", 0)
    assert quantize_weight(w, "int8", np.int64(32)).scales.shape == (2, 4)
