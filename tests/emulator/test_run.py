"""run / jit / simulate / LNC, the NKI tutorial kernels, torch and in-place inputs, and the trace contract."""

import time

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkilab.harness.emulator import NkiTraceError, NkiValidationError, nisa, nki, nl, run
from nkilab.harness.emulator.examples import tensor_add, tiled_matmul
from nkilab.kernels.nki import _shim

bf16 = ml_dtypes.bfloat16


def test_tutorial_tensor_add():
    a, b = (np.random.default_rng(s).standard_normal((256, 300)).astype(np.float32) for s in (0, 1))
    np.testing.assert_array_equal(nki.simulate(tensor_add)(a, b), a + b)
    np.testing.assert_array_equal(tensor_add(a, b), a + b)  # calling a jit kernel with arrays emulates it


@pytest.mark.parametrize("target", ["trn1", "trn2", "trn3"])
def test_tutorial_matmul_bf16(target, monkeypatch):
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", target)
    rng = np.random.default_rng(2)
    lhs_t = rng.standard_normal((384, 256)).astype(bf16)
    rhs = rng.standard_normal((384, 1024)).astype(bf16)
    out = nki.simulate(tiled_matmul)(lhs_t, rhs)
    ref = lhs_t.astype(np.float64).T @ rhs.astype(np.float64)
    assert out.dtype == bf16
    # fp32 accumulation then one RNE cast to bf16: within one bf16 ulp (2**-8 relative) of the exact product
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2 ** -8, atol=1e-2)


@given(m=st.sampled_from([128, 256]), k=st.integers(1, 3), n=st.sampled_from([512, 1024]))
def test_matmul_tiling_property(m, k, n):
    rng = np.random.default_rng(m + k + n)
    lhs_t = rng.standard_normal((128 * k, m)).astype(np.float32)
    rhs = rng.standard_normal((128 * k, n)).astype(np.float32)
    np.testing.assert_allclose(run(tiled_matmul, lhs_t, rhs).outputs, lhs_t.T @ rhs, rtol=1e-4, atol=1e-4)


def test_inputs_written_in_place_and_torch_roundtrip():
    torch = pytest.importorskip("torch")

    @nki.jit
    def double_in_place(x):
        t = nl.ndarray(x.shape, x.dtype)
        nisa.dma_copy(dst=t, src=x)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=x, src=t)
        return x

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = nki.simulate(double_in_place)(a)
    np.testing.assert_array_equal(a, np.arange(12).reshape(3, 4) * 2)
    np.testing.assert_array_equal(out, a)
    tb = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    out_t = nki.simulate(double_in_place)(tb)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.bfloat16
    assert torch.equal(tb, torch.arange(12, dtype=torch.bfloat16).reshape(3, 4) * 2)
    assert torch.equal(out_t, tb)


def test_lnc2_programs_split_work():
    @nki.jit
    def halves(a):
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        pid, n = nl.program_id(0), nl.num_programs(0)
        rows = a.shape[0] // n
        t = nl.ndarray((rows, a.shape[1]), a.dtype)
        nisa.dma_copy(dst=t, src=a[pid * rows:(pid + 1) * rows, :])
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=float(pid + 1))
        nisa.dma_copy(dst=out[pid * rows:(pid + 1) * rows, :], src=t)
        return out

    a = np.zeros((8, 4), np.float32)
    res = run(halves[2], a, target="trn2")
    np.testing.assert_array_equal(res.outputs, np.repeat([[1.0], [2.0]], 4, axis=0).repeat(4, axis=1))
    assert res.trace.lnc == 2 and {i.program_id for i in res.trace} == {0, 1}
    np.testing.assert_array_equal(nki.simulate(halves[2])(a), res.outputs)
    np.testing.assert_array_equal(run(halves, a).outputs, np.ones((8, 4)))  # LNC 1: one program does all


def test_trace_contract():
    a = np.zeros((256, 1024), bf16)
    b = np.zeros((256, 512), bf16)
    res = run(tiled_matmul, a, b, target="trn2")
    tr = res.trace
    assert (tr.kernel, tr.target, tr.lnc) == ("tiled_matmul", "trn2", 1)
    mix = tr.instruction_mix()
    assert mix["tensor"]["nc_matmul"] == 8 * 2 and mix["dma"]["dma_copy"] == 8 * 2 * 2 + 8
    mm = next(i for i in tr if i.opcode == "nc_matmul")
    assert mm.attrs == {"k": 128, "m": 128, "n": 512, "in_dtype": "bfloat16", "transpose": False, "double_row": False}
    assert mm.flops == 2 * 128 * 128 * 512
    assert [o.name for o in mm.operands] == ["dst", "stationary", "moving"] and mm.operands[0].is_write
    assert mm.operands[0].buffer == "psum" and mm.operands[1].dtype == "bfloat16"
    load = tr.instructions[1]  # second load of the first K tile: rhs[0:128, 0:512]
    assert load.attrs["bytes"] == 128 * 512 * 2 and load.attrs["chunks"] == 128
    assert load.attrs["chunk_bytes"] == 1024 and load.attrs["indirect"] is False and load.attrs["dge"] == "hwdge"
    src = load.reads[0]
    assert (src.buffer, src.p_start, src.p_stop, src.start, src.stop) == ("hbm", 0, 1, 0, 127 * 512 + 512)
    dst = load.writes[0]
    assert (dst.p_start, dst.p_stop, dst.start, dst.stop, dst.nbytes) == (0, 128, 0, 512, 128 * 512 * 2)
    assert mm.reads[1].overlaps(load.writes[0])  # the matmul depends on the load
    copy = next(i for i in tr if i.opcode == "tensor_copy")
    assert copy.engine == "vector" and copy.attrs == {"partitions": 128, "free_elems": 512}
    assert tr.flops == 16 * 2 * 128 * 128 * 512
    assert tr.hbm_bytes == a.nbytes + 8 * b.nbytes + 1024 * 512 * 2  # rhs re-read for each of the 8 M tiles


