"""The performance model on hand-made traces: compute-engine costs, dependencies and semaphores, list scheduling,
launch cost, and the roofline floor. DMA mechanisms: test_perf_dma.py; buffers: test_perf_buffers.py."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from perf_traces import dma, elementwise, hbm, matmul, new_storage, tile

from nkilab.harness.chips import NEURON_TARGETS, get_target
from nkilab.harness.emulator.trace import Trace
from nkilab.harness.perf import model_trace
from nkilab.harness.perf.cost import instruction_cost
from nkilab.harness.perf.schedule import schedule

TRN1, TRN2, TRN3 = (get_target(n) for n in ("trn1", "trn2", "trn3"))
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


def _op(trace, engine, dst, src, *, f=512, dtype="float32", opcode="tensor_tensor", dst_buffer="sbuf"):
    """An elementwise op on [128, f] tiles: dst storage <- src storage."""
    return elementwise(trace, engine, tile(dst, dst_buffer, (128, f), dtype, is_write=True, name="dst"),
                       tile(src, "sbuf", (128, f), dtype, is_write=False, name="src"), opcode=opcode)


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


def test_matmuls_accumulating_into_one_psum_tile_pipeline_without_commit_waits():
    trace = Trace("accumulate", "trn2")
    acc, lhs, rhs = new_storage(), new_storage(), new_storage()
    for _ in range(8):
        matmul(trace, tile(acc, "psum", (128, 512), "float32", is_write=True, name="dst"),
               tile(lhs, "sbuf", (128, 128), "bfloat16", is_write=False, name="stationary"),
               tile(rhs, "sbuf", (128, 512), "bfloat16", is_write=False, name="moving"))
    assert schedule(trace, CORE).makespan_s == pytest.approx(8 * 512 / CORE.tensor_hz)


def test_dependent_one_element_scalar_chain_runs_at_the_documented_initiation_interval():
    """NKI performance guide: back-to-back dependent 1-element ScalarE instructions start ~189 ns (264 ScalarE
    cycles on NC-v2) apart; independent ones are bound by the ~100-cycle static overhead."""
    def interval(dependent: bool) -> float:
        trace = Trace("chain", "trn1")
        x = new_storage()
        for _ in range(50):
            src, dst = (x, x) if dependent else (new_storage(), new_storage())
            elementwise(trace, "scalar", tile(dst, "sbuf", (128, 1), "float32", is_write=True, name="dst"),
                        tile(src, "sbuf", (128, 1), "float32", is_write=False, name="data"), opcode="activation")
        timed = schedule(trace, TRN1)
        return (timed.start_s[-1] - timed.start_s[0]) / 49

    assert interval(dependent=True) == pytest.approx(189e-9, rel=0.01)
    assert interval(dependent=True) * TRN1.scalar_hz == pytest.approx(264)
    assert interval(dependent=False) * TRN1.scalar_hz == pytest.approx(TRN1.engine_overhead_cycles, rel=1e-3)


def test_large_independent_vector_ops_hide_their_overhead_and_dependent_ones_pay_it():
    trace = Trace("vector", "trn1")
    for _ in range(4):
        _op(trace, "vector", new_storage(), new_storage(), f=2048)
    timed = schedule(trace, TRN1)
    work = 2048 / TRN1.vector_hz  # one input: ~N cycles [A2]; only the first, issued from idle, pays the overhead
    assert timed.makespan_s == pytest.approx(4 * work + TRN1.engine_overhead_cycles / TRN1.vector_hz)
    chain = Trace("chain", "trn1")
    x = new_storage()
    for _ in range(4):
        _op(chain, "vector", x, x, f=2048)
    step = (2048 + TRN1.engine_overhead_cycles + TRN1.engine_commit_cycles) / TRN1.vector_hz
    assert schedule(chain, TRN1).makespan_s == pytest.approx(work + TRN1.engine_overhead_cycles / TRN1.vector_hz
                                                             + 3 * step)


def test_dependent_cross_engine_chain_pays_the_semaphore():
    def chain(engines) -> float:
        trace = Trace("chain", "trn2")
        x = new_storage()
        for engine in engines:
            _op(trace, engine, x, x, f=64)
        return schedule(trace, TRN2).makespan_s

    same = chain(["vector"] * 2)
    cross = chain(["vector", "scalar"])
    work_v = (64 / CORE.vector_lane_rate + CORE.engine_overhead_cycles) / CORE.vector_hz  # first: from idle
    commit_v = CORE.engine_commit_cycles / CORE.vector_hz
    second_s = (64 + CORE.engine_overhead_cycles) / CORE.scalar_hz
    assert cross == pytest.approx(work_v + commit_v + CORE.semaphore_cycles / CORE.scalar_hz + second_s)
    assert cross > same


def test_dma_consumer_waits_for_the_transfer_its_latencies_and_the_completion_semaphore():
    trace = Trace("dma-then-compute", "trn2")
    x = new_storage()
    dma(trace, tile(x, "sbuf", (128, 1024), "float32", is_write=True, name="dst"),
        hbm(new_storage(), (128, 1024), "float32", is_write=False, name="src"), chunks=128)
    _op(trace, "vector", new_storage(), x, f=1024)
    timed = schedule(trace, CORE)
    packet = max(CORE.dma_packet_s, 8 * 4096 / CORE.dma_engine_bw)
    hbm_s = 128 * 4096 / CORE.sustained_hbm_bw  # 16 engines at 23 B/ns outrun the core's sustained HBM share
    assert hbm_s > packet
    assert timed.done_s[0] == pytest.approx(CORE.dma_start_latency_s + hbm_s)
    assert timed.start_s[1] == pytest.approx(timed.done_s[0] + CORE.dma_completion_s)
    assert CORE.dma_start_latency_s + CORE.dma_completion_s == pytest.approx(1.3e-6)  # [DBW] ~1300 ns


def test_independent_engines_overlap_and_list_scheduling_fills_gaps():
    trace = Trace("overlap", "trn2")
    x = new_storage()
    dma(trace, tile(x, "sbuf", (128, 512), "float32", is_write=True, name="dst"),
        hbm(new_storage(), (128, 512), "float32", is_write=False, name="src"), chunks=128)
    _op(trace, "vector", new_storage(), x)  # waits for the DMA
    _op(trace, "vector", new_storage(), new_storage())  # independent: runs first, in the gap
    _op(trace, "scalar", new_storage(), new_storage())
    timed = schedule(trace, CORE)
    assert timed.start_s[2] == 0.0 and timed.start_s[3] == 0.0
    assert timed.start_s[1] > timed.done_s[2]


def test_disjoint_footprints_do_not_conflict_but_overlapping_ones_do():
    def second_start(start: int) -> float:
        trace = Trace("footprint", "trn2")
        x = new_storage()
        elementwise(trace, "vector", tile(x, "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 512), "float32", is_write=False, name="src"))
        elementwise(trace, "scalar", tile(new_storage(), "sbuf", (128, 512), "float32", is_write=True, name="dst"),
                    tile(x, "sbuf", (128, 512), "float32", is_write=False, name="src", start=start))
        return schedule(trace, CORE).start_s[1]

    assert second_start(512) == 0.0  # reads the columns next to the ones written: independent
    assert second_start(256) > 0.0   # half overlap: waits


def test_write_after_read_waits_for_the_reader():
    trace = Trace("war", "trn2")
    x = new_storage()
    _op(trace, "vector", new_storage(), x, f=4096)
    _op(trace, "scalar", x, new_storage(), f=64)
    timed = schedule(trace, CORE)
    assert timed.start_s[1] == pytest.approx(timed.done_s[0] + CORE.semaphore_cycles / CORE.scalar_hz)


def test_two_program_ids_run_on_two_cores():
    trace = Trace("lnc2", "trn2", lnc=2)
    for pid in (0, 1):
        elementwise(trace, "vector", tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=True, name="dst"),
                    tile(new_storage(), "sbuf", (128, 2048), "float32", is_write=False, name="src"),
                    program_id=pid)
    timed = schedule(trace, CORE)
    assert timed.makespan_s == pytest.approx(timed.costs[0].stall_s)  # each core's first instruction, from idle
    assert model_trace(trace, TRN2).lnc == 2


def test_vector_performance_mode_only_for_the_documented_ops():
    """Trainium2 arch guide: 4x for tensor_copy / tensor_scalar with 2-byte SBUF operands, 2x with one of them in
    PSUM and for tensor_tensor of 2-byte SBUF inputs; other ops, and fp32 operands, at the base rate."""
    def lane_rate(opcode: str, dtype: str, dst_buffer: str = "sbuf", target=TRN2) -> float:
        trace = Trace("one", target.name)
        inst = _op(trace, "vector", new_storage(), new_storage(), f=4096, dtype=dtype, opcode=opcode,
                   dst_buffer=dst_buffer)
        return 4096 / (instruction_cost(inst, target).busy_s * target.vector_hz)

    assert lane_rate("tensor_copy", "bfloat16") == pytest.approx(4.0)
    assert lane_rate("tensor_scalar", "float16") == pytest.approx(4.0)
    assert lane_rate("tensor_copy", "bfloat16", dst_buffer="psum") == pytest.approx(2.0)
    assert lane_rate("tensor_tensor", "bfloat16") == pytest.approx(2.0)  # one tensor input here
    assert lane_rate("tensor_reduce", "bfloat16") == pytest.approx(TRN2.vector_lane_rate)
    assert lane_rate("tensor_copy", "float32") == pytest.approx(TRN2.vector_lane_rate)
    assert lane_rate("tensor_copy", "bfloat16", target=TRN1) == pytest.approx(1.0)  # v2: no performance mode
    assert lane_rate("tensor_copy", "float8_e4m3", target=TRN3) == pytest.approx(4.0)  # v4: fp8 too


def test_estimate_carries_kernel_time_and_launch_cost():
    est = model_trace(_matmul_trace(4, 512), TRN2)
    assert est.launch_overhead_s == TRN2.launch_s > 0
    assert est.with_launch_s == pytest.approx(est.latency_s + est.launch_overhead_s)
    assert est.to_dict()["with_launch_s"] == est.with_launch_s


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
                program_id=pid, dge_mode=draw(st.sampled_from(["unknown", "hwdge", "swdge", "none"])))
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
