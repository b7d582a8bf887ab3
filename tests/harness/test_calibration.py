"""The performance model against published device measurements: every point within +-25 % (kernel + launch against
the whole-launch figure), never below the roofline, one constant set per generation."""

from dataclasses import replace

import pytest

from nkilab.harness.chips import NEURON_TARGETS, get_target
from nkilab.harness.perf import calibration_kernels as ck
from nkilab.harness.perf.calibration import POINTS, TOLERANCE, calibration_table, model_point, modeled_value

# Every published point runs in CI: the tiled, hoisted and free-blocked fp32 kernels trace 66k-99k instructions
# each (~30-60 s apiece on a 2-core runner).


@pytest.mark.parametrize("point", POINTS, ids=[point.name for point in POINTS])
def test_model_reproduces_published_point(point):
    est = model_point(point)
    value = modeled_value(point, est)
    ratio = value / point.published
    assert est.latency_s >= est.roofline_s
    assert 1 - TOLERANCE <= ratio <= 1 + TOLERANCE, (
        f"{point.name}: modeled {value:.4g} vs published {point.published:.4g} ({point.metric}), ratio {ratio:.3f}")


def test_blocking_moves_the_fp32_kernel_from_dma_to_tensor_bound():
    """What the tutorial's profiles show: the tiled kernel waits on DMA, the blocked one on TensorE."""
    tiled_small = replace(POINTS[0], inputs=(((2048, 512), "float32"), ((2048, 1024), "float32")))
    blocked_small = replace(POINTS[3], inputs=(((2048, 2048), "float32"), ((2048, 1024), "float32")))
    assert model_point(tiled_small).bottleneck == "dma"
    assert model_point(blocked_small).bottleneck == "tensor"


def test_one_constant_set_per_generation():
    """Targets of one NeuronCore generation share every model constant (calibration tunes nothing per point)."""
    model_fields = ("engine_overhead_cycles", "engine_commit_cycles", "semaphore_cycles", "cross_core_sync_s",
                    "dma_engine_bw", "dma_packet_s", "dma_start_latency_s", "dma_completion_s", "hwdge_s",
                    "hwdge_instances", "swdge_cycles_per_descriptor", "dma_transpose_efficiency", "hbm_sustained",
                    "launch_s")
    by_gen: dict[int, set] = {}
    for name in NEURON_TARGETS:
        t = get_target(name)
        by_gen.setdefault(t.gen, set()).add(tuple(getattr(t, f) for f in model_fields))
    assert all(len(values) == 1 for values in by_gen.values())


def test_calibration_table_reports_structure_source_method_and_both_parts():
    rows = calibration_table([p for p in POINTS if p.kernel is ck.exp_one_tile], progress=lambda *a: None)
    (row,) = rows
    assert row["structure"] and row["method"] and row["source"].startswith("[PROF]")
    assert row["kernel_s"] + row["launch_s"] == pytest.approx(float(row["modeled"].split()[0]) * 1e-6, rel=1e-3)
    assert row["ratio"] == pytest.approx((row["kernel_s"] + row["launch_s"]) / 29.26e-6)


def test_a_shared_psum_tile_serializes_its_blocks_output_tiles():
    """nki-autotune's all-blocked port shares one PSUM tile and one staging tile among an M block's output tiles:
    at 2048^3 the 16/2/8 blocking has one M block per K block, so its 32 tiles wait on each other, while 4/1/8 has
    four M blocks to overlap (published 60.6 % vs 79.1 % MFU); with a PSUM tile per output tile (the tutorial's
    kernel) the 16/2/8 blocking would not be the slower one."""
    at_16, at_4 = (p for p in POINTS if p.name.startswith("bf16 2048^3 all-blocked"))
    per_tile = replace(at_16, kwargs={**at_16.kwargs, "shared_partials": False})
    shared_16, shared_4, unshared_16 = (model_point(p).latency_s for p in (at_16, at_4, per_tile))
    assert shared_16 > 1.05 * shared_4
    assert shared_16 > 1.1 * unshared_16
