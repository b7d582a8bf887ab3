"""DMA instructions (dma_copy, indirect gather/scatter, OOB modes, dma_compute, dma_transpose) value by value against
NumPy, on every target where they exist."""

import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run
from emulator_cases import ALL_TARGETS, bf16, GEN3_PLUS, new_like, uniform_f32


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_copy_casts_round_to_nearest_even(target, run_tiles):
    x = np.array([[1.00390625, 1.01171875, 2.5, -2.5, 3.5, 1e10, -1e10, np.nan]], np.float32)

    def body(t):
        b = new_like(t, nl.bfloat16)
        i = new_like(t, nl.int32)
        u = new_like(t, nl.uint8)
        for d in (b, i, u):
            nisa.dma_copy(dst=d, src=t)
        return b, i, u
    b, i, u = run_tiles(body, x, target=target)
    np.testing.assert_array_equal(b.view(np.uint16), x.astype(bf16).view(np.uint16))
    np.testing.assert_array_equal(i, [[1, 1, 2, -2, 4, 2**31 - 1, -2**31, 0]])
    np.testing.assert_array_equal(u, [[1, 1, 2, 0, 4, 255, 0, 0]])


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_indirect_gather_and_scatter(target):
    data = uniform_f32(10, 6)
    idx = np.array([[7], [0], [3], [3]], np.int32)

    def kernel(data, idx, dst_hbm):
        ix = nl.ndarray((4, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        g = nl.ndarray((4, 6), nl.float32)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[6, 4], [1, 6]], vector_offset=ix, indirect_dim=0))
        nisa.dma_copy(dst=dst_hbm.ap(pattern=[[6, 4], [1, 6]], vector_offset=ix, indirect_dim=0), src=g)
        out = nl.ndarray((4, 6), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    dst = np.zeros((10, 6), np.float32)
    out = run(kernel, data, idx, dst, target=target).outputs
    np.testing.assert_array_equal(out, data[idx[:, 0]])
    expected = np.zeros_like(dst)
    expected[idx[:, 0]] = data[idx[:, 0]]
    np.testing.assert_array_equal(dst, expected)  # input written in place


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_indirect_oob_skip_keeps_rows(target):
    data = uniform_f32(5, 3)
    idx = np.array([[1], [9], [4]], np.int32)

    def kernel(data, idx):
        ix = nl.ndarray((3, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        g = nl.ndarray((3, 3), nl.float32)
        nisa.memset(dst=g, value=-1.0)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[3, 3], [1, 3]], vector_offset=ix, indirect_dim=0),
                      oob_mode=nisa.oob_mode.skip)
        out = nl.ndarray((3, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    out = run(kernel, data, idx, target=target).outputs
    np.testing.assert_array_equal(out, np.stack([data[1], -np.ones(3, np.float32), data[4]]))


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_scalar_offset_oob_skip_moves_nothing(target):
    data = uniform_f32(4, 3, seed=33)

    def kernel(data):
        bad = nisa.register_alloc(4)  # row 4 of a 4-row tensor
        g = nl.ndarray((1, 3), nl.float32)
        nisa.memset(dst=g, value=-1.0)
        nisa.dma_copy(dst=g, src=data.ap(pattern=[[3, 1], [1, 3]], offset=0, scalar_offset=bad, indirect_dim=0),
                      oob_mode=nisa.oob_mode.skip)  # gather skipped: g keeps -1
        nisa.dma_copy(dst=data.ap(pattern=[[3, 1], [1, 3]], offset=0, scalar_offset=bad, indirect_dim=0), src=g,
                      oob_mode=nisa.oob_mode.skip)  # scatter skipped: data untouched
        out = nl.ndarray((1, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=g)
        return out
    before = data.copy()
    np.testing.assert_array_equal(run(kernel, data, target=target).outputs, -np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_fori_loop_register_as_scalar_offset(target):
    data = uniform_f32(6, 4)

    def kernel(data):
        out = nl.ndarray((6, 4), nl.float32, buffer=nl.shared_hbm)

        def body(i):
            row = nl.ndarray((1, 4), nl.float32)
            nisa.dma_copy(dst=row, src=data.ap(pattern=[[4, 1], [1, 4]], offset=0, scalar_offset=i, indirect_dim=0))
            nisa.activation(dst=row, op=nl.copy, data=row, scale=2.0)
            nisa.dma_copy(dst=out.ap(pattern=[[4, 1], [1, 4]], offset=0, scalar_offset=i, indirect_dim=0), src=row)
        nl.fori_loop(0, 6, body)
        return out
    np.testing.assert_array_equal(run(kernel, data, target=target).outputs, data * 2)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_compute_adds(target, run_tiles):
    a, b, c = uniform_f32(4, 8, seed=1), uniform_f32(4, 8, seed=2), uniform_f32(4, 8, seed=3)

    def body(x, y, z):
        out = new_like(x, nl.bfloat16)
        nisa.dma_compute(dst=out, srcs=[x, y, z], reduce_op=nl.add)
        return (out,)
    (out,) = run_tiles(body, a, b, c, target=target)
    np.testing.assert_array_equal(out, (a + b + c).astype(bf16))


@pytest.mark.parametrize("target", GEN3_PLUS)
def test_dma_compute_read_modify_write(target):
    table = uniform_f32(6, 4, seed=31)
    upd = uniform_f32(3, 4, seed=32)
    idx = np.array([[4], [0], [2]], np.int32)

    def operands(table, upd, idx):
        """(table rows idx as a vector_offset view, upd in SBUF)."""
        ix = nl.ndarray((3, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        u = nl.ndarray((3, 4), nl.float32)
        nisa.dma_copy(dst=u, src=upd)
        return table.ap(pattern=[[4, 3], [1, 4]], vector_offset=ix, indirect_dim=0), u

    def kernel(table, upd, idx):
        rows, u = operands(table, upd, idx)
        nisa.dma_compute(dst=rows, srcs=[rows, u], reduce_op=nl.add)  # scatter RMW: table[idx] += u
        acc = nl.ndarray((3, 4), nl.float32)
        nisa.memset(dst=acc, value=1.0)
        nisa.dma_compute(dst=acc, srcs=[acc, rows], reduce_op=nl.add)  # gather RMW: acc += table[idx]
        out = nl.ndarray((3, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=acc)
        return out
    expected = table.copy()
    expected[idx[:, 0]] += upd
    out = run(kernel, table, upd, idx, target=target).outputs
    np.testing.assert_array_equal(table, expected)  # HBM input updated in place
    np.testing.assert_array_equal(out, 1.0 + expected[idx[:, 0]])

    def three_srcs(table, upd, idx):
        rows, u = operands(table, upd, idx)
        nisa.dma_compute(dst=rows, srcs=[rows, u, u], reduce_op=nl.add)
    with pytest.raises(NkiValidationError, match="exactly 2 sources"):
        run(three_srcs, table, upd, idx, target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_transpose(target):
    a = uniform_f32(16, 64, seed=51).astype(bf16)

    def kernel(a):
        t = nl.ndarray((64, 16), nl.bfloat16)
        nisa.dma_transpose(dst=t, src=a)
        out = nl.ndarray((64, 16), nl.bfloat16, buffer=nl.shared_hbm)
        nl.store(out, t)
        return out
    if TARGETS[target].gen < 3:
        with pytest.raises(NkiValidationError, match="dma_transpose needs NeuronCore-v3"):
            run(kernel, a, target=target)
        return
    np.testing.assert_array_equal(run(kernel, a, target=target).outputs, a.T)

    def hw(shape, dtype=nl.bfloat16, dge=nisa.dge_mode.hwdge):
        def kernel(x):
            nisa.dma_transpose(dst=nl.ndarray(shape[::-1], dtype), src=x, dge_mode=dge)
        return kernel, np.zeros(shape, np.float32).astype(nl.bfloat16 if dtype == nl.bfloat16 else dtype)
    run(*hw((16, 128)), target=target)
    for shape, dtype, dge, match in (((16, 128), nl.float32, nisa.dge_mode.hwdge, "2-byte"),
                                     ((8, 128), nl.bfloat16, nisa.dge_mode.hwdge, "shape \\[16"),
                                     ((16, 100), nl.bfloat16, nisa.dge_mode.hwdge, "shape \\[16"),
                                     ((16, 128), nl.bfloat16, nisa.dge_mode.swdge, "direct transpose")):
        with pytest.raises(NkiValidationError, match=f"dma_transpose: .*{match}"):
            run(*hw(shape, dtype, dge), target=target)
