"""Tensor values are runtime data: a kernel's Python code cannot branch on them (it would not compile for a device)."""

import numpy as np
import pytest

from nkilab.harness.emulator import nisa, nki, nl, run
from nkilab.harness.emulator.errors import NkiTraceError


@nki.jit
def branch_on_value(lengths):
    """Reads a runtime length in Python: illegal on a device, so the emulator must refuse it too."""
    out = nl.ndarray((1, 1), nl.int32, buffer=nl.shared_hbm)
    t = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=lengths)
    if t[0, 0] > 0:  # the illegal read under test
        nisa.dma_copy(dst=out, src=t)
    return out


@pytest.mark.parametrize("read", [bool, int, float, np.asarray, list])
def test_python_cannot_read_tensor_values(read):
    @nki.jit
    def kernel(lengths):
        t = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=lengths)
        read(t)
        return lengths

    with pytest.raises(NkiTraceError, match="runtime data"):
        run(kernel, np.ones((1, 1), np.int32))


def test_comparison_result_cannot_drive_control_flow():
    with pytest.raises(TypeError):  # NkiTraceError is a TypeError, as the real tracer's error is
        run(branch_on_value, np.ones((1, 1), np.int32))