def test_trace_mode_skips_floats_keeps_indices():
    def kernel(data, idx):
        ix = nl.ndarray((4, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        g = nl.ndarray((4, 8), nl.float32)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[8, 4], [1, 8]], vector_offset=ix, indirect_dim=0))
        out = nl.ndarray((4, 8), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out

    data, idx = np.zeros((100, 8), np.float32), np.array([[10], [12], [11], [13]], np.int32)
    res = run(kernel, data, idx, mode="trace")
    assert res.outputs is None
    gather = res.trace.instructions[1]
    assert gather.attrs["indirect"] and gather.attrs["dge"] == "swdge"
    assert (gather.reads[0].start, gather.reads[0].stop) == (80, 112)  # rows 10..13 from the computed indices
    assert gather.reads[1].storage == res.trace.instructions[0].writes[0].storage  # depends on the index tile

    def unknown_index(data):
        ix = nl.ndarray((4, 1), nl.int32)
        f = nl.ndarray((4, 1), nl.float32)
        nisa.memset(dst=f, value=3.0)
        nisa.tensor_copy(dst=ix, src=f)  # int computed from a float tile: unknown in trace mode
        g = nl.ndarray((4, 8), nl.float32)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[8, 4], [1, 8]], vector_offset=ix, indirect_dim=0))
    res = run(unknown_index, data, mode="trace")
    acc = res.trace.instructions[-1].reads[0]
    assert (acc.start, acc.stop) == (0, 800)  # conservative: the whole indexed tensor


def test_trace_mode_full_size_matmul_is_fast():
    a, b = np.zeros((2048, 1024), bf16), np.zeros((2048, 2048), bf16)
    t0 = time.perf_counter()
    res = run(tiled_matmul, a, b, mode="trace")
    assert len(res.trace) == 8 * 4 * 16 * 3 + 8 * 4 * 2
    assert time.perf_counter() - t0 < 20


def test_device_print_and_jit_forms(capsys):
    @nki.jit()
    def show(a):
        t = nl.load(a)
        nl.device_print("tile:", t)

    show(np.ones((2, 2), np.float32))
    assert "tile:" in capsys.readouterr().out
    with pytest.raises(ValueError, match="mode"):
        run(show, np.ones((2, 2), np.float32), mode="fast")
    with pytest.raises(ValueError, match="target"):
        run(show, np.ones((2, 2), np.float32), target="trn9")


def test_virtual_register_is_not_a_python_int():
    def kernel():
        nl.fori_loop(0, 2, lambda i: i * 128)
    with pytest.raises(NkiTraceError, match="runtime value"):
        run(kernel)


def test_register_load_takes_integer_tensors():
    def kernel(vals):
        reg = nisa.register_alloc()
        ints = nl.ndarray((1, 1), nl.int32)
        nisa.dma_copy(dst=ints, src=vals)
        nisa.register_load(reg, ints)
        out = nl.ndarray((1, 1), nl.int32, buffer=nl.shared_hbm)
        nisa.register_store(out, reg)
        floats = nl.ndarray((1, 1), nl.float32)
        nisa.dma_copy(dst=floats, src=vals)
        with pytest.raises(NkiValidationError, match="register_load: src.*integer"):
            nisa.register_load(reg, floats)  # a register would hold the float's bit pattern
        return out
    assert run(kernel, np.array([[7]], np.int32)).outputs[0, 0] == 7


def test_get_nc_version(monkeypatch):
    versions = {}
    for target in ("inf2", "trn1", "trn2", "trn3"):
        monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", target)
        run(lambda: versions.__setitem__(target, nisa.get_nc_version()))
    assert versions == {"inf2": nisa.nc_version.gen2, "trn1": nisa.nc_version.gen2, "trn2": nisa.nc_version.gen3,
                        "trn3": nisa.nc_version.gen4}


def test_shim_uses_emulator():
    assert _shim.USING_EMULATOR and _shim.nl is nl and _shim.nisa is nisa and _shim.run is run
