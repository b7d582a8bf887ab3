"""Device markers: `gpu` / `neuron` tests skip exactly where the registry's detectors find no device; on a machine
with the Neuron SDK and a device, the NKI backend runs on it (not on the emulator) and matches the reference."""

import ml_dtypes
import numpy as np
import pytest
from conftest import DEVICE_MARKERS, skip_reason

from nkilab.harness import checks
from nkilab.kernels import attention, qmatmul
from nkilab.kernels._registry import has_cuda_device, has_neuron_device
from nkilab.kernels.nki import _shim
from nkilab.reference.attention import attention as reference_attention
from nkilab.reference.matmul import qmatmul as reference_qmatmul
from nkilab.reference.quant import quantize_weight


def test_markers_use_the_registry_detectors():
    assert DEVICE_MARKERS["gpu"][0] is has_cuda_device and DEVICE_MARKERS["neuron"][0] is has_neuron_device
    for marker, (detect, reason) in DEVICE_MARKERS.items():
        assert skip_reason(marker) == (None if detect() else reason)
    assert "Neuron SDK" in DEVICE_MARKERS["neuron"][1] and "/dev/neuron0" in DEVICE_MARKERS["neuron"][1]


@pytest.mark.neuron
def test_nki_backend_runs_on_the_device():
    assert not _shim.USING_EMULATOR  # the shim found the real SDK
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 256)).astype(np.float32)
    qw = quantize_weight(rng.standard_normal((256, 96)) * 0.1, "int8")
    y = qmatmul(x, qw, backend="nki")
    result = checks.compare(y, reference_qmatmul(x, qw), reference_qmatmul(x, qw, compute_dtype=ml_dtypes.bfloat16))
    assert result.passed, str(result)
    q, k, v = (rng.standard_normal((1, 37, 2, 64)).astype(np.float32) for _ in range(3))
    out = attention(q, k, v, causal=True, backend="nki")
    result = checks.compare(out, reference_attention(q, k, v, causal=True),
                            reference_attention(q, k, v, causal=True, compute_dtype=np.float32))
    assert result.passed, str(result)
