"""The performance model on hand-made traces: costs, overlap, dependencies, and the roofline floor."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nkilab.harness.chips import NEURON_TARGETS, get_target
from nkilab.harness.emulator.trace import Access, Operand, Trace
from nkilab.harness.perf import model_trace
from nkilab.harness.perf.cost import instruction_cost
from nkilab.harness.perf.schedule import schedule
from nkilab.reference.dtypes import itemsize

# hand-made traces: one helper per instruction kind, footprints explicit
_storage_ids = itertools.count(1)


def new_storage() -> int:
    """A fresh allocation id."""
    return next(_storage_ids)


def tile(storage: int, buffer: str, shape: tuple[int, int], dtype: str, *, is_write: bool, name: str,
         p_start: int = 0, start: int = 0) -> Operand:
    """An on-chip [P, F] operand at partitions [p_start, p_start+P), free elements [start, start+F)."""
    p, f = shape
    access = Access(storage, buffer, p_start, p_start + p, start, start + f, p * f * itemsize(dtype))
    return Operand(name, shape, dtype, buffer, access, is_write)


def hbm(storage: int, shape: tuple[int, ...], dtype: str, *, is_write: bool, name: str, offset: int = 0) -> Operand:
    """An HBM operand covering flat elements [offset, offset + prod(shape))."""
    n = 1
    for s in shape:
        n *= s
    access = Access(storage, "hbm", 0, 1, offset, offset + n, n * itemsize(dtype))
    return Operand(name, shape, dtype, "hbm", access, is_write)


def dma(trace: Trace, dst: Operand, src: Operand, *, chunks: int, program_id: int = 0):
    """A dma_copy moving src -> dst in `chunks` contiguous runs."""
    nbytes = src.access.nbytes
    return trace.append("dma", "dma_copy", [dst, src], program_id=program_id,
                        attrs={"bytes": nbytes, "chunks": chunks, "chunk_bytes": nbytes / chunks,
                               "indirect": False, "dge": "none", "queue": 0})


def matmul(trace: Trace, dst: Operand, stationary: Operand, moving: Operand, *, program_id: int = 0):
    """nc_matmul: stationary [K, M], moving [K, N] -> dst [M, N] fp32 PSUM."""
    k, m = stationary.shape
    _, n = moving.shape
    return trace.append("tensor", "nc_matmul", [dst, stationary, moving], flops=2 * k * m * n,
                        program_id=program_id,
                        attrs={"k": k, "m": m, "n": n, "in_dtype": stationary.dtype, "transpose": False})


def elementwise(trace: Trace, engine: str, dst: Operand, *srcs: Operand, opcode: str = "tensor_tensor",
                program_id: int = 0):
    """A Vector/Scalar/GpSimd op writing dst from srcs, one FLOP per output element."""
    p, f = dst.shape
    return trace.append(engine, opcode, [dst, *srcs], flops=p * f, program_id=program_id,
                        attrs={"partitions": p, "free_elems": f})


TRN2 = get_target("trn2")
CORE = TRN2  # the Neuron row is also its NeuronCore's rate table


def _matmul_trace(count: int, n: int, dtype: str = "bfloat16") -> Trace:
    """`count` independent matmuls [128,128] x [128,n] from pre-loaded SBUF tiles into distinct PSUM tiles."""
    trace = Trace("matmuls", "trn2")
    lhs, rhs = new_storage(), new_storage()
    for _ in range(count):
        matmul(trace, tile(new_storage(), "psum", (128, n), "float32", is_write=True, name="dst"),
               tile(lhs, "sbuf", (128, 128), dtype, is_write=False, name="stationary"),
               tile(rhs, "sbuf", (128, n), dtype, is_write=False, name="moving"))
    return trace


def _load_trace(count: int, rows: int, row_bytes: int) -> Trace:
    """`count` HBM -> SBUF loads of [rows, row_bytes/4] fp32, each row a contiguous run."""
    trace = Trace("loads", "trn2")
    src = new_storage()
    f = row_bytes // 4
    for i in range(count):
        dma(trace, tile(new_storage(), "sbuf", (rows, f), "float32", is_write=True, name="dst"),
            hbm(src, (rows, f), "float32", is_write=False, name="src", offset=i * rows * f), chunks=rows)
    return trace


def test_pure_matmul_trace_runs_at_tensor_engine_peak():
    est = model_trace(_matmul_trace(200, 512), TRN2)
    assert est.latency_s == pytest.approx(200 * 512 / CORE.tensor_hz, rel=1e-9)
    assert est.mfu == pytest.approx(1.0, rel=1e-6)  # K=M=128, N=512 fills the array every cycle
    assert est.bottleneck == "tensor"
    assert est.hbm_bytes == 0


def test_matmul_cost_floor_and_fp32_factor():
    small = model_trace(_matmul_trace(10, 32), TRN2)
    assert small.latency_s == pytest.approx(10 * 64 / CORE.tensor_hz)  # max(N, 64)
    fp32 = model_trace(_matmul_trace(10, 512, "float32"), TRN2)
    assert fp32.latency_s == pytest.approx(4 * 10 * 512 / CORE.tensor_hz)  # fp32 at quarter rate
    assert fp32.mfu == pytest.approx(1.0, rel=1e-6)  # against the fp32 peak


def test_pure_dma_trace_is_bandwidth_bound():
    # 64 loads of 128 rows x 8 KiB: large runs, so HBM bandwidth dominates the per-run overheads
    est = model_trace(_load_trace(64, 128, 8192), TRN2)
    floor = est.hbm_bytes / CORE.core_hbm_bw
    assert est.bottleneck == "dma"
    assert floor <= est.latency_s <= 1.15 * floor + CORE.dma_latency_s
    assert est.mbu > 0.85


def test_small_transfers_are_slower_per_byte():
    big = model_trace(_load_trace(16, 128, 4096), TRN2)
    small = model_trace(_load_trace(16 * 32, 128, 128), TRN2)  # same bytes in 128-B runs
    assert small.hbm_bytes == big.hbm_bytes
    assert small.latency_s > 3 * big.latency_s


def test_independent_engines_overlap():
    trace = Trace("overlap", "trn2")
    a, b = new_storage(), new_storage()
    elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                tile(a, "sbuf", (128, 2048), "float32", is_write=False, name="src"))
    elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                tile(b, "sbuf", (128, 2048), "float32", is_write=False, name="src"))
    timed = schedule(trace, CORE)
    vec, act = (c.busy_s for c in timed.costs)
    assert timed.makespan_s == pytest.approx(max(vec, act))
    assert timed.start_s == [0.0, 0.0]


def test_dependency_chain_serializes():
    trace = Trace("chain", "trn2")
    x = new_storage()
    elementwise(trace, "vector", tile(x, "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=False, name="src"))
    elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                tile(x, "sbuf", (128, 2048), "float32", is_write=False, name="src"))
    timed = schedule(trace, CORE)
    vec, act = (c.busy_s for c in timed.costs)
    assert timed.makespan_s == pytest.approx(vec + act)
    assert timed.start_s[1] == pytest.approx(vec)


def test_disjoint_footprints_do_not_conflict_but_overlapping_ones_do():
    def two_ops(second_start: int) -> float:
        trace = Trace("footprint", "trn2")
        x = new_storage()
        elementwise(trace, "vector", tile(x, "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 512), "float32", is_write=False, name="src"))
        elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                    tile(x, "sbuf", (128, 512), "float32", is_write=False, name="src", start=second_start))
        return schedule(trace, CORE).start_s[1]

    assert two_ops(512) == 0.0  # reads the columns next to the ones written: independent
    assert two_ops(256) > 0.0   # half overlap: waits


def test_write_after_read_waits_for_the_reader():
    trace = Trace("war", "trn2")
    x = new_storage()
    elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 4096), "float32", is_write=True, name="dst"),
                tile(x, "sbuf", (128, 4096), "float32", is_write=False, name="src"))
    elementwise(trace, "scalar", tile(x, "sbuf", (128, 64), "float32", is_write=True, name="dst"),
                tile(new_storage(), "sbuf", (128, 64), "float32", is_write=False, name="src"))
    timed = schedule(trace, CORE)
    assert timed.start_s[1] == pytest.approx(timed.done_s[0])


def test_same_engine_runs_in_program_order():
    trace = Trace("in-order", "trn2")
    for _ in range(3):
        elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 512), "float32", is_write=False, name="src"))
    timed = schedule(trace, CORE)
    assert timed.makespan_s == pytest.approx(sum(c.busy_s for c in timed.costs))


def test_two_program_ids_run_on_two_cores():
    trace = Trace("lnc2", "trn2", lnc=2)
    for pid in (0, 1):
        elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=False, name="src"),
                    program_id=pid)
    timed = schedule(trace, CORE)
    assert timed.makespan_s == pytest.approx(timed.costs[0].busy_s)
    assert model_trace(trace, TRN2).lnc == 2


def test_dma_result_waits_for_its_latency():
    trace = Trace("dma-then-compute", "trn2")
    x = new_storage()
    dma(trace, tile(x, "sbuf", (128, 512), "float32", is_write=True, name="dst"),
        hbm(new_storage(), (128, 512), "float32", is_write=False, name="src"), chunks=128)
    elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                tile(x, "sbuf", (128, 512), "float32", is_write=False, name="src"))
    timed = schedule(trace, CORE)
    assert timed.start_s[1] == pytest.approx(timed.costs[0].busy_s + CORE.dma_latency_s)


def test_vector_fast_mode_for_bf16_in_sbuf():
    def cost(dtype):
        trace = Trace("one", "trn2")
        inst = elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 4096), dtype, is_write=True, name="d"),
                           tile(new_storage(), "sbuf", (128, 4096), dtype, is_write=False, name="s"))
        return instruction_cost(inst, CORE).busy_s

    assert cost("bfloat16") < cost("float32")


def test_gpu_target_is_refused():
    with pytest.raises(ValueError, match="target"):
        model_trace(_matmul_trace(1, 512), get_target("h100"))
    with pytest.raises(ValueError, match="target"):
        get_target("tpu")


_ENGINES_ST = st.sampled_from(["tensor", "vector", "scalar", "gpsimd", "dma"])


@st.composite
def random_traces(draw):
    """Random mixes of loads, matmuls and elementwise ops over a few shared allocations."""
    trace = Trace("random", "trn2", lnc=draw(st.sampled_from([1, 2])))
    sb = [new_storage() for _ in range(3)]
    src = new_storage()
    for _ in range(draw(st.integers(1, 40))):
        engine = draw(_ENGINES_ST)
        pid = draw(st.integers(0, trace.lnc - 1))
        f = draw(st.sampled_from([1, 16, 128, 512]))
        dtype = draw(st.sampled_from(["bfloat16", "float32", "float8_e4m3"]))
        a, b = draw(st.sampled_from(sb)), draw(st.sampled_from(sb))
        if engine == "dma":
            rows = draw(st.integers(1, 128))
            dma(trace, tile(a, "sbuf", (rows, f), "float32", is_write=True, name="dst"),
                hbm(src, (rows, f), "float32", is_write=False, name="src"), chunks=draw(st.integers(1, rows)),
                program_id=pid)
        elif engine == "tensor":
            matmul(trace, tile(new_storage(), "psum", (128, f), "float32", is_write=True, name="dst"),
                   tile(a, "sbuf", (128, 128), dtype, is_write=False, name="stationary"),
                   tile(b, "sbuf", (128, f), dtype, is_write=False, name="moving"), program_id=pid)
        else:
            elementwise(trace, engine, tile(a, "sbuf", (128, f), dtype, is_write=True, name="dst"),
                        tile(b, "sbuf", (128, f), dtype, is_write=False, name="src"), program_id=pid)
    return trace


@given(trace=random_traces(), target=st.sampled_from(NEURON_TARGETS))
def test_model_never_beats_the_roofline(trace, target):
    est = model_trace(trace, target)
    assert est.latency_s >= est.roofline_s * (1 - 1e-9)
    assert 0.0 <= est.mfu <= 1.0 + 1e-9
    assert 0.0 <= est.mbu <= 1.0 + 1e-9
    for engine, busy in est.engine_busy_s.items():
        assert busy <= est.latency_s * (1 + 1e-9), engine
