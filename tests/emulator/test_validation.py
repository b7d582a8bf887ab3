"""Every validation rule: a kernel that breaks it raises NkiValidationError naming op and operand on the targets
where the rule applies, and the legal side of the boundary passes."""

import ml_dtypes
import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

ALL_TARGETS = tuple(TARGETS)
GEN2 = ("inf2", "trn1")


def _run(body, target):
    """Run `body()` inside a kernel (no inputs)."""
    run(lambda: body(), target=target)


def _raises(body, target, match):
    with pytest.raises(NkiValidationError, match=match) as err:
        _run(body, target)
    return err.value


def _tile(shape, dtype=nl.float32, buffer=nl.sbuf, value=0.0):
    t = nl.ndarray(shape, dtype, buffer=buffer)
    nisa.memset(dst=t, value=value if dtype in (nl.float32, nl.bfloat16) else int(value))
    return t


# ---- partitions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_partition_limit(target):
    _run(lambda: nl.ndarray((128, 2), nl.float32), target)
    err = _raises(lambda: nl.ndarray((129, 2), nl.float32), target, "partition dim <= 128")
    assert (err.operand, err.value) == ("shape", 129)


@pytest.mark.parametrize("target", ALL_TARGETS)
@pytest.mark.parametrize("start, count, ok", [(0, 128, True), (0, 65, True), (64, 64, True), (32, 33, False),
                                              (96, 32, True), (16, 16, False), (64, 33, True), (1, 1, False),
                                              (1, 127, False), (32, 64, False)])
def test_start_partition_rule(start, count, ok, target):
    def body():
        a = _tile((128, 4))
        b = _tile((128, 4))
        nisa.tensor_tensor(dst=a[start:start + count], data1=a[start:start + count], data2=b[start:start + count],
                           op=nl.add)
    if ok:
        _run(body, target)
    else:
        _raises(body, target, "start partition")


def test_dma_may_start_at_any_partition():
    def kernel(a):
        t = nl.ndarray((128, 4), nl.float32)
        nisa.dma_copy(dst=t[5:9], src=a)
        out = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t[5:9])
        return out

    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(run(kernel, a).outputs, a)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_engine_operand_free_size_and_access_pattern(target):
    def copy(shape, key=None, dtype=nl.uint8):
        def body():
            t = nl.ndarray(shape, dtype)
            view = t if key is None else t[key]
            nisa.memset(dst=view, value=0)
        return body
    _run(copy((2, 64 * 1024)), target)
    assert _raises(copy((2, 64 * 1024 + 2)), target, "at most 65536 elements").operand == "dst"
    _run(copy((2, 2, 32767), (slice(None), slice(None), slice(0, 1))), target)  # step 32767: the int16 maximum
    _raises(copy((2, 2, 32768), (slice(None), slice(None), slice(0, 1))), target, "step in")
    _run(copy((2, 2, 32768), (slice(None), 0, slice(None))), target)  # a size-1 dim's step does not matter


