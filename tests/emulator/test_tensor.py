"""NkiTensor: indexing rules, views, .ap addressing, NaN fill of new allocations (capacity: test_capacity.py)."""

import numpy as np
import pytest

from nkilab.harness.emulator import NkiValidationError, nisa, nl, run


def _in_kernel(fn, target="trn2"):
    """Run fn() inside a kernel and return what it returns (Python values only)."""
    box = {}

    def kernel():
        box["v"] = fn()

    run(kernel, target=target)
    return box["v"]


@pytest.mark.parametrize("key, shape", [
    ((0, 0, 10), (1, 1)),
    ((slice(None), 0), (64, 64)),
    ((slice(None), 0, 10), (64, 1)),
    ((0, Ellipsis, slice(None)), (1, 64, 64)),
    ((slice(0, 32), slice(0, 64, 2)), (32, 32, 64)),
    ((nl.ds(8, 16),), (16, 64, 64)),
    ((-1, -1), (1, 64)),
], ids=["all-ints", "free-int", "two-free-ints", "ellipsis", "step", "ds", "negative"])
def test_on_chip_indexing_keeps_two_dims(key, shape):
    assert _in_kernel(lambda: nl.ndarray((64, 64, 64), nl.float32)[key].shape) == shape


def test_hbm_int_index_drops_dims():
    def kernel(a):
        assert a[3].shape == (5,)
        assert a[1:3, 2].shape == (2,)
        assert a[2, 4].shape == (1,)
    run(kernel, np.zeros((4, 5), np.float32))


@pytest.mark.parametrize("key", [(slice(0, 65),), (64,), (slice(10, 5),), (slice(0, 4, -1),)],
                         ids=["stop-past-end", "int-past-end", "empty", "negative-step"])
def test_out_of_range_index_raises(key):
    with pytest.raises(NkiValidationError, match="getitem"):
        _in_kernel(lambda: nl.ndarray((64, 8), nl.float32)[key])


