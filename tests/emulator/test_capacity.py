"""On-chip capacity by liveness (first access to last use, in program order) and `address=` placement: what fits,
what does not, races between placed tiles, and the error's content."""

import numpy as np
import pytest

from nkilab.harness.emulator import TARGETS, NkiValidationError, nisa, nl, run

SBUF = {name: t.sbuf_bytes for name, t in TARGETS.items()}  # bytes per partition: 192/192/224/256 KiB
BANK = 2048


def _fp32_tile(nbytes: int, buffer=nl.sbuf, **kwargs):
    """A [128, nbytes / 4] float32 tile: `nbytes` bytes on each partition."""
    return nl.ndarray((128, nbytes // 4), nl.float32, buffer=buffer, **kwargs)


def _use(*tiles):
    """One instruction touching every tile (a memset of each: tiles are live at their memsets)."""
    for t in tiles:
        nisa.memset(dst=t, value=1.0)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_simultaneously_live_tiles_over_sbuf_fail(target):
    cap = SBUF[target]

    def kernel():
        a = _fp32_tile(cap // 2 + 512)
        b = _fp32_tile(cap // 2)
        _use(a, b, a)  # a is live from its memset to its last use, across b's

    with pytest.raises(NkiValidationError, match="live SBUF bytes per partition") as err:
        run(kernel, target=target, mode="trace")
    message = str(err.value)
    assert f"{cap + 512} bytes per partition at instruction #1" in message  # the peak and where it happens
    assert message.count("test_capacity.py:") == 2  # both live tiles, with the kernel lines that allocated them
    assert f"{cap // 2 + 512} B/partition" in message.split(";")[0]  # largest first


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_exactly_full_sbuf_fits(target):
    cap = SBUF[target]

    def kernel():
        a, b = _fp32_tile(cap // 2), _fp32_tile(cap // 2)
        _use(a, b, a, b)

    assert len(run(kernel, target=target, mode="trace").trace) == 4


def test_declared_but_never_accessed_costs_nothing():
    cap = SBUF["trn2"]

    def kernel():
        unused = _fp32_tile(cap)  # noqa: F841 - declared, never touched by an instruction
        used = _fp32_tile(cap)
        _use(used)

    run(kernel, target="trn2")


def test_rebinding_a_large_tile_in_a_loop_fits():
    cap = SBUF["trn1"]
    out = np.zeros((4, 128, 16), np.float32)

    def kernel(out):
        for i in range(4):
            t = _fp32_tile(cap * 3 // 5)  # 60 % of SBUF: two of them never fit together
            nisa.memset(dst=t, value=float(i))
            nisa.dma_copy(dst=out[i], src=t[:, 0:16])  # its last use, before the next iteration's tile
        return out

    res = run(kernel, out, target="trn1").outputs
    np.testing.assert_array_equal(res, np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 128, 16)))


def test_a_name_still_bound_does_not_keep_a_dead_tile_live():
    cap = SBUF["trn2"]

    def kernel():
        a = _fp32_tile(cap * 3 // 5)
        _use(a)  # a's last use; the name `a` stays bound below
        b = _fp32_tile(cap * 3 // 5)
        _use(b)
        return a.shape

    run(kernel, target="trn2")


def test_interleaved_live_ranges_over_capacity_fail():
    cap = SBUF["trn2"]

    def kernel():
        a, b = _fp32_tile(cap * 3 // 5), _fp32_tile(cap * 3 // 5)
        _use(a, b, a)

    with pytest.raises(NkiValidationError, match="live SBUF bytes"):
        run(kernel, target="trn2", mode="trace")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_psum_banks_by_liveness(target):
    def kernel(n):
        tiles = [_fp32_tile(BANK, nl.psum) for _ in range(n)]
        _use(*tiles)
        _use(*tiles)  # all n live together

    run(kernel, 8, target=target, mode="trace")
    with pytest.raises(NkiValidationError, match=r"live PSUM banks <= 8 x 2048 B.*9 banks"):
        run(kernel, 9, target=target, mode="trace")


def test_psum_tile_larger_than_psum_fails_at_allocation():
    def kernel():
        _fp32_tile(8 * BANK, nl.psum)  # all 8 banks: fits
        with pytest.raises(NkiValidationError, match="PSUM bytes per partition <= 16384"):
            nl.ndarray((128, 4097), nl.float32, buffer=nl.psum)
        with pytest.raises(NkiValidationError, match="SBUF bytes per partition <= 229376"):
            _fp32_tile(SBUF["trn2"] + 4)

    run(kernel, target="trn2")


def test_psum_tiles_take_whole_banks():
    def kernel():
        tiles = [nl.ndarray((128, 1), nl.float32, buffer=nl.psum) for _ in range(9)]  # 4 bytes, one bank each
        _use(*tiles)
        _use(*tiles)

    with pytest.raises(NkiValidationError, match="9 banks"):
        run(kernel, mode="trace")


def test_tiles_at_one_address_share_bytes():
    def kernel(x):
        a = nl.ndarray((4, 8), nl.float32, buffer=nl.sbuf, address=(0, 1024))
        b = nl.ndarray((4, 8), nl.float32, buffer=nl.sbuf, address=(0, 1024))
        half = nl.ndarray((4, 4), nl.float32, buffer=nl.sbuf, address=(0, 1040))  # b's columns 4..8
        nisa.dma_copy(dst=a, src=x)  # a's last use
        out = nl.ndarray((4, 8), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=b)  # b sees a's bytes
        out2 = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out2, src=half)
        return out, out2

    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    out, out2 = run(kernel, x).outputs
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(out2, x[:, 4:])


def test_placed_tiles_live_together_at_overlapping_addresses_race():
    def kernel():
        a = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, address=(0, 0))
        b = nl.ndarray((64, 64), nl.bfloat16, buffer=nl.sbuf, address=(64, 128))  # shares a's bytes 128..255
        _use(a, b, a)

    with pytest.raises(NkiValidationError, match="address.*never live at the same time") as err:
        run(kernel, mode="trace")
    assert "at address (0, 0)" in str(err.value) and "at address (64, 128)" in str(err.value)


def test_placed_tiles_on_disjoint_partitions_or_bytes_do_not_race():
    def kernel():
        a = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf, address=(0, 0))
        b = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf, address=(64, 0))  # same bytes, other partitions
        c = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, address=(0, 256))  # right after a and b
        _use(a, b, c, a, b, c)

    run(kernel, mode="trace")


def test_placed_and_unplaced_tiles_share_capacity():
    cap = SBUF["trn2"]

    def kernel(extra):
        a = _fp32_tile(cap // 2, address=(0, 0))
        b = _fp32_tile(cap // 2, address=(0, 0))  # a's bytes, after a's last use: no extra cost
        _use(a)
        c = _fp32_tile(cap // 2 + extra)
        _use(b, c, b)

    run(kernel, 0, mode="trace")
    with pytest.raises(NkiValidationError, match="live SBUF bytes"):
        run(kernel, 4, mode="trace")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_psum_ring_through_address(target):
    """8 matmul groups through a ring of 2 placed banks (one live at a time) next to `others` placed banks live all
    along."""
    rng = np.random.default_rng(0)
    lhs_t = rng.standard_normal((128, 8 * 128)).astype(np.float32)
    rhs = rng.standard_normal((128, 512)).astype(np.float32)

    def kernel(lhs_t, rhs, others):
        held = [_fp32_tile(BANK, nl.psum, address=(0, (2 + j) * BANK)) for j in range(others)]
        _use(*held)
        r = nl.ndarray(rhs.shape, rhs.dtype)
        nisa.dma_copy(dst=r, src=rhs)
        out = nl.ndarray((8, 128, 512), nl.float32, buffer=nl.shared_hbm)
        for g in range(8):
            s = nl.ndarray((128, 128), lhs_t.dtype)
            nisa.dma_copy(dst=s, src=lhs_t[:, g * 128:(g + 1) * 128])
            acc = nl.ndarray((128, 512), nl.float32, buffer=nl.psum, address=(0, (g % 2) * BANK))
            nisa.nc_matmul(dst=acc, stationary=s, moving=r)  # the first write overwrites the bank's old group
            res = nl.ndarray((128, 512), nl.float32)
            nisa.tensor_copy(dst=res, src=acc)
            nisa.dma_copy(dst=out[g], src=res)
        _use(*held)
        return out

    out = run(kernel, lhs_t, rhs, 6, target=target).outputs
    expected = np.stack([lhs_t[:, g * 128:(g + 1) * 128].T @ rhs for g in range(8)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)

    def over(lhs_t, rhs):  # 6 placed banks + 1 live ring bank + 2 unplaced banks live together: 9
        extra = _fp32_tile(2 * BANK, nl.psum)
        _use(extra)
        kernel(lhs_t, rhs, 6)
        _use(extra)

    with pytest.raises(NkiValidationError, match="live PSUM banks"):
        run(over, lhs_t, rhs, target=target, mode="trace")


def test_placed_tiles_sharing_bytes_conflict_in_the_trace():
    def kernel():
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.psum, address=(0, 0))
        _use(a)
        b = nl.ndarray((128, 256), nl.bfloat16, buffer=nl.psum, address=(0, 0))
        _use(b)
        c = nl.ndarray((128, 512), nl.float32, buffer=nl.psum, address=(0, BANK))
        _use(c)

    wa, wb, wc = (inst.writes[0] for inst in run(kernel, mode="trace").trace)
    assert wa.overlaps(wb) and not wa.overlaps(wc)  # the model orders b's write after a's (same bytes)
    assert (wb.p_start, wb.p_stop, wb.start, wb.stop) == (0, 128, 0, 512)  # physical bytes of the partitions


@pytest.mark.parametrize("address, match", [
    ((0, 1024), "PSUM bank boundary"),
    ((0, 7 * BANK), "bytes within the 16384-byte PSUM partition"),
    ((1, 0), r"partitions within \[0, 128\)"),
])
def test_psum_address_rules(address, match):
    with pytest.raises(NkiValidationError, match=match):
        run(lambda: nl.ndarray((128, 1024), nl.float32, buffer=nl.psum, address=address))


def test_address_rules():
    with pytest.raises(NkiValidationError, match="aligned to the 4-byte dtype"):
        run(lambda: nl.ndarray((8, 8), nl.float32, address=(0, 2)))
    with pytest.raises(NkiValidationError, match="HBM tensors take no address"):
        run(lambda: nl.ndarray((8, 8), nl.float32, buffer=nl.hbm, address=(0, 0)))
    with pytest.raises(TypeError, match="address"):
        run(lambda: nl.ndarray((8, 8), nl.float32, address=8))


def test_placed_tile_start_partition_is_absolute():
    def kernel(start):
        t = nl.ndarray((32, 8), nl.float32, address=(start, 0))
        nisa.memset(dst=t, value=0.0)

    run(kernel, 32, mode="trace")  # 32 partitions may start at a quadrant
    with pytest.raises(NkiValidationError, match="start partition in"):
        run(kernel, 16, mode="trace")
