"""The scheduler's placement structure and the cost memo: the fast paths give what the plain rules give."""

import random

import pytest

from nkilab.harness.chips import get_target
from nkilab.harness.perf import cost as cost_mod
from nkilab.harness.perf import dma as dma_mod
from nkilab.harness.perf.schedule import _Timeline
from nkilab.harness.workloads import Quant, model_problems
from nkilab.kernels import nki


def _plain_gap(starts, ends, t, duration, after_idle):
    """The earliest fitting gap by walking every interval from the first one ending after `t`."""
    i = next((k for k, e in enumerate(ends) if e > t), len(ends))
    while True:
        need = duration if (i > 0 and ends[i - 1] == t) else after_idle
        if i >= len(starts) or starts[i] >= t + need:
            return i, t, need
        t = max(t, ends[i])
        i += 1


@pytest.mark.parametrize("seed", range(5))
def test_timeline_gap_matches_the_walk_over_every_interval(seed):
    rng = random.Random(seed)
    line = _Timeline()
    for _ in range(400):  # short requests at scattered times: a fragmented timeline (GpSimd under software DGE)
        t, d = rng.uniform(0.0, 1e-3), rng.choice((1e-7, 3e-7, 2e-6))
        idle = d + rng.choice((0.0, 5e-8))
        want = _plain_gap(line.starts, line.ends, t, d, idle)
        assert line._gap(t, d, idle) == want
        assert line.place(t, d, idle) == (want[1], want[1] + want[2])
    assert len(line.starts) > 2 * 32  # the scan's slices were crossed
    assert all(s < e for s, e in zip(line.starts, line.ends))
    assert all(e < s for e, s in zip(line.ends, line.starts[1:]))


@pytest.mark.parametrize("target", ["inf2", "trn2"])
@pytest.mark.parametrize("name", ["decode/paged_attention/b1-ctx512-bs16", "decode/qmatmul/o-m1"])
def test_memoized_costs_equal_the_rules_for_every_instruction(target, name):
    phase = name.split("/")[0]
    problem = next(p for p in model_problems("llama-3.1-70b", phase=phase, grid="full", quant=Quant("int4", 128))
                   if p.name.endswith(name))
    core = get_target(target, neuron=True)
    trace = nki.trace(problem.op, {**problem.params, **problem.spec()}, target)
    cost_mod._MEMO.clear()
    compute = [i for i in trace.instructions if i.engine != "dma"]
    assert len(compute) > 10
    for inst in compute:
        assert cost_mod.instruction_cost(inst, core) == cost_mod._compute_cost(inst, core)
    assert len(cost_mod._MEMO) < len(compute)  # alike instructions share a cost
    moves = [i for i in trace.instructions if i.engine == "dma"]
    assert moves
    for inst in moves:
        assert dma_mod.dma_cost(inst, core) == dma_mod._dma_cost(inst, core)
