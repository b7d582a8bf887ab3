"""Hypothesis profiles and device markers shared by the whole suite.

Profiles (select with HYPOTHESIS_PROFILE=ci|dev|thorough|nightly; CI uses `ci`):
  ci        few examples, no deadline, failure blobs printed so any CI failure replays locally
  dev       default for local runs
  thorough  many examples, for hunting bugs before a release
  nightly   10,000 examples per test, i.e. per op x backend of the fuzz suite (`tests/fuzz`; the README gives the
            command and its measured run time)

Cache: the session runs with $NKILAB_CACHE set to a fresh folder, so no test reads records a previous run (or
the user's ~/.cache/nkilab) stored; within the session, tests share it as `nkilab` commands would.

sys.path: `python -m pytest` puts the working directory, the repo root, first on sys.path, where its top-level
`kernels/` (imported as `nkilab.kernels`) would shadow the PyPI `kernels` package that transformers >= 5.25 imports
(`from kernels import CUDAProperties`: an ImportError at collection). The suite imports nkilab through its install, so
the root is dropped from sys.path here, before any test module imports transformers.

Markers: `gpu` tests run where torch sees a CUDA device, `neuron` tests where the real Neuron SDK imports and a
Neuron device exists; elsewhere they are skipped with the reason. The detection is the backend registry's
(`nkilab.kernels._registry.has_cuda_device` / `has_neuron_device`), so tests and `backend="auto"` agree.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

from nkilab.kernels._registry import has_cuda_device, has_neuron_device

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=30, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.register_profile("nightly", max_examples=10_000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))



@pytest.fixture(scope="session", autouse=True)
def _session_record_cache(tmp_path_factory):
    """$NKILAB_CACHE -> a folder of this session's own (see the module docstring)."""
    from nkilab.harness.cache import CACHE_ENV
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("nkilab-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


# marker -> (detector, why a test with it is skipped when the detector says no)
DEVICE_MARKERS = {
    "gpu": (has_cuda_device, "needs a CUDA GPU (torch sees none)"),
    "neuron": (has_neuron_device, "needs the Neuron SDK (an importable `nki`, not the PyPI placeholder) and a "
                                  "Neuron device (/dev/neuron0)"),
}


def skip_reason(marker: str) -> str | None:
    """Why tests marked `marker` cannot run here, or None when the device they need is present."""
    detect, reason = DEVICE_MARKERS[marker]
    return None if detect() else reason


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` / `neuron` tests where their device is missing, saying why (each detector runs at most once,
    and only when a collected test carries its marker)."""
    reasons = {}
    for item in items:
        for marker in DEVICE_MARKERS:
            if marker in item.keywords:
                if marker not in reasons:
                    reasons[marker] = skip_reason(marker)
                if reasons[marker]:
                    item.add_marker(pytest.mark.skip(reason=reasons[marker]))