def test_views_share_storage():
    def kernel(a):
        t = nl.ndarray((4, 6), nl.float32)
        nisa.dma_copy(dst=t, src=a)
        v = t.reshape((4, 2, 3))[:, 1, :]  # elements 3..5 of each partition
        out = nl.ndarray((4, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=v)
        return out
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(run(kernel, a).outputs, a[:, 3:6])


def test_view_methods():
    def check():
        t = nl.ndarray((8, 4, 6), nl.bfloat16)
        assert t.permute((0, 2, 1)).shape == (8, 6, 4)
        assert t[:, :, 0:1].broadcast(2, 5).strides[2] == 0
        assert t.expand_dim(1).shape == (8, 1, 4, 6)
        assert t.expand_dim(1).squeeze_dim(1).shape == (8, 4, 6)
        assert t.slice(1, 1, 3).shape == (8, 2, 6)
        assert t.select(2, 5).shape == (8, 4)
        assert t.get_pattern() == [[24, 8], [6, 4], [1, 6]]
        assert t.flatten_dims(1, 2).shape == (8, 24) and t.reshape_dim(2, (2, 3)).shape == (8, 4, 2, 3)
        with pytest.raises(NkiValidationError, match="flatten_dims"):
            t.flatten_dims(0, 1)
        assert t.is_contiguous() and not t.permute((0, 2, 1)).is_contiguous()
        with pytest.raises(NkiValidationError, match="permute"):
            t.permute((1, 0, 2))
        with pytest.raises(NkiValidationError, match="reshape"):
            t.reshape((4, 48))  # on-chip partition dim must stay
        with pytest.raises(NkiValidationError, match="reshape"):
            t.permute((0, 2, 1)).reshape((8, 24))
        return True
    assert _in_kernel(check)


def test_ap_addresses_storage_not_view():
    def kernel(a):
        # .ap ignores the view it is called on: pattern over the whole [6, 8] storage
        v = a[2:4, :].ap(pattern=[[8, 3], [2, 4]], offset=1)
        t = nl.ndarray((3, 4), nl.float32)
        nisa.dma_copy(dst=t, src=v)
        out = nl.ndarray((3, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t)
        return out
    a = np.arange(48, dtype=np.float32).reshape(6, 8)
    expected = a.reshape(-1)[1 + np.add.outer(np.arange(3) * 8, np.arange(4) * 2)]
    np.testing.assert_array_equal(run(kernel, a).outputs, expected)


def test_indirect_offsets_step_by_the_indexed_tensors_shape():
    """scalar_offset moves start by value * prod(shape[indirect_dim + 1:]) and vector_offset picks rows of size
    prod(shape[1:]) — of the tensor `.ap()` is called on (here a reshaped view), never the pattern's strides."""
    def kernel(a, idx):
        ix = nl.ndarray((2, 1), nl.int32)
        nisa.dma_copy(dst=ix, src=idx)
        reg = nisa.register_alloc(3)
        s = nl.ndarray((2, 6), nl.float32)  # a[0, 3:5, :] through indirect_dim=1 (step 6 elements)
        nisa.dma_copy(dst=s, src=a.ap(pattern=[[6, 2], [1, 6]], offset=0, scalar_offset=reg, indirect_dim=1))
        flat = a.reshape((20, 6))  # rows of 6 elements: vector_offset row r starts at element 6 * r
        v = nl.ndarray((2, 3), nl.float32)
        nisa.dma_copy(dst=v, src=flat.ap(pattern=[[1, 2], [2, 3]], offset=1, vector_offset=ix, indirect_dim=0))
        out_s = nl.ndarray((2, 6), nl.float32, buffer=nl.shared_hbm)
        out_v = nl.ndarray((2, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out_s, src=s)
        nisa.dma_copy(dst=out_v, src=v)
        return out_s, out_v
    a = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    idx = np.array([[7], [13]], np.int32)
    out_s, out_v = run(kernel, a, idx).outputs
    np.testing.assert_array_equal(out_s, a[0, 3:5, :])
    flat = a.reshape(20, 6)
    np.testing.assert_array_equal(out_v, flat[[7, 13]][:, 1::2])


@pytest.mark.parametrize("kind, index_dtype, index_buffer, ok", [
    ("vector", nl.int32, nl.sbuf, True), ("vector", nl.uint32, nl.sbuf, True), ("vector", nl.float32, nl.sbuf, False),
    ("vector", nl.int32, nl.hbm, False), ("scalar", nl.int32, nl.sbuf, True), ("scalar", nl.float32, nl.sbuf, False),
    ("scalar", nl.int32, nl.hbm, False)])
def test_indirect_offset_operands(kind, index_dtype, index_buffer, ok):
    def check():
        data = nl.ndarray((8, 4), nl.float32, buffer=nl.hbm)
        idx = nl.ndarray((2, 1) if kind == "vector" else (1, 1), index_dtype, buffer=index_buffer)
        key = "vector_offset" if kind == "vector" else "scalar_offset"
        return data.ap(pattern=[[4, 2], [1, 4]], indirect_dim=0, **{key: idx}).is_indirect()
    if ok:
        assert _in_kernel(check)
    else:
        with pytest.raises(NkiValidationError, match=f"ap: {kind}_offset"):
            _in_kernel(check)


def test_ap_out_of_bounds_raises_when_an_instruction_uses_it():
    run(lambda a: a.ap(pattern=[[8, 6], [1, 9]]), np.zeros((6, 8), np.float32))  # a view alone moves nothing

    def kernel(a):
        nisa.dma_copy(dst=nl.ndarray((6, 9), nl.float32), src=a.ap(pattern=[[8, 6], [1, 9]])[0:6, 0:9])
    with pytest.raises(NkiValidationError, match="dma_copy: src violates 'access within the 48-element storage"):
        run(kernel, np.zeros((6, 8), np.float32))
    with pytest.raises(NkiValidationError, match="partition stride"):
        _in_kernel(lambda: nl.ndarray((8, 16), nl.float32).ap(pattern=[[32, 4], [1, 16]]))


def test_new_allocations_hold_nan():
    def kernel():
        t = nl.ndarray((2, 3), nl.float32)
        out = nl.ndarray((2, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t)  # read before any write
        return out
    assert np.isnan(run(kernel).outputs).all()


def test_partition_dim_limit_on_allocation():
    _in_kernel(lambda: nl.ndarray((128, 4), nl.float32))
    with pytest.raises(NkiValidationError, match="partition dim <= 128"):
        _in_kernel(lambda: nl.ndarray((129, 4), nl.float32))
    _in_kernel(lambda: nl.ndarray((4096, 4), nl.float32, buffer=nl.hbm))  # HBM has no partitions


def test_tensor_calls_need_a_kernel():
    with pytest.raises(RuntimeError, match="simulate"):
        nl.ndarray((2, 2), nl.float32)
