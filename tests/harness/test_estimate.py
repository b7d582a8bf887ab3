"""`nkilab.harness.estimate`: the public entry point on emulator kernels; `import nkilab.harness` stays free of torch,
triton and matplotlib."""

import subprocess
import sys

import numpy as np
import pytest

from nkilab.harness import Estimate, estimate
from nkilab.harness.emulator import nisa, nl


def _copy_kernel(x):
    """out[P, F] = x[P, F] through SBUF: two DMAs, nothing else."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    tile = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x)
    nisa.dma_copy(dst=out, src=tile)
    return out


def _matmul_kernel(lhs_t, rhs):
    """out[M, N] = lhs_t[K, M].T @ rhs[K, N] for one tile."""
    a = nl.ndarray(lhs_t.shape, dtype=lhs_t.dtype, buffer=nl.sbuf)
    b = nl.ndarray(rhs.shape, dtype=rhs.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=lhs_t)
    nisa.dma_copy(dst=b, src=rhs)
    acc = nl.ndarray((lhs_t.shape[1], rhs.shape[1]), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=acc, stationary=a, moving=b)
    res = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res, src=acc)
    out = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=res)
    return out


def test_estimate_of_a_copy_is_a_dma_chain():
    est = estimate(_copy_kernel, np.zeros((128, 2048), np.float32), target="trn2")
    assert isinstance(est, Estimate) and est.kind == "modeled"
    assert est.hbm_bytes == 2 * 128 * 2048 * 4
    assert est.flops == 0 and est.mfu == 0.0
    assert est.engine_busy_s["tensor"] == 0.0 and est.engine_busy_s["dma"] > 0
    assert est.latency_s >= est.roofline_s > 0
    assert est.launch_overhead_s > 0  # reported apart, not inside latency_s
    assert est.instruction_mix == {"dma": {"dma_copy": 2}} and est.instructions == 2


def test_estimate_of_one_matmul_counts_its_flops_on_every_target():
    lhs_t = np.zeros((128, 128), np.float32)
    rhs = np.zeros((128, 512), np.float32)
    for target in ("inf2", "trn1", "trn2", "trn3"):
        est = estimate(_matmul_kernel, lhs_t, rhs, target=target)
        assert est.flops == 2 * 128 * 128 * 512
        assert est.engine_busy_s["tensor"] > 0 and est.target == target
        assert est.latency_s >= est.roofline_s


def test_estimate_refuses_non_neuron_targets():
    with pytest.raises(ValueError, match="target"):
        estimate(_copy_kernel, np.zeros((128, 16), np.float32), target="h100")


def test_importing_the_harness_loads_no_optional_heavy_dependency():
    heavy = ("torch", "triton", "matplotlib", "pynvml")
    code = f"import sys, nkilab.harness; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
