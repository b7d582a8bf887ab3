"""NKI silu_mul matches the float64 reference within the naive working-precision error, on every target; its
layout (the intermediate dim on partitions at decode) and per-token NaN isolation."""

import numpy as np
import pytest
from hypothesis import given
from strategies import SiluMulProblem, silu_mul_problems

from nkilab.harness.checks import check_output
from nkilab.harness.emulator import run
from nkilab.harness.perf.model import model_trace
from nkilab.kernels import _registry, nki
from nkilab.kernels.nki import launch_silu_mul
from nkilab.kernels.nki import silu_mul as silu_mul_module
from nkilab.kernels.nki.silu_mul import layout, silu_mul_kernel

TARGETS = ("inf2", "trn1", "trn2")
OP = _registry.get("silu_mul")


def _check(problem: SiluMulProblem, target: str) -> None:
    (x,), kwargs = problem.inputs()
    rows = x.reshape(-1, x.shape[-1])
    out = launch_silu_mul.silu_mul(rows, target=target)
    assert out.shape == (rows.shape[0], problem.inter) and out.dtype == x.dtype
    result = check_output(OP, out, (rows,), kwargs)
    assert result.passed, str(result)


@pytest.mark.parametrize("target", TARGETS)
@given(problem=silu_mul_problems(inters=(384, 768, 1536)))
def test_matches_reference(problem, target):
    _check(problem, target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_pinned_shapes(target, dtype):
    # a decode batch of Llama-3.1-70B at TP 8 (I = 3584 cut into pieces), three token tiles of an odd I
    _check(SiluMulProblem((8,), 3584, 4.0, dtype, seed=7), target)
    _check(SiluMulProblem((300,), 131, 1.0, dtype, seed=8), target)


def test_decode_puts_the_intermediate_dim_on_partitions():
    assert layout(8, 14336) == (32, 448)  # 8 tokens x 32 pieces = 256 rows: two tiles of 128 partitions
    assert layout(1, 14336) == (112, 128)  # one token: 112 pieces of 128 columns (256-byte runs at bf16)
    assert layout(2048, 14336) == (4, 3584)  # prefill: tokens fill the partitions, pieces bound the SBUF
    assert layout(5, 67) == (1, 67)  # a prime I too short to cut
    kernel, args, kwargs = launch_silu_mul.traceable(dict(rows=8, intermediate=14336, dtype="bfloat16"), "trn2")
    trace = run(kernel, *args, target="trn2", mode="trace", **kwargs).trace
    assert trace.instruction_mix()["scalar"] == {"activation": 2}
    acts = [i for i in trace.instructions if i.engine == "scalar"]
    assert all(i.operands[0].shape == (128, 448) and i.attrs["func"] == "silu" for i in acts)


@pytest.mark.parametrize("target", TARGETS)
def test_a_non_finite_value_stays_in_its_column_and_token(target):
    x = np.random.default_rng(0).standard_normal((6, 2 * 512)).astype(np.float32)
    x[1, 3], x[4, 512 + 100], x[5, 7] = np.nan, np.inf, -np.inf
    out = launch_silu_mul.silu_mul(x, target=target)
    bad = np.zeros(out.shape, bool)
    bad[1, 3] = bad[4, 100] = bad[5, 7] = True
    assert not np.isfinite(out[bad]).any() and np.isfinite(out[~bad]).all()


def test_unsupported():
    assert "float64" in launch_silu_mul.unsupported(dtype="float64", intermediate=64)
    assert "empty problem" in launch_silu_mul.unsupported(dtype="float32", intermediate=64, empty=True)
    assert launch_silu_mul.unsupported(dtype="bfloat16", intermediate=18944) is None  # Qwen2.5-7B
    assert "SBUF" in launch_silu_mul.unsupported(dtype="float32", intermediate=20011)  # a prime past the budget


def test_kernel_entry_takes_one_argument():
    out = run(silu_mul_kernel, np.array([[0.0, 2.0]], np.float32), target="trn2").outputs
    np.testing.assert_array_equal(out, [[0.0]])


@pytest.mark.parametrize("target", TARGETS)
def test_pieces_beat_rows_on_partitions_at_decode(target, monkeypatch):
    """The decode layout is modeled faster than one token per partition (RMSNorm's layout)."""
    problem = dict(rows=8, intermediate=14336, dtype="bfloat16")
    pieces = model_trace(nki.trace("silu_mul", problem, target), target).latency_s
    monkeypatch.setattr(silu_mul_module, "layout", lambda tokens, inter: (1, inter))
    rows = model_trace(nki.trace("silu_mul", problem, target), target).latency_s
    assert pieces < rows / 3


def test_lnc2_splits_the_tiles_between_the_two_cores():
    x = np.random.default_rng(6).standard_normal((300, 2 * 768)).astype(np.float32)
    one = run(silu_mul_kernel, x, target="trn2").outputs
    np.testing.assert_array_equal(run(silu_mul_kernel, x, target="trn2", lnc=2).outputs, one)
    kernel, args, kwargs = launch_silu_mul.traceable(dict(rows=2048, intermediate=14336, dtype="bfloat16"), "trn2")
    lat = [model_trace(run(kernel, *args, target="trn2", mode="trace", lnc=n, **kwargs).trace, "trn2").latency_s
           for n in (1, 2)]
    assert lat[1] < 0.6 * lat[0]