# ---- matmul ----------------------------------------------------------------------------------------
def _matmul(k=128, m=128, n=512, s_dtype=nl.bfloat16, m_dtype=nl.bfloat16, dst_dtype=nl.float32, s_buf=nl.sbuf,
            dst_buf=nl.psum, dst_cols=None, dst_slice=None, **kw):
    def body():
        s = _tile((k, m), s_dtype, s_buf)
        mv = _tile((k, n), m_dtype)
        d = nl.ndarray((m, dst_cols or n), dst_dtype, buffer=dst_buf)
        nisa.nc_matmul(dst=d if dst_slice is None else d[:, dst_slice], stationary=s, moving=mv, **kw)
    return body


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_matmul_shape_limits(target):
    _run(_matmul(), target)
    _raises(_matmul(m=129), target, "partition dim <= 128")  # dst [M, N] cannot even be allocated
    _run(_matmul(m=64, tile_size=(128, 64), tile_position=(0, 64)), target)
    assert _raises(_matmul(m=65, tile_size=(128, 64), tile_position=(0, 0)), target, "free size \\(M\\) <= 64"
                   ).operand == "stationary"
    _run(_matmul(k=64, tile_size=(64, 128), tile_position=(64, 0)), target)
    assert _raises(_matmul(k=65, tile_size=(64, 128), tile_position=(0, 0)), target, "\\(K\\) <= 64").operand == \
        "stationary"
    _raises(_matmul(k=64, tile_size=(64, 128), tile_position=(32, 0)), target, "multiple of its size")
    _raises(_matmul(k=64, tile_size=(64, 128)), target, "both set")
    quarter = _matmul(k=32, tile_size=(32, 128), tile_position=(96, 0))
    if TARGETS[target].gen < 3:
        _raises(quarter, target, "row tile of \\(128, 64\\)")
    else:
        _run(quarter, target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_matmul_moving_free_limit(target):
    if TARGETS[target].gen < 4:
        assert _raises(_matmul(n=513), target, "free size \\(N\\) <= 512").operand == "moving"
    else:
        _run(_matmul(n=4096), target)
        _run(_matmul(n=8192, dst_dtype=nl.bfloat16), target)
        # the gen4 N limits equal the whole PSUM, so the allocation of a larger dst already fails
        _raises(_matmul(n=4097), target, "PSUM bytes per partition <= 16384")
        _raises(_matmul(n=8193, dst_dtype=nl.bfloat16), target, "PSUM bytes per partition <= 16384")


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_matmul_bank_crossing(target):
    _run(_matmul(n=512, dst_cols=1024, dst_slice=slice(512, 1024)), target)
    crossing = _matmul(n=512, dst_cols=1024, dst_slice=slice(256, 768))
    if TARGETS[target].gen < 4:
        assert _raises(crossing, target, "one 2048-byte PSUM bank").operand == "dst"
    else:
        _run(crossing, target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_matmul_dtype_and_buffer_rules(target):
    assert _raises(_matmul(s_dtype=nl.int8), target, "no int8").operand == "stationary"
    assert _raises(_matmul(s_dtype=nl.float32), target, "float32 pairs only").operand == "stationary/moving"
    assert _raises(_matmul(s_buf=nl.psum, n=128, m=64, dst_cols=128), target, "buffer").operand == "stationary"
    assert _raises(_matmul(dst_buf=nl.sbuf), target, "buffer").operand == "dst"
    e4m3fn = _matmul(s_dtype=nl.float8_e4m3fn, m_dtype=nl.float8_e4m3fn)
    bf16_dst = _matmul(dst_dtype=nl.bfloat16)
    if TARGETS[target].gen < 4:
        assert _raises(bf16_dst, target, "PSUM dtype").operand == "dst"
        _raises(e4m3fn, target, "dtype in")
    else:
        _run(bf16_dst, target)
        _run(e4m3fn, target)
        _raises(_matmul(s_dtype=nl.float8_e4m3fn, m_dtype=nl.float8_e4m3), target, "no mixing")


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_matmul_moving_must_be_sbuf(target):
    def body(buf):
        def inner():
            s, mv = _tile((64, 32), nl.bfloat16), _tile((64, 16), nl.bfloat16, buf)
            nisa.nc_matmul(dst=nl.ndarray((32, 16), nl.float32, buffer=nl.psum), stationary=s, moving=mv)
        return inner
    _run(body(nl.sbuf), target)
    assert _raises(body(nl.psum), target, "buffer in \\('sbuf',\\)").operand == "moving"


# ---- buffers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_rejects_psum(target):
    def from_psum(out):
        p = _tile((4, 4), buffer=nl.psum)
        nisa.dma_copy(dst=out, src=p)
    with pytest.raises(NkiValidationError, match="dma_copy: src.*PSUM"):
        run(from_psum, np.zeros((4, 4), np.float32), target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_rejects_psum_destination(target):
    def to_psum(a):
        nisa.dma_copy(dst=nl.ndarray((4, 4), nl.float32, buffer=nl.psum), src=a)

    def to_sbuf(a):
        nisa.dma_copy(dst=nl.ndarray((4, 4), nl.float32, buffer=nl.sbuf), src=a)
    a = np.zeros((4, 4), np.float32)
    run(to_sbuf, a, target=target)
    with pytest.raises(NkiValidationError, match="dma_copy: dst.*PSUM"):
        run(to_psum, a, target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_gpsimd_ops_reject_psum(target):
    def iota_psum():
        nisa.iota(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), pattern=[[1, 8]])

    def select_psum():
        src = _tile((4, 8))
        nisa.affine_select(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), pattern=[[1, 8]], channel_multiplier=0,
                           on_true_tile=src, on_false_value=0.0)

    def copy_psum():
        nisa.tensor_copy(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), src=_tile((4, 8)),
                         engine=nisa.engine.gpsimd)
    def memset_psum():
        nisa.memset(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), value=0.0, engine=nisa.engine.gpsimd)

    def power_psum():  # nl.power runs on GpSimd
        nisa.tensor_tensor(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), data1=_tile((4, 8)),
                           data2=_tile((4, 8)), op=nl.power)

    def partition_reduce_psum():
        nisa.tensor_partition_reduce(dst=nl.ndarray((1, 8), nl.float32, buffer=nl.psum), op=nl.add,
                                     data=_tile((4, 8)))
    for body in (iota_psum, select_psum, copy_psum, memset_psum, power_psum, partition_reduce_psum):
        assert _raises(body, target, "GpSimd Engine cannot access PSUM").operand == "dst"
    # the same ops with SBUF operands, and VectorE memset / tensor_copy into PSUM, are legal
    _run(lambda: nisa.memset(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), value=0.0), target)
    _run(lambda: nisa.tensor_tensor(dst=_tile((4, 8)), data1=_tile((4, 8)), data2=_tile((4, 8)), op=nl.power),
         target)
    _run(lambda: nisa.tensor_copy(dst=nl.ndarray((4, 8), nl.float32, buffer=nl.psum), src=_tile((4, 8))), target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_tensor_tensor_inputs_not_both_psum(target):
    def body(a_buf, b_buf):
        def inner():
            a, b = _tile((4, 8), buffer=a_buf), _tile((4, 8), buffer=b_buf)
            nisa.tensor_tensor(dst=_tile((4, 8)), data1=a, data2=b, op=nl.add)
        return inner
    _run(body(nl.psum, nl.sbuf), target)
    assert _raises(body(nl.psum, nl.psum), target, "not both in PSUM").operand == "data1/data2"


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_scalar_tensor_tensor_inputs_not_both_psum(target):
    def body(a_buf, b_buf):
        def inner():
            a, b = _tile((4, 8), buffer=a_buf), _tile((4, 8), buffer=b_buf)
            nisa.scalar_tensor_tensor(dst=_tile((4, 8)), data=a, op0=nl.multiply, operand0=2.0, op1=nl.add,
                                      operand1=b)
        return inner
    _run(body(nl.sbuf, nl.psum), target)
    assert _raises(body(nl.psum, nl.psum), target, "not both in PSUM").operand == "data/operand1"


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_scalar_operand_tiles_are_float32(target):
    def ts(dtype, op=nl.multiply, data_dtype=nl.float32):
        def inner():
            nisa.tensor_scalar(dst=_tile((4, 8), data_dtype), data=_tile((4, 8), data_dtype), op0=op,
                               operand0=_tile((4, 1), dtype))
        return inner
    _run(ts(nl.float32), target)
    _run(ts(nl.int32, nl.bitwise_and, nl.int32), target)  # bitvec operands are bit patterns, any integer tile
    assert _raises(ts(nl.bfloat16), target, "float32 \\(P, 1\\) tile").operand == "operand0"
    scaled = lambda dtype: lambda: nisa.activation(dst=_tile((4, 8)), op=nl.copy, data=_tile((4, 8)),  # noqa: E731
                                                   scale=_tile((4, 1), dtype))
    _run(scaled(nl.float32), target)
    assert _raises(scaled(nl.bfloat16), target, "float32").operand == "scale"


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_compute_engines_reject_hbm(target):
    def kernel(a):
        nisa.activation(dst=_tile((4, 4)), op=nl.exp, data=a)
    with pytest.raises(NkiValidationError, match="compute engines cannot access HBM"):
        run(kernel, np.zeros((4, 4), np.float32), target=target)


# ---- values and dtypes ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_memset_value_matches_dtype(target):
    _run(lambda: nisa.memset(dst=nl.ndarray((4, 4), nl.int32), value=3), target)
    _run(lambda: nisa.memset(dst=nl.ndarray((4, 4), nl.float32), value=3), target)
    assert _raises(lambda: nisa.memset(dst=nl.ndarray((4, 4), nl.int32), value=1.5), target, "value").operand == "value"
    _raises(lambda: nisa.memset(dst=nl.ndarray((4, 4), nl.uint8), value=256), target, "in \\[0, 255\\]")


# ---- generation-only features -------------------------------------------------------------------------
@pytest.mark.parametrize("target", ALL_TARGETS)
def test_range_select_needs_gen3(target):
    def body():
        x, b = _tile((4, 8)), _tile((4, 1))
        nisa.range_select(dst=_tile((4, 8)), on_true_tile=x, comp_op0=nl.greater_equal, comp_op1=nl.less, bound0=b,
                          bound1=b)
    if target in GEN2:
        _raises(body, target, "range_select needs NeuronCore-v3")
    else:
        _run(body, target)

        def far(start):
            def inner():
                b = _tile((4, 1))
                nisa.range_select(dst=_tile((4, 8)), on_true_tile=_tile((4, 8)), comp_op0=nl.greater_equal,
                                  comp_op1=nl.less, bound0=b, bound1=b, range_start=start)
            return inner
        _run(far(2**24 - 8), target)  # last index 2^24 - 1: still exact in float32
        assert _raises(far(2**24 - 7), target, "within").operand == "range_start"


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_exponential_needs_gen4(target):
    def body():
        nisa.exponential(dst=_tile((4, 8)), src=_tile((4, 8)))
    if target == "trn3":
        _run(body, target)
    else:
        _raises(body, target, "exponential needs NeuronCore-v4")


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_activation_scalar_bias_needs_gen3(target):
    _run(lambda: nisa.activation(dst=_tile((4, 8)), op=nl.exp, data=_tile((4, 8)), bias=_tile((4, 1))), target)
    scalar_bias = lambda: nisa.activation(dst=_tile((4, 8)), op=nl.exp, data=_tile((4, 8)), bias=0.5)  # noqa: E731
    if target in GEN2:
        assert _raises(scalar_bias, target, "scalar bias needs v3").operand == "bias"
    else:
        _run(scalar_bias, target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_scalar_engine_tensor_copy_needs_gen3(target):
    body = lambda: nisa.tensor_copy(dst=_tile((4, 8)), src=_tile((4, 8)), engine=nisa.engine.scalar)  # noqa: E731
    if target in GEN2:
        _raises(body, target, "ScalarE tensor_copy needs NeuronCore-v3")
    else:
        _run(body, target)


def _gather(scalar: bool):
    def kernel(data, idx):
        ix = nl.ndarray((2, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        t = nl.ndarray((2, 4), nl.float32)
        if scalar:
            src = data.ap(pattern=[[4, 2], [1, 4]], scalar_offset=ix[0:1, :], indirect_dim=0)
        else:
            src = data.ap(pattern=[[4, 2], [1, 4]], vector_offset=ix, indirect_dim=0)
        nisa.dma_copy(dst=t, src=src)
    return kernel


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_indirect_dma_generations(target):
    data, idx = np.zeros((8, 4), np.float32), np.array([[1], [2]], np.int32)
    run(_gather(scalar=True), data, idx, target=target)  # scalar_offset DMA: every generation
    if target in GEN2:
        with pytest.raises(NkiValidationError, match="vector_offset DMA needs NeuronCore-v3"):
            run(_gather(scalar=False), data, idx, target=target)
    else:
        run(_gather(scalar=False), data, idx, target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_dma_generation_features(target):
    def copy(**kw):
        def kernel(a):
            nisa.dma_copy(dst=nl.ndarray((4, 4), nl.float32), src=a, **kw)
        return kernel
    a = np.zeros((4, 4), np.float32)
    hwdge, prio = copy(dge_mode=nisa.dge_mode.hwdge), copy(priority=1)
    run(copy(dge_mode=nisa.dge_mode.swdge), a, target=target)
    if TARGETS[target].gen < 3:
        with pytest.raises(NkiValidationError, match="hwdge needs NeuronCore-v3"):
            run(hwdge, a, target=target)
    else:
        run(hwdge, a, target=target)
        with pytest.raises(NkiValidationError, match="same dtype as src with hwdge"):
            run(copy(dge_mode=nisa.dge_mode.hwdge), a.astype(ml_dtypes.bfloat16), target=target)
    if TARGETS[target].gen < 4:
        with pytest.raises(NkiValidationError, match="priority needs NeuronCore-v4"):
            run(prio, a, target=target)
    else:
        run(prio, a, target=target)


@pytest.mark.parametrize("target", ("trn2", "trn3"))
def test_indirect_dma_needs_a_dge(target):
    data, idx = np.zeros((8, 4), np.float32), np.array([[1], [2]], np.int32)

    def gather(scalar, dge_mode):
        def kernel(data, idx):
            ix = nl.ndarray((2, 1), nl.int32)
            nisa.dma_copy(dst=ix, src=idx, dge_mode=dge_mode)  # static addresses: any mode
            key = {"scalar_offset": ix[0:1, :]} if scalar else {"vector_offset": ix}
            nisa.dma_copy(dst=nl.ndarray((2, 4), nl.float32),
                          src=data.ap(pattern=[[4, 2], [1, 4]], indirect_dim=0, **key), dge_mode=dge_mode)
        return kernel
    for scalar, mode in ((True, nisa.dge_mode.swdge), (True, nisa.dge_mode.hwdge), (False, nisa.dge_mode.swdge)):
        run(gather(scalar, mode), data, idx, target=target)
    for scalar in (True, False):
        with pytest.raises(NkiValidationError, match="dma_copy: dge_mode.*runtime"):
            run(gather(scalar, nisa.dge_mode.none), data, idx, target=target)
    with pytest.raises(NkiValidationError, match="dma_copy: dge_mode.*vector_offset"):
        run(gather(False, nisa.dge_mode.hwdge), data, idx, target=target)


# ---- bounds ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ("trn2", "trn3"))
def test_indirect_out_of_bounds(target):
    data = np.zeros((8, 4), np.float32)
    run(_gather(scalar=False), data, np.array([[7], [0]], np.int32), target=target)
    with pytest.raises(NkiValidationError, match="vector_offset rows within 8 rows"):
        run(_gather(scalar=False), data, np.array([[8], [0]], np.int32), target=target)
    run(_gather(scalar=True), data, np.array([[6], [0]], np.int32), target=target)  # rows 6, 7
    with pytest.raises(NkiValidationError, match="scalar_offset access"):
        run(_gather(scalar=True), data, np.array([[7], [0]], np.int32), target=target)


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_lnc2_only_on_trn2_trn3(target):
    def kernel():
        return nl.program_id(0)
    if target in GEN2:
        with pytest.raises(NkiValidationError, match="LNC 2"):
            run(kernel, target=target, lnc=2)
    else:
        assert run(kernel, target=target, lnc=2).outputs == 0


def test_divide_is_not_a_hardware_operator():
    _raises(lambda: nl.divide(_tile((4, 4)), _tile((4, 4))), "trn2", "multiply by nl.reciprocal")
    with pytest.raises(TypeError, match="not an ALU operator"):
        _run(lambda: nisa.tensor_tensor(dst=_tile((4, 4)), data1=_tile((4, 4)), data2=_tile((4, 4)), op=nl.divide),
             "trn2")


def test_language_matmul_needs_transpose_x():
    def body():
        nl.matmul(_tile((4, 4)), _tile((4, 4)))
    _raises(body, "trn2", "transpose_x")


def test_error_names_op_operand_limit():
    err = _raises(_matmul(n=513), "trn1", "nc_matmul")
    assert (err.op, err.operand, err.value, err.target) == ("nc_matmul", "moving", 513, "trn1")
    assert "512" in err.limit and "nc_matmul" in str(err) and "trn1" in str(err)


def test_fp8_storage_dtypes():
    t = ml_dtypes.float8_e4m3
    assert float(ml_dtypes.finfo(t).max) == 240.0 and float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max) == 448.0
    assert TARGETS["trn2"].fp8_e4m3_max == 240.0 and TARGETS["trn3"].fp8_e4m3_max == 448.0
